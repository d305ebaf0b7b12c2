"""The LangChain adapter's tools inside a real LangGraph graph.

A ``StateGraph`` of LangGraph's own parts: an agent node (langchain-core's
``GenericFakeChatModel``, which answers with scripted ``AIMessage``s and their tool
calls), LangGraph's prebuilt ``ToolNode`` (it runs one message's tool calls
concurrently and turns each into a ``ToolMessage``) and a router that ends the run on a
call whose effect is unknown (``is_terminal``) instead of handing the model a retry.
asyncio only, as the rest of LangChain (see test_langchain.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import anyio
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolCall, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from resilient_mcp.integrations.langchain import ResilientMCPToolkit, is_terminal
from resilient_mcp.testing import Chaos, StrictServer, serve

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

LIMIT_S = 60  # a guard against hangs only


def call(name: str, args: dict[str, Any], call_id: str) -> ToolCall:
    return ToolCall(name=name, args=args, id=call_id, type="tool_call")


def graph(llm: GenericFakeChatModel, tools: list[BaseTool]) -> Any:
    """agent → tools → agent …, ending on an answer or on a terminal tool result."""

    async def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [await llm.ainvoke(state["messages"])]}

    def after_agent(state: MessagesState) -> Literal["tools", "__end__"]:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else "__end__"

    def after_tools(state: MessagesState) -> Literal["agent", "__end__"]:
        done: list[ToolMessage] = []
        for message in reversed(state["messages"]):
            if not isinstance(message, ToolMessage):
                break
            done.append(message)
        return "__end__" if any(is_terminal(message) for message in done) else "agent"

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", after_agent)
    builder.add_conditional_edges("tools", after_tools)
    return builder.compile()


def fake(*steps: AIMessage) -> tuple[GenericFakeChatModel, Iterator[AIMessage]]:
    script = iter(steps)
    return GenericFakeChatModel(messages=script), script


def tool_messages(state: dict[str, Any]) -> list[ToolMessage]:
    return [m for m in state["messages"] if isinstance(m, ToolMessage)]


async def test_parallel_calls_in_a_tool_node_ride_out_an_expired_session() -> None:
    server = StrictServer(chaos=Chaos(expire_after_requests=2))
    llm, _ = fake(
        AIMessage(
            "",
            tool_calls=[
                call("increment", {"key": "k1"}, "c1"),
                call("increment", {"key": "k2"}, "c2"),
            ],
        ),
        AIMessage("both done"),
    )
    with anyio.fail_after(LIMIT_S):
        async with serve(server) as running, ResilientMCPToolkit(running.url) as toolkit:
            state = await graph(llm, toolkit.get_tools()).ainvoke(
                {"messages": [HumanMessage("go")]}
            )
            stats = running.stats
    assert [m.status for m in tool_messages(state)] == ["success", "success"]
    assert stats.initialize_requests == 2  # one extra handshake for the lost session
    assert stats.executions["k1"] == stats.executions["k2"] == 1
    assert state["messages"][-1].content == "both done"


async def test_a_dropped_side_effect_ends_the_graph_without_a_retry() -> None:
    server = StrictServer(chaos=Chaos(seed=1, drop_rate=1.0))
    llm, script = fake(
        AIMessage("", tool_calls=[call("increment", {"key": "k1"}, "c1")]),
        AIMessage("never reached"),
    )
    with anyio.fail_after(LIMIT_S):
        async with serve(server) as running, ResilientMCPToolkit(running.url) as toolkit:
            state = await graph(llm, toolkit.get_tools()).ainvoke(
                {"messages": [HumanMessage("go")]}
            )
            stats = running.stats
    (result,) = tool_messages(state)
    assert result.status == "error"
    assert is_terminal(result)
    assert "may or may not have run" in str(result.content)
    assert stats.executions["k1"] == 1
    assert next(script) == AIMessage("never reached")  # the model got no second turn


async def test_is_error_goes_back_to_the_model_with_its_text() -> None:
    llm, _ = fake(AIMessage("", tool_calls=[call("fail", {}, "c1")]), AIMessage("it failed"))
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as running, ResilientMCPToolkit(running.url) as toolkit:
            state = await graph(llm, toolkit.get_tools()).ainvoke(
                {"messages": [HumanMessage("go")]}
            )
    (result,) = tool_messages(state)
    assert (result.status, result.content) == ("error", "The fail tool always fails.")
    assert not is_terminal(result)
    assert state["messages"][-1].content == "it failed"
