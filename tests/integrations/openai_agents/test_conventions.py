"""The openai-agents adapter keeps the SDK's conventions: filters, the tools cache,
approval, prompts and resources as ``mcp.types``, custom data, any ToolSource.

Driven by the SDK's ScriptedModel, on asyncio only (the SDK's run loop).
"""

from __future__ import annotations

import base64
from typing import Any

import anyio
import pytest
from agents.exceptions import UserError
from agents.mcp import MCPToolCustomDataContext, ToolFilterContext
from agents.testing import ScriptedModel, assistant_message, function_call
from mcp import types as mcp_types

import resilient_mcp
from resilient_mcp import Toolbox, ToolOutcome
from resilient_mcp.integrations.openai_agents import (
    CUSTOM_DATA_KEY,
    OUTCOME_META_KEY,
    ResilientMCPServer,
    call_result,
)
from resilient_mcp.testing import StrictServer, serve
from resilient_mcp.types import CallToolResult, Tool

from .helpers import LIMIT_S, agent, offered, outputs, run, text

pytestmark = [
    pytest.mark.anyio,
    # The Agents SDK's run loop uses asyncio tasks.
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),
]


async def test_static_and_callable_tool_filters() -> None:
    seen: list[str] = []

    async def only_echo(context: ToolFilterContext, tool: mcp_types.Tool) -> bool:
        seen.append(context.server_name)
        return tool.name == "echo"

    def broken(context: ToolFilterContext, tool: mcp_types.Tool) -> bool:
        if tool.name == "add":
            raise RuntimeError("filter bug")
        return True

    model = ScriptedModel([[assistant_message("nothing to do")]] * 2)
    with serve(StrictServer()) as running:
        async with resilient_mcp.connect(running.url) as client:
            static = ResilientMCPServer(
                client,
                name="static",
                tool_filter={"allowed_tool_names": ["echo", "add"], "blocked_tool_names": ["add"]},
            )
            dynamic = ResilientMCPServer(Toolbox(client), name="dynamic", tool_filter=only_echo)
            assert [tool.name for tool in await static.list_tools()] == ["echo"]
            with pytest.raises(UserError):
                await dynamic.list_tools()  # a callable filter needs the run's context
            await run(agent(model, dynamic))
            failing = ResilientMCPServer(client, tool_filter=broken)
            await run(agent(model, failing))
            listed = {tool.name for tool in await client.list_tools()}
    assert offered(model.calls[0]) == {"echo"}
    assert offered(model.calls[1]) == listed - {"add"}  # a failing filter excludes
    assert seen
    assert set(seen) == {"dynamic"}


async def test_cache_tools_list_holds_until_invalidated() -> None:
    changed = anyio.Event()

    async def on_notification(method: str, params: object) -> None:
        if method == "notifications/tools/list_changed":
            changed.set()

    server = StrictServer()
    handlers = resilient_mcp.Handlers(notification=on_notification)
    with serve(server) as running:
        async with resilient_mcp.connect(running.url, handlers=handlers) as client:
            cached = ResilientMCPServer(client, cache_tools_list=True)
            fresh = ResilientMCPServer(client)
            assert cached.cached_tools is None
            before = {tool.name for tool in await cached.list_tools()}
            server.add_tool("late", text="late")
            with anyio.fail_after(LIMIT_S):
                await changed.wait()
            current = {tool.name for tool in await fresh.list_tools()}
            still = {tool.name for tool in await cached.list_tools()}
            cached.invalidate_tools_cache()
            after = {tool.name for tool in await cached.list_tools()}
            snapshot = cached.cached_tools
    assert "late" not in before
    assert "late" in current  # the client's cache, refreshed by list_changed
    assert still == before
    assert "late" in after
    assert snapshot is not None
    assert "late" in {tool.name for tool in snapshot}


async def test_require_approval_interrupts_the_run() -> None:
    model = ScriptedModel([[function_call("increment", {"key": "k"}, call_id="c1")]])
    with serve(StrictServer()) as running:
        async with ResilientMCPServer(running.url, require_approval="always") as server:
            result = await run(agent(model, server))
            stats = running.stats
    (interruption,) = result.interruptions
    assert interruption.tool_name == "increment"
    assert stats.executions["k"] == 0


async def test_prompts_and_resources_are_mcp_types() -> None:
    with serve(StrictServer()) as running:
        async with ResilientMCPServer(running.url) as server:
            prompts = await server.list_prompts()
            rendered = await server.get_prompt("greet", {"name": "Ada"})
            resources = await server.list_resources()
            with pytest.raises(resilient_mcp.UsageError):
                await server.list_resources(cursor="next")
    assert isinstance(prompts, mcp_types.ListPromptsResult)
    assert "greet" in [prompt.name for prompt in prompts.prompts]
    assert isinstance(rendered, mcp_types.GetPromptResult)
    assert "Ada" in rendered.model_dump_json()
    assert isinstance(resources, mcp_types.ListResourcesResult)


async def test_outcomes_map_to_call_tool_results() -> None:
    image = base64.b64encode(b"\x89PNG").decode()
    result = CallToolResult.model_validate(
        {
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image", "data": image, "mimeType": "image/png"},
            ],
            "structuredContent": {"n": 1},
        }
    )
    ok = call_result(ToolOutcome.of_result("t", result)).model_dump(
        by_alias=True, exclude_none=True
    )
    assert ok["content"][1] == {"type": "image", "data": image, "mimeType": "image/png"}
    assert ok["structuredContent"] == {"n": 1}
    assert ok["isError"] is False
    refused = call_result(ToolOutcome.of_error("t", resilient_mcp.ConnectError("refused")))
    dumped = refused.model_dump(by_alias=True)
    assert dumped["isError"] is True
    assert "did not run, so nothing changed" in dumped["content"][0]["text"]
    assert dumped["_meta"][OUTCOME_META_KEY] == {"status": "not_executed", "terminal": False}
    newer = CallToolResult.model_validate(
        {"content": [{"type": "hologram", "uri": "x:1"}, {"type": "text", "text": "a"}]}
    )
    shown = call_result(ToolOutcome.of_result("t", newer)).model_dump(by_alias=True)
    assert [block["text"] for block in shown["content"]] == ["[unknown]", "a"]
    lost = call_result(ToolOutcome.of_error("t", resilient_mcp.ConnectionLost("cut")))
    assert lost.model_dump(by_alias=True)["_meta"][OUTCOME_META_KEY]["terminal"] is True


async def test_own_custom_data_is_kept_beside_the_outcome() -> None:
    async def extract(context: MCPToolCustomDataContext) -> dict[str, Any]:
        return {"tool": context.tool_name}

    model = ScriptedModel(
        [[function_call("echo", {"text": "hi"}, call_id="c1")], [assistant_message("done")]]
    )
    with serve(StrictServer()) as running:
        async with resilient_mcp.connect(running.url) as client:
            with pytest.raises(resilient_mcp.UsageError):
                ResilientMCPServer(Toolbox(client), timeouts=resilient_mcp.Timeouts(close=1))
            server = ResilientMCPServer(client, custom_data_extractor=extract)
            result = await run(agent(model, server))
    (item,) = outputs(result)
    assert item.custom_data == {
        "tool": "echo",
        CUSTOM_DATA_KEY: {"status": "ok", "terminal": False},
    }


class OddSource:
    """A ToolSource (what a client group is) that also lists a tool mcp's types reject."""

    def __init__(self, client: resilient_mcp.Client) -> None:
        self.client = client

    async def list_tools(self, *, timeout: Any = None) -> list[Tool]:
        odd = Tool.model_validate({"name": "odd", "execution": "not an object"})
        return [*await self.client.list_tools(), odd]

    async def call_tool(
        self, name: str, arguments: Any = None, *, timeout: Any = None, progress: Any = None
    ) -> CallToolResult:
        return await self.client.call_tool(name, arguments)


async def test_any_tool_source_and_a_tool_mcp_cannot_hold() -> None:
    model = ScriptedModel(
        [[function_call("echo", {"text": "hi"}, call_id="c1")], [assistant_message("done")]]
    )
    with serve(StrictServer()) as running:
        async with resilient_mcp.connect(running.url) as client:
            server = ResilientMCPServer(OddSource(client))
            result = await run(agent(model, server))
            names = {tool.name for tool in await server.list_tools()}
            with pytest.raises(NotImplementedError):
                await server.list_prompts()  # prompts need a single client
    assert "echo" in names
    assert "odd" not in names
    assert text(outputs(result)[0]) == "hi"


async def test_two_servers_under_the_sdks_server_prefixes() -> None:
    # mcp_config include_server_in_tool_names: the SDK names tools mcp_<server>__<tool>.
    config: Any = {"include_server_in_tool_names": True}
    model = ScriptedModel(
        [[function_call("mcp_two__echo", {"text": "hi"}, call_id="c1")], [assistant_message("ok")]]
    )
    with serve(StrictServer()) as first, serve(StrictServer()) as second:
        async with (
            ResilientMCPServer(first.url, name="one") as one,
            ResilientMCPServer(second.url, name="two") as two,
        ):
            result = await run(agent(model, one, two, mcp_config=config))
            calls = (first.stats.tool_calls["echo"], second.stats.tool_calls["echo"])
    assert {"mcp_one__echo", "mcp_two__echo"} <= offered(model.calls[0])
    assert text(outputs(result)[0]) == "hi"
    assert calls == (0, 1)  # the right server, called under its own tool name
