"""The Google ADK adapter with the real ADK, driven by its own test model.

``MockModel`` (``google.adk.cli.agent_test_runner``) answers with the contents it is
given, one per model step, and records every ``LlmRequest`` (the tools it was offered,
the function responses it saw); ``InMemoryRunner`` runs the ``LlmAgent`` as an app does,
the parallel calls of one step concurrently, and closes the toolsets on ``close()``.
ADK runs its tools as asyncio tasks, so these tests run on asyncio only. Nothing here
reaches Google: the mock model needs no key and the server is on 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from google.adk.agents import LlmAgent
from google.adk.apps.app import App
from google.adk.cli.agent_test_runner import MockModel
from google.adk.events.event import Event
from google.adk.plugins.base_plugin import BasePlugin
from google.adk.plugins.reflect_retry_tool_plugin import ReflectAndRetryToolPlugin
from google.adk.runners import InMemoryRunner
from google.adk.tools.base_tool import BaseTool
from google.adk.tools.tool_context import ToolContext
from google.genai import types

import resilient_mcp
from resilient_mcp import Toolbox, ToolOutcome
from resilient_mcp._config import USE_CLIENT_DEFAULT
from resilient_mcp.integrations.google_adk import (
    ResilientMCPTool,
    ResilientToolset,
    response_of,
)
from resilient_mcp.testing import Chaos, StrictServer, serve
from resilient_mcp.types import CallToolResult, Tool

pytestmark = [
    pytest.mark.anyio,
    # ADK's runner and its parallel tool calls are asyncio tasks.
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),
]

LIMIT_S = 60  # a guard against hangs only
STDIO_SERVER = Path(__file__).parents[2] / "stdio_servers" / "legacy_server.py"


def step(*calls: tuple[str, dict[str, Any]]) -> types.Content:
    """One model step: these function calls, in parallel."""
    parts = [
        types.Part(function_call=types.FunctionCall(id=f"call-{i}", name=name, args=args))
        for i, (name, args) in enumerate(calls)
    ]
    return types.Content(role="model", parts=parts)


def answer(text: str = "done") -> types.Content:
    return types.Content(role="model", parts=[types.Part(text=text)])


def mock(*steps: types.Content) -> MockModel:
    """ADK's MockModel: the given steps, then a plain answer."""
    return MockModel.create([*steps, answer()])


PROMPT = types.Content(role="user", parts=[types.Part(text="go")])


async def invoke(runner: InMemoryRunner, message: types.Content = PROMPT) -> list[Event]:
    """One invocation in the runner's session (made on first use): its events."""
    sessions = await runner.session_service.list_sessions(app_name=runner.app_name, user_id="user")
    if sessions.sessions:
        session_id = sessions.sessions[0].id
    else:
        session = await runner.session_service.create_session(
            app_name=runner.app_name, user_id="user"
        )
        session_id = session.id
    with anyio.fail_after(LIMIT_S):
        return [
            event
            async for event in runner.run_async(
                user_id="user", session_id=session_id, new_message=message
            )
        ]


def runner_for(
    *toolsets: ResilientToolset,
    model: MockModel,
    plugins: list[BasePlugin] | None = None,
    after_tool: Any = None,
) -> InMemoryRunner:
    agent = LlmAgent(
        name="agent", model=model, tools=list(toolsets), after_tool_callback=after_tool
    )
    return InMemoryRunner(app=App(name="app", root_agent=agent, plugins=plugins or []))


async def run(
    toolset: ResilientToolset,
    model: MockModel,
    *,
    plugins: list[BasePlugin] | None = None,
    after_tool: Any = None,
) -> list[Event]:
    """One invocation of an LlmAgent with ``toolset``; the runner is closed after it
    (which closes the toolset, in a task of ADK's own)."""
    async with runner_for(toolset, model=model, plugins=plugins, after_tool=after_tool) as runner:
        return await invoke(runner)


def responses(events: list[Event]) -> dict[str, dict[str, Any]]:
    """Every function response the model was sent, by tool name."""
    found: dict[str, dict[str, Any]] = {}
    for event in events:
        for response in event.get_function_responses():
            assert response.name is not None
            found[response.name] = dict(response.response or {})
    return found


def texts(response: dict[str, Any]) -> list[str]:
    return [block["text"] for block in response["content"] if block["type"] == "text"]


def free_port() -> int:
    with socket.socket() as probe:  # bound, then closed: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def reaped(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # succeeds for a zombie too
    except ProcessLookupError:
        return True
    return False


async def test_happy_path_native_results_and_structured_content() -> None:
    with serve(StrictServer()) as running:
        async with resilient_mcp.connect(running.url) as client:
            listed = {tool.name: tool for tool in await client.list_tools()}
            model = mock(step(("add", {"a": 2, "b": 3}), ("echo", {"text": "hi"})))
            toolset = ResilientToolset(client)
            events = await run(toolset, model)
            # The runner closed the toolset: a client it was given stays open.
            assert (await client.call_tool("echo", {"text": "still open"})).text == "still open"
    got = responses(events)
    assert got["add"]["structuredContent"] == {"sum": 5}  # kept, as McpTool keeps it
    assert got["add"]["isError"] is False
    assert texts(got["echo"]) == ["hi"]
    assert events[-1].is_final_response()
    # Names, descriptions and schemas pass through unchanged.
    offered = model.requests[0].tools_dict
    assert set(offered) == set(listed)
    declaration = offered["add"]._get_declaration()
    assert declaration is not None
    assert declaration.description == listed["add"].description
    assert declaration.parameters_json_schema == listed["add"].inputSchema
    assert declaration.response_json_schema == listed["add"].outputSchema


async def test_expiry_during_two_parallel_calls_costs_one_handshake() -> None:
    with serve(StrictServer(chaos=Chaos(expire_after_requests=2))) as running:
        async with resilient_mcp.connect(running.url) as client:
            await client.list_tools()
            before = running.stats.initialize_requests
            model = mock(step(("increment", {"key": "a"}), ("increment", {"key": "b"})))
            events = await run(ResilientToolset(client), model)
            assert running.stats.initialize_requests - before == 1
            assert running.stats.executions["a"] == 1
            assert running.stats.executions["b"] == 1
    # The model sees two successes (both under the name "increment").
    calls = [r.response for e in events for r in e.get_function_responses()]
    assert [(c or {}).get("isError") for c in calls] == [False, False]


async def test_first_step_calls_against_an_early_rejecting_server() -> None:
    with serve(StrictServer(handshake_delay=0.3)) as running:
        # A target: the toolset owns its client and connects on the first step.
        model = mock(step(("echo", {"text": "x"}), ("echo", {"text": "y"})))
        events = await run(ResilientToolset(running.url), model)
    calls = [r.response for e in events for r in e.get_function_responses()]
    assert sorted(texts(dict(r or {}))[0] for r in calls) == ["x", "y"]


@pytest.mark.parametrize("stop", [False, True])
async def test_dropped_after_side_effect_takes_the_terminal_path(stop: bool) -> None:
    # ReflectAndRetryToolPlugin retries tools that raise: ours never raise, so even
    # with it installed the call is not made again, by ADK or by us.
    with serve(StrictServer(chaos=Chaos(seed=1, drop_rate=1.0))) as running:
        async with resilient_mcp.connect(running.url) as client:
            model = mock(step(("increment", {"key": "k"})))
            toolset = ResilientToolset(client, stop_on_unknown_effect=stop)
            events = await run(toolset, model, plugins=[ReflectAndRetryToolPlugin()])
            assert running.stats.executions["k"] == 1
    response = responses(events)["increment"]
    assert response["status"] == "maybe_executed"
    assert "may or may not have run" in response["error"]
    assert "reflection" not in str(response).lower()  # no retry guidance from the plugin
    if stop:
        # skip_summarization: the invocation ends at the response, the model is not
        # asked again.
        assert len(model.requests) == 1
        assert events[-1].is_final_response()
        assert events[-1].get_function_responses()
    else:
        assert len(model.requests) == 2  # the model read the error and answered
        sent = model.requests[1].contents[-1].parts or []
        assert any(p.function_response and p.function_response.name == "increment" for p in sent)


async def test_is_error_reaches_the_tool_error_path_with_its_text() -> None:
    with serve(StrictServer()) as running:
        async with resilient_mcp.connect(running.url) as client:
            model = mock(step(("fail", {})))
            toolset = ResilientToolset(client)
            events = await run(toolset, model)
            (tool,) = [t for t in await toolset.get_tools() if t.name == "fail"]
    response = responses(events)["fail"]
    # McpTool's tool-error result: isError, the server's text as content.
    assert response["isError"] is True
    assert texts(response) == ["The fail tool always fails."]
    assert isinstance(tool, ResilientMCPTool)
    assert tool._detect_error_in_response(response) == "MCP_TOOL_ERROR"


async def test_list_changed_is_seen_by_the_next_step() -> None:
    changed = anyio.Event()

    async def on_notification(method: str, params: object) -> None:
        if method == "notifications/tools/list_changed":
            changed.set()

    server = StrictServer()

    async def after_tool(
        tool: BaseTool, args: dict[str, Any], tool_context: ToolContext, tool_response: Any
    ) -> None:
        if tool.name == "echo":  # between the steps, the server adds a tool
            server.add_tool("late", text="late ok")
            await changed.wait()  # the notification, not a sleep

    handlers = resilient_mcp.Handlers(notification=on_notification)
    with serve(server) as running:
        async with resilient_mcp.connect(running.url, handlers=handlers) as client:
            model = mock(step(("echo", {"text": "a"})), step(("late", {})))
            events = await run(ResilientToolset(client), model, after_tool=after_tool)
    assert "late" not in model.requests[0].tools_dict
    assert "late" in model.requests[1].tools_dict  # the same invocation's next step
    assert texts(responses(events)["late"]) == ["late ok"]


async def test_enter_in_one_task_exit_in_another_leaves_no_child(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = tmp_path / "record"
    toolset = ResilientToolset([sys.executable, str(STDIO_SERVER), "--record", str(record)])
    runner = runner_for(toolset, model=mock(step(("echo", {"text": "hi"}))))
    events: list[Event] = []

    async def invoke_in_a_task() -> None:
        # The child starts in this task (the first step lists the tools) ...
        events.extend(await invoke(runner))

    with anyio.fail_after(LIMIT_S):
        async with anyio.create_task_group() as group:
            group.start_soon(invoke_in_a_task)
        # ... and is closed after that task ended, by Runner.close() (which closes
        # each toolset in a task of its own).
        await runner.close()
    # ADK logs (and swallows) what a toolset's close() raises or a close that hangs.
    closing = [
        r.getMessage() for r in caplog.records if "closing toolset" in r.getMessage().lower()
    ]
    assert not [m for m in closing if "error" in m.lower() or "timed out" in m.lower()]
    assert texts(responses(events)["echo"]) == ["hi"]
    pids = {int(line.split(" ")[0]) for line in record.read_text().splitlines()}
    assert pids
    assert all(reaped(pid) for pid in pids)


async def test_hanging_call_fails_typed_within_its_timeout() -> None:
    with serve(StrictServer()) as running:
        async with resilient_mcp.connect(running.url) as client:
            model = mock(step(("progress", {"steps": 1, "interval": 30})))
            with anyio.fail_after(20):
                events = await run(ResilientToolset(client, timeout=1.0), model)
    response = responses(events)["progress"]
    # The call was sent and then timed out: it may have run, so it is terminal.
    assert response["status"] == "maybe_executed"
    assert "progress" in response["error"]


async def test_modern_server_through_the_same_adapter() -> None:
    with serve(StrictServer(era="modern")) as running:
        events = await run(ResilientToolset(running.url), mock(step(("add", {"a": 1, "b": 1}))))
    response = responses(events)["add"]
    assert response["structuredContent"] == {"sum": 2}


async def test_prefix_and_filter_as_mcp_toolset_has_them() -> None:
    with serve(StrictServer()) as running:
        async with resilient_mcp.connect(running.url) as client:
            toolset = ResilientToolset(
                Toolbox(client), tool_name_prefix="srv", tool_filter=["echo", "add"]
            )
            model = mock(step(("srv_echo", {"text": "hi"})))
            events = await run(toolset, model)
    assert set(model.requests[0].tools_dict) == {"srv_add", "srv_echo"}
    declaration = model.requests[0].tools_dict["srv_echo"]._get_declaration()
    assert declaration is not None
    assert declaration.name == "srv_echo"
    assert texts(responses(events)["srv_echo"]) == ["hi"]  # called by its server name


async def test_require_confirmation_holds_the_call_until_a_human_answers() -> None:
    asked: list[dict[str, Any]] = []

    def risky(key: str = "", **rest: Any) -> bool:
        asked.append({"key": key})
        return key == "danger"

    with serve(StrictServer()) as running:
        async with resilient_mcp.connect(running.url) as client:
            model = MockModel.create(
                [step(("increment", {"key": "danger"}), ("increment", {"key": "safe"})), answer()]
            )
            toolset = ResilientToolset(client, require_confirmation=risky)
            async with runner_for(toolset, model=model) as runner:
                events = await invoke(runner)
                assert running.stats.executions.get("danger", 0) == 0  # waits for a human
                assert running.stats.executions["safe"] == 1
                (request,) = [
                    call
                    for event in events
                    for call in event.get_function_calls()
                    if call.name == "adk_request_confirmation"
                ]
                approval = types.FunctionResponse(
                    id=request.id, name=request.name, response={"confirmed": True}
                )
                message = types.Content(role="user", parts=[types.Part(function_response=approval)])
                resumed = await invoke(runner, message)
            assert running.stats.executions["danger"] == 1  # approved: run once
            assert running.stats.executions["safe"] == 1
    assert {a["key"] for a in asked} == {"danger", "safe"}  # the policy saw the arguments
    (done,) = [r for e in resumed for r in e.get_function_responses() if r.name == "increment"]
    assert done.response is not None
    assert done.response["isError"] is False


async def test_not_executed_schema_breach_and_meta_map_to_adk_responses() -> None:
    refused = response_of(ToolOutcome.of_error("t", resilient_mcp.ConnectError("refused")))
    assert refused["status"] == "not_executed"
    assert "did not run, so nothing changed" in refused["error"]
    result = CallToolResult.model_validate(
        {
            "content": [{"type": "text", "text": "x", "_meta": {"a": 1}}],
            "structuredContent": {"_meta": "data, kept"},
            "_meta": {"trace": "t1"},
        }
    )
    ok = response_of(ToolOutcome.of_result("t", result))
    # As McpTool dumps it: "_meta" is the field "meta"; the server's data is untouched.
    assert ok == {
        "content": [{"type": "text", "text": "x", "meta": {"a": 1}}],
        "structuredContent": {"_meta": "data, kept"},
        "isError": False,
        "meta": {"trace": "t1"},
    }
    breach = resilient_mcp.ToolError("result breaks the output schema", result=result)
    broken = response_of(ToolOutcome.of_error("t", breach))
    assert broken["isError"] is True
    assert "output schema" in broken["error"]


class Namespaced:
    """A ToolSource with ``origin()``, as a client group is: one member, "srv"."""

    def __init__(self, client: resilient_mcp.Client) -> None:
        self.client = client

    async def list_tools(self, *, timeout: Any = USE_CLIENT_DEFAULT) -> list[Tool]:
        tools = await self.client.list_tools(timeout=timeout)
        return [tool.model_copy(update={"name": f"srv__{tool.name}"}) for tool in tools]

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: Any = USE_CLIENT_DEFAULT,
        progress: Any = None,
    ) -> CallToolResult:
        return await self.client.call_tool(
            name.removeprefix("srv__"), arguments, timeout=timeout, progress=progress
        )

    def origin(self, name: str) -> tuple[str, str]:
        return "srv", name.removeprefix("srv__")


async def test_any_tool_source_with_namespaced_names_passes_through() -> None:
    with serve(StrictServer()) as running:
        async with resilient_mcp.connect(running.url) as client:
            model = mock(step(("srv__echo", {"text": "hi"})))
            events = await run(ResilientToolset(Namespaced(client)), model)
    tool = model.requests[0].tools_dict["srv__echo"]
    assert tool.custom_metadata is not None
    assert tool.custom_metadata["server"] == "srv"
    assert texts(responses(events)["srv__echo"]) == ["hi"]


async def test_an_unreachable_server_leaves_the_other_toolsets_working() -> None:
    with serve(StrictServer()) as running:
        down = ResilientToolset(f"http://127.0.0.1:{free_port()}/mcp")  # nothing listens
        up = ResilientToolset(running.url, tool_filter=["echo"])
        model = mock(step(("echo", {"text": "hi"})))
        async with runner_for(down, up, model=model) as runner:
            events = await invoke(runner)
    assert set(model.requests[0].tools_dict) == {"echo"}
    assert texts(responses(events)["echo"]) == ["hi"]
