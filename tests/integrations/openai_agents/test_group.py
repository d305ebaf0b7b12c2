"""The openai-agents adapter over a real ClientGroup of two StrictServers, driven by the
SDK's ScriptedModel (asyncio only: the SDK's run loop)."""

from __future__ import annotations

import json
import socket
from typing import Any

import anyio
import httpx
import pytest
from agents.mcp import MCPToolMetaContext
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call

import resilient_mcp
from resilient_mcp.integrations.openai_agents import (
    ResilientMCPServer,
    is_terminal,
    stop_on_unknown_effect,
)
from resilient_mcp.testing import StrictServer, serve

from .helpers import LIMIT_S, agent, offered, outputs, run, status, text

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mcp"


def by_call(result: Any) -> dict[str, Any]:
    """The tool output items of a run, by call id."""
    items: dict[str, Any] = {}
    for item in outputs(result):
        raw: Any = item.raw_item
        items[str(raw["call_id"])] = item
    return items


async def test_the_model_sees_both_servers_and_calls_one_tool_of_each() -> None:
    model = ScriptedModel(
        [
            [
                function_call("one__increment", {"key": "k"}, call_id="c1"),
                function_call("two__add", {"a": 2, "b": 3}, call_id="c2"),
            ],
            [assistant_message("done")],
        ]
    )
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer()) as one,
            serve(StrictServer(era="modern")) as two,
            resilient_mcp.connect_group({"one": one.url, "two": two.url}) as group,
        ):
            server = ResilientMCPServer(group, use_structured_content=True)
            await server.connect()
            result = await run(agent(model, server))
            await server.cleanup()  # never closes a group it was given
            assert (await group.call_tool("two__echo", {"text": "open"})).text == "open"
            counts = one.stats.executions["k"], two.stats.executions["k"]
    assert {"one__echo", "one__increment", "two__echo", "two__add"} <= offered(model.calls[0])
    items = by_call(result)
    assert [status(items[c]) for c in ("c1", "c2")] == ["ok", "ok"]
    assert json.loads(text(items["c2"])) == {"sum": 5}
    assert counts == (1, 0)  # each call reached its own server
    assert result.final_output == "done"


async def test_a_member_that_goes_down_is_an_error_result_never_the_terminal_path() -> None:
    # `never` is a refused port from the start: the group leaves it out of every listing.
    # `gone` goes down between the step's listing and its calls: its server stops and the
    # group loses its connection (a stopped HTTP server alone would be retried, refused,
    # until the default 60 s deadline).
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as up:
            gone_server = serve(StrictServer())
            gone = await gone_server.__aenter__()
            servers = {"up": up.url, "gone": gone.url, "never": closed_port_url()}
            async with resilient_mcp.connect_group(servers) as group:

                async def first(call: ModelCall) -> list[Any]:
                    await gone_server.__aexit__(None, None, None)
                    await group["gone"].aclose()
                    return [
                        function_call("up__echo", {"text": "hi"}, call_id="c1"),
                        function_call("gone__echo", {"text": "x"}, call_id="c2"),
                    ]

                model = ScriptedModel([ModelStep.respond(first), [assistant_message("done")]])
                server = ResilientMCPServer(group)
                runner = agent(model, server, tool_use_behavior=stop_on_unknown_effect)
                result = await run(runner)
                state = group.status()["gone"].state
                still = await group.call_tool("up__echo", {"text": "still"})
    names = offered(model.calls[0])
    assert {"up__echo", "gone__echo"} <= names
    assert not any(name.startswith("never__") for name in names)
    items = by_call(result)
    assert (status(items["c1"]), text(items["c1"])) == ("ok", "hi")
    assert status(items["c2"]) == "not_executed"
    assert "did not run" in text(items["c2"])
    assert "server 'gone'" in text(items["c2"])
    assert not is_terminal(items["c2"])
    assert result.final_output == "done"  # the model had its next turn
    # Down, never ready: FAILED, or CONNECTING when a later listing already began the
    # lazy reconnect (its not-before time passes sooner on a slow machine).
    assert state in {resilient_mcp.MemberState.FAILED, resilient_mcp.MemberState.CONNECTING}
    assert still.text == "still"


async def test_server_names_in_tool_names_compose_with_an_unprefixed_group() -> None:
    only_two = StrictServer()
    only_two.add_tool("lookup", description="Only on two.", text="from two")
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer()) as one,
            serve(only_two) as two,
            resilient_mcp.connect_group({"one": one.url, "two": two.url}, prefix=False) as group,
        ):
            server = ResilientMCPServer(group, name="tools")
            listed = [tool.name for tool in await server.list_tools()]
            model = ScriptedModel(
                [
                    [
                        function_call("mcp_tools__lookup", {}, call_id="c1"),
                        function_call("mcp_tools__increment", {"key": "k"}, call_id="c2"),
                    ],
                    [assistant_message("done")],
                ]
            )
            runner = agent(model, server, mcp_config={"include_server_in_tool_names": True})
            result = await run(runner)
            counts = one.stats.executions["k"], two.stats.executions["k"]
    names = offered(model.calls[0])
    assert names == {f"mcp_tools__{name}" for name in listed}
    assert "lookup" in listed
    # The second server's `echo` is not merged into the first's: it has a suffix.
    assert len([name for name in listed if name.startswith("echo")]) == 2
    items = by_call(result)
    assert (status(items["c1"]), text(items["c1"])) == ("ok", "from two")
    assert status(items["c2"]) == "ok"
    assert counts == (1, 0)  # a shared name stays the first member's


async def test_request_meta_reaches_the_members_server() -> None:
    sent: list[tuple[int | None, dict[str, Any]]] = []

    async def capture(request: httpx.Request) -> None:
        if request.method == "POST":
            body = json.loads(request.content)
            if body.get("method") == "tools/call":
                sent.append((request.url.port, body["params"]))

    resolved: list[str] = []

    def resolver(context: MCPToolMetaContext) -> dict[str, Any]:
        resolved.append(context.tool_name)
        return {**TRACE, "tool": context.tool_name}

    model = ScriptedModel(
        [[function_call("two__echo", {"text": "b"}, call_id="c1")], [assistant_message("done")]]
    )
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer()) as one,
            serve(StrictServer(era="modern")) as two,
            httpx.AsyncClient(event_hooks={"request": [capture]}) as http,
            resilient_mcp.connect_group(
                {
                    "one": resilient_mcp.HTTPServer(one.url, http_client=http),
                    "two": resilient_mcp.HTTPServer(two.url, http_client=http),
                }
            ) as group,
        ):
            server = ResilientMCPServer(group, tool_meta_resolver=resolver)
            direct = await server.call_tool("one__echo", {"text": "a"}, meta={"tenant": "t1"})
            result = await run(agent(model, server))
    assert direct.model_dump(by_alias=True).get("isError") is not True
    assert status(by_call(result)["c1"]) == "ok"
    assert resolved == ["two__echo"]
    assert len(sent) == 2
    (port_a, params_a), (port_b, params_b) = sent
    assert (port_a, params_a["name"], params_a["_meta"]["tenant"]) == (one.port, "echo", "t1")
    assert (port_b, params_b["name"]) == (two.port, "echo")  # the member's own name
    assert params_b["_meta"]["traceparent"] == TRACE["traceparent"]
    assert params_b["_meta"]["tool"] == "two__echo"
