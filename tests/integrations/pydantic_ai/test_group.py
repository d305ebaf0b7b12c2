"""The pydantic-ai adapter over a real ClientGroup of two StrictServers, driven by
pydantic-ai's own FunctionModel."""

from __future__ import annotations

import json
import socket
from typing import Any

import anyio
import httpx
import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

import resilient_mcp
from resilient_mcp.integrations.pydantic_ai import CallToolFunc, ResilientToolset
from resilient_mcp.testing import StrictServer, serve

# pydantic-ai's Agent runs on asyncio only (it calls asyncio.create_task in its run loop).
pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

LIMIT_S = 60  # a guard against hangs only
TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mcp"


def script(
    calls: list[tuple[str, dict[str, Any]]], seen: list[set[str]] | None = None
) -> FunctionModel:
    """A model that makes ``calls`` in one step (in parallel), then answers; it records
    the tool names it was shown at each step in ``seen``."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if seen is not None:
            seen.append({tool.name for tool in info.function_tools})
        if not any(isinstance(m, ModelResponse) for m in messages):
            return ModelResponse(
                parts=[ToolCallPart(n, a, tool_call_id=f"c{i}") for i, (n, a) in enumerate(calls)]
            )
        return ModelResponse(parts=[TextPart("done")])

    return FunctionModel(respond)


def first_step(result: Any) -> dict[str, Any]:
    """The parts answering the model's first step (returns and retries), by tool name."""
    parts: dict[str, Any] = {}
    for message in result.all_messages():
        for part in getattr(message, "parts", []):
            if part.part_kind in ("tool-return", "retry-prompt"):
                parts.setdefault(part.tool_name, part)
    return parts


async def test_the_model_sees_both_servers_and_calls_one_tool_of_each() -> None:
    seen: list[set[str]] = []
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer()) as one,
            serve(StrictServer(era="modern")) as two,
            resilient_mcp.connect_group({"one": one.url, "two": two.url}) as group,
        ):
            toolset: ResilientToolset[Any] = ResilientToolset(group)
            model = script([("one__increment", {"key": "k"}), ("two__add", {"a": 2, "b": 3})], seen)
            result = await Agent(model, toolsets=[toolset]).run("go")
            # The toolset never closes a group it was given.
            assert (await group.call_tool("two__echo", {"text": "open"})).text == "open"
            counts = one.stats.executions["k"], two.stats.executions["k"]
    assert {"one__echo", "one__increment", "two__echo", "two__add"} <= seen[0]
    parts = first_step(result)
    assert parts["one__increment"].outcome == parts["two__add"].outcome == "success"
    assert parts["two__add"].content == {"sum": 5}
    assert counts == (1, 0)  # each call reached its own server


async def test_a_member_that_goes_down_is_a_retry_prompt_and_the_other_answers() -> None:
    # `never` is a refused port from the start: the group leaves it out of every listing,
    # so the model never sees its tools. `gone` goes down between the step's listing and
    # its calls: its server stops and the group loses its connection (a stopped HTTP
    # server alone would be retried, refused, until the default 60 s deadline).
    seen: list[set[str]] = []
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as up:
            gone_server = serve(StrictServer())
            gone = await gone_server.__aenter__()
            servers = {"up": up.url, "gone": gone.url, "never": closed_port_url()}
            async with resilient_mcp.connect_group(servers) as group:

                async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
                    seen.append({tool.name for tool in info.function_tools})
                    if len(seen) > 1:
                        return ModelResponse(parts=[TextPart("done")])
                    await gone_server.__aexit__(None, None, None)
                    await group["gone"].aclose()
                    calls = [("up__echo", {"text": "hi"}), ("gone__echo", {"text": "x"})]
                    return ModelResponse(
                        parts=[
                            ToolCallPart(n, a, tool_call_id=f"c{i}")
                            for i, (n, a) in enumerate(calls)
                        ]
                    )

                toolset: ResilientToolset[Any] = ResilientToolset(group)
                result = await Agent(FunctionModel(respond), toolsets=[toolset]).run("go")
                states = {name: s.state for name, s in group.status().items()}
                still = await group.call_tool("up__echo", {"text": "still"})
    assert {"up__echo", "gone__echo"} <= seen[0]
    assert not any(name.startswith("never__") for name in seen[0])
    parts = first_step(result)
    assert (parts["up__echo"].outcome, parts["up__echo"].content) == ("success", "hi")
    refused = parts["gone__echo"]
    # not_executed is ModelRetry (safe to repeat), never the terminal ToolFailed.
    assert refused.outcome == "retried"
    assert refused.retry is not None
    assert refused.retry.cause == "model_retry"
    assert "did not run" in str(refused.content)
    assert "server 'gone'" in str(refused.content)
    # Down, never ready: FAILED, or CONNECTING when the second step's listing already
    # began the lazy reconnect (its not-before time passes sooner on a slow machine).
    down = {resilient_mcp.MemberState.FAILED, resilient_mcp.MemberState.CONNECTING}
    assert states["gone"] in down
    assert states["never"] in down
    assert still.text == "still"


async def test_tool_prefix_composes_with_an_unprefixed_group() -> None:
    only_two = StrictServer()
    only_two.add_tool("lookup", description="Only on two.", text="from two")
    seen: list[set[str]] = []
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer()) as one,
            serve(only_two) as two,
            resilient_mcp.connect_group({"one": one.url, "two": two.url}, prefix=False) as group,
        ):
            toolset: ResilientToolset[Any] = ResilientToolset(group, tool_prefix="mcp")
            model = script([("mcp_lookup", {}), ("mcp_increment", {"key": "k"})], seen)
            result = await Agent(model, toolsets=[toolset]).run("go")
            counts = one.stats.executions["k"], two.stats.executions["k"]
    names = seen[0]
    assert {"mcp_lookup", "mcp_echo", "mcp_increment"} <= names
    assert all(name.startswith("mcp_") for name in names)
    # The second server's `echo` is not merged into the first's: it has a suffix.
    assert len([n for n in names if n.startswith("mcp_echo")]) == 2
    parts = first_step(result)
    assert parts["mcp_lookup"].content == "from two"
    assert parts["mcp_increment"].outcome == "success"
    assert counts == (1, 0)  # a shared name stays the first member's


async def test_process_tool_call_metadata_is_the_requests_meta() -> None:
    sent: list[tuple[int | None, dict[str, Any]]] = []

    async def capture(request: httpx.Request) -> None:
        if request.method == "POST":
            body = json.loads(request.content)
            if body.get("method") == "tools/call":
                sent.append((request.url.port, body["params"]))

    async def hook(ctx: Any, call: CallToolFunc, name: str, args: dict[str, Any]) -> Any:
        return await call(name, args, metadata=TRACE)

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
            toolset: ResilientToolset[Any] = ResilientToolset(group, process_tool_call=hook)
            model = script([("one__echo", {"text": "a"}), ("two__echo", {"text": "b"})])
            result = await Agent(model, toolsets=[toolset]).run("go")
    parts = first_step(result)
    assert [parts[n].content for n in ("one__echo", "two__echo")] == ["a", "b"]
    assert len(sent) == 2
    by_port = dict(sent)
    assert by_port.keys() == {one.port, two.port}
    for params in by_port.values():
        assert params["_meta"]["traceparent"] == TRACE["traceparent"]
