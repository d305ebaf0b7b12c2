"""A dropped response stream is resumed with Last-Event-ID; without ids its fate is unknown."""

from __future__ import annotations

import pytest

import resilient_mcp
from resilient_mcp._http_stack import HTTPStackName
from resilient_mcp.testing import Chaos, StrictServer, serve

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
