"""Bad input from a server fails the request it belongs to, with a typed error, and nothing else."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest

import resilient_mcp
from resilient_mcp import Execution, Limits

from .fake import FakeServer, json_response, result, sse_response

pytestmark = pytest.mark.anyio

Bad = Callable[[dict[str, Any]], httpx.Response]


def tool_routes(server: FakeServer, bad: Bad) -> None:
    """The tool named "bad" gets ``bad``'s answer; every other tool echoes."""
    default = server.handle

    def route(message: dict[str, Any]) -> httpx.Response:
        if message["params"]["name"] == "bad":
            return bad(message)
        text = json.dumps(message["params"].get("arguments", {}))
        return json_response(result(message, {"content": [{"type": "text", "text": text}]}))

    del default
    server.routes["tools/call"] = route


async def run_bad_and_good(
    server: FakeServer, *, limits: Limits | None = None
) -> tuple[BaseException, str]:
    """Call "bad" and "good" concurrently; return bad's error and good's text."""
    outcome: dict[str, Any] = {}
    async with (
        server.client() as http,
        resilient_mcp.connect(
            resilient_mcp.HTTPServer("http://127.0.0.1:1/mcp", http_client=http), limits=limits
        ) as client,
    ):

        async def bad() -> None:
            try:
                await client.call_tool("bad", {}, timeout=5)
            except resilient_mcp.MCPError as exc:
                outcome["bad"] = exc

        async def good() -> None:
            outcome["good"] = (await client.call_tool("good", {"n": 1}, timeout=5)).text

        async with anyio.create_task_group() as tg:
            tg.start_soon(bad)
            tg.start_soon(good)
        # The session is still healthy afterwards.
        assert (await client.call_tool("after", {"ok": True}, timeout=5)).text == '{"ok": true}'
    assert "bad" in outcome, "the bad request did not fail"
    return outcome["bad"], outcome["good"]


class TestBadInputFailsOnlyItsRequest:
    """Each kind of garbage gives a typed error on its own request; concurrent ones succeed."""

    async def test_malformed_json_body(self) -> None:
        server = FakeServer()
        tool_routes(
            server,
            lambda m: httpx.Response(
                200,
                content=b'{"jsonrpc": "2.0", "id": ',
                headers={"content-type": "application/json"},
            ),
        )
        error, good = await run_bad_and_good(server)
        assert isinstance(error, resilient_mcp.MalformedMessage)
        assert error.method == "tools/call"
        assert error.execution is Execution.MAYBE
        assert good == '{"n": 1}'

    async def test_response_with_unknown_id(self) -> None:
        server = FakeServer()
        tool_routes(server, lambda m: json_response({"jsonrpc": "2.0", "id": 99999, "result": {}}))
        error, good = await run_bad_and_good(server)
        assert isinstance(error, resilient_mcp.MalformedMessage)
        assert "no answer" in str(error)
        assert good == '{"n": 1}'

    async def test_response_without_result_or_error(self) -> None:
        server = FakeServer()
        tool_routes(server, lambda m: json_response({"jsonrpc": "2.0", "id": m["id"]}))
        error, _ = await run_bad_and_good(server)
        assert isinstance(error, resilient_mcp.MalformedMessage)

    async def test_garbage_sse_event(self) -> None:
        server = FakeServer()
        tool_routes(server, lambda m: sse_response("data: {this is not json", ": comment"))
        error, good = await run_bad_and_good(server)
        assert isinstance(error, resilient_mcp.MalformedMessage)
        assert "malformed" in str(error)
        assert good == '{"n": 1}'

    async def test_garbage_bytes_as_sse(self) -> None:
        server = FakeServer()
        tool_routes(
            server,
            lambda m: httpx.Response(
                200,
                content=b"\x00\xff\xfe garbage\r\n\r\n",
                headers={"content-type": "text/event-stream"},
            ),
        )
        error, _ = await run_bad_and_good(server)
        # A side-effecting call that may have run is not retried, and says so.
        assert isinstance(error, resilient_mcp.FateUnknown)
        assert isinstance(error.__cause__, resilient_mcp.ConnectionLost)
        assert error.execution is Execution.MAYBE

    async def test_huge_json_message(self) -> None:
        server = FakeServer()
        huge = "x" * 10_000
        tool_routes(
            server,
            lambda m: json_response(result(m, {"content": [{"type": "text", "text": huge}]})),
        )
        error, good = await run_bad_and_good(server, limits=Limits(max_message_size=4096))
        assert isinstance(error, resilient_mcp.MessageTooLarge)
        assert good == '{"n": 1}'

    async def test_huge_sse_event(self) -> None:
        server = FakeServer()
        huge = "x" * 10_000
        tool_routes(
            server,
            lambda m: sse_response(
                "data: " + json.dumps(result(m, {"content": [{"type": "text", "text": huge}]}))
            ),
        )
        error, _ = await run_bad_and_good(server, limits=Limits(max_message_size=4096))
        assert isinstance(error, resilient_mcp.MessageTooLarge)

    async def test_a_50_mb_sse_event_under_default_limits_is_too_large_at_once(self) -> None:
        """As the same answer sent as JSON is: refused once past the limit, not decoded to
        the end (nor, as a quadratic decoder did, until the call's timeout)."""
        server = FakeServer()
        sent = 0

        def streamed(message: dict[str, Any]) -> httpx.Response:
            async def body() -> AsyncIterator[bytes]:
                nonlocal sent
                yield b'data: {"jsonrpc":"2.0","id":' + str(message["id"]).encode() + b',"x":"'
                for _ in range(50 * 16):  # 50 MiB in 64 KiB chunks
                    sent += 64 * 1024
                    yield b"x" * (64 * 1024)
                yield b'"}\n\n'

            return httpx.Response(
                200, content=body(), headers={"content-type": "text/event-stream"}
            )

        tool_routes(server, streamed)
        with anyio.fail_after(30):
            error, good = await run_bad_and_good(server)
        assert isinstance(error, resilient_mcp.MessageTooLarge)
        assert good == '{"n": 1}'
        assert sent <= Limits().max_message_size + 1024 * 1024  # stopped reading at the limit

    async def test_text_plain_error_body(self) -> None:
        server = FakeServer()
        tool_routes(
            server,
            lambda m: httpx.Response(
                500, content=b"Internal explosion", headers={"content-type": "text/plain"}
            ),
        )
        error, good = await run_bad_and_good(server)
        assert isinstance(error, resilient_mcp.FateUnknown)
        cause = error.__cause__
        assert isinstance(cause, resilient_mcp.HTTPStatusError)
        assert cause.status_code == 500
        assert cause.body == "Internal explosion"
        assert error.execution is Execution.MAYBE
        assert error.params == {"name": "bad", "arguments": {}}
        assert good == '{"n": 1}'

    async def test_html_with_200(self) -> None:
        server = FakeServer()
        tool_routes(
            server,
            lambda m: httpx.Response(
                200, content=b"<html>proxy login</html>", headers={"content-type": "text/html"}
            ),
        )
        error, _ = await run_bad_and_good(server)
        assert isinstance(error, resilient_mcp.MalformedMessage)

    async def test_invalid_result_shape(self) -> None:
        server = FakeServer()
        tool_routes(server, lambda m: json_response(result(m, {"content": "not a list"})))
        error, _ = await run_bad_and_good(server)
        assert isinstance(error, resilient_mcp.MalformedMessage)
        assert error.execution is Execution.EXECUTED

    async def test_sse_stream_ending_without_answer(self) -> None:
        server = FakeServer()
        tool_routes(server, lambda m: sse_response(": keep-alive"))
        error, _ = await run_bad_and_good(server)
        assert isinstance(error, resilient_mcp.FateUnknown)
        assert isinstance(error.__cause__, resilient_mcp.ConnectionLost)
        assert error.execution is Execution.MAYBE


class TestHandshakeBadInput:
    """A broken handshake gives a typed error from connect()."""

    async def test_unsupported_protocol_version(self) -> None:
        server = FakeServer(protocol_version="1999-01-01")
        async with server.client() as http:
            with pytest.raises(resilient_mcp.UnsupportedProtocolVersion) as info:
                async with resilient_mcp.connect(
                    resilient_mcp.HTTPServer("http://127.0.0.1:1/mcp", http_client=http)
                ):
                    pass
        assert info.value.offered == "1999-01-01"
        assert "2025-11-25" in info.value.supported
        # The spec says to disconnect: the session was ended, and nothing else was sent.
        assert [r.method for r in server.requests] == ["POST", "DELETE"]
        assert server.methods() == ["initialize"]

    async def test_invalid_session_id_header(self) -> None:
        server = FakeServer(session_id="bad id")
        async with server.client() as http:
            with pytest.raises(resilient_mcp.MalformedMessage):
                async with resilient_mcp.connect(
                    resilient_mcp.HTTPServer("http://127.0.0.1:1/mcp", http_client=http)
                ):
                    pass

    async def test_invalid_initialize_result(self) -> None:
        server = FakeServer()
        server.routes["initialize"] = lambda m: json_response(result(m, {"protocolVersion": 5}))
        async with server.client() as http:
            with pytest.raises(resilient_mcp.HandshakeError):
                async with resilient_mcp.connect(
                    resilient_mcp.HTTPServer("http://127.0.0.1:1/mcp", http_client=http)
                ):
                    pass

    async def test_initialized_not_delivered_fails_the_handshake(self) -> None:
        server = FakeServer()
        server.routes["notifications/initialized"] = lambda m: httpx.Response(
            500, content=b"boom", headers={"content-type": "text/plain"}
        )
        async with server.client() as http:
            with pytest.raises(resilient_mcp.HandshakeError) as info:
                # A failed handshake step is retried until the handshake's deadline (the
                # default 30 s would only make this test wait longer, for the same end).
                async with resilient_mcp.connect(
                    resilient_mcp.HTTPServer("http://127.0.0.1:1/mcp", http_client=http),
                    timeouts=resilient_mcp.Timeouts(initialize=2),
                ):
                    pass
        assert info.value.method == "notifications/initialized"
        assert isinstance(info.value.__cause__, resilient_mcp.HTTPStatusError)

    async def test_connection_refused_is_connect_error(self) -> None:
        # Port 9 (discard) on loopback has no listener here: a real refused connection.
        with pytest.raises(resilient_mcp.ConnectError) as info:
            async with resilient_mcp.connect("http://127.0.0.1:9/mcp"):
                pass
        assert info.value.execution is Execution.NOT_EXECUTED
        # The first thing sent is the era probe; an outage is reported, not taken for
        # an era.
        assert info.value.method == "server/discover"
