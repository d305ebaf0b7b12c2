"""The Google ADK adapter over a real ClientGroup of two StrictServers, driven by ADK's
MockModel in an InMemoryRunner as in test_google_adk.py (asyncio only)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from google.adk.agents import LlmAgent
from google.adk.apps.app import App
from google.adk.models.llm_request import LlmRequest
from google.adk.runners import InMemoryRunner

import resilient_mcp
from resilient_mcp.integrations.google_adk import ResilientToolset
from resilient_mcp.testing import StrictServer, serve

from .test_google_adk import LIMIT_S, free_port, invoke, mock, responses, run, step, texts

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


async def test_the_model_sees_both_servers_and_calls_one_tool_of_each() -> None:
    model = mock(step(("one__increment", {"key": "k"}), ("two__add", {"a": 2, "b": 3})))
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer()) as one,
            serve(StrictServer(era="modern")) as two,
            resilient_mcp.connect_group({"one": one.url, "two": two.url}) as group,
        ):
            events = await run(ResilientToolset(group), model)
            # The runner closed the toolset: a group it was given stays open.
            assert (await group.call_tool("two__echo", {"text": "open"})).text == "open"
            counts = one.stats.executions["k"], two.stats.executions["k"]
    offered = model.requests[0].tools_dict
    assert {"one__echo", "one__increment", "two__echo", "two__add"} <= set(offered)
    got = responses(events)
    assert got["one__increment"]["isError"] is False
    assert got["two__add"]["structuredContent"] == {"sum": 5}
    assert counts == (1, 0)  # each call reached its own server
    assert events[-1].is_final_response()


async def test_a_member_that_goes_down_is_an_error_dict_and_the_other_answers() -> None:
    # `never` is a refused port from the start: the group leaves it out of every listing.
    # `gone` goes down between the step's listing and its calls (in ADK's own
    # before_model_callback): its server stops and the group loses its connection (a
    # stopped HTTP server alone would be retried, refused, until the default 60 s deadline).
    model = mock(step(("up__echo", {"text": "hi"}), ("gone__echo", {"text": "x"})))
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as up:
            gone_server = serve(StrictServer())
            gone = await gone_server.__aenter__()
            never = f"http://127.0.0.1:{free_port()}/mcp"
            servers = {"up": up.url, "gone": gone.url, "never": never}
            async with resilient_mcp.connect_group(servers) as group:
                stopped: list[bool] = []

                async def before_model(callback_context: Any, llm_request: LlmRequest) -> None:
                    if not stopped:
                        stopped.append(True)
                        await gone_server.__aexit__(None, None, None)
                        await group["gone"].aclose()

                agent = LlmAgent(
                    name="agent",
                    model=model,
                    tools=[ResilientToolset(group, stop_on_unknown_effect=True)],
                    before_model_callback=before_model,
                )
                async with InMemoryRunner(app=App(name="app", root_agent=agent)) as runner:
                    events = await invoke(runner)
                state = group.status()["gone"].state
                still = await group.call_tool("up__echo", {"text": "still"})
    offered = set(model.requests[0].tools_dict)
    assert {"up__echo", "gone__echo"} <= offered
    assert not any(name.startswith("never__") for name in offered)
    got = responses(events)
    assert texts(got["up__echo"]) == ["hi"]
    refused = got["gone__echo"]
    assert refused["status"] == "not_executed"
    assert "did not run" in refused["error"]
    assert "server 'gone'" in refused["error"]
    # Not the terminal path: the model was asked again and answered.
    assert len(model.requests) == 2
    assert events[-1].is_final_response()
    # Down, never ready: FAILED, or CONNECTING when a later listing already began the
    # lazy reconnect (its not-before time passes sooner on a slow machine).
    assert state in {resilient_mcp.MemberState.FAILED, resilient_mcp.MemberState.CONNECTING}
    assert still.text == "still"


async def test_tool_name_prefix_composes_with_an_unprefixed_group() -> None:
    only_two = StrictServer()
    only_two.add_tool("lookup", description="Only on two.", text="from two")
    model = mock(step(("mcp_lookup", {}), ("mcp_increment", {"key": "k"})))
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer()) as one,
            serve(only_two) as two,
            resilient_mcp.connect_group({"one": one.url, "two": two.url}, prefix=False) as group,
        ):
            events = await run(ResilientToolset(group, tool_name_prefix="mcp"), model)
            counts = one.stats.executions["k"], two.stats.executions["k"]
    offered = set(model.requests[0].tools_dict)
    assert {"mcp_lookup", "mcp_echo", "mcp_increment"} <= offered
    assert all(name.startswith("mcp_") for name in offered)
    assert len([name for name in offered if name.startswith("mcp_echo")]) == 2  # never merged
    got = responses(events)
    assert texts(got["mcp_lookup"]) == ["from two"]
    assert got["mcp_increment"]["isError"] is False
    assert counts == (1, 0)  # a shared name stays the first member's
