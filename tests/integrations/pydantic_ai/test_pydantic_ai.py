"""The pydantic-ai adapter with the real pydantic-ai, driven by its own FunctionModel."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelRetry, ToolFailed
from pydantic_ai.messages import (
    BinaryContent,
    BinaryImage,
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

import resilient_mcp
from resilient_mcp import ToolOutcome
from resilient_mcp.integrations.pydantic_ai import CallToolFunc, ResilientToolset, result_of
from resilient_mcp.testing import Chaos, StrictServer, serve
from resilient_mcp.types import CallToolResult

# pydantic-ai's Agent runs on asyncio only (it calls asyncio.create_task in its run loop).
pytestmark = pytest.mark.parametrize("anyio_backend", ["asyncio"])

STDIO_SERVER = Path(__file__).parents[2] / "stdio_servers" / "legacy_server.py"


def script(*steps: list[tuple[str, dict[str, Any]]]) -> FunctionModel:
    """A model that makes the given tool calls, one list per step (parallel within a
    step), then answers with every tool result it saw."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = sum(isinstance(m, ModelResponse) for m in messages)
        if done < len(steps):
            calls = steps[done]
            return ModelResponse(
                parts=[
                    ToolCallPart(name, args, tool_call_id=f"c{done}-{i}")
                    for i, (name, args) in enumerate(calls)
                ]
            )
        seen = [
            f"{part.tool_name}={part.content!r}"
            for message in messages
            for part in getattr(message, "parts", [])
            if isinstance(part, ToolReturnPart)
        ]
        return ModelResponse(parts=[TextPart("; ".join(seen) or "none")])

    return FunctionModel(respond)


def tool_messages(result: Any) -> list[Any]:
    return [
        part
        for message in result.all_messages()
        for part in getattr(message, "parts", [])
        if part.part_kind in ("tool-return", "retry-prompt")
    ]


@pytest.mark.anyio
async def test_happy_path_native_results_and_structured_content() -> None:
    with serve(StrictServer()) as running:
        async with resilient_mcp.connect(running.url) as client:
            toolset = ResilientToolset(client)
            agent = Agent(
                script([("add", {"a": 2, "b": 3}), ("echo", {"text": "hi"})]), toolsets=[toolset]
            )
            result = await agent.run("go")
            parts = {p.tool_name: p for p in tool_messages(result)}
            assert isinstance(parts["add"], ToolReturnPart)
            assert parts["add"].content == {"sum": 5}  # structured content, kept
            assert parts["echo"].content == "hi"
            tools = await toolset.get_tools(_ctx(agent))
            assert tools["add"].tool_def.return_schema is not None
            # The toolset never closes a client it was given.
            assert (await client.call_tool("echo", {"text": "still open"})).content


def _ctx(agent: Agent[Any, Any]) -> Any:
    from pydantic_ai import RunContext
    from pydantic_ai.models.test import TestModel
    from pydantic_ai.usage import RunUsage

    return RunContext(deps=None, model=TestModel(), usage=RunUsage())


@pytest.mark.anyio
async def test_expiry_during_two_parallel_calls_costs_one_handshake() -> None:
    server = StrictServer(chaos=Chaos(expire_after_requests=2))
    with serve(server) as running:
        async with resilient_mcp.connect(running.url) as client:
            await client.list_tools()
            before = running.stats.initialize_requests
            agent = Agent(
                script([("increment", {"key": "a"}), ("increment", {"key": "b"})]),
                toolsets=[ResilientToolset(client)],
            )
            result = await agent.run("go")
            assert all(isinstance(p, ToolReturnPart) for p in tool_messages(result))
            assert running.stats.initialize_requests - before == 1
            assert running.stats.executions["a"] == 1
            assert running.stats.executions["b"] == 1


@pytest.mark.anyio
async def test_first_step_calls_against_an_early_rejecting_server() -> None:
    with serve(StrictServer(handshake_delay=0.3)) as running:
        agent = Agent(
            script([("echo", {"text": "x"}), ("echo", {"text": "y"})]),
            toolsets=[ResilientToolset(running.url)],
        )
        result = await agent.run("go")
        contents = sorted(p.content for p in tool_messages(result))
        assert contents == ["x", "y"]


@pytest.mark.anyio
async def test_dropped_after_side_effect_takes_the_terminal_path() -> None:
    server = StrictServer(chaos=Chaos(seed=1, drop_rate=1.0))
    with serve(server) as running:
        async with resilient_mcp.connect(running.url) as client:
            agent = Agent(
                script([("increment", {"key": "k"})]), toolsets=[ResilientToolset(client)]
            )
            result = await agent.run("go")
            (part,) = tool_messages(result)
            # ToolFailed: a failed tool result that spends no retry, not a ModelRetry.
            assert part.outcome == "failed"
            assert part.retry is None
            assert "may or may not have run" in str(part.content)
            assert running.stats.executions["k"] == 1


@pytest.mark.anyio
async def test_is_error_reaches_the_retry_prompt_with_its_text() -> None:
    with serve(StrictServer()) as running:
        async with resilient_mcp.connect(running.url) as client:
            agent = Agent(script([("fail", {})]), toolsets=[ResilientToolset(client)])
            result = await agent.run("go")
            (part,) = tool_messages(result)
            # ModelRetry, as pydantic-ai's MCPToolset raises for isError.
            assert part.outcome == "retried"
            assert part.retry is not None
            assert part.retry.cause == "model_retry"
            assert "The fail tool always fails." in str(part.content)


@pytest.mark.anyio
async def test_list_changed_is_seen_by_the_next_step() -> None:
    server = StrictServer()
    with serve(server) as running:
        async with resilient_mcp.connect(running.url) as client:
            seen: list[set[str]] = []

            def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
                seen.append({t.name for t in info.function_tools})
                if len(seen) == 1:
                    server.add_tool("late", text="late ok")
                    return ModelResponse(parts=[ToolCallPart("echo", {"text": "a"})])
                if len(seen) == 2:
                    return ModelResponse(parts=[ToolCallPart("late", {})])
                return ModelResponse(parts=[TextPart("done")])

            # The notification may land after the first step's call; wait for it, not a sleep.
            agent = Agent(FunctionModel(respond), toolsets=[ResilientToolset(client)])
            with anyio.fail_after(20):
                result = await agent.run("go")
            assert "late" not in seen[0]
            assert "late" in seen[1]
            assert any(p.content == "late ok" for p in tool_messages(result))


@pytest.mark.anyio
async def test_enter_in_one_task_exit_in_another_leaves_no_child(tmp_path: Path) -> None:
    record = tmp_path / "record"
    toolset: ResilientToolset[Any] = ResilientToolset(
        [sys.executable, str(STDIO_SERVER), "--record", str(record)]
    )
    entered = anyio.Event()

    async def enter() -> None:
        await toolset.__aenter__()
        entered.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(enter)
    await entered.wait()
    await toolset.get_tools(_ctx(Agent(FunctionModel(lambda m, i: ModelResponse(parts=[])))))
    async with anyio.create_task_group() as tg:
        tg.start_soon(toolset.__aexit__, None, None, None)
    pids = {int(line.split(" ")[0]) for line in record.read_text().splitlines()}
    assert pids
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.anyio
async def test_hanging_call_fails_typed_within_its_timeout() -> None:
    with serve(StrictServer()) as running:
        async with resilient_mcp.connect(running.url) as client:
            agent = Agent(
                script([("progress", {"steps": 1, "interval": 30})]),
                toolsets=[ResilientToolset(client, timeout=1.0)],
            )
            with anyio.fail_after(20):
                result = await agent.run("go")
            (part,) = tool_messages(result)
            # The call was sent and then timed out: it may have run, so it is terminal.
            assert part.outcome == "failed"
            assert "progress" in str(part.content)


@pytest.mark.anyio
async def test_modern_server_through_the_same_adapter() -> None:
    with serve(StrictServer(era="modern")) as running:
        agent = Agent(script([("add", {"a": 1, "b": 1})]), toolsets=[ResilientToolset(running.url)])
        result = await agent.run("go")
        (part,) = tool_messages(result)
        assert isinstance(part, ToolReturnPart)
        assert part.content == {"sum": 2}


@pytest.mark.anyio
async def test_prefix_filters_and_process_tool_call_hook() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    async def hook(ctx: Any, call: CallToolFunc, name: str, args: dict[str, Any]) -> Any:
        seen.append((name, args))
        return await call(name, {"text": args["text"].upper()})

    with serve(StrictServer()) as running:
        async with resilient_mcp.connect(running.url) as client:
            toolset: ResilientToolset[Any] = ResilientToolset(
                client,
                tool_prefix="srv",
                include={"echo", "add"},
                exclude={"add"},
                process_tool_call=hook,
            )
            agent = Agent(script([("srv_echo", {"text": "hi"})]), toolsets=[toolset])
            result = await agent.run("go")
            assert set(await toolset.get_tools(_ctx(agent))) == {"srv_echo"}
            (part,) = tool_messages(result)
            assert part.content == "HI"
            assert seen == [("echo", {"text": "hi"})]


@pytest.mark.anyio
async def test_binary_parts_and_not_executed_map_to_pydantic_ai_types() -> None:
    image = base64.b64encode(b"\x89PNG").decode()
    result = CallToolResult.model_validate(
        {
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image", "data": image, "mimeType": "image/png"},
                {"type": "audio", "data": image, "mimeType": "audio/wav"},
            ]
        }
    )
    text, picture, sound = result_of(ToolOutcome.of_result("t", result))
    assert text == "look"
    assert isinstance(picture, BinaryImage)
    assert picture.data == b"\x89PNG"
    assert isinstance(sound, BinaryContent)
    assert sound.media_type == "audio/wav"
    refused = ToolOutcome.of_error("t", resilient_mcp.ConnectError("refused"))
    with pytest.raises(ModelRetry, match="did not run"):
        result_of(refused)
    lost = ToolOutcome.of_error("t", resilient_mcp.ConnectionLost("cut"))
    with pytest.raises(ToolFailed, match="may or may not have run"):
        result_of(lost)
