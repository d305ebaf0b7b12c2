"""Cancellation follows the spec: only for requests that went out, in both directions."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest

import resilient_mcp
from resilient_mcp import Execution, Handlers, Limits, Timeouts
from resilient_mcp.types import CreateMessageRequestParams, CreateMessageResult

from .fake import FakeServer, json_response, result, sse_response

pytestmark = pytest.mark.anyio


class TestClientSideCancellation:
    """A request that never left is reported as not executed and never cancelled."""

    async def test_timeout_while_waiting_for_a_connection_slot(self) -> None:
        server = FakeServer()
        release = anyio.Event()
        holding = anyio.Event()

        async def hold(message: dict[str, Any]) -> httpx.Response:
            if message["params"]["name"] == "hold":
                holding.set()
                await release.wait()
            return json_response(result(message, {"content": []}))

        server.routes["tools/call"] = hold
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer("http://127.0.0.1:1/mcp", http_client=http),
                limits=Limits(max_connections=1),
            ) as client,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(client.call_tool, "hold")
            await holding.wait()
            with pytest.raises(resilient_mcp.RequestTimeout) as info:
                await client.call_tool("queued", timeout=0.05)
            release.set()
        assert info.value.execution is Execution.NOT_EXECUTED
        names = [
            m["params"].get("name") for m in server.received if m.get("method") == "tools/call"
        ]
        assert names == ["hold"], "the queued call must never reach the server"
        assert "notifications/cancelled" not in server.methods()

    async def test_handshake_timeout_names_initialize(self) -> None:
        server = FakeServer()
        never = anyio.Event()

        async def hang(message: dict[str, Any]) -> httpx.Response:
            await never.wait()
            raise AssertionError("unreachable")

        server.routes["initialize"] = hang
        async with server.client() as http:
            with pytest.raises(resilient_mcp.RequestTimeout) as info:
                async with resilient_mcp.connect(
                    resilient_mcp.HTTPServer("http://127.0.0.1:1/mcp", http_client=http),
                    timeouts=Timeouts(initialize=0.05),
                ):
                    pass
        assert info.value.method == "initialize"
        # Only initialize (if the loaded machine even got to post it), never a cancel.
        assert set(server.methods()) <= {"initialize"}


class TestServerSideCancellation:
    """The server may withdraw its own request: the handler stops and no answer is sent."""

    async def test_server_cancels_its_sampling_request(self) -> None:
        server = FakeServer()
        handler_started = anyio.Event()
        handler_cancelled = anyio.Event()

        async def sampling(params: CreateMessageRequestParams) -> CreateMessageResult:
            handler_started.set()
            try:
                await anyio.Event().wait()  # a user who never answers
            finally:
                handler_cancelled.set()
            raise AssertionError("unreachable")

        def call(message: dict[str, Any]) -> httpx.Response:
            ask = {
                "jsonrpc": "2.0",
                "id": "s1",
                "method": "sampling/createMessage",
                "params": {"messages": [], "maxTokens": 5},
            }
            withdraw = {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": "s1", "reason": "changed my mind"},
            }
            answer = result(message, {"content": [{"type": "text", "text": "done"}]})
            return sse_response(*(f"data: {json.dumps(m)}" for m in (ask, withdraw, answer)))

        server.routes["tools/call"] = call
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer("http://127.0.0.1:1/mcp", http_client=http),
                handlers=Handlers(sampling=sampling),
            ) as client,
        ):
            assert (await client.call_tool("ask")).text == "done"
            with anyio.fail_after(5):
                await handler_cancelled.wait()
        answers = [m for m in server.received if m.get("id") == "s1"]
        assert answers == [], "a withdrawn request gets no answer"


class TestAcceptedRequests:
    """A request answered 202 gets its answer on the server's stream, which is opened for it."""

    async def test_answer_arrives_on_the_get_stream(self) -> None:
        server = FakeServer()
        accepted: list[dict[str, Any]] = []

        def accept(message: dict[str, Any]) -> httpx.Response:
            accepted.append(message)
            return httpx.Response(202)

        def stream(request: httpx.Request) -> httpx.Response:
            answer = result(accepted[-1], {"content": [{"type": "text", "text": "later"}]})
            return sse_response(f"data: {json.dumps(answer)}")

        server.routes["tools/call"] = accept
        server.get_stream = stream
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer("http://127.0.0.1:1/mcp", http_client=http)
            ) as client,
        ):
            with anyio.fail_after(5):
                assert (await client.call_tool("deferred")).text == "later"
        assert [r.method for r in server.requests].count("GET") >= 1
