"""The smolagents adapter over a sync client group: two strict servers as one tool
source, given as a ``SyncClientGroup`` or as an ``mcpServers`` config the collection
turns into one. Names are namespaced, both members serve one agent run (in one step, in
parallel), and a member that is down leaves the other's tools loaded and callable."""

from __future__ import annotations

import threading
from typing import Any

import resilient_mcp
from resilient_mcp import ConnectError, MemberState, SyncClientGroup, ToolOutcome
from resilient_mcp.integrations.smolagents import MCPTool, load_tools
from resilient_mcp.testing import StrictServer, serve
from tests.integrations.smolagents.test_smolagents import (
    BOUND_S,
    ScriptedModel,
    action_steps,
    agent_for,
    no_threads_left,
)


def test_a_group_gives_namespaced_tools_both_members_serve_one_run() -> None:
    with (
        serve(StrictServer()) as one,
        serve(StrictServer(era="modern")) as two,
        resilient_mcp.connect_group_sync({"one": one.url, "two": two.url}) as group,
    ):
        mcp = load_tools(group)
        tools = {tool.name: tool for tool in mcp.tools}
        assert {"one__add", "one__echo", "two__add", "two__echo"} <= set(tools)
        spec = tools["two__increment"].spec
        assert (spec.name, spec.server, spec.original_name) == (
            "two__increment",
            "two",
            "increment",
        )
        assert all(isinstance(tool, MCPTool) for tool in mcp.tools)
        # ToolCallingAgent runs a step's calls in a thread pool: one call to each member
        # must be in flight at once to pass this barrier.
        barrier = threading.Barrier(2, timeout=BOUND_S)
        call = mcp.call

        def both_at_once(name: str, arguments: Any = None) -> ToolOutcome:
            barrier.wait()
            return call(name, arguments)

        mcp.call = both_at_once  # type: ignore[method-assign]
        model = ScriptedModel(
            [("one__add", {"a": 2, "b": 3}), ("two__increment", {"key": "k"})],
        )
        agent = agent_for(model, mcp)
        assert agent.run("go") == "done"
        first = action_steps(agent)[0]
        assert first.error is None
        assert first.observations.splitlines() == ["{'sum': 5}", "1"]
        assert "two__echo" in model.offered[0]
        mcp.close()  # a group given to the collection stays open
        assert group.call_tool("one__echo", {"text": "still"}).text == "still"
    assert (one.stats.tool_calls["add"], two.stats.executions["k"]) == (1, 1)
    assert one.stats.tool_calls["increment"] == 0  # each call went to its own member


def test_one_member_down_does_not_break_the_other() -> None:
    with serve(StrictServer()) as gone:
        down_url = gone.url  # stopped below: nothing listens there any more
    with (
        serve(StrictServer()) as up,
        resilient_mcp.connect_group_sync({"up": up.url, "down": down_url}) as group,
    ):
        assert group.status()["down"].state is MemberState.FAILED
        mcp = load_tools(group)
        names = {tool.name for tool in mcp.tools}
        assert "up__echo" in names
        assert not any(name.startswith("down__") for name in names)
        model = ScriptedModel(
            [("up__echo", {"text": "a"}), ("up__add", {"a": 1, "b": 1})],
            [("up__echo", {"text": "b"})],
        )
        agent = agent_for(model, mcp)
        assert agent.run("go") == "done"  # the step callbacks' listings skip the down one
        steps = action_steps(agent)
        assert [step.error for step in steps[:2]] == [None, None]
        assert steps[0].observations.splitlines() == ["a", "{'sum': 2}"]
        assert steps[1].observations == "b"
        # A call to the down member fails at once, certainly not run.
        outcome = mcp.call("down__echo", {"text": "x"})
        assert outcome.status == "not_executed"
        assert isinstance(outcome.error, ConnectError)
        assert mcp.unknown_effects == []
    assert up.stats.tool_calls["echo"] == 2


def test_an_mcp_servers_config_of_several_servers_becomes_an_owned_group() -> None:
    with serve(StrictServer()) as one, serve(StrictServer()) as two, no_threads_left():
        config = {"mcpServers": {"one": {"url": one.url}, "two": {"url": two.url}}}
        with load_tools(config) as mcp:
            assert isinstance(mcp.client, SyncClientGroup)
            names = {tool.name for tool in mcp.tools}
            assert {"one__echo", "two__echo"} <= names
            agent = agent_for(
                ScriptedModel([("one__echo", {"text": "x"}), ("two__echo", {"text": "y"})]), mcp
            )
            assert agent.run("go") == "done"
            assert action_steps(agent)[0].observations.splitlines() == ["x", "y"]
        # The collection owned the group: leaving the block closed both members.
        assert one.stats.sessions_terminated == two.stats.sessions_terminated == 1
        # One server in a config is still a single client, with the server's own names.
        single = {"mcpServers": {"one": {"url": one.url}}}
        with load_tools(single) as mcp:
            assert isinstance(mcp.client, resilient_mcp.SyncClient)
            assert "echo" in {tool.name for tool in mcp.tools}
