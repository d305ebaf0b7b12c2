"""The gate: nothing reaches the server before it can take it, and nothing waits longer."""

from __future__ import annotations

from typing import Any, Final

import anyio
import httpx
import pytest

import resilient_mcp
from resilient_mcp import Execution, Limits, SessionState, Timeouts
from resilient_mcp.testing import Profile, StrictServer, serve

from .fake import FakeServer, json_response, result

pytestmark = pytest.mark.anyio


# The strictest dialect: rmcp processes `initialized` before its 202, and a request that
# beats it ends the session (the Python SDK serves requests once `initialize` is answered).
STRICT: Final[Profile] = "rmcp-legacy"


class TestGateAgainstStrictServer:
    """Calls made before the handshake completes wait for it and then all succeed."""

    async def test_500_calls_before_connect_finished_all_succeed(self) -> None:
        async with serve(
            StrictServer(profile=STRICT, handshake_delay=0.2, initialize_delay=0.05)
        ) as running:
            texts: list[str] = []
            async with resilient_mcp.connect(running.url, wait_ready=False) as client:
                initial_state = client.state
                assert initial_state is not SessionState.READY

                async def call(i: int) -> None:
                    texts.append((await client.call_tool("echo", {"text": str(i)})).text)

                async with anyio.create_task_group() as tg:
                    for i in range(500):
                        tg.start_soon(call, i)
                assert client.state is SessionState.READY
                assert client.stats.handshakes == 1
                assert client.stats.queued_peak == 500
            stats = running.stats
        assert sorted(texts, key=int) == [str(i) for i in range(500)]
        assert stats.early_requests == 0
        assert stats.initialize_requests == 1
        assert stats.initialized_notifications == 1
        assert stats.tool_calls["echo"] == 500

    async def test_naive_client_is_rejected_by_the_strict_server(self) -> None:
        """Control: the strict server really rejects what the gate holds back."""
        async with (
            serve(StrictServer(profile=STRICT, handshake_delay=0.2)) as running,
            httpx.AsyncClient() as http,
        ):
            headers = {"Accept": "application/json, text/event-stream"}
            init = await http.post(
                running.url,
                headers=headers,
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "naive", "version": "0"},
                    },
                },
            )
            headers["Mcp-Session-Id"] = init.headers["mcp-session-id"]
            call = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "x"}},
            }
            answers: dict[str, httpx.Response] = {}

            async def notify() -> None:
                await http.post(
                    running.url,
                    headers=headers,
                    json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                )

            async def early() -> None:
                answers["call"] = await http.post(running.url, headers=headers, json=call)

            # What naive clients do: fire the notification and the first call together.
            async with anyio.create_task_group() as tg:
                tg.start_soon(notify)
                tg.start_soon(early)
            assert answers["call"].status_code == 500  # and the session is gone
            assert running.stats.early_requests == 1

    async def test_every_call_waits_for_delivery_of_initialized(self) -> None:
        async with serve(StrictServer(profile=STRICT, handshake_delay=0.3)) as running:
            async with resilient_mcp.connect(running.url, wait_ready=False) as client:
                await client.ping()  # ping is gated too, though servers allow it early
                assert client.stats.time_to_ready is not None
                assert client.stats.time_to_ready >= 0.3
            assert running.stats.early_requests == 0


class TestGateBookkeeping:
    """Overflow, failures and closing reach every parked request."""

    async def test_queue_overflow_is_a_typed_error(self) -> None:
        entered = anyio.Event()
        release = anyio.Event()
        server = FakeServer()

        async def slow_initialize(message: dict[str, object]) -> httpx.Response:
            entered.set()
            await release.wait()
            return await server_default(message)

        async def server_default(message: dict[str, object]) -> httpx.Response:
            return json_response(
                result(
                    dict(message),
                    {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "serverInfo": {"name": "fake", "version": "1"},
                    },
                )
            )

        server.routes["initialize"] = slow_initialize
        errors: list[BaseException] = []
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer("http://127.0.0.1:1/mcp", http_client=http),
                wait_ready=False,
                limits=Limits(max_queued=3),
            ) as client,
        ):

            async def call() -> None:
                try:
                    await client.call_tool("x")
                except resilient_mcp.QueueFull as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(call)
                await entered.wait()
                await anyio.wait_all_tasks_blocked()
                with pytest.raises(resilient_mcp.QueueFull) as info:
                    await client.call_tool("one too many")
                assert info.value.execution is Execution.NOT_EXECUTED
                assert "3 queued" in repr(client)
                release.set()
        assert errors == []

    async def test_handshake_failure_reaches_every_parked_call(self) -> None:
        server = FakeServer()
        parked = anyio.Event()

        async def refuse(message: dict[str, Any]) -> httpx.Response:
            await parked.wait()  # the handshake fails only once all five calls wait for it
            return httpx.Response(401, content=b"no token", headers={"content-type": "text/plain"})

        server.routes["initialize"] = refuse
        errors: list[resilient_mcp.MCPError] = []
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer("http://127.0.0.1:1/mcp", http_client=http),
                wait_ready=False,
            ) as client,
        ):

            async def call() -> None:
                try:
                    await client.call_tool("x")
                except resilient_mcp.MCPError as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(call)
                await anyio.wait_all_tasks_blocked()
                assert "5 queued" in repr(client)
                parked.set()
        assert len(errors) == 5
        assert len({id(e) for e in errors}) == 5, "each parked call raises its own error object"
        for error in errors:
            assert isinstance(error, resilient_mcp.HTTPStatusError)
            assert error.status_code == 401
            assert error.method == "tools/call"
            assert error.execution is Execution.NOT_EXECUTED
        # Single flight: the five calls shared one handshake attempt.
        assert server.methods() == ["initialize"]

    async def test_closing_fails_parked_calls(self) -> None:
        release = anyio.Event()
        server = FakeServer()

        async def never_initialize(message: dict[str, object]) -> httpx.Response:
            await release.wait()
            return httpx.Response(503)

        server.routes["initialize"] = never_initialize
        errors: list[BaseException] = []
        async with server.client() as http:
            client = resilient_mcp.connect(
                resilient_mcp.HTTPServer("http://127.0.0.1:1/mcp", http_client=http),
                wait_ready=False,
            )
            async with client, anyio.create_task_group() as tg:

                async def call() -> None:
                    try:
                        await client.call_tool("x")
                    except resilient_mcp.MCPError as exc:
                        errors.append(exc)

                for _ in range(3):
                    tg.start_soon(call)
                await anyio.wait_all_tasks_blocked()
                await client.aclose()
            release.set()
        assert [type(e) for e in errors] == [resilient_mcp.ClientClosed] * 3

    async def test_gate_wait_counts_against_the_request_timeout(self) -> None:
        server = FakeServer()
        never = anyio.Event()

        async def hang(message: dict[str, object]) -> httpx.Response:
            await never.wait()
            raise AssertionError("unreachable")

        server.routes["initialize"] = hang
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer("http://127.0.0.1:1/mcp", http_client=http),
                wait_ready=False,
                timeouts=Timeouts(request=0.05, initialize=30),
            ) as client,
        ):
            with pytest.raises(resilient_mcp.RequestTimeout) as info:
                await client.call_tool("x")
            assert info.value.execution is Execution.NOT_EXECUTED
            # The call never left the gate (initialize itself may or may not have been
            # posted yet on a loaded machine: that is the handshake's business).
            assert "tools/call" not in server.methods()

    async def test_client_refuses_use_after_close_and_reuse(self) -> None:
        server = FakeServer()
        async with server.client() as http:
            client = resilient_mcp.connect(
                resilient_mcp.HTTPServer("http://127.0.0.1:1/mcp", http_client=http)
            )
            async with client:
                await client.ping()
            with pytest.raises(resilient_mcp.ClientClosed):
                await client.ping()
            with pytest.raises(resilient_mcp.ClientClosed):
                async with client:
                    pass
            # We never close an httpx client we did not create.
            assert not http.is_closed
