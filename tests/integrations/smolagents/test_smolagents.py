"""The smolagents adapter with the real smolagents: a ToolCallingAgent driven by a
scripted ``smolagents.models.Model`` (smolagents ships no test model), against the
strict server served from sync code and the stdio test server. Nothing sleeps to wait:
tests wait on events (a barrier both parallel calls must reach, a notification handler,
a thread's end) with generous bounds for a slow machine."""

from __future__ import annotations

import base64
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from smolagents import CodeAgent, ToolCallingAgent  # type: ignore[import-untyped]
from smolagents import Tool as SmolTool
from smolagents.memory import ActionStep  # type: ignore[import-untyped]
from smolagents.models import (  # type: ignore[import-untyped]
    ChatMessage,
    ChatMessageToolCall,
    ChatMessageToolCallFunction,
    MessageRole,
    Model,
    get_tool_json_schema,
)
from smolagents.monitoring import LogLevel  # type: ignore[import-untyped]
from smolagents.utils import AgentError, AgentToolExecutionError  # type: ignore[import-untyped]

import resilient_mcp
from resilient_mcp import RequestTimeout, ToolOutcome, UsageError
from resilient_mcp.integrations.smolagents import (
    MCPTool,
    MCPToolError,
    ResilientToolCollection,
    load_tools,
    result_of,
)
from resilient_mcp.testing import Chaos, StrictServer, serve
from resilient_mcp.types import CallToolResult, Tool

STDIO_SERVER = Path(__file__).parents[2] / "stdio_servers" / "legacy_server.py"
# A bound for things that finish at once on a healthy machine; generous for a slow one.
BOUND_S = 20

Call = tuple[str, dict[str, Any]]
Step = list[Call] | Callable[[set[str]], list[Call]]


class ScriptedModel(Model):  # type: ignore[misc]  # smolagents is untyped
    """A model that makes the given tool calls, one list per step (parallel within a
    step; a step may be a function of the tool names offered), then the final answer.
    It records the tool names offered at every step."""

    def __init__(self, *steps: Step) -> None:
        super().__init__(model_id="scripted")
        self.steps = steps
        self.offered: list[set[str]] = []

    def generate(
        self,
        messages: list[Any],
        stop_sequences: list[str] | None = None,
        response_format: dict[str, str] | None = None,
        tools_to_call_from: list[Any] | None = None,
        **kwargs: Any,
    ) -> ChatMessage:
        offered = {tool.name for tool in tools_to_call_from or []}
        self.offered.append(offered)
        index = len(self.offered) - 1
        if index < len(self.steps):
            step = self.steps[index]
            calls = step(offered) if callable(step) else step
        else:
            calls = [("final_answer", {"answer": "done"})]
        return ChatMessage(
            role=MessageRole.ASSISTANT,
            content="",
            tool_calls=[
                ChatMessageToolCall(
                    function=ChatMessageToolCallFunction(name=name, arguments=args),
                    id=f"c{index}-{i}",
                    type="function",
                )
                for i, (name, args) in enumerate(calls)
            ],
        )


def agent_for(model: ScriptedModel, mcp: ResilientToolCollection, **kwargs: Any) -> Any:
    kwargs.setdefault("step_callbacks", mcp.step_callbacks)
    kwargs.setdefault("tools", mcp.tools)
    return ToolCallingAgent(model=model, verbosity_level=LogLevel.OFF, max_steps=5, **kwargs)


def action_steps(agent: Any) -> list[Any]:
    return [step for step in agent.memory.steps if isinstance(step, ActionStep)]


@contextmanager
def no_threads_left() -> Iterator[None]:
    """Fails if the block leaves a thread running (after anyio's callback workers,
    which end a moment after their loop, and smolagents' tool pool threads ended)."""
    before = set(threading.enumerate())
    yield
    left = [t for t in threading.enumerate() if t not in before]
    for thread in left:
        thread.join(BOUND_S)
    assert [t for t in left if t.is_alive()] == []


def reaped(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # succeeds for a zombie too
    except ProcessLookupError:
        return True
    return False


# --- 1. the happy path ----------------------------------------------------------------


def test_happy_path_parallel_calls_native_results_and_structured_content() -> None:
    with serve(StrictServer()) as running, resilient_mcp.connect_sync(running.url) as client:
        mcp = load_tools(client)
        # ToolCallingAgent runs a step's calls in a thread pool: both must be in flight
        # at once to pass this barrier (sequential calls would break it).
        barrier = threading.Barrier(2, timeout=BOUND_S)
        call = mcp.call

        def both_at_once(name: str, arguments: Any = None) -> ToolOutcome:
            barrier.wait()
            return call(name, arguments)

        mcp.call = both_at_once  # type: ignore[method-assign]
        model = ScriptedModel([("add", {"a": 2, "b": 3}), ("echo", {"text": "hi"})])
        agent = agent_for(model, mcp)
        assert agent.run("go") == "done"
        first = action_steps(agent)[0]
        assert first.error is None
        assert first.observations.splitlines() == ["{'sum': 5}", "hi"]
        tools = {tool.name: tool for tool in mcp.tools}
        assert tools["add"].output_schema == {
            "type": "object",
            "properties": {"sum": {"type": "number"}},
            "required": ["sum"],
        }
        assert tools["echo"].description == "Returns the given text unchanged."
        # Every tool passes smolagents' own checks and builds the schema a model gets.
        for tool in mcp.tools:
            assert isinstance(tool, MCPTool)
            get_tool_json_schema(tool)
        # The collection never closes a client it was given.
        mcp.close()
        assert client.call_tool("echo", {"text": "still open"}).text == "still open"


class CodeModel(Model):  # type: ignore[misc]  # smolagents is untyped
    """A CodeAgent model: one code step that calls two tools and gives the answer."""

    def generate(self, messages: list[Any], **kwargs: Any) -> ChatMessage:
        code = "r = add(a=1, b=2)\nfinal_answer(f\"{r['sum']} {echo(text='x')}\")"
        return ChatMessage(
            role=MessageRole.ASSISTANT, content=f"Thought: go\n<code>\n{code}\n</code>"
        )


def test_code_agent_gets_structured_content_as_a_dict() -> None:
    with serve(StrictServer()) as running, load_tools(running.url) as mcp:
        agent = CodeAgent(
            tools=mcp.tools,
            model=CodeModel(model_id="code"),
            step_callbacks=mcp.step_callbacks,
            verbosity_level=LogLevel.OFF,
        )
        assert agent.run("go") == "3 x"


# --- 2. session expiry during two parallel calls ----------------------------------------


def test_expiry_during_two_parallel_calls_costs_one_handshake() -> None:
    server = StrictServer(chaos=Chaos(expire_after_requests=2))
    with serve(server) as running, resilient_mcp.connect_sync(running.url) as client:
        mcp = load_tools(client)
        before = running.stats.initialize_requests
        model = ScriptedModel([("increment", {"key": "a"}), ("increment", {"key": "b"})])
        agent = agent_for(model, mcp)
        assert agent.run("go") == "done"
        first = action_steps(agent)[0]
        assert first.error is None
        assert sorted(first.observations.splitlines()) == ["1", "2"]
        assert running.stats.initialize_requests - before == 1
        assert running.stats.executions["a"] == 1
        assert running.stats.executions["b"] == 1


# --- 3. a server that rejects early requests -------------------------------------------


def test_first_step_calls_against_an_early_rejecting_server() -> None:
    with serve(StrictServer(handshake_delay=0.3)) as running:
        # wait_ready=False: the list and the first step's calls race the handshake.
        with ResilientToolCollection(running.url, wait_ready=False) as mcp:
            model = ScriptedModel([("echo", {"text": "x"}), ("echo", {"text": "y"})])
            agent = agent_for(model, mcp)
            assert agent.run("go") == "done"
            first = action_steps(agent)[0]
            assert first.error is None
            assert sorted(first.observations.splitlines()) == ["x", "y"]
        assert running.stats.tool_calls["echo"] == 2


# --- 4. dropped after a side effect: the terminal path -----------------------------------


def test_dropped_after_side_effect_stops_the_run() -> None:
    server = StrictServer(chaos=Chaos(seed=1, drop_rate=1.0))
    with serve(server) as running, resilient_mcp.connect_sync(running.url) as client:
        mcp = load_tools(client)
        # The model would call it again at its next step: it must not get one.
        model = ScriptedModel([("increment", {"key": "k"})], [("increment", {"key": "k"})])
        agent = agent_for(model, mcp)
        with pytest.raises(AgentError, match="interrupted"):
            agent.run("go")
        assert len(model.offered) == 1  # no second model step
        assert running.stats.executions["k"] == 1
        (outcome,) = mcp.unknown_effects
        assert outcome.status == "maybe_executed"
        assert outcome.tool == "increment"
        (step,) = action_steps(agent)
        assert step.error is None  # not smolagents' "Please try again" tool error
        assert "may or may not have run" in step.observations


def test_without_the_callbacks_an_unknown_effect_is_an_observation_without_retry() -> None:
    server = StrictServer(chaos=Chaos(seed=1, drop_rate=1.0))
    with serve(server) as running, resilient_mcp.connect_sync(running.url) as client:
        mcp = load_tools(client)
        agent = agent_for(ScriptedModel([("increment", {"key": "k"})]), mcp, step_callbacks=[])
        assert agent.run("go") == "done"
        first = action_steps(agent)[0]
        assert first.error is None
        assert "may or may not have run" in first.observations
        assert "try again" not in first.observations.lower()
        assert running.stats.executions["k"] == 1


# --- 5. isError -------------------------------------------------------------------------


def test_is_error_reaches_the_tool_error_path_with_its_text() -> None:
    with serve(StrictServer()) as running, resilient_mcp.connect_sync(running.url) as client:
        mcp = load_tools(client)
        agent = agent_for(ScriptedModel([("fail", {})]), mcp)
        assert agent.run("go") == "done"  # the model saw the error and went on
        first = action_steps(agent)[0]
        assert isinstance(first.error, AgentToolExecutionError)
        assert "MCPToolError: The fail tool always fails." in first.error.message
        assert isinstance(first.error.__cause__, MCPToolError)
        assert first.error.__cause__.status == "tool_error"
        assert mcp.unknown_effects == []


# --- 6. list_changed ----------------------------------------------------------------------


def test_the_next_step_sees_a_tool_added_by_list_changed() -> None:
    changed = threading.Event()

    def on_notification(method: str, params: object) -> None:
        if method == "notifications/tools/list_changed":
            changed.set()

    server = StrictServer()
    handlers = resilient_mcp.Handlers(notification=on_notification)
    with serve(server) as running, load_tools(running.url, handlers=handlers) as mcp:

        def first(offered: set[str]) -> list[Call]:
            server.add_tool("late", text="late ok")
            assert changed.wait(BOUND_S)  # the notification, not a sleep
            return [("echo", {"text": "a"})]

        model = ScriptedModel(first, [("late", {})])
        agent = agent_for(model, mcp)
        assert agent.run("go") == "done"
        assert "late" not in model.offered[0]
        assert "late" in model.offered[1]
        assert action_steps(agent)[1].observations == "late ok"
        # A new load sees it too (for an agent made after the change).
        assert "late" in {tool.name for tool in mcp.get_tools()}


# --- 7. open in one thread, close in another; the stdio child --------------------------


def test_enter_in_one_thread_exit_in_another_leaves_no_child(tmp_path: Path) -> None:
    record = tmp_path / "record"
    with no_threads_left():
        mcp = ResilientToolCollection([sys.executable, str(STDIO_SERVER), "--record", str(record)])
        entering = threading.Thread(target=mcp.__enter__)
        entering.start()
        entering.join(BOUND_S)
        assert not entering.is_alive()
        agent = agent_for(ScriptedModel([("increment", {})]), mcp)
        assert agent.run("go") == "done"
        assert action_steps(agent)[0].error is None
        failures: list[BaseException] = []

        def leave() -> None:
            try:
                mcp.__exit__(None, None, None)
            except BaseException as exc:
                failures.append(exc)

        leaving = threading.Thread(target=leave)
        leaving.start()
        leaving.join(BOUND_S)
        assert not leaving.is_alive()
        assert failures == []
    pids = {int(line.split(" ")[0]) for line in record.read_text().splitlines()}
    assert pids
    for pid in pids:
        assert reaped(pid)


# --- 8. a hanging server ------------------------------------------------------------------


def test_hanging_call_fails_typed_within_its_timeout() -> None:
    with serve(StrictServer()) as running, resilient_mcp.connect_sync(running.url) as client:
        mcp = load_tools(client, timeout=1.0)
        agent = agent_for(ScriptedModel([("progress", {"steps": 1, "interval": 30})]), mcp)
        raised: list[BaseException] = []

        def run() -> None:
            try:
                agent.run("go")
            except BaseException as exc:
                raised.append(exc)

        runner = threading.Thread(target=run)
        runner.start()
        runner.join(BOUND_S)  # the tool would hang for 30 s without the call's deadline
        assert not runner.is_alive()
        # The call was sent and then timed out: it may have run, so the run stops.
        assert [type(exc) for exc in raised] == [AgentError]
        (outcome,) = mcp.unknown_effects
        assert isinstance(outcome.error, RequestTimeout)


# --- 9. a 2026-07-28 server -----------------------------------------------------------------


def test_modern_server_through_the_same_adapter() -> None:
    with serve(StrictServer(era="modern")) as running, load_tools(running.url) as mcp:
        agent = agent_for(ScriptedModel([("add", {"a": 1, "b": 1})]), mcp)
        assert agent.run("go") == "done"
        assert action_steps(agent)[0].observations == "{'sum': 2}"
        assert isinstance(mcp.client, resilient_mcp.SyncClient)
        assert mcp.client.era == "modern"


# --- the adapter's own rules ---------------------------------------------------------------


def test_inputs_follow_smolagents_rules_and_names_become_identifiers() -> None:
    listed = Tool.model_validate(
        {
            "name": "get-weather",
            "description": "Weather.",
            "inputSchema": {
                "type": "object",
                "$defs": {"Unit": {"enum": ["c", "f"]}},
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"$ref": "#/$defs/Unit"},
                    "days": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                    "raw": {},
                },
                "required": ["city"],
            },
        }
    )
    tool = MCPTool(ResilientToolCollection(_Listed([listed])), resilient_mcp.ToolSpec.of(listed))
    assert tool.name == "get_weather"
    assert tool.spec.name == "get-weather"
    assert tool.description == "Weather."
    assert tool.inputs == {
        "city": {"type": "string", "description": ""},
        "unit": {"enum": ["c", "f"], "type": "string", "description": "", "nullable": True},
        "days": {
            "anyOf": [{"type": "integer"}, {"type": "null"}],
            "type": ["integer", "null"],
            "description": "",
            "nullable": True,
        },
        "raw": {"type": "any", "description": "", "nullable": True},
    }
    schema = get_tool_json_schema(tool)["function"]
    assert schema["name"] == "get_weather"
    assert schema["parameters"]["required"] == ["city"]


def test_calls_use_the_server_name_and_drop_nulls_the_schema_refuses() -> None:
    listed = Tool.model_validate(
        {
            "name": "get-weather",
            "inputSchema": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            },
        }
    )
    source = _Listed([listed])
    mcp = load_tools(source)
    (tool,) = mcp.tools
    assert tool(city="Paris", unit=None, sanitize_inputs_outputs=True) == "called"
    assert source.calls == [("get-weather", {"city": "Paris"})]


class OwnTool(SmolTool):  # type: ignore[misc]  # smolagents is untyped
    name = "own"
    description = "The agent's own tool."
    inputs: dict[str, Any] = {}  # noqa: RUF012 - smolagents' class attribute
    output_type = "string"

    def forward(self) -> str:
        return "own"


def test_refresh_keeps_the_agents_own_tools_and_unchanged_tool_objects() -> None:
    def listed(name: str) -> Tool:
        return Tool.model_validate({"name": name, "inputSchema": {"type": "object"}})

    source = _Listed([listed("a"), listed("b"), listed("a-b"), listed("a_b")])
    mcp = load_tools(source)
    # smolagents needs unique identifiers: "a-b" becomes "a_b", and the real "a_b" is left out.
    assert [(tool.name, tool.spec.name) for tool in mcp.tools][2:] == [("a_b", "a-b")]
    kept = {tool.name: tool for tool in mcp.tools}["b"]
    agent = agent_for(ScriptedModel(), mcp, tools=[*mcp.tools, OwnTool()])
    source.tools = [listed("b"), listed("c"), listed("own")]
    mcp.refresh_agent_tools(None, agent)
    assert list(agent.tools) == ["b", "own", "final_answer", "c"]
    assert agent.tools["b"] is kept  # same spec, same tool
    assert isinstance(agent.tools["own"], OwnTool)  # never replaced by a server's tool


def test_sources_the_collection_refuses() -> None:
    with pytest.raises(UsageError, match="sync"):
        ResilientToolCollection(resilient_mcp.Client("http://127.0.0.1:9/mcp"))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="options"):
        ResilientToolCollection(_Listed([]), timeouts=resilient_mcp.Timeouts(request=1))
    with pytest.raises(UsageError, match="collection of names"):
        ResilientToolCollection(_Listed([]), tool_filter="echo")
    with pytest.raises(UsageError, match="no tools loaded"):
        _ = ResilientToolCollection(_Listed([])).tools


def test_tool_filter_and_closed_collection() -> None:
    with serve(StrictServer()) as running:
        mcp = load_tools(running.url, tool_filter={"echo", "add"})
        assert sorted(tool.name for tool in mcp.tools) == ["add", "echo"]
        mcp.close()
        mcp.close()  # idempotent
        with pytest.raises(resilient_mcp.ClientClosed):
            mcp.get_tools()
        # The server saw the session end: the collection closed the client it owned.
        assert running.stats.sessions_terminated == 1


def test_results_map_to_smolagents_values() -> None:
    png = BytesIO()
    Image.new("RGB", (2, 2)).save(png, format="PNG")
    image = base64.b64encode(png.getvalue()).decode()
    pictured = CallToolResult.model_validate(
        {"content": [{"type": "image", "data": image, "mimeType": "image/png"}]}
    )
    picture = result_of(ToolOutcome.of_result("t", pictured))
    assert isinstance(picture, Image.Image)
    assert picture.size == (2, 2)
    mixed = CallToolResult.model_validate(
        {
            "content": [
                {"type": "text", "text": "look"},
                {"type": "audio", "data": image, "mimeType": "audio/wav"},
            ]
        }
    )
    assert result_of(ToolOutcome.of_result("t", mixed)).startswith("look\n[audio audio/wav")
    as_json = CallToolResult.model_validate({"content": [{"type": "text", "text": '{"a": 1}'}]})
    assert result_of(ToolOutcome.of_result("t", as_json)) == '{"a": 1}'  # text stays text
    structured = as_json.model_copy(update={"structuredContent": {"a": 1}})
    assert result_of(ToolOutcome.of_result("t", structured)) == {"a": 1}
    assert result_of(ToolOutcome.of_result("t", structured), structured_output=False) == '{"a": 1}'
    refused = ToolOutcome.of_error("t", resilient_mcp.ConnectError("refused"))
    with pytest.raises(MCPToolError, match="did not run, so nothing changed") as caught:
        result_of(refused)
    assert caught.value.execution is resilient_mcp.Execution.NOT_EXECUTED
    lost = ToolOutcome.of_error("t", resilient_mcp.ConnectionLost("cut"))
    assert "may or may not have run" in result_of(lost)


class _Listed:
    """A sync tool source of fixed tools, whose calls answer "called"."""

    def __init__(self, tools: list[Tool]) -> None:
        self.tools = tools
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def list_tools(self, *, timeout: Any = None) -> list[Tool]:
        return list(self.tools)

    def call_tool(self, name: str, arguments: Any = None, *, timeout: Any = None) -> CallToolResult:
        self.calls.append((name, dict(arguments or {})))
        return CallToolResult.model_validate({"content": [{"type": "text", "text": "called"}]})
