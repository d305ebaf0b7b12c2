"""The LangChain adapter over a real ClientGroup of two StrictServers, driven by
langchain-core's GenericFakeChatModel in the tool-calling loop of test_langchain.py
(asyncio only, as LangChain's callbacks)."""

from __future__ import annotations

import socket
from typing import Any

import anyio
import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool

import resilient_mcp
from resilient_mcp.integrations.langchain import ResilientMCPToolkit, is_terminal, load_tools
from resilient_mcp.testing import StrictServer, serve

from .test_langchain import LIMIT_S, call, first_text, model, run_agent, tool_messages

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mcp"


async def test_the_model_sees_both_servers_and_calls_one_tool_of_each() -> None:
    llm, _ = model(
        AIMessage(
            "",
            tool_calls=[
                call("one__increment", {"key": "k"}, "c1"),
                call("two__add", {"a": 2, "b": 3}, "c2"),
            ],
        ),
        AIMessage("done"),
    )
    shown: list[set[str]] = []
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer()) as one,
            serve(StrictServer(era="modern")) as two,
            resilient_mcp.connect_group({"one": one.url, "two": two.url}) as group,
        ):
            async with ResilientMCPToolkit(group) as toolkit:

                async def tools() -> list[BaseTool]:
                    current = await toolkit.aget_tools()
                    shown.append({tool.name for tool in current})
                    return current

                messages = await run_agent(llm, tools)
                metadata = {tool.name: tool.metadata for tool in toolkit.get_tools()}
            # Leaving the toolkit never closes a group it was given.
            assert (await group.call_tool("two__echo", {"text": "open"})).text == "open"
            counts = one.stats.executions["k"], two.stats.executions["k"]
    assert {"one__echo", "one__increment", "two__echo", "two__add"} <= shown[0]
    assert (metadata["one__echo"] or {})["server"] == "one"
    increment, added = tool_messages(messages)
    assert (increment.status, added.status) == ("success", "success")
    assert added.artifact["structured_content"] == {"sum": 5}
    assert counts == (1, 0)  # each call reached its own server
    assert messages[-1].content == "done"


async def test_a_member_that_goes_down_is_an_error_message_never_terminal() -> None:
    # `never` is a refused port from the start: the group leaves it out of every listing.
    # `gone` goes down between the step's listing and its calls: its server stops and the
    # group loses its connection (a stopped HTTP server alone would be retried, refused,
    # until the default 60 s deadline).
    llm, _ = model(
        AIMessage(
            "",
            tool_calls=[
                call("up__echo", {"text": "hi"}, "c1"),
                call("gone__echo", {"text": "x"}, "c2"),
            ],
        ),
        AIMessage("done"),
    )
    shown: list[set[str]] = []
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as up:
            gone_server = serve(StrictServer())
            gone = await gone_server.__aenter__()
            servers = {"up": up.url, "gone": gone.url, "never": closed_port_url()}
            async with resilient_mcp.connect_group(servers) as group:

                async def tools() -> list[BaseTool]:
                    current = await load_tools(group)
                    shown.append({tool.name for tool in current})
                    if len(shown) == 1:
                        await gone_server.__aexit__(None, None, None)
                        await group["gone"].aclose()
                    return current

                messages = await run_agent(llm, tools)
                state = group.status()["gone"].state
                still = await group.call_tool("up__echo", {"text": "still"})
    assert {"up__echo", "gone__echo"} <= shown[0]
    assert not any(name.startswith("never__") for name in shown[0])
    echo, refused = tool_messages(messages)
    assert (echo.status, first_text(echo)) == ("success", "hi")
    assert refused.status == "error"
    assert refused.artifact["status"] == "not_executed"
    assert not is_terminal(refused)
    assert isinstance(refused.content, str)
    assert "did not run" in refused.content
    assert "server 'gone'" in refused.content
    assert messages[-1].content == "done"  # the loop went on: the model had its turn
    # Down, never ready: FAILED, or CONNECTING when a later listing already began the
    # lazy reconnect (its not-before time passes sooner on a slow machine).
    assert state in {resilient_mcp.MemberState.FAILED, resilient_mcp.MemberState.CONNECTING}
    assert still.text == "still"


async def test_an_unprefixed_group_keeps_the_servers_names() -> None:
    only_two = StrictServer()
    only_two.add_tool("lookup", description="Only on two.", text="from two")
    llm, _ = model(
        AIMessage(
            "",
            tool_calls=[call("lookup", {}, "c1"), call("increment", {"key": "k"}, "c2")],
        ),
        AIMessage("done"),
    )
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer()) as one,
            serve(only_two) as two,
            resilient_mcp.connect_group({"one": one.url, "two": two.url}, prefix=False) as group,
        ):
            listed: list[Any] = []

            async def tools() -> list[BaseTool]:
                listed[:] = await load_tools(group)
                return list(listed)

            messages = await run_agent(llm, tools)
            counts = one.stats.executions["k"], two.stats.executions["k"]
    names = {tool.name for tool in listed}
    assert {"lookup", "echo", "increment"} <= names
    assert len([name for name in names if name.startswith("echo")]) == 2  # never merged
    lookup, increment = tool_messages(messages)
    assert (lookup.status, first_text(lookup)) == ("success", "from two")
    assert isinstance(increment, ToolMessage)
    assert increment.status == "success"
    assert counts == (1, 0)  # a shared name stays the first member's
