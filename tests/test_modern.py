"""The modern era (2026-07-28) end to end, against the fault server's modern and dual eras,
and detection against every legacy profile (each answers the probe as its real server)."""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from typing import Any

import anyio
import httpx
import pytest
import structlog

import resilient_mcp
from resilient_mcp import (
    Handlers,
    InputRequiredError,
    Limits,
    RetryPolicy,
    ServerError,
)
from resilient_mcp._detection import default_cache, http_key
from resilient_mcp.testing import PROFILES, Chaos, StrictServer, serve
from resilient_mcp.types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    LoggingMessage,
    Root,
    TextContent,
)

pytestmark = pytest.mark.anyio

LIMIT_S = 20


async def _accept(params: ElicitRequestParams) -> ElicitResult:
    return ElicitResult(action="accept", content={"name": "Ada", "answer": params.message})


async def _sample(params: CreateMessageRequestParams) -> CreateMessageResult:
    return CreateMessageResult(
        role="assistant", content=TextContent(text="sampled"), model="test-model"
    )


async def _roots() -> list[Root]:
    return [Root(uri="file:///work", name="work")]


HANDLERS = Handlers(elicitation=_accept, sampling=_sample, roots=_roots)


async def test_modern_server_round_trip_and_no_handshake() -> None:
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer(era="modern")) as running,
            resilient_mcp.connect(running.url) as client,
        ):
            assert (client.era, client.transport) == ("modern", "streamable-http")
            assert client.protocol_version == "2026-07-28"
            assert client.session_id is None
            tools = {tool.name for tool in await client.list_tools()}
            assert {"echo", "route", "ask_user"} <= tools
            assert (await client.call_tool("echo", {"text": "hi"})).text == "hi"
            await client.ping()
            stats = running.stats
    assert stats.initialize_requests == 0
    assert stats.discover_requests == 2  # the probe, and the ping's stand-in
    assert stats.early_requests == 0


async def test_input_required_rounds_go_through_the_handlers() -> None:
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer(era="modern")) as running,
            resilient_mcp.connect(running.url, handlers=HANDLERS) as client,
        ):
            elicited = json.loads((await client.call_tool("elicit", {"message": "Name?"})).text)
            assert elicited["action"] == "accept"
            assert (await client.call_tool("sample", {"prompt": "hi"})).text == "sampled"
            roots = json.loads((await client.call_tool("list_roots", {})).text)
            assert roots == [{"uri": "file:///work", "name": "work"}]
            asked = await client.call_tool("ask_user", {"rounds": 3, "question": "Why?"})
            assert not asked.isError
            results = running.stats.input_required_results
    assert results == 1 + 1 + 1 + 3


async def test_state_only_rounds_back_off_with_the_injected_sleep() -> None:
    sleeps: list[float] = []

    async def record(delay: float) -> None:
        sleeps.append(delay)

    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer(era="modern")) as running,
            resilient_mcp.connect(running.url, retry=RetryPolicy(sleep=record)) as client,
        ):
            result = await client.call_tool("retry_later", {"times": 4})
            assert not result.isError
    assert sleeps == [0.05, 0.1, 0.2, 0.25]


async def test_missing_capability_is_refused_before_running() -> None:
    # No elicitation handler: we do not advertise it, and the server says so (-32021).
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer(era="modern")) as running,
            resilient_mcp.connect(running.url) as client,
        ):
            with pytest.raises(ServerError) as caught:
                await client.call_tool("ask_user", {"rounds": 1})
    assert caught.value.code == -32021
    assert caught.value.execution is resilient_mcp.Execution.NOT_EXECUTED


async def test_too_many_rounds_is_input_required_error() -> None:
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer(era="modern")) as running,
            resilient_mcp.connect(
                running.url, handlers=HANDLERS, limits=Limits(max_input_rounds=2)
            ) as client,
        ):
            with pytest.raises(InputRequiredError, match="after 2 rounds"):
                await client.call_tool("ask_user", {"rounds": 5})


async def test_mcp_param_header_is_sent_for_annotated_arguments() -> None:
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer(era="modern")) as running,
            resilient_mcp.connect(running.url) as client,
        ):
            await client.list_tools()  # the annotations come with the tool list
            result = await client.call_tool("route", {"region": "eu-west-1", "text": "x"})
            assert not result.isError, result.text
            # Without the list, the server's -32020 makes the client list and retry.
            async with resilient_mcp.connect(running.url) as fresh:
                again = await fresh.call_tool("route", {"region": "us", "text": "y"})
                assert not again.isError, again.text


async def test_log_level_travels_in_meta_and_logs_reach_the_handler() -> None:
    received: list[LoggingMessage] = []
    heard = anyio.Event()

    async def on_log(message: LoggingMessage) -> None:
        received.append(message)
        heard.set()

    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer(era="modern", json_response=False)) as running,
            resilient_mcp.connect(running.url, handlers=Handlers(log=on_log)) as client,
        ):
            await client.call_tool("log", {"message": "unheard", "level": "info"})
            await client.set_logging_level("info")
            await client.call_tool("log", {"message": "heard", "level": "info"})
            await heard.wait()
    # Without a level in _meta the server sends nothing; with one, the message comes on
    # the request's own stream (handlers see messages in the order they were sent).
    assert [m.data for m in received] == ["heard"]


async def test_listen_stream_invalidates_the_tool_cache_and_carries_updates() -> None:
    heard: list[tuple[str, Any]] = []
    tools_changed = anyio.Event()
    updated = anyio.Event()
    # The server's own signal that the stream with the subscription is open.
    acknowledged = anyio.Event()

    async def on_notification(method: str, params: Any) -> None:
        heard.append((method, params))
        if method == "notifications/tools/list_changed":
            tools_changed.set()
        if method == "notifications/resources/updated":
            updated.set()
        if method == "notifications/subscriptions/acknowledged" and params.get(
            "notifications", {}
        ).get("resourceSubscriptions"):
            acknowledged.set()

    server = StrictServer(era="modern")
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(server) as running,
            resilient_mcp.connect(
                running.url, handlers=Handlers(notification=on_notification)
            ) as client,
        ):
            await client.list_tools()
            await client.subscribe_resource("resource://counter")
            await acknowledged.wait()
            server.notify_tools_changed()
            server.notify_resource_updated("resource://counter")
            await tools_changed.wait()
            await updated.wait()
            assert client._catalog.cached is None  # the cache was dropped
            assert running.stats.subscriptions_opened >= 2


@pytest.mark.parametrize("profile", sorted(p for p in PROFILES if p != "python-sdk-sse"))
async def test_every_legacy_profile_is_detected_as_legacy_without_early_requests(
    profile: str,
) -> None:
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer(profile=profile)) as running:  # type: ignore[arg-type]
            for _ in range(2):
                async with resilient_mcp.connect(running.url) as client:
                    assert (client.era, client.transport) == ("legacy", "streamable-http")
                    assert (await client.call_tool("echo", {"text": "x"})).text == "x"
            stats = running.stats
    assert stats.early_requests == 0
    assert stats.discover_requests == 1  # the second connect skipped the probe
    assert stats.initialize_requests == 2


async def test_legacy_sse_server_is_reached_by_detection_and_remembered() -> None:
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer(profile="python-sdk-sse")) as running:
            sse_url = running.url
            async with resilient_mcp.connect(sse_url) as client:
                assert (client.era, client.transport) == ("legacy", "sse")
                assert (await client.call_tool("echo", {"text": "x"})).text == "x"
            async with resilient_mcp.connect(sse_url) as client:
                assert client.transport == "sse"
                await client.call_tool("echo", {"text": "y"})
            stats = running.stats
    # First connect: the probe and a Streamable HTTP initialize were refused (405);
    # the second went straight to the SSE stream.
    assert stats.discover_requests == 1
    assert stats.early_requests == 0


async def test_dual_server_speaks_modern_unless_legacy_is_forced() -> None:
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer(era="dual")) as running:
            async with resilient_mcp.connect(running.url) as client:
                assert client.era == "modern"
            async with resilient_mcp.connect(running.url, era="legacy") as client:
                assert client.era == "legacy"
                assert client.session_id is not None
                await client.call_tool("echo", {"text": "x"})
            assert running.stats.early_requests == 0


async def test_forcing_modern_against_a_legacy_server_fails_typed() -> None:
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as running:
            with pytest.raises(resilient_mcp.UnsupportedProtocolVersion, match="modern"):
                async with resilient_mcp.connect(running.url, era="modern"):
                    pass
            assert running.stats.initialize_requests == 0


async def test_server_redeployed_from_modern_to_legacy_is_followed() -> None:
    modern = StrictServer(era="modern", ttl_ms=60_000, cache_scope="public")
    with anyio.fail_after(LIMIT_S):
        async with serve(modern) as running:
            url = running.url
            async with resilient_mcp.connect(url) as client:
                assert client.era == "modern"
        # Same URL, now a legacy server (a new server bound to the same port is not
        # possible to guarantee, so the cache entry is moved to the new URL instead).
        async with serve(StrictServer()) as legacy:
            entry = default_cache.get(http_key(httpx.URL(url)))
            assert entry is not None
            default_cache.put(http_key(httpx.URL(legacy.url)), entry)
            async with resilient_mcp.connect(legacy.url) as client:
                # The cached public discover result skipped the probe; the first call met
                # a legacy server, which told us (no session) and was detected anew.
                assert (await client.call_tool("echo", {"text": "x"})).text == "x"
                assert client.era == "legacy"
            assert legacy.stats.early_requests == 0


async def test_modern_idempotent_calls_survive_chaos() -> None:
    chaos = Chaos(seed=7, reject_rate=0.2, retry_after=None, drop_rate=0.1)

    async def no_sleep(delay: float) -> None:
        pass

    policy = RetryPolicy(attempts=10, sleep=no_sleep)
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer(era="modern", chaos=chaos)) as running,
            resilient_mcp.connect(running.url, retry=policy) as client,
        ):
            for i in range(40):
                result = await client.call_tool("echo", {"text": str(i)}, idempotent=True)
                assert result.text == str(i)
            assert client.stats.retries > 0
            assert running.stats.faults


async def test_legacy_subscriptions_are_renewed_on_a_new_session() -> None:
    updated = anyio.Event()
    renewed = anyio.Event()
    subscribes = 0

    def watch(logger: Any, name: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        # The client's own log says when the renewal went through: wait on that event.
        nonlocal subscribes
        if event.get("event") == "request.ok" and event.get("method") == "resources/subscribe":
            subscribes += 1
            if subscribes == 2:
                renewed.set()
        raise structlog.DropEvent

    async def on_notification(method: str, params: Any) -> None:
        if method == "notifications/resources/updated":
            updated.set()

    server = StrictServer()
    logger = structlog.wrap_logger(None, processors=[watch])
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(server) as running,
            resilient_mcp.connect(
                running.url,
                era="legacy",
                logger=logger,
                handlers=Handlers(notification=on_notification),
            ) as client,
        ):
            await client.subscribe_resource("resource://counter")
            server.restart()  # every session is gone, subscriptions with them
            await client.call_tool("echo", {"text": "x"})  # finds out, new session
            assert client.stats.recoveries == 1
            await renewed.wait()
            server.notify_resource_updated("resource://counter")
            await updated.wait()


async def test_forced_era_neither_reads_nor_writes_the_cache() -> None:
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer(era="dual")) as running:
            async with resilient_mcp.connect(running.url, era="legacy") as client:
                assert client.era == "legacy"
            assert default_cache.get(http_key(httpx.URL(running.url))) is None
            async with resilient_mcp.connect(running.url) as client:
                assert client.era == "modern"  # not misled by the forced legacy client


async def test_an_outage_keeps_the_cached_detection() -> None:
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as running:
            url = running.url
            async with resilient_mcp.connect(url) as client:
                assert client.era == "legacy"
        # The server is gone: connecting fails, but says nothing about its era.
        with pytest.raises(resilient_mcp.ConnectError):
            async with resilient_mcp.connect(url, retry=RetryPolicy(attempts=1)):
                pass
        entry = default_cache.get(http_key(httpx.URL(url)))
        assert entry is not None
        assert entry.era == "legacy"
