"""The LangChain adapter, driven by langchain-core's own fake chat model.

``GenericFakeChatModel`` has no ``bind_tools``: it answers with the ``AIMessage``s it is
given, tool calls included, and :func:`run_agent` executes them as an agent loop does
(LangGraph's ``ToolNode``): every tool call of one message concurrently, each through
``tool.ainvoke(ToolCall)``, which returns a ``ToolMessage``; the loop ends on an answer
without tool calls, or at once on a call whose effect is unknown (the terminal path).

LangChain runs its callbacks through ``asyncio.gather``, so a tool cannot be invoked
under trio: these tests run on asyncio only.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolCall, ToolMessage
from langchain_core.tools import BaseTool

import resilient_mcp
from resilient_mcp import StdioServer, Toolbox, ToolOutcome
from resilient_mcp.integrations.langchain import (
    MCPStructuredTool,
    MCPToolException,
    ResilientMCPToolkit,
    ToolEffectUnknown,
    _content,
    is_terminal,
    load_tools,
)
from resilient_mcp.testing import Chaos, StrictServer, serve
from resilient_mcp.types import AudioContent, CallToolResult, ImageContent, TextContent

pytestmark = [
    pytest.mark.anyio,
    # LangChain's callback manager needs a running asyncio loop (see the docstring).
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),
]

LIMIT_S = 60  # a guard against hangs only
ROOT = Path(__file__).resolve().parents[3]
STDIO_SERVER = ROOT / "tests" / "stdio_servers" / "legacy_server.py"
EXAMPLE = ROOT / "examples" / "integrations" / "langchain_agent.py"


def call(name: str, args: dict[str, Any], call_id: str) -> ToolCall:
    return ToolCall(name=name, args=args, id=call_id, type="tool_call")


def model(*steps: AIMessage | str) -> tuple[GenericFakeChatModel, Iterator[AIMessage | str]]:
    script = iter(steps)
    return GenericFakeChatModel(messages=script), script


async def run_agent(
    llm: GenericFakeChatModel,
    tools: Callable[[], Awaitable[list[BaseTool]]],
    prompt: str = "go",
) -> list[BaseMessage]:
    """A minimal tool-calling loop: the model's step, then its tool calls concurrently,
    with the tools fetched anew before every step (as a ``list_changed`` needs)."""
    messages: list[BaseMessage] = [HumanMessage(prompt)]
    while True:
        by_name = {tool.name: tool for tool in await tools()}
        reply = await llm.ainvoke(messages)
        assert isinstance(reply, AIMessage)
        messages.append(reply)
        if not reply.tool_calls:
            return messages
        done = await execute_all(by_name, reply.tool_calls)
        messages.extend(done)
        if any(is_terminal(result) for result in done):
            return messages  # the effect is unknown: stop, never give the model a retry


async def execute_all(tools: dict[str, BaseTool], calls: list[ToolCall]) -> list[ToolMessage]:
    """Every tool call of one model step, concurrently, results in call order."""
    results: list[ToolMessage | None] = [None] * len(calls)

    async def execute(index: int, tool_call: ToolCall) -> None:
        output = await tools[tool_call["name"]].ainvoke(tool_call)
        assert isinstance(output, ToolMessage)
        results[index] = output

    async with anyio.create_task_group() as group:
        for index, tool_call in enumerate(calls):
            group.start_soon(execute, index, tool_call)
    return [result for result in results if result is not None]


def first_text(message: ToolMessage) -> Any:
    assert isinstance(message.content, list)
    block = message.content[0]
    assert isinstance(block, dict)
    return block.get("text")


def tool_messages(messages: list[BaseMessage]) -> list[ToolMessage]:
    return [message for message in messages if isinstance(message, ToolMessage)]


def reaped(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # succeeds for a zombie too
    except ProcessLookupError:
        return True
    return False


async def test_happy_path_native_messages_and_structured_content() -> None:
    llm, _ = model(
        AIMessage(
            "",
            tool_calls=[
                call("echo", {"text": "hi"}, "c1"),
                call("add", {"a": 2, "b": 3}, "c2"),
            ],
        ),
        AIMessage("the sum is 5"),
    )
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer()) as running,
            resilient_mcp.connect(running.url) as client,
        ):
            listed = {tool.name: tool for tool in await client.list_tools()}
            tools = await load_tools(client)
            messages = await run_agent(llm, lambda: load_tools(client))
            still_open = await client.call_tool("echo", {"text": "open"})  # never closed
    assert still_open.text == "open"
    by_name = {tool.name: tool for tool in tools}
    assert by_name.keys() == listed.keys()
    add = by_name["add"]
    assert isinstance(add, MCPStructuredTool)
    assert add.description == listed["add"].description
    assert add.args_schema == listed["add"].inputSchema
    assert add.response_format == "content_and_artifact"
    echo, added = tool_messages(messages)
    assert (echo.status, echo.tool_call_id, echo.name) == ("success", "c1", "echo")
    assert first_text(echo) == "hi"
    assert added.artifact["structured_content"] == {"sum": 5}
    assert added.artifact["status"] == "ok"
    assert not is_terminal(added)
    final = messages[-1]
    assert isinstance(final, AIMessage)
    assert final.content == "the sum is 5"


async def test_images_are_base64_data_blocks_and_audio_a_file_block() -> None:
    # The fault server's tools answer text only: the conversion, on its own.
    png, wav = "iVBORw0KGgo=", "UklGRg=="
    result = CallToolResult(
        content=[
            TextContent(text="a chart"),
            ImageContent(data=png, mimeType="image/png"),
            AudioContent(data=wav, mimeType="audio/wav"),
        ]
    )
    text, image, audio = _content(ToolOutcome.of_result("chart", result))
    assert (text["type"], text.get("text")) == ("text", "a chart")
    assert (image["type"], image.get("base64"), image.get("mime_type")) == (
        "image",
        png,
        "image/png",
    )
    assert (audio["type"], audio.get("base64"), audio.get("mime_type")) == (
        "file",
        wav,
        "audio/wav",
    )


async def test_two_parallel_calls_ride_out_an_expired_session() -> None:
    # The listing uses one request of the session's two, the first call the other: the
    # second call, sent alongside, finds the session gone.
    server = StrictServer(chaos=Chaos(expire_after_requests=2))
    llm, _ = model(
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
            messages = await run_agent(llm, toolkit.aget_tools)
            stats = running.stats
    results = tool_messages(messages)
    assert [result.status for result in results] == ["success", "success"]
    assert stats.initialize_requests == 2  # one extra handshake for the lost session
    assert stats.executions["k1"] == 1
    assert stats.executions["k2"] == 1
    assert "expired" in [fault for _, fault in stats.faults]
    assert messages[-1].content == "both done"


async def test_first_step_calls_against_a_server_that_rejects_early_requests() -> None:
    server = StrictServer(handshake_delay=0.3)
    llm, _ = model(
        AIMessage(
            "",
            tool_calls=[call("echo", {"text": "a"}, "c1"), call("echo", {"text": "b"}, "c2")],
        ),
        AIMessage("done"),
    )
    with anyio.fail_after(LIMIT_S):
        async with serve(server) as running, ResilientMCPToolkit(running.url) as toolkit:
            messages = await run_agent(llm, toolkit.aget_tools)
            stats = running.stats
    results = tool_messages(messages)
    assert [result.status for result in results] == ["success", "success"]
    assert [first_text(result) for result in results] == ["a", "b"]
    assert stats.early_requests == 0


async def test_a_dropped_side_effect_runs_once_and_stops_the_loop() -> None:
    server = StrictServer(chaos=Chaos(seed=1, drop_rate=1.0))
    llm, script = model(
        AIMessage("", tool_calls=[call("increment", {"key": "k1"}, "c1")]),
        AIMessage("never reached"),
    )
    with anyio.fail_after(LIMIT_S):
        async with serve(server) as running, ResilientMCPToolkit(running.url) as toolkit:
            messages = await run_agent(llm, toolkit.aget_tools)
            stats = running.stats
    (result,) = tool_messages(messages)
    assert result.status == "error"
    assert is_terminal(result)
    assert result.artifact["status"] == "maybe_executed"
    assert isinstance(result.content, str)
    lowered = result.content.lower()
    assert "may or may not have run" in lowered
    assert "retry" not in lowered
    assert "try again" not in lowered
    assert stats.executions["k1"] == 1
    assert stats.tool_calls["increment"] == 1
    assert next(script) == AIMessage("never reached")  # the model got no second turn


async def test_is_error_reaches_the_tool_error_path_with_its_text() -> None:
    llm, _ = model(
        AIMessage("", tool_calls=[call("fail", {}, "c1")]),
        AIMessage("it failed"),
    )
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as running, ResilientMCPToolkit(running.url) as toolkit:
            messages = await run_agent(llm, toolkit.aget_tools)
            fail = {tool.name: tool for tool in toolkit.get_tools()}["fail"]
            fail_raising = fail.model_copy(update={"handle_tool_error": False})
            with pytest.raises(MCPToolException) as info:
                await fail_raising.ainvoke({})
    (result,) = tool_messages(messages)
    assert (result.status, result.content) == ("error", "The fail tool always fails.")
    assert result.artifact["status"] == "tool_error"
    assert not is_terminal(result)
    assert messages[-1].content == "it failed"  # the model saw the error and went on
    assert info.value.status == "tool_error"
    assert isinstance(info.value, resilient_mcp.MCPError)


async def test_the_next_step_sees_a_tool_added_by_list_changed() -> None:
    changed = anyio.Event()

    async def on_notification(method: str, params: object) -> None:
        if method == "notifications/tools/list_changed":
            changed.set()

    server = StrictServer()
    steps: list[list[str]] = []
    llm, _ = model(
        AIMessage("", tool_calls=[call("echo", {"text": "first"}, "c1")]),
        AIMessage("", tool_calls=[call("fresh", {}, "c2")]),
        AIMessage("done"),
    )
    handlers = resilient_mcp.Handlers(notification=on_notification)
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(server) as running,
            ResilientMCPToolkit(running.url, handlers=handlers) as toolkit,
        ):

            async def tools() -> list[BaseTool]:
                if steps:  # after the first step, the server adds a tool
                    server.add_tool("fresh", description="Brand new.", text="hello")
                    await changed.wait()
                current = await toolkit.aget_tools()
                steps.append([tool.name for tool in current])
                return current

            messages = await run_agent(llm, tools)
    assert "fresh" not in steps[0]
    assert "fresh" in steps[1]
    fresh = tool_messages(messages)[-1]
    assert fresh.status == "success"
    assert first_text(fresh) == "hello"


async def test_enter_in_one_task_exit_in_another_leaves_no_child() -> None:
    target = StdioServer(sys.executable, args=[str(STDIO_SERVER)])
    toolkit = ResilientMCPToolkit(target, timeouts=resilient_mcp.Timeouts(close=2))
    entered = anyio.Event()
    pids: list[int] = []

    async def enter() -> None:
        await toolkit.__aenter__()
        client = toolkit.toolbox.source
        assert isinstance(client, resilient_mcp.Client)
        transport: Any = client._session.transport  # the stdio child's PID
        pids.append(transport.pid)
        entered.set()

    async def leave() -> None:
        await toolkit.__aexit__(None, None, None)

    with anyio.fail_after(LIMIT_S):
        async with anyio.create_task_group() as group:
            group.start_soon(enter)
            await entered.wait()
        echo = {tool.name: tool for tool in toolkit.get_tools()}["echo"]
        reply = await echo.ainvoke(call("echo", {"text": "hi"}, "c1"))
        async with anyio.create_task_group() as group:
            group.start_soon(leave)
    assert isinstance(reply, ToolMessage)
    assert reply.status == "success"
    (pid,) = pids
    assert reaped(pid)


async def test_a_hanging_call_is_a_bounded_typed_failure() -> None:
    llm, _ = model(
        AIMessage("", tool_calls=[call("progress", {"steps": 1, "interval": 30}, "c1")]),
        AIMessage("never reached"),
    )
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer()) as running,
            ResilientMCPToolkit(running.url, timeout=0.5) as toolkit,
        ):
            started = time.monotonic()
            messages = await run_agent(llm, toolkit.aget_tools)
            elapsed = time.monotonic() - started
            hang = {tool.name: tool for tool in toolkit.get_tools()}["progress"]
            raising = hang.model_copy(update={"handle_tool_error": False})
            with pytest.raises(ToolEffectUnknown) as info:
                await raising.ainvoke({"steps": 1, "interval": 30})
    (result,) = tool_messages(messages)
    assert result.status == "error"
    assert is_terminal(result)
    assert elapsed < 20  # the 0.5 s deadline, not the 30 s hang (generous: a shared box)
    assert isinstance(info.value.error, resilient_mcp.RequestTimeout)


async def test_a_modern_server_works_through_the_same_adapter() -> None:
    llm, _ = model(
        AIMessage("", tool_calls=[call("add", {"a": 1, "b": 2}, "c1")]),
        AIMessage("3"),
    )
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer(era="modern")) as running,
            ResilientMCPToolkit(running.url) as toolkit,
        ):
            messages = await run_agent(llm, toolkit.aget_tools)
            client = toolkit.toolbox.source
            assert isinstance(client, resilient_mcp.Client)
            era = client.era
            stats = running.stats
    (result,) = tool_messages(messages)
    assert result.status == "success"
    assert result.artifact["structured_content"] == {"sum": 3}
    assert era == "modern"
    assert stats.initialize_requests == 0


async def test_a_given_client_or_toolbox_is_never_closed() -> None:
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as running, resilient_mcp.connect(running.url) as client:
            box = Toolbox(client)
            async with ResilientMCPToolkit(box) as toolkit:
                names = {tool.name for tool in toolkit.get_tools()}
            async with ResilientMCPToolkit(client, tool_filter=["echo"]) as only_echo:
                filtered = [tool.name for tool in only_echo.get_tools()]
            outcome = await box.call("echo", {"text": "still open"})
    assert "echo" in names
    assert filtered == ["echo"]
    assert outcome.ok


async def test_load_tools_refuses_a_target_and_get_tools_needs_a_load() -> None:
    with pytest.raises(resilient_mcp.UsageError):
        await load_tools("http://127.0.0.1:9/mcp")  # type: ignore[arg-type]
    toolkit = ResilientMCPToolkit("http://127.0.0.1:9/mcp")
    with pytest.raises(resilient_mcp.UsageError):
        toolkit.get_tools()
    await toolkit.aclose()


async def test_the_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("langchain_agent_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with anyio.fail_after(LIMIT_S):
        await example.main()
    out = capsys.readouterr().out
    assert "add -> {'sum': 5}" in out
    assert "stopped: the effect of 'increment' is unknown" in out
