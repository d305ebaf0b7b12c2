"""The LlamaIndex adapter over a real ClientGroup of two StrictServers: its FunctionAgent
driven by MockFunctionCallingLLM as in test_llama_index.py (asyncio only)."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import anyio
import pytest
from llama_index.core.schema import QueryType
from llama_index.core.tools import BaseTool

import resilient_mcp
from resilient_mcp.integrations.llama_index import (
    MCPToolRetriever,
    ResilientMCPToolSpec,
    is_terminal,
)
from resilient_mcp.testing import StrictServer, serve

from .test_llama_index import LIMIT_S, Script, by_name, outputs, run

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mcp"


async def test_the_model_sees_both_servers_and_calls_one_tool_of_each() -> None:
    script = Script([("one__increment", {"key": "k"}), ("two__add", {"a": 2, "b": 3})])
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer()) as one,
            serve(StrictServer(era="modern")) as two,
            resilient_mcp.connect_group({"one": one.url, "two": two.url}) as group,
        ):
            async with ResilientMCPToolSpec(group) as spec:
                result = await run(script, tool_retriever=spec.as_retriever())
            # Leaving the spec never closes a group it was given.
            assert (await group.call_tool("two__echo", {"text": "open"})).text == "open"
            counts = one.stats.executions["k"], two.stats.executions["k"]
    assert {"one__echo", "one__increment", "two__echo", "two__add"} <= script.offered[0]
    increment, added = outputs(result)
    assert (increment.is_error, added.is_error) == (False, False)
    assert added.raw_output["structured_content"] == {"sum": 5}
    assert counts == (1, 0)  # each call reached its own server


class GoesDown(MCPToolRetriever):
    """The spec's tools; after the first listing, before the model's step, ``down()``."""

    def __init__(self, spec: ResilientMCPToolSpec, down: Callable[[], Awaitable[None]]) -> None:
        super().__init__(spec)
        self._down = down
        self.listings = 0

    async def aretrieve(self, str_or_query_bundle: QueryType) -> list[BaseTool]:
        tools = await super().aretrieve(str_or_query_bundle)
        self.listings += 1
        if self.listings == 1:
            await self._down()
        return tools


@pytest.mark.parametrize("listing", ["tools", "retriever"])
async def test_a_member_that_goes_down_is_an_error_output_never_terminal(listing: str) -> None:
    # `never` is a refused port from the start: the group leaves it out of every listing.
    # `gone` goes down between the listing the model is shown and its calls: its server
    # stops and the group loses its connection (a stopped HTTP server alone would be
    # retried, refused, until the default 60 s deadline).
    script = Script([("up__echo", {"text": "hi"}), ("gone__echo", {"text": "x"})], final="done")
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as up:
            gone_server = serve(StrictServer())
            gone = await gone_server.__aenter__()
            servers = {"up": up.url, "gone": gone.url, "never": closed_port_url()}
            async with resilient_mcp.connect_group(servers) as group:

                async def down() -> None:
                    await gone_server.__aexit__(None, None, None)
                    await group["gone"].aclose()

                spec = ResilientMCPToolSpec(group)
                if listing == "tools":
                    tools = await spec.to_tool_list_async()
                    await down()
                    result = await run(script, tools=tools)
                else:
                    result = await run(script, tool_retriever=GoesDown(spec, down))
                state = group.status()["gone"].state
                still = await group.call_tool("up__echo", {"text": "still"})
    assert {"up__echo", "gone__echo"} <= script.offered[0]
    assert not any(name.startswith("never__") for name in script.offered[0])
    found = {output.tool_name: output for output in outputs(result)}
    echo, refused = found["up__echo"], found["gone__echo"]
    assert (echo.is_error, echo.content) == (False, "hi")
    assert refused.is_error
    assert not is_terminal(refused)
    if listing == "tools":
        assert refused.raw_output["status"] == "not_executed"
        assert "did not run" in refused.content
        assert "server 'gone'" in refused.content
    else:
        # FunctionAgent looks the tool up again at call time, through the retriever, in
        # a listing that leaves the down member out: LlamaIndex's own "not found".
        assert refused.raw_output is None
        assert "gone__echo not found" in refused.content
    assert result.response.content == "done"  # the model had its next turn
    # Down, never ready: FAILED, or CONNECTING when a later listing already began the
    # lazy reconnect (its not-before time passes sooner on a slow machine).
    assert state in {resilient_mcp.MemberState.FAILED, resilient_mcp.MemberState.CONNECTING}
    assert still.text == "still"


async def test_an_unprefixed_group_keeps_the_servers_names() -> None:
    only_two = StrictServer()
    only_two.add_tool("lookup", description="Only on two.", text="from two")
    script = Script([("lookup", {}), ("increment", {"key": "k"})])
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer()) as one,
            serve(only_two) as two,
            resilient_mcp.connect_group({"one": one.url, "two": two.url}, prefix=False) as group,
        ):
            tools = await ResilientMCPToolSpec(group).to_tool_list_async()
            result = await run(script, tools=tools)
            counts = one.stats.executions["k"], two.stats.executions["k"]
    names = set(by_name(tools))
    assert {"lookup", "echo", "increment"} <= names
    assert len([name for name in names if name.startswith("echo")]) == 2  # never merged
    lookup, increment = outputs(result)
    assert (lookup.is_error, lookup.content) == (False, "from two")
    assert not increment.is_error
    assert counts == (1, 0)  # a shared name stays the first member's
