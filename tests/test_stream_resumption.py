"""A dropped or closed response stream is resumed with Last-Event-ID after the server's
`retry:`; without ids its fate is unknown."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import resilient_mcp
from resilient_mcp._http_stack import HTTPStackName
from resilient_mcp._transports import streamable
from resilient_mcp.testing import Chaos, StrictServer, serve

from .fake import FakeServer, result, sse_response

URL = "http://127.0.0.1:1/mcp"

pytestmark = pytest.mark.anyio


class TestDroppedStreams:
    """Against the fault server, which cuts every tool-call response on purpose; on both
    HTTP stacks, whose clients raise different classes for a cut response."""

    async def test_sse_answer_is_resumed_and_the_call_runs_once(
        self, http_stack: HTTPStackName
    ) -> None:
        server = StrictServer(json_response=False, chaos=Chaos(seed=7, drop_rate=1.0))
        with resilient_mcp.disable_backoff():
            async with (
                serve(server) as running,
                resilient_mcp.connect(
                    resilient_mcp.HTTPServer(running.url, http_stack=http_stack)
                ) as client,
            ):
                result = await client.call_tool("increment", {"key": "only-once"})
                assert result.text == "1"
                assert client.stats.retries == 0, "resumed, not re-sent"
                stats = running.stats
        assert stats.executions["only-once"] == 1
        assert any(kind == "drop" for _, kind in stats.faults)

    async def test_json_answer_cut_halfway_is_fate_unknown(self, http_stack: HTTPStackName) -> None:
        server = StrictServer(json_response=True, chaos=Chaos(seed=7, drop_rate=1.0))
        with resilient_mcp.disable_backoff():
            async with (
                serve(server) as running,
                resilient_mcp.connect(
                    resilient_mcp.HTTPServer(running.url, http_stack=http_stack)
                ) as client,
            ):
                with pytest.raises(resilient_mcp.FateUnknown) as info:
                    await client.call_tool("increment", {"key": "cut"})
                stats = running.stats
        assert info.value.params == {"name": "increment", "arguments": {"key": "cut"}}
        assert stats.executions["cut"] == 1, "it ran; the client must not run it again"

    async def test_read_cut_halfway_is_retried(self, http_stack: HTTPStackName) -> None:
        # Every tool-call answer is cut: a read-only tool is re-sent, and fails only when
        # the attempts run out, never with FateUnknown.
        server = StrictServer(json_response=True, chaos=Chaos(seed=7, drop_rate=1.0))
        with resilient_mcp.disable_backoff():
            async with (
                serve(server) as running,
                resilient_mcp.connect(
                    resilient_mcp.HTTPServer(running.url, http_stack=http_stack)
                ) as client,
            ):
                await client.list_tools()
                with pytest.raises(resilient_mcp.ConnectionLost):
                    await client.call_tool("read_counter")
                assert client.stats.retries == 2
                assert running.stats.tool_calls["read_counter"] == 3


class TestGracefulClose:
    """SEP-1699: a server may end a POST's SSE stream before the answer, gracefully
    (polling). The client waits the stream's ``retry:`` and resumes it with GET +
    ``Last-Event-ID``; the answer comes on the resumed stream and the call runs once."""

    async def test_closed_stream_is_resumed_after_the_servers_retry(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        waits: list[float] = []

        async def record(delay: float) -> None:
            waits.append(delay)  # what the client waits; no test waits on a clock

        monkeypatch.setattr(streamable, "backoff_sleep", record)
        server = FakeServer()
        calls: list[dict[str, Any]] = []

        def call(message: dict[str, Any]) -> httpx.Response:
            calls.append(message)
            return sse_response("id: primed-1\nretry: 500\ndata: ")  # then the stream ends

        def resumed(request: httpx.Request) -> httpx.Response:
            assert request.headers["last-event-id"] == "primed-1"
            answer = result(calls[-1], {"content": [{"type": "text", "text": "done"}]})
            return sse_response(f"id: primed-2\ndata: {json.dumps(answer)}")

        server.routes["tools/call"] = call
        server.get_stream = resumed
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            called = await client.call_tool("slow", {})
            assert called.text == "done"
            assert client.stats.retries == 0
        assert len(calls) == 1, "resumed, not re-sent"
        assert waits == [0.5], "the server's retry: 500 (milliseconds), nothing else"
        gets = [r for r in server.requests if r.method == "GET"]
        assert [r.headers.get("last-event-id") for r in gets] == ["primed-1"]
