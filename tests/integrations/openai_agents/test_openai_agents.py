"""The openai-agents adapter with the real Agents SDK, driven by its own ScriptedModel.

``agents.testing.ScriptedModel`` answers each model call with the next scripted step
(tool calls made with ``function_call``, answers with ``assistant_message``) and records
what every call was given (``model.calls``: the tools offered, the input seen), so a
test sees what the model saw. ``Runner.run`` executes a step's tool calls concurrently.

The SDK's run loop is asyncio only (asyncio tasks, ``asyncio.wait``): these tests run on
asyncio. Tracing is turned off: it would export to the network.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from agents import Runner
from agents.mcp import MCPServerManager
from agents.testing import ModelCall, ScriptedModel, assistant_message, function_call
from mcp import types as mcp_types

import resilient_mcp
from resilient_mcp import StdioServer
from resilient_mcp.integrations.openai_agents import (
    ResilientMCPServer,
    is_terminal,
    stop_on_unknown_effect,
)
from resilient_mcp.testing import Chaos, StrictServer, serve

from .helpers import LIMIT_S, agent, offered, outputs, run, status, text

pytestmark = [
    pytest.mark.anyio,
    # The Agents SDK's run loop uses asyncio tasks (see the docstring).
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),
]


ROOT = Path(__file__).resolve().parents[3]
STDIO_SERVER = ROOT / "tests" / "stdio_servers" / "legacy_server.py"


def reaped(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # succeeds for a zombie too
    except ProcessLookupError:
        return True
    return False


async def test_happy_path_native_results_and_structured_content() -> None:
    model = ScriptedModel(
        [
            [
                function_call("add", {"a": 2, "b": 3}, call_id="c1"),
                function_call("echo", {"text": "hi"}, call_id="c2"),
            ],
            [assistant_message("the sum is 5")],
        ]
    )
    with serve(StrictServer()) as running:
        async with resilient_mcp.connect(running.url) as client:
            listed = {tool.name: tool for tool in await client.list_tools()}
            server = ResilientMCPServer(client, use_structured_content=True)
            await server.connect()
            result = await run(agent(model, server))
            tools = {tool.name: tool for tool in await server.list_tools()}
            raw = await server.call_tool("add", {"a": 1, "b": 1})
            await server.cleanup()  # never closes a client it was given
            still_open = await client.call_tool("echo", {"text": "open"})
    assert still_open.text == "open"
    assert tools.keys() == listed.keys()
    add = tools["add"]
    assert isinstance(add, mcp_types.Tool)
    assert add.description == listed["add"].description
    assert add.model_dump(by_alias=True)["inputSchema"] == listed["add"].inputSchema
    assert isinstance(raw, mcp_types.CallToolResult)
    assert raw.model_dump(by_alias=True)["structuredContent"] == {"sum": 2}
    added, echoed = outputs(result)
    # use_structured_content: the model gets structuredContent as JSON, as the SDK does.
    assert json.loads(text(added)) == {"sum": 5}
    assert echoed.output == {"type": "text", "text": "hi"}
    assert [status(item) for item in (added, echoed)] == ["ok", "ok"]
    assert offered(model.calls[0]) == set(listed)
    assert result.final_output == "the sum is 5"


async def test_expiry_during_two_parallel_calls_costs_one_handshake() -> None:
    # The listing uses one request of the session's two, the first call the other: the
    # second call, sent alongside, finds the session gone.
    server = StrictServer(chaos=Chaos(expire_after_requests=2))
    model = ScriptedModel(
        [
            [
                function_call("increment", {"key": "a"}, call_id="c1"),
                function_call("increment", {"key": "b"}, call_id="c2"),
            ],
            [assistant_message("both done")],
        ]
    )
    with serve(server) as running:
        async with resilient_mcp.connect(running.url) as client:
            await client.list_tools()
            before = running.stats.initialize_requests
            result = await run(agent(model, ResilientMCPServer(client)))
            stats = running.stats
    assert [status(item) for item in outputs(result)] == ["ok", "ok"]
    assert stats.initialize_requests - before == 1
    assert stats.executions["a"] == 1
    assert stats.executions["b"] == 1
    assert "expired" in [fault for _, fault in stats.faults]
    assert result.final_output == "both done"


async def test_first_step_calls_against_an_early_rejecting_server() -> None:
    model = ScriptedModel(
        [
            [
                function_call("echo", {"text": "x"}, call_id="c1"),
                function_call("echo", {"text": "y"}, call_id="c2"),
            ],
            [assistant_message("done")],
        ]
    )
    with serve(StrictServer(handshake_delay=0.3)) as running:
        async with ResilientMCPServer(running.url) as server:
            result = await run(agent(model, server))
            stats = running.stats
    assert [text(item) for item in outputs(result)] == ["x", "y"]
    assert stats.early_requests == 0


async def test_dropped_after_side_effect_takes_the_terminal_path() -> None:
    model = ScriptedModel(
        [
            [function_call("increment", {"key": "k"}, call_id="c1")],
            [assistant_message("never reached")],
        ]
    )
    with serve(StrictServer(chaos=Chaos(seed=1, drop_rate=1.0))) as running:
        async with ResilientMCPServer(running.url) as server:
            result = await run(agent(model, server, tool_use_behavior=stop_on_unknown_effect))
            stats = running.stats
    (item,) = outputs(result)
    assert is_terminal(item)
    assert status(item) == "maybe_executed"
    message = text(item)
    assert "may or may not have run" in message
    assert "try again" not in message.lower()
    assert "please" not in message.lower()
    # The terminal path: the run ended on that output, the model had no second turn.
    assert result.final_output == message
    assert model.remaining_steps == 1
    assert stats.executions["k"] == 1
    assert stats.tool_calls["increment"] == 1


async def test_without_the_stop_behaviour_the_model_is_told_not_to_repeat() -> None:
    # The SDK's default loop gives the model the output: a failed result, not an
    # exception (which the SDK would turn into "Please try again").
    model = ScriptedModel(
        [[function_call("increment", {"key": "k"}, call_id="c1")], [assistant_message("ok")]]
    )
    with serve(StrictServer(chaos=Chaos(seed=1, drop_rate=1.0))) as running:
        async with ResilientMCPServer(running.url) as server:
            result = await run(agent(model, server))
            stats = running.stats
    (item,) = outputs(result)
    seen = json.dumps(model.calls[1].input)
    assert "may or may not have run" in seen
    assert "Please try again" not in seen
    assert is_terminal(item)
    assert stats.executions["k"] == 1


async def test_is_error_reaches_the_model_with_its_text() -> None:
    model = ScriptedModel(
        [[function_call("fail", {}, call_id="c1")], [assistant_message("it failed")]]
    )
    with serve(StrictServer()) as running:
        async with ResilientMCPServer(running.url) as server:
            result = await run(agent(model, server))
            raw = await server.call_tool("fail", {})
    (item,) = outputs(result)
    assert text(item) == "The fail tool always fails."
    assert status(item) == "tool_error"
    assert not is_terminal(item)
    assert raw.model_dump(by_alias=True)["isError"] is True
    assert "The fail tool always fails." in json.dumps(model.calls[1].input)
    assert result.final_output == "it failed"


async def test_the_next_step_sees_a_tool_added_by_list_changed() -> None:
    changed = anyio.Event()

    async def on_notification(method: str, params: object) -> None:
        if method == "notifications/tools/list_changed":
            changed.set()

    server = StrictServer()

    async def first(call: ModelCall) -> Any:
        server.add_tool("fresh", description="Brand new.", text="hello")
        await changed.wait()  # the event itself, not a sleep
        return [function_call("echo", {"text": "first"}, call_id="c1")]

    model = ScriptedModel(
        [
            {"responder": first},
            [function_call("fresh", {}, call_id="c2")],
            [assistant_message("done")],
        ]
    )
    handlers = resilient_mcp.Handlers(notification=on_notification)
    with serve(server) as running:
        async with ResilientMCPServer(running.url, handlers=handlers) as mcp_server:
            result = await run(agent(model, mcp_server))
    first_tools, second_tools, _ = (offered(call) for call in model.calls)
    assert "fresh" not in first_tools
    assert "fresh" in second_tools
    assert text(outputs(result)[-1]) == "hello"


async def test_enter_in_one_task_exit_in_another_leaves_no_child() -> None:
    target = StdioServer(sys.executable, args=[str(STDIO_SERVER)])
    server = ResilientMCPServer(target, timeouts=resilient_mcp.Timeouts(close=2))
    pids: list[int] = []
    model = ScriptedModel(
        [[function_call("echo", {"text": "hi"}, call_id="c1")], [assistant_message("done")]]
    )

    async def enter() -> None:
        await server.connect()
        client = server.toolbox.source
        assert isinstance(client, resilient_mcp.Client)
        transport: Any = client._session.transport  # the stdio child's PID
        pids.append(transport.pid)

    with anyio.fail_after(LIMIT_S):
        async with anyio.create_task_group() as group:
            group.start_soon(enter)
        result = await run(agent(model, server))
        async with anyio.create_task_group() as group:
            group.start_soon(server.cleanup)
    (item,) = outputs(result)
    assert status(item) == "ok"
    (pid,) = pids
    assert reaped(pid)


async def test_under_mcp_server_manager() -> None:
    # The manager connects and cleans up each server in a worker task of its own.
    model = ScriptedModel(
        [[function_call("echo", {"text": "hi"}, call_id="c1")], [assistant_message("done")]]
    )
    with serve(StrictServer()) as running:
        server = ResilientMCPServer(running.url, name="strict")
        async with MCPServerManager([server]) as manager:
            assert manager.active_servers == [server]
            result = await run(agent(model, *manager.active_servers))
            client = server.toolbox.source
        assert isinstance(client, resilient_mcp.Client)
        with pytest.raises(resilient_mcp.ClientClosed):
            await client.list_tools()  # owned: closed by cleanup
        async with server:  # and connectable again
            assert (await server.call_tool("echo", {"text": "again"})).content
    assert text(outputs(result)[0]) == "hi"


async def test_a_hanging_call_is_a_bounded_typed_failure() -> None:
    model = ScriptedModel(
        [
            [function_call("progress", {"steps": 1, "interval": 30}, call_id="c1")],
            [assistant_message("never reached")],
        ]
    )
    with serve(StrictServer()) as running:
        async with ResilientMCPServer(running.url, timeout=0.5) as server:
            mcp_agent = agent(model, server, tool_use_behavior=stop_on_unknown_effect)
            # The 0.5 s deadline, not the 30 s hang (generous: a shared box).
            with anyio.fail_after(20):
                result = await Runner.run(mcp_agent, "go")
            outcome = await server.toolbox.call(
                "progress", {"steps": 1, "interval": 30}, timeout=0.5
            )
    (item,) = outputs(result)
    assert is_terminal(item)
    assert "'progress'" in text(item)
    assert model.remaining_steps == 1
    assert isinstance(outcome.error, resilient_mcp.RequestTimeout)


async def test_a_modern_server_works_through_the_same_adapter() -> None:
    model = ScriptedModel(
        [[function_call("add", {"a": 1, "b": 2}, call_id="c1")], [assistant_message("3")]]
    )
    with serve(StrictServer(era="modern")) as running:
        async with ResilientMCPServer(running.url, use_structured_content=True) as server:
            result = await run(agent(model, server))
            client = server.toolbox.source
            assert isinstance(client, resilient_mcp.Client)
            era = client.era
            stats = running.stats
    (item,) = outputs(result)
    assert json.loads(text(item)) == {"sum": 3}
    assert era == "modern"
    assert stats.initialize_requests == 0
