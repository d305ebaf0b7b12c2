"""The legacy HTTP+SSE transport (MCP 2024-11-05) against the fault server's SSE profile.

The tests that exercise the HTTP stack (a plain session, a user's client with hooks, a
restart mid-run, a refused endpoint) run on httpx and on httpx2."""

from __future__ import annotations

import importlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio
import httpx
import pytest

import resilient_mcp
from resilient_mcp import FateUnknown, Limits, ProtocolError, SessionState, Timeouts
from resilient_mcp._http_stack import HTTPStackName
from resilient_mcp.testing import Chaos, StrictServer, serve

pytestmark = pytest.mark.anyio

PROFILE: Final = "python-sdk-sse"
# Every test is bounded: a hang fails it instead of stalling the suite.
LIMIT_S = 20


def post_hook(method: str, count: int, reached: anyio.Event) -> Callable[[Any], Awaitable[None]]:
    """A request hook (httpx or httpx2): sets ``reached`` once ``count`` POSTs of
    ``method`` left."""
    seen = 0

    async def hook(request: Any) -> None:
        nonlocal seen
        if request.method != "POST":
            return
        if json.loads(request.content).get("method") == method:
            seen += 1
            if seen == count:
                reached.set()

    return hook


def accepted(
    hook: Callable[[httpx.Request], Awaitable[None]],
) -> Callable[[httpx.Response], Awaitable[None]]:
    """The same hook, run when the server has accepted the POST (its response is in)."""

    async def on_response(response: httpx.Response) -> None:
        await hook(response.request)

    return on_response


def client_of(stack: HTTPStackName, **options: Any) -> Any:
    """A user's ``AsyncClient`` of the stack under test."""
    return importlib.import_module(stack).AsyncClient(**options)


async def test_list_tools_call_tool_read_resource(http_stack: HTTPStackName) -> None:
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer(profile=PROFILE)) as running:
            assert running.url.endswith("/sse")
            async with resilient_mcp.connect(
                resilient_mcp.HTTPServer(running.url, transport="sse", http_stack=http_stack)
            ) as client:
                assert client.state is SessionState.READY
                assert client.session_id is not None  # the endpoint's session_id
                tools = await client.list_tools()
                assert "echo" in {tool.name for tool in tools}
                echoed = await client.call_tool("echo", {"text": "hello"})
                assert echoed.text == "hello"
                memo = await client.read_resource("memo://one")
                assert memo.contents[0].model_dump()["text"] == "First memo."
                assert client.stats.handshakes == 1
                # The transport's own ping after `initialized` never reaches the session.
                assert client.stats.unknown_responses == 0
            stats = running.stats
    assert stats.early_requests == 0
    assert stats.initialize_requests == 1
    assert stats.initialized_notifications == 1
    assert stats.requests["ping"] == 1


async def test_50_concurrent_calls() -> None:
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer(profile=PROFILE)) as running:
            texts: list[str] = []
            async with resilient_mcp.connect(
                resilient_mcp.HTTPServer(running.url, transport="sse")
            ) as client:

                async def call(i: int) -> None:
                    texts.append((await client.call_tool("echo", {"text": str(i)})).text)

                async with anyio.create_task_group() as tg:
                    for i in range(50):
                        tg.start_soon(call, i)
            stats = running.stats
    assert sorted(texts, key=int) == [str(i) for i in range(50)]
    assert stats.tool_calls["echo"] == 50
    assert stats.early_requests == 0


async def test_gate_holds_calls_until_initialized_is_delivered() -> None:
    """Calls made before the handshake finished wait in the gate; none reaches the server
    before its `notifications/initialized` was accepted."""
    server = StrictServer(profile=PROFILE, initialize_delay=0.2)
    with anyio.fail_after(LIMIT_S):
        async with serve(server) as running:
            texts: list[str] = []
            async with resilient_mcp.connect(
                resilient_mcp.HTTPServer(running.url, transport="sse"), wait_ready=False
            ) as client:
                assert client.state is not SessionState.READY

                async def call(i: int) -> None:
                    texts.append((await client.call_tool("echo", {"text": str(i)})).text)

                async with anyio.create_task_group() as tg:
                    for i in range(50):
                        tg.start_soon(call, i)
                assert client.stats.queued_peak == 50
                assert client.stats.handshakes == 1
            stats = running.stats
    assert len(texts) == 50
    assert stats.early_requests == 0
    assert stats.initialize_requests == 1


async def test_call_after_the_202_is_served_while_initialized_is_still_processed() -> None:
    """The Python SDK answers `initialized`'s POST with 202 before processing it, and
    gates requests on the `initialize` result (mcp >= 1.18), so a call sent on seeing the
    202 is served although `initialized` is still being processed."""
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer(profile=PROFILE, handshake_delay=0.2)) as running:
            async with resilient_mcp.connect(
                resilient_mcp.HTTPServer(running.url, transport="sse")
            ) as client:
                result = await client.call_tool("echo", {"text": "x"})
                assert result.text == "x"
            assert running.stats.early_requests == 0


async def test_restart_mid_run_makes_one_new_session_and_every_read_succeeds(
    http_stack: HTTPStackName,
) -> None:
    # Every POST takes a while at the server: the restart finds reads in flight.
    server = StrictServer(profile=PROFILE, chaos=Chaos(seed=1, latency=(0.02, 0.05)))
    all_sent = anyio.Event()
    hook = post_hook("resources/read", 100, all_sent)
    with anyio.fail_after(LIMIT_S), resilient_mcp.disable_backoff():
        async with (
            serve(server) as running,
            client_of(http_stack, event_hooks={"request": [hook]}) as http,
        ):
            async with resilient_mcp.connect(
                resilient_mcp.HTTPServer(running.url, transport="sse", http_client=http),
                limits=Limits(max_connections=100),
            ) as client:
                first_session = client.session_id
                texts: list[str] = []

                async def read() -> None:
                    result = await client.read_resource("memo://two")
                    texts.append(result.contents[0].model_dump()["text"])

                async with anyio.create_task_group() as tg:
                    for _ in range(100):
                        tg.start_soon(read)
                    await all_sent.wait()
                    await anyio.to_thread.run_sync(running.server.restart)
                assert client.session_id is not None
                assert client.session_id != first_session  # a new endpoint, a new session
                assert client.stats.recoveries == 1
                assert client.stats.handshakes == 2
                assert client.stats.retries >= 1  # the restart really hit calls in flight
            assert not http.is_closed  # a client we passed in is never closed for us
            stats = running.stats
    assert texts == ["Second memo."] * 100
    assert stats.restarts == 1
    assert stats.initialize_requests == 2
    assert stats.early_requests == 0


async def test_increment_in_flight_at_a_restart_runs_at_most_once() -> None:
    # Some calls are done, some run, some are still on their way when the restart hits.
    server = StrictServer(profile=PROFILE, chaos=Chaos(seed=2, latency=(0.0, 0.05)))
    half_accepted = anyio.Event()
    hook = post_hook("tools/call", 10, half_accepted)
    outcomes: dict[str, str] = {}
    with anyio.fail_after(LIMIT_S), resilient_mcp.disable_backoff():
        async with (
            serve(server) as running,
            httpx.AsyncClient(event_hooks={"response": [accepted(hook)]}) as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(running.url, transport="sse", http_client=http),
            ) as client,
        ):

            async def increment(key: str) -> None:
                try:
                    await client.call_tool("increment", {"key": key})
                except FateUnknown:
                    outcomes[key] = "unknown"
                else:
                    outcomes[key] = "ok"

            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(increment, f"k{i}")
                await half_accepted.wait()
                await anyio.to_thread.run_sync(running.server.restart)
            # The client recovered: a new call after the restart just works.
            after = await client.call_tool("increment", {"key": "after"})
            assert after.text
            assert client.stats.recoveries == 1
            executions = running.stats.executions
    assert len(outcomes) == 20
    assert max(executions.values()) == 1  # never twice
    for key, outcome in outcomes.items():
        if outcome == "ok":
            assert executions[key] == 1
    assert executions["after"] == 1


async def test_stream_closed_by_the_server_fails_pending_at_once_and_recovers(
    http_stack: HTTPStackName,
) -> None:
    """A request whose answer can only come on the lost stream fails at once (not after
    its timeout), and the next call goes out on a new session."""
    # A slow side effect (30 s, longer than this test's bound) was accepted (202) and is
    # running when the server restarts: only the lost stream could have carried its
    # answer, so the call fails at once, fate unknown, and is not re-sent.
    server = StrictServer(profile=PROFILE)
    accepted_event = anyio.Event()
    hook = post_hook("tools/call", 1, accepted_event)
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(server) as running,
            client_of(http_stack, event_hooks={"response": [accepted(hook)]}) as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(running.url, transport="sse", http_client=http),
                timeouts=Timeouts(request=LIMIT_S * 2),
            ) as client,
        ):
            failure: list[BaseException] = []

            async def call() -> None:
                try:
                    await client.call_tool("progress", {"steps": 1, "interval": 30})
                except FateUnknown as exc:
                    failure.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await accepted_event.wait()
                await anyio.to_thread.run_sync(running.server.restart)
            assert len(failure) == 1
            assert (await client.call_tool("echo", {"text": "again"})).text == "again"
            assert client.stats.recoveries == 1
    # Started, or still queued when the restart hit (then never run): never twice.
    assert running.stats.tool_calls["progress"] <= 1
    assert running.stats.tool_calls["echo"] == 1


async def test_endpoint_on_another_origin_is_refused(http_stack: HTTPStackName) -> None:
    lib = importlib.import_module(http_stack)

    def handler(request: Any) -> Any:
        assert request.method == "GET"
        body = b"event: endpoint\ndata: http://elsewhere.example/messages/?session_id=1\n\n"
        return lib.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    with anyio.fail_after(LIMIT_S):
        async with client_of(http_stack, transport=lib.MockTransport(handler)) as http:
            with pytest.raises(ProtocolError, match="different origin"):
                async with resilient_mcp.connect(
                    resilient_mcp.HTTPServer(
                        "http://127.0.0.1:1/sse", transport="sse", http_client=http
                    ),
                ):
                    pass


async def test_unknown_transport_is_a_usage_error() -> None:
    with pytest.raises(resilient_mcp.UsageError):
        resilient_mcp.HTTPServer("http://127.0.0.1:1/sse", transport="websocket")  # type: ignore[arg-type]
