"""An MCP server's tools in a LangChain agent loop, offline.

Starts the in-package fault server, loads its tools with ``ResilientMCPToolkit`` and
lets langchain-core's ``GenericFakeChatModel`` (a scripted model) call them: two tool
calls at once, a tool that reports an error, then a side effect whose answer is lost,
which stops the loop instead of offering the model a retry.

Run it: ``python examples/integrations/langchain_agent.py`` (needs
``resilient-mcp[langchain,testing]``).
"""

from __future__ import annotations

import asyncio

import anyio
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolCall, ToolMessage
from langchain_core.tools import BaseTool

from resilient_mcp.integrations.langchain import ResilientMCPToolkit, is_terminal
from resilient_mcp.testing import Chaos, StrictServer, serve


def tool_call(name: str, args: dict[str, object], call_id: str) -> ToolCall:
    return ToolCall(name=name, args=args, id=call_id, type="tool_call")


async def execute_all(tools: dict[str, BaseTool], calls: list[ToolCall]) -> dict[str, ToolMessage]:
    """One model step's tool calls, concurrently (as LangGraph's ToolNode runs them)."""
    results: dict[str, ToolMessage] = {}

    async def execute(call: ToolCall) -> None:
        results[str(call["id"])] = await tools[call["name"]].ainvoke(call)

    async with anyio.create_task_group() as group:
        for call in calls:
            group.start_soon(execute, call)
    return results


async def run(model: GenericFakeChatModel, toolkit: ResilientMCPToolkit) -> None:
    """The agent loop: a model step, then its tool calls concurrently, until it answers
    or a call's effect is unknown."""
    messages: list[BaseMessage] = [HumanMessage("Add 2 and 3, then count a visit.")]
    while True:
        tools: dict[str, BaseTool] = {tool.name: tool for tool in await toolkit.aget_tools()}
        reply = await model.ainvoke(messages)
        messages.append(reply)
        if not isinstance(reply, AIMessage) or not reply.tool_calls:
            print(f"model: {reply.content}")
            return
        results = await execute_all(tools, reply.tool_calls)
        for call in reply.tool_calls:
            result = results[str(call["id"])]
            messages.append(result)
            shown = result.artifact["structured_content"] or result.text
            print(f"{call['name']} -> {shown}" + (" (error)" if result.status == "error" else ""))
            if is_terminal(result):
                print(f"stopped: the effect of {call['name']!r} is unknown")
                return


async def main() -> None:
    model = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(
                    "",
                    tool_calls=[
                        tool_call("echo", {"text": "hello"}, "1"),
                        tool_call("add", {"a": 2, "b": 3}, "2"),
                    ],
                ),
                AIMessage("", tool_calls=[tool_call("fail", {}, "3")]),
                AIMessage("2 + 3 = 5."),
            ]
        )
    )
    async with serve(StrictServer()) as running, ResilientMCPToolkit(running.url) as toolkit:
        await run(model, toolkit)

    # Every tools/call answer is cut after the tool ran: the loop must stop.
    lossy = StrictServer(chaos=Chaos(seed=1, drop_rate=1.0))
    model = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage("", tool_calls=[tool_call("increment", {"key": "visits"}, "4")]),
                AIMessage("Counted (never reached)."),
            ]
        )
    )
    async with serve(lossy) as running, ResilientMCPToolkit(running.url) as toolkit:
        await run(model, toolkit)
        print(f"increment ran {running.stats.executions['visits']} time(s)")


if __name__ == "__main__":
    # LangChain's callbacks need asyncio.
    asyncio.run(main())
