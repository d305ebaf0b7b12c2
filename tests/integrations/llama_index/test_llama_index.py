"""The LlamaIndex adapter with the real LlamaIndex: its ``FunctionAgent`` driven by its
own ``MockFunctionCallingLLM``, whose response generator we script with tool calls
(``ToolCallBlock``s; several in one message run in parallel).

LlamaIndex's agents are workflows on asyncio: these tests run on asyncio only.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from llama_index.core.agent.workflow import AgentOutput, FunctionAgent, ToolCallResult
from llama_index.core.base.llms.types import (
    AudioBlock,
    ChatMessage,
    DocumentBlock,
    ImageBlock,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.tools import BaseTool, ToolOutput
from llama_index.core.tools.calling import acall_tool

import resilient_mcp
from resilient_mcp import StdioServer, Toolbox, ToolOutcome
from resilient_mcp.integrations.llama_index import (
    MCPTool,
    MCPToolMetadata,
    MCPToolRetriever,
    ResilientMCPToolSpec,
    is_terminal,
    output_of,
    schema_model,
)
from resilient_mcp.testing import Chaos, StrictServer, serve
from resilient_mcp.types import CallToolResult

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),
]

LIMIT_S = 60  # a guard against hangs only
ROOT = Path(__file__).resolve().parents[3]
STDIO_SERVER = ROOT / "tests" / "stdio_servers" / "legacy_server.py"

Step = list[tuple[str, dict[str, Any]]]


class Script:
    """A model that makes the given tool calls, one list per step (parallel within a
    step), then answers with every tool result it saw; it records the tool names it
    was offered at each step and how many steps it took."""

    def __init__(self, *steps: Step, final: str | None = None) -> None:
        self.steps = steps
        self.final = final
        self.offered: list[set[str]] = []
        self.llm = MockFunctionCallingLLM(response_generator=self.respond)

    def respond(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        tools: Sequence[BaseTool] = kwargs.get("tools") or []
        self.offered.append({tool.metadata.get_name() for tool in tools})
        done = sum(message.role == MessageRole.ASSISTANT for message in messages)
        if done < len(self.steps):
            blocks = [
                ToolCallBlock(tool_call_id=f"c{done}-{i}", tool_name=name, tool_kwargs=args)
                for i, (name, args) in enumerate(self.steps[done])
            ]
            return ChatMessage(role=MessageRole.ASSISTANT, blocks=list(blocks))
        seen = [m.content or "" for m in messages if m.role == MessageRole.TOOL]
        return ChatMessage(role=MessageRole.ASSISTANT, content=self.final or "; ".join(seen))


async def run(script: Script, **agent: Any) -> AgentOutput:
    result = await FunctionAgent(llm=script.llm, **agent).run(user_msg="go")
    assert isinstance(result, AgentOutput)
    return result


def outputs(result: AgentOutput) -> list[ToolOutput]:
    calls = [call for call in result.tool_calls if isinstance(call, ToolCallResult)]
    return [call.tool_output for call in calls]


def by_name(tools: Sequence[BaseTool]) -> dict[str, BaseTool]:
    return {tool.metadata.get_name(): tool for tool in tools}


def reaped(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # succeeds for a zombie too
    except ProcessLookupError:
        return True
    return False


async def test_happy_path_native_outputs_and_structured_content() -> None:
    script = Script([("add", {"a": 2, "b": 3}), ("echo", {"text": "hi"})])
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer()) as running,
            resilient_mcp.connect(running.url) as client,
        ):
            listed = {tool.name: tool for tool in await client.list_tools()}
            tools = await ResilientMCPToolSpec(client).to_tool_list_async()
            result = await run(script, tools=tools)
            still_open = await client.call_tool("echo", {"text": "open"})  # never closed
    assert still_open.text == "open"
    add = by_name(tools)["add"]
    assert isinstance(add, MCPTool)
    assert isinstance(add.metadata, MCPToolMetadata)
    assert add.metadata.description == listed["add"].description
    # The model is shown the server's schema itself; fn_schema is a pydantic model of it.
    assert add.metadata.get_parameters_dict() == listed["add"].inputSchema
    assert add.metadata.to_openai_tool()["function"]["parameters"] == listed["add"].inputSchema
    assert add.metadata.fn_schema is not None
    assert set(add.metadata.fn_schema.model_fields) == {"a", "b"}
    summed, echoed = outputs(result)
    assert not summed.is_error
    assert summed.raw_output["structured_content"] == {"sum": 5}
    assert summed.raw_output["status"] == "ok"
    assert summed.content == '{"sum": 5}'
    assert isinstance(summed.blocks[0], TextBlock)
    assert echoed.content == "hi"
    assert not is_terminal(summed)
    assert result.response.content == '{"sum": 5}; hi'


async def test_expiry_during_two_parallel_calls_costs_one_handshake() -> None:
    # The listing uses one request of the session's two, the first call the other: the
    # second call, sent alongside, finds the session gone.
    server = StrictServer(chaos=Chaos(expire_after_requests=2))
    script = Script([("increment", {"key": "a"}), ("increment", {"key": "b"})], final="ok")
    with anyio.fail_after(LIMIT_S):
        async with serve(server) as running, ResilientMCPToolSpec(running.url) as spec:
            result = await run(script, tool_retriever=spec.as_retriever())
            stats = running.stats
    assert [output.is_error for output in outputs(result)] == [False, False]
    assert stats.initialize_requests == 2  # one extra handshake for the lost session
    assert stats.executions["a"] == 1
    assert stats.executions["b"] == 1
    assert "expired" in [fault for _, fault in stats.faults]
    assert result.response.content == "ok"


async def test_first_step_calls_against_a_server_that_rejects_early_requests() -> None:
    script = Script([("echo", {"text": "x"}), ("echo", {"text": "y"})])
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer(handshake_delay=0.3)) as running,
            ResilientMCPToolSpec(running.url) as spec,
        ):
            result = await run(script, tool_retriever=spec.as_retriever())
            stats = running.stats
    assert sorted(output.content for output in outputs(result)) == ["x", "y"]
    assert stats.early_requests == 0


async def test_a_dropped_side_effect_runs_once_and_takes_the_terminal_path() -> None:
    server = StrictServer(chaos=Chaos(seed=1, drop_rate=1.0))
    script = Script([("increment", {"key": "k"})], final="checked")
    with anyio.fail_after(LIMIT_S):
        async with serve(server) as running, ResilientMCPToolSpec(running.url) as spec:
            result = await run(script, tool_retriever=spec.as_retriever())
            stats = running.stats
    (output,) = outputs(result)
    assert output.is_error
    assert is_terminal(output)
    assert is_terminal(result.tool_calls[0])  # the agent's ToolCallResult event too
    assert output.raw_output["status"] == "maybe_executed"
    lowered = output.content.lower()
    assert "may or may not have run" in lowered
    assert "retry" not in lowered
    assert "try again" not in lowered
    assert isinstance(output.exception, resilient_mcp.MCPError)
    # Neither the agent nor the client called it again.
    assert stats.executions["k"] == 1
    assert stats.tool_calls["increment"] == 1
    assert len(script.offered) == 2  # the model got its answer turn, not a retry


async def test_a_terminal_outcome_is_never_called_twice_by_acall_tool() -> None:
    # acall_tool (call_tool_with_selection) repeats a one-argument call that raised:
    # the adapter returns the outcome instead of raising, so it runs once.
    server = StrictServer(chaos=Chaos(seed=1, drop_rate=1.0))
    with anyio.fail_after(LIMIT_S):
        async with serve(server) as running, ResilientMCPToolSpec(running.url) as spec:
            increment = by_name(await spec.to_tool_list_async())["increment"]
            output = await acall_tool(increment, {"key": "once"})
            stats = running.stats
    assert stats.executions["once"] == 1  # 2 if the tool raised (checked)
    assert is_terminal(output)


async def test_is_error_reaches_the_tool_error_path_with_its_text() -> None:
    script = Script([("fail", {})], final="it failed")
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as running, ResilientMCPToolSpec(running.url) as spec:
            result = await run(script, tool_retriever=spec.as_retriever())
    (output,) = outputs(result)
    assert output.is_error
    assert output.content == "The fail tool always fails."
    assert output.raw_output["status"] == "tool_error"
    assert output.exception is None  # the server's answer, not a failure of ours
    assert not is_terminal(output)
    assert result.response.content == "it failed"  # the model saw it and went on


async def test_the_next_step_sees_a_tool_added_by_list_changed() -> None:
    changed = anyio.Event()

    async def on_notification(method: str, params: object) -> None:
        if method == "notifications/tools/list_changed":
            changed.set()

    server = StrictServer()
    steps = 0

    class AfterTheChange(MCPToolRetriever):
        async def aretrieve(self, query: Any) -> list[BaseTool]:
            if steps:  # after the first step's call, wait for the server's notice
                await changed.wait()
            return await super().aretrieve(query)

    script = Script([("echo", {"text": "first"})], [("late", {})])

    def respond(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        nonlocal steps
        reply = Script.respond(script, messages, **kwargs)
        if steps == 0:
            server.add_tool("late", description="Brand new.", text="late ok")
        steps += 1
        return reply

    script.llm = MockFunctionCallingLLM(response_generator=respond)
    handlers = resilient_mcp.Handlers(notification=on_notification)
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(server) as running,
            ResilientMCPToolSpec(running.url, handlers=handlers) as spec,
        ):
            result = await run(script, tool_retriever=AfterTheChange(spec))
    assert "late" not in script.offered[0]
    assert "late" in script.offered[1]
    assert [output.content for output in outputs(result)] == ["first", "late ok"]


async def test_enter_in_one_task_exit_in_another_leaves_no_child() -> None:
    target = StdioServer(sys.executable, args=[str(STDIO_SERVER)])
    spec = ResilientMCPToolSpec(target, timeouts=resilient_mcp.Timeouts(close=2))
    entered = anyio.Event()
    pids: list[int] = []

    async def enter() -> None:
        await spec.__aenter__()
        client = spec.toolbox.source
        assert isinstance(client, resilient_mcp.Client)
        transport: Any = client._session.transport  # the stdio child's PID
        pids.append(transport.pid)
        entered.set()

    with anyio.fail_after(LIMIT_S):
        async with anyio.create_task_group() as group:
            group.start_soon(enter)
            await entered.wait()
        tools = await spec.to_tool_list_async()
        result = await run(Script([("echo", {"text": "hi"})]), tools=tools)
        async with anyio.create_task_group() as group:
            group.start_soon(spec.__aexit__, None, None, None)
    (output,) = outputs(result)
    assert not output.is_error
    (pid,) = pids
    assert reaped(pid)


async def test_a_hanging_call_is_a_bounded_typed_failure() -> None:
    script = Script([("progress", {"steps": 1, "interval": 30})], final="gave up")
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer()) as running,
            ResilientMCPToolSpec(running.url, timeout=0.5) as spec,
        ):
            started = time.monotonic()
            result = await run(script, tool_retriever=spec.as_retriever())
            elapsed = time.monotonic() - started
    (output,) = outputs(result)
    assert output.is_error
    assert is_terminal(output)  # it was sent: it may have run
    assert isinstance(output.exception, resilient_mcp.RequestTimeout)
    assert elapsed < 20  # the 0.5 s deadline, not the 30 s hang (generous: a shared box)


async def test_a_modern_server_works_through_the_same_adapter() -> None:
    script = Script([("add", {"a": 1, "b": 1})])
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer(era="modern")) as running,
            ResilientMCPToolSpec(running.url) as spec,
        ):
            result = await run(script, tool_retriever=spec.as_retriever())
            client = spec.toolbox.source
            assert isinstance(client, resilient_mcp.Client)
            era = client.era
            stats = running.stats
    (output,) = outputs(result)
    assert not output.is_error
    assert output.raw_output["structured_content"] == {"sum": 2}
    assert era == "modern"
    assert stats.initialize_requests == 0


async def test_filters_and_a_given_toolbox_is_never_closed() -> None:
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as running, resilient_mcp.connect(running.url) as client:
            box = Toolbox(client)
            async with ResilientMCPToolSpec(box, allowed_tools=["echo", "add", "fail"]) as spec:
                allowed = {tool.metadata.name for tool in await spec.to_tool_list_async()}
            only = ResilientMCPToolSpec(
                client, include=lambda spec: spec.name.startswith("e"), exclude=["elicit"]
            )
            included = [tool.metadata.name for tool in await only.to_tool_list_async()]
            direct = ResilientMCPToolSpec(client, return_direct=["echo"])
            script = Script([("echo", {"text": "the answer"})], final="never reached")
            result = await run(script, tools=await direct.to_tool_list_async())
            outcome = await box.call("echo", {"text": "still open"})
    assert allowed == {"echo", "add", "fail"}
    assert included == ["echo"]
    assert result.response.content == "the answer"  # return_direct ended the run
    assert len(script.offered) == 1
    assert outcome.ok


async def test_tools_are_reused_while_their_listing_is_unchanged() -> None:
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as running, ResilientMCPToolSpec(running.url) as spec:
            first = by_name(await spec.to_tool_list_async())
            second = by_name(await spec.to_tool_list_async())
    assert first["echo"] is second["echo"]


async def test_one_positional_value_for_a_one_parameter_tool() -> None:
    # acall_tool passes a one-property tool its value alone, positionally.
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as running, ResilientMCPToolSpec(running.url) as spec:
            tools = by_name(await spec.to_tool_list_async())
            echoed = await acall_tool(tools["echo"], {"text": "alone"})
            echo = tools["echo"]
            assert isinstance(echo, MCPTool)
            with pytest.raises(resilient_mcp.UsageError, match="keyword arguments"):
                await echo.acall("a", "b")
    assert echoed.content == "alone"
    assert echoed.raw_input == {"args": (), "kwargs": {"text": "alone"}}


async def test_sync_call_runs_on_the_loop_from_another_thread_only() -> None:
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as running, ResilientMCPToolSpec(running.url) as spec:
            echo = by_name(await spec.to_tool_list_async())["echo"]
            assert isinstance(echo, MCPTool)
            # From a thread while the loop runs: the call runs on the client's loop.
            output = await anyio.to_thread.run_sync(lambda: echo.call(text="sync"))
            names = await anyio.to_thread.run_sync(
                lambda: [tool.metadata.name for tool in spec.to_tool_list()]
            )
            # On the loop's own thread it would block the loop it waits for.
            with pytest.raises(resilient_mcp.UsageError, match="acall"):
                echo(text="blocked")
    assert output.content == "sync"
    assert "echo" in names
    fresh = ResilientMCPToolSpec("http://127.0.0.1:9/mcp")
    with pytest.raises(resilient_mcp.UsageError, match="to_tool_list_async"):
        fresh.to_tool_list()
    await fresh.aclose()


async def test_sync_call_after_its_loop_ended_is_client_closed() -> None:
    holder: list[MCPTool] = []

    async def load() -> None:
        with serve(StrictServer()) as running:
            async with ResilientMCPToolSpec(running.url) as spec:
                echo = by_name(await spec.to_tool_list_async())["echo"]
                assert isinstance(echo, MCPTool)
                holder.append(echo)

    # The tools are loaded on an event loop of another thread, which then ends.
    with anyio.fail_after(LIMIT_S):
        await anyio.to_thread.run_sync(anyio.run, load)
    with pytest.raises(resilient_mcp.ClientClosed, match="has ended"):
        holder[0].call(text="late")


async def test_content_and_failures_map_to_llama_index_types() -> None:
    # The fault server's tools answer text only: the conversion, on its own.
    png, wav, blob = "iVBORw0KGgo=", "UklGRg==", "AAEC"
    result = CallToolResult.model_validate(
        {
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image", "data": png, "mimeType": "image/png"},
                {"type": "audio", "data": wav, "mimeType": "audio/wav"},
                {
                    "type": "resource",
                    "resource": {"uri": "memo://b", "blob": blob, "mimeType": "application/pdf"},
                },
                {"type": "resource_link", "uri": "memo://one", "name": "one"},
            ]
        }
    )
    output = output_of(ToolOutcome.of_result("t", result), {})
    text, image, audio, document, link = output.blocks
    assert isinstance(text, TextBlock)
    assert text.text == "look"
    assert isinstance(image, ImageBlock)
    assert image.image_mimetype == "image/png"
    assert isinstance(audio, AudioBlock)
    assert audio.format == "wav"
    assert isinstance(document, DocumentBlock)
    assert document.document_mimetype == "application/pdf"
    assert isinstance(link, TextBlock)
    assert "memo://one" in link.text
    refused = output_of(ToolOutcome.of_error("t", resilient_mcp.ConnectError("refused")), {})
    assert refused.is_error
    assert "did not run, so nothing changed" in refused.content
    assert not is_terminal(refused)
    lost = output_of(ToolOutcome.of_error("t", resilient_mcp.ConnectionLost("cut")), {})
    assert lost.is_error
    assert is_terminal(lost)
    assert isinstance(lost.exception, resilient_mcp.ConnectionLost)
    assert not is_terminal("not an output")


async def test_schema_model_keeps_every_property_and_never_raises() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "Who."},
            "count": {"type": "integer", "default": 3},
            "mode": {"enum": ["a", "b"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "either": {"type": ["string", "null"]},
            "schema": {"type": "object"},  # shadows a BaseModel attribute
            "with-dash": {"type": "boolean"},
            "odd": True,
        },
        "required": ["name", "with-dash"],
    }
    model = schema_model("t", schema)
    fields = model.model_fields
    aliases = {info.alias or key for key, info in fields.items()}
    assert aliases == set(schema["properties"])
    assert fields["name"].is_required()
    assert fields["name"].description == "Who."
    assert fields["count"].default == 3
    parsed = model.model_validate({"name": "n", "with-dash": True, "extra": 1})
    assert parsed.model_dump(by_alias=True, exclude_none=True)["with-dash"] is True
    assert schema_model("empty", {"type": "object"}).model_fields == {}
    assert schema_model("broken", {"properties": ["not", "a", "map"]}).model_fields == {}
    metadata = MCPToolMetadata(description="", name="t", input_schema={"type": "object"})
    assert metadata.get_parameters_dict() == {"type": "object", "properties": {}}
