"""The fault server: each profile fails a naive client its own way; each chaos knob works.

A "naive client" here is raw httpx that fires `notifications/initialized` and a
`tools/call` at the same time, or calls a tool without a session. A server-side
`handshake_delay` keeps the notification in processing while the call arrives, so the
race always goes the same way. Only the profiles whose real server gates on
`initialized` (rmcp <= 1.3, Java, LSP-style) fail that race: the Python SDK (>= 1.18),
go-sdk and the TypeScript transport gate on the `initialize` result, so they serve it.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any, cast

import anyio
import httpx
import pytest

from resilient_mcp.testing import PROFILES, Chaos, RunningServer, StrictServer, serve

pytestmark = pytest.mark.anyio

JSON = dict[str, Any]

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
# Long enough that a request fired together with `initialized` is processed first.
RACE_DELAY = 0.15


# -- raw protocol helpers ------------------------------------------------------------


def request(method: str, params: JSON | None = None, request_id: int | str = 1) -> JSON:
    message: JSON = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def tool_call(name: str, request_id: int | str = 1, **arguments: Any) -> JSON:
    return request("tools/call", {"name": name, "arguments": arguments}, request_id)


INITIALIZE = request(
    "initialize",
    {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "naive-httpx", "version": "0"},
    },
    request_id=0,
)
INITIALIZED: JSON = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def headers_for(session_id: str | None, **extra: str) -> dict[str, str]:
    headers = dict(HEADERS)
    if session_id is not None:
        headers["Mcp-Session-Id"] = session_id
        headers["MCP-Protocol-Version"] = "2025-11-25"
    headers.update(extra)
    return headers


async def post(
    client: httpx.AsyncClient, url: str, message: JSON, session_id: str | None = None
) -> httpx.Response:
    return await client.post(url, content=json.dumps(message), headers=headers_for(session_id))


async def open_session(client: httpx.AsyncClient, url: str) -> str:
    """`initialize` only: the session exists but is not initialized."""
    response = await post(client, url, INITIALIZE)
    assert response.status_code == 200
    return response.headers["mcp-session-id"]


async def handshake(client: httpx.AsyncClient, url: str) -> str:
    session_id = await open_session(client, url)
    assert (await post(client, url, INITIALIZED, session_id)).status_code == 202
    return session_id


async def naive_race(
    client: httpx.AsyncClient, url: str, session_id: str, message: JSON
) -> tuple[httpx.Response, httpx.Response]:
    """Fire `initialized` and `message` concurrently; (ack, answer)."""
    responses: dict[str, httpx.Response] = {}

    async def fire(key: str, body: JSON) -> None:
        responses[key] = await post(client, url, body, session_id)

    async with anyio.create_task_group() as tg:
        tg.start_soon(fire, "ack", INITIALIZED)
        tg.start_soon(fire, "answer", message)
    return responses["ack"], responses["answer"]


def parse_event(lines: list[str]) -> dict[str, str]:
    event: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        event[name] = value.removeprefix(" ")
    return event


@asynccontextmanager
async def event_lines(response: httpx.Response) -> AsyncIterator[AsyncIterator[str]]:
    """The response's lines, closed on exit even if not read to the end."""
    lines = cast(AsyncGenerator[str, None], response.aiter_lines())
    try:
        yield lines
    finally:
        await lines.aclose()


async def next_event(lines: AsyncIterator[str]) -> dict[str, str]:
    """The next SSE event from an httpx line iterator."""
    buffered: list[str] = []
    async for line in lines:
        if line == "":
            if buffered:
                return parse_event(buffered)
            continue
        buffered.append(line)
    raise AssertionError("the stream ended")


async def read_to_end(lines: AsyncIterator[str]) -> None:
    async for _ in lines:
        pass


async def all_events(response: httpx.Response) -> list[dict[str, str]]:
    events: list[dict[str, str]] = []
    buffered: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if buffered:
                events.append(parse_event(buffered))
            buffered = []
        else:
            buffered.append(line)
    return events


def data_of(event: dict[str, str]) -> JSON:
    message: JSON = json.loads(event["data"])
    return message


@asynccontextmanager
async def running(server: StrictServer) -> AsyncIterator[tuple[RunningServer, httpx.AsyncClient]]:
    with anyio.fail_after(10):
        async with serve(server) as live, httpx.AsyncClient(timeout=5) as client:
            yield live, client


# -- profiles: a naive client fails in each profile's exact way ------------------------


async def test_python_sdk_2_is_the_default_and_keeps_the_session(anyio_backend: str) -> None:
    server = StrictServer(handshake_delay=RACE_DELAY)
    assert server.profile == "python-sdk-2"
    async with running(server) as (live, client):
        session_id = await open_session(client, live.url)
        ack, answer = await naive_race(client, live.url, session_id, tool_call("increment"))
        assert ack.status_code == 202
        # mcp 2.x gates on the `initialize` result (`initialize_accepted`): served.
        assert answer.status_code == 200
        assert answer.json()["result"]["content"][0]["text"] == "1"
        again = await post(client, live.url, tool_call("increment"), session_id)
        assert again.json()["result"]["content"][0]["text"] == "2"

        # No session: a 400 whose session id names a session already discarded.
        missing = await post(client, live.url, tool_call("increment"))
        assert missing.status_code == 400
        assert missing.json() == {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32600, "message": "Bad Request: Missing session ID"},
        }
        discarded = missing.headers["mcp-session-id"]
        gone = await post(client, live.url, tool_call("increment"), discarded)
        assert gone.status_code == 404
        assert gone.json()["error"] == {"code": -32600, "message": "Session not found"}
        assert live.stats.early_requests == 0
        assert live.stats.tool_calls["increment"] == 2


async def test_python_sdk_trap_session(anyio_backend: str) -> None:
    server = StrictServer(profile="python-sdk", handshake_delay=RACE_DELAY)
    async with running(server) as (live, client):
        session_id = await open_session(client, live.url)
        _, answer = await naive_race(client, live.url, session_id, tool_call("increment"))
        # mcp >= 1.18 sets Initialized right after the `initialize` response: served.
        assert answer.json()["result"]["isError"] is False
        # 1.x answers unserved methods with the same -32602, whatever the state.
        unknown = await post(client, live.url, request("no/such"), session_id)
        assert unknown.json()["error"]["code"] == -32602

        missing = await post(client, live.url, tool_call("increment"))
        assert missing.status_code == 400
        assert missing.json() == {
            "jsonrpc": "2.0",
            "id": "server-error",
            "error": {"code": -32600, "message": "Bad Request: Missing session ID"},
        }
        # The trap: the header names a live session that was never initialized.
        trap = missing.headers["mcp-session-id"]
        trapped = await post(client, live.url, tool_call("increment"), trap)
        assert trapped.status_code == 200
        assert trapped.json()["error"] == {
            "code": -32602,
            "message": "Invalid request parameters",
            "data": "",
        }
        assert live.stats.early_requests == 1
        assert live.stats.tool_calls["increment"] == 1


async def test_rmcp_legacy_early_request_kills_the_session(anyio_backend: str) -> None:
    server = StrictServer(profile="rmcp-legacy", handshake_delay=RACE_DELAY)
    async with running(server) as (live, client):
        session_id = await open_session(client, live.url)
        _, answer = await naive_race(client, live.url, session_id, tool_call("increment"))
        assert answer.status_code == 500
        assert answer.headers["content-type"].startswith("text/plain")
        assert answer.text.startswith("Encounter an error when ")
        # Dead for good.
        later = await post(client, live.url, request("tools/list"), session_id)
        assert later.status_code == 404
        assert later.headers["content-type"].startswith("text/plain")
        assert later.text == "Not Found: Session not found"

        missing = await post(client, live.url, tool_call("increment"))
        assert missing.status_code == 422
        assert missing.headers["content-type"].startswith("text/plain")
        assert missing.text == "Unexpected message, expect initialize request"
        assert live.stats.tool_calls["increment"] == 0
        assert live.stats.sessions_terminated == 1


async def test_typescript_400_and_404(anyio_backend: str) -> None:
    not_initialized = (
        b'{"jsonrpc":"2.0","error":{"code":-32000,'
        b'"message":"Bad Request: Server not initialized"},"id":null}'
    )
    server = StrictServer(profile="typescript", handshake_delay=RACE_DELAY)
    async with running(server) as (live, client):
        session_id = await open_session(client, live.url)
        _, answer = await naive_race(client, live.url, session_id, tool_call("increment"))
        # The transport's `_initialized` is set by the initialize POST itself and
        # `Protocol` has no gate: served.
        assert answer.status_code == 200
        assert answer.json()["result"]["isError"] is False
        ok = await post(client, live.url, tool_call("increment"), session_id)
        assert ok.json()["result"]["isError"] is False

        missing = await post(client, live.url, tool_call("increment"))
        assert missing.status_code == 400
        assert missing.content == not_initialized
        unknown = await post(client, live.url, tool_call("increment"), "stale")
        assert unknown.status_code == 404
        assert unknown.json() == {
            "jsonrpc": "2.0",
            "error": {"code": -32001, "message": "Session not found"},
            "id": None,
        }
        assert live.stats.tool_calls["increment"] == 2
        assert live.stats.early_requests == 0


async def test_typescript_example_stale_session_is_a_400(anyio_backend: str) -> None:
    server = StrictServer(profile="typescript-example", handshake_delay=RACE_DELAY)
    async with running(server) as (live, client):
        session_id = await open_session(client, live.url)
        _, answer = await naive_race(client, live.url, session_id, tool_call("increment"))
        assert answer.status_code == 200
        assert answer.json()["result"]["isError"] is False
        deleted = await client.delete(live.url, headers=headers_for(session_id))
        assert deleted.status_code == 200
        stale = await post(client, live.url, tool_call("increment"), session_id)
        assert stale.status_code == 400  # not the 404 the spec asks for
        assert stale.json() == {
            "jsonrpc": "2.0",
            "error": {"code": -32000, "message": "Bad Request: No valid session ID provided"},
            "id": None,
        }
        missing = await post(client, live.url, tool_call("increment"))
        assert missing.status_code == 400
        assert missing.json()["error"]["code"] == -32000


@pytest.mark.parametrize("profile", ["go", "docker-gateway"])
async def test_go_in_band_code_0(anyio_backend: str, profile: Any) -> None:
    server = StrictServer(profile=profile, handshake_delay=RACE_DELAY)
    async with running(server) as (live, client):
        session_id = await open_session(client, live.url)
        _, answer = await naive_race(client, live.url, session_id, tool_call("increment"))
        # ServerSession.handle gates on `state.InitializeParams != nil`: served.
        assert answer.status_code == 200
        assert answer.json()["result"]["isError"] is False
        # No session: a temporary, uninitialized session answers, then is discarded.
        missing = await post(client, live.url, request("tools/list", request_id=2))
        assert missing.status_code == 200
        assert "mcp-session-id" not in missing.headers
        assert missing.json() == {
            "jsonrpc": "2.0",
            "id": 2,
            "error": {
                "code": 0,
                "message": 'method "tools/list" is invalid during session initialization',
            },
        }
        unknown = await post(client, live.url, tool_call("increment"), "stale")
        assert unknown.status_code == 404
        assert unknown.headers["content-type"].startswith("text/plain")
        assert unknown.text == "session not found\n"
        assert live.stats.tool_calls["increment"] == 1


async def test_java_streamable_serves_early_requests_and_acks_after_processing(
    anyio_backend: str,
) -> None:
    server = StrictServer(profile="java", handshake_delay=RACE_DELAY)
    async with running(server) as (live, client):
        # McpStreamableServerSession has no early gate: served before `initialized`.
        session_id = await open_session(client, live.url)
        early = await post(client, live.url, tool_call("increment"), session_id)
        assert early.status_code == 200
        assert early.json()["result"]["content"][0]["text"] == "1"
        # `initialized` is processed before its 202 (accept(...).block(), then 202).
        ack = await post(client, live.url, INITIALIZED, session_id)
        assert ack.status_code == 202
        assert live.stats.initialized_notifications == 1
        missing = await post(client, live.url, tool_call("increment"))
        assert missing.status_code == 400
        assert missing.json()["message"] == "Session ID required in mcp-session-id header"
        gone = await post(client, live.url, tool_call("increment"), "stale")
        assert gone.status_code == 404
        assert gone.json()["jsonRpcError"]["code"] == -32603
        assert live.stats.early_requests == 1
        assert live.stats.tool_calls["increment"] == 1


async def test_lsp_style_server_not_initialized(anyio_backend: str) -> None:
    server = StrictServer(profile="lsp-style", handshake_delay=RACE_DELAY)
    async with running(server) as (live, client):
        session_id = await open_session(client, live.url)
        _, answer = await naive_race(client, live.url, session_id, tool_call("increment"))
        assert answer.status_code == 200
        assert answer.json()["error"] == {"code": -32002, "message": "Server not initialized"}
        assert live.stats.tool_calls["increment"] == 0


async def test_lenient_serves_early_requests_but_counts_them(anyio_backend: str) -> None:
    server = StrictServer(profile="lenient", handshake_delay=RACE_DELAY)
    async with running(server) as (live, client):
        session_id = await open_session(client, live.url)
        _, answer = await naive_race(client, live.url, session_id, tool_call("increment"))
        assert answer.json()["result"]["content"][0]["text"] == "1"
        assert live.stats.early_requests == 1
        assert live.stats.tool_calls["increment"] == 1


async def test_legacy_sse_profile(anyio_backend: str) -> None:
    server = StrictServer(profile="python-sdk-sse")
    async with running(server) as (live, client):
        assert live.url.endswith("/sse")
        base = live.url.removesuffix("/sse")
        async with client.stream("GET", live.url) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            async with event_lines(stream) as lines:
                endpoint = await next_event(lines)
                assert endpoint["event"] == "endpoint"
                assert endpoint["data"].startswith("/messages/?session_id=")
                messages_url = base + endpoint["data"]

                async def send(message: JSON) -> None:
                    accepted = await client.post(
                        messages_url, content=json.dumps(message), headers=HEADERS
                    )
                    # 202 before the message is even queued: no error can come back here.
                    assert accepted.status_code == 202
                    assert accepted.text == "Accepted"

                # The naive client: a request before the handshake.
                await send(tool_call("increment", request_id=1))
                early = await next_event(lines)
                assert early["event"] == "message"
                assert data_of(early)["error"] == {
                    "code": -32602,
                    "message": "Invalid request parameters",
                    "data": "",
                }
                await send(INITIALIZE)
                assert data_of(await next_event(lines))["id"] == 0
                await send(INITIALIZED)
                # Even now the call may overtake `initialized` (both were only queued):
                # a -32602 means it did not run, so sending it again is safe.
                for attempt in range(2, 50):
                    await send(tool_call("increment", request_id=attempt))
                    result = data_of(await next_event(lines))
                    if "result" in result:
                        break
                    assert result["error"]["code"] == -32602
                assert result["result"]["content"][0]["text"] == "1"
        # The GET stream ended: its session is dead, yet POSTs are still "Accepted".
        dead = await client.post(messages_url, content=json.dumps(tool_call("increment")))
        assert dead.status_code == 202
        never = messages_url.replace(messages_url[-32:], "0" * 32)
        unknown = await client.post(never, content=json.dumps(tool_call("increment")))
        assert unknown.status_code == 404
        assert unknown.text == "Could not find session"
        no_id = await client.post(base + "/messages/", content="{}")
        assert no_id.status_code == 400
        assert no_id.text == "session_id is required"
        # Every GET is a new session with a new endpoint.
        async with client.stream("GET", live.url) as stream:
            async with event_lines(stream) as lines:
                again = await next_event(lines)
            assert again["data"] != endpoint["data"]
        assert live.stats.tool_calls["increment"] == 1
        assert live.stats.sessions_created == 2


def test_profiles_are_listed_and_checked() -> None:
    assert "python-sdk" in PROFILES
    assert "docker-gateway" in PROFILES
    with pytest.raises(ValueError, match="unknown profile"):
        StrictServer(profile="nope")  # type: ignore[arg-type]


# -- chaos knobs -------------------------------------------------------------------------


async def test_expiry_after_n_requests_gets_the_profiles_gone_answer(anyio_backend: str) -> None:
    server = StrictServer(profile="go", chaos=Chaos(expire_after_requests=2))
    async with running(server) as (live, client):
        session_id = await handshake(client, live.url)
        for _ in range(2):
            ok = await post(client, live.url, request("tools/list"), session_id)
            assert ok.status_code == 200
        expired = await post(client, live.url, request("tools/list"), session_id)
        assert expired.status_code == 404
        assert expired.text == "session not found\n"
        assert live.stats.faults == [(live.stats.posts, "expired")]
        # A fresh handshake gets a fresh allowance.
        fresh = await handshake(client, live.url)
        assert (await post(client, live.url, request("ping"), fresh)).status_code == 200


async def test_expiry_after_seconds(anyio_backend: str) -> None:
    server = StrictServer(chaos=Chaos(expire_after_seconds=0.2))
    async with running(server) as (live, client):
        session_id = await handshake(client, live.url)
        assert (await post(client, live.url, request("ping"), session_id)).status_code == 200
        await anyio.sleep(0.25)  # let the session's lifetime run out
        expired = await post(client, live.url, request("ping"), session_id)
        assert expired.status_code == 404
        assert live.stats.faults[-1][1] == "expired"


async def test_restart_loses_sessions_and_keeps_counters(anyio_backend: str) -> None:
    server = StrictServer(profile="typescript")
    async with running(server) as (live, client):
        first = await handshake(client, live.url)
        second = await handshake(client, live.url)
        await post(client, live.url, tool_call("increment"), first)
        standalone = client.stream("GET", live.url, headers=headers_for(second))
        async with standalone as stream, event_lines(stream) as lines:
            assert (await next_event(lines))["data"] == ""  # priming event
            live.server.restart()  # from the test's thread: runs on the server's loop
            with pytest.raises(httpx.RemoteProtocolError):
                await next_event(lines)  # cut, not ended
        for session_id in (first, second):
            gone = await post(client, live.url, request("ping"), session_id)
            assert gone.status_code == 404
            assert gone.json()["error"]["code"] == -32001
        stats = live.stats
        assert stats.restarts == 1
        assert stats.sessions_terminated == 2
        assert stats.tool_calls["increment"] == 1
        assert live.server.counter == 1
        third = await handshake(client, live.url)
        again = await post(client, live.url, tool_call("increment"), third)
        assert again.json()["result"]["content"][0]["text"] == "2"


async def test_restart_cuts_a_request_in_flight(anyio_backend: str) -> None:
    server = StrictServer(json_response=False)
    async with running(server) as (live, client):
        session_id = await handshake(client, live.url)
        slow = request(
            "tools/call",
            {
                "name": "progress",
                "arguments": {"steps": 50, "interval": 0.05},
                "_meta": {"progressToken": "p"},
            },
        )
        body = json.dumps(slow)
        async with (
            client.stream(
                "POST", live.url, content=body, headers=headers_for(session_id)
            ) as stream,
            event_lines(stream) as lines,
        ):
            await next_event(lines)  # priming
            first = data_of(await next_event(lines))
            assert first["method"] == "notifications/progress"
            live.server.restart()
            with pytest.raises(httpx.RemoteProtocolError):
                await read_to_end(lines)


@pytest.mark.parametrize(
    ("status", "text"), [(429, "Too Many Requests"), (503, "Service Unavailable")]
)
async def test_rejection_with_retry_after(anyio_backend: str, status: Any, text: str) -> None:
    server = StrictServer(chaos=Chaos(reject_rate=1.0, reject_status=status, retry_after=7))
    async with running(server) as (live, client):
        for message in (INITIALIZE, tool_call("increment")):
            refused = await post(client, live.url, message)
            assert refused.status_code == status
            assert refused.headers["retry-after"] == "7"
            assert refused.text == text
        stats = live.stats
        assert stats.total_requests == 0  # nothing was even looked at
        assert stats.sessions_created == 0
        assert stats.http_rejections[status] == 2
        assert stats.faults == [(1, str(status)), (2, str(status))]


async def test_rejected_calls_never_run(anyio_backend: str) -> None:
    server = StrictServer(chaos=Chaos(seed=3, reject_rate=0.5, retry_after=None))
    async with running(server) as (live, client):
        session_id: str | None = None
        while session_id is None:
            opened = await post(client, live.url, INITIALIZE)
            if opened.status_code == 200:
                session_id = opened.headers["mcp-session-id"]
        while (await post(client, live.url, INITIALIZED, session_id)).status_code != 202:
            assert (
                "retry-after" not in (await post(client, live.url, INITIALIZED, session_id)).headers
            )
        answered = 0
        for _ in range(20):
            response = await post(client, live.url, tool_call("increment"), session_id)
            if response.status_code == 200:
                answered += 1
            else:
                assert response.status_code == 503
        assert 0 < answered < 20
        assert live.stats.tool_calls["increment"] == answered
        assert live.server.counter == answered


async def test_sse_drop_after_priming_then_resume(anyio_backend: str) -> None:
    server = StrictServer(json_response=False, chaos=Chaos(drop_rate=1.0))
    async with running(server) as (live, client):
        session_id = await handshake(client, live.url)  # only tools/call is cut
        body = json.dumps(tool_call("increment", request_id="inc"))
        async with (
            client.stream(
                "POST", live.url, content=body, headers=headers_for(session_id)
            ) as stream,
            event_lines(stream) as lines,
        ):
            priming = await next_event(lines)
            assert priming["data"] == ""
            with pytest.raises(httpx.RemoteProtocolError):
                await next_event(lines)
        # Resume: GET with the last event id seen replays what came after it.
        resume_headers = headers_for(session_id, **{"Last-Event-ID": priming["id"]})
        async with client.stream("GET", live.url, headers=resume_headers) as resumed:
            assert resumed.status_code == 200
            events = await all_events(resumed)
        assert [data_of(e)["id"] for e in events] == ["inc"]
        assert data_of(events[0])["result"]["content"][0]["text"] == "1"
        # Executed exactly once although the first connection lost the answer.
        assert live.stats.tool_calls["increment"] == 1
        assert live.stats.faults == [(live.stats.posts, "drop")]
        unknown = await client.get(
            live.url, headers=headers_for(session_id, **{"Last-Event-ID": "x"})
        )
        assert unknown.status_code == 400


async def test_sse_drop_after_progress_then_resume_live(anyio_backend: str) -> None:
    server = StrictServer(json_response=False, chaos=Chaos(drop_rate=1.0, drop_after="progress"))
    async with running(server) as (live, client):
        session_id = await handshake(client, live.url)
        # A call without progress is not cut.
        whole = await post(client, live.url, tool_call("echo", text="hi"), session_id)
        assert [m for m in whole.text.splitlines() if m.startswith("data: {")]
        slow = request(
            "tools/call",
            {
                "name": "progress",
                "arguments": {"steps": 3, "interval": 0.05},
                "_meta": {"progressToken": "tok"},
            },
            request_id=9,
        )
        async with (
            client.stream(
                "POST", live.url, content=json.dumps(slow), headers=headers_for(session_id)
            ) as stream,
            event_lines(stream) as lines,
        ):
            await next_event(lines)  # priming
            first = await next_event(lines)
            assert data_of(first)["params"]["progress"] == 1
            with pytest.raises(httpx.RemoteProtocolError):
                await next_event(lines)
        # The tool kept running; the resumed stream follows it to the end.
        resume_headers = headers_for(session_id, **{"Last-Event-ID": first["id"]})
        async with client.stream("GET", live.url, headers=resume_headers) as resumed:
            events = [data_of(e) for e in await all_events(resumed)]
        assert [e["params"]["progress"] for e in events[:-1]] == [2, 3]
        assert events[-1]["id"] == 9
        assert events[-1]["result"]["content"][0]["text"] == "completed 3 steps"
        assert live.stats.tool_calls["progress"] == 1
        assert [kind for _, kind in live.stats.faults] == ["drop"]


async def test_json_drop_loses_the_answer_not_the_effect(anyio_backend: str) -> None:
    server = StrictServer(chaos=Chaos(drop_rate=1.0))
    async with running(server) as (live, client):
        session_id = await handshake(client, live.url)
        with pytest.raises(httpx.RemoteProtocolError):
            await post(client, live.url, tool_call("increment"), session_id)
        assert live.stats.tool_calls["increment"] == 1
        assert live.server.counter == 1


async def test_latency_range(anyio_backend: str) -> None:
    server = StrictServer(chaos=Chaos(latency=(0.1, 0.15)))
    async with running(server) as (live, client):
        started = time.monotonic()
        await post(client, live.url, INITIALIZE)
        assert time.monotonic() - started >= 0.1


async def fault_sequence(seed: int) -> list[tuple[int, str]]:
    chaos = Chaos(seed=seed, reject_rate=0.3, drop_rate=0.3, reject_status=429)
    async with running(StrictServer(chaos=chaos)) as (live, client):
        session_id: str | None = None
        while session_id is None:
            opened = await post(client, live.url, INITIALIZE)
            if opened.status_code == 200:
                session_id = opened.headers["mcp-session-id"]
        while (await post(client, live.url, INITIALIZED, session_id)).status_code != 202:
            pass
        for _ in range(12):
            with suppress(httpx.RemoteProtocolError):
                await post(client, live.url, tool_call("echo", text="x"), session_id)
        return list(live.stats.faults)


async def test_same_seed_same_faults(anyio_backend: str) -> None:
    first = await fault_sequence(11)
    assert {kind for _, kind in first} == {"429", "drop"}
    assert await fault_sequence(11) == first
    assert await fault_sequence(12) != first


def test_chaos_is_validated() -> None:
    with pytest.raises(ValueError, match="reject_rate"):
        Chaos(reject_rate=1.5)
    with pytest.raises(ValueError, match="latency"):
        Chaos(latency=(0.2, 0.1))
    with pytest.raises(ValueError, match="reject_status"):
        Chaos(reject_status=500)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        Chaos().seed = 1  # type: ignore[misc]


# -- tools -----------------------------------------------------------------------------


async def test_tool_annotations_are_listed(anyio_backend: str) -> None:
    async with running(StrictServer(profile="lenient")) as (live, client):
        session_id = await handshake(client, live.url)
        listed = await post(client, live.url, request("tools/list"), session_id)
        tools = {t["name"]: t for t in listed.json()["result"]["tools"]}
        assert "annotations" not in tools["increment"]  # side effect, no hints
        assert tools["read_counter"]["annotations"] == {"readOnlyHint": True}
        assert tools["set_value"]["annotations"] == {"idempotentHint": True}


# -- a session that ends with a request in flight ------------------------------------

SLOW_CALL = request(
    "tools/call",
    {
        "name": "progress",
        "arguments": {"steps": 1000, "interval": 0.05},
        "_meta": {"progressToken": "p"},
    },
    request_id="slow",
)


async def until_progress(lines: AsyncIterator[str]) -> None:
    """Read events until a progress notification proves the tool is running."""
    while True:
        event = await next_event(lines)
        if event.get("data") and data_of(event).get("method") == "notifications/progress":
            return


@pytest.mark.parametrize(
    ("profile", "body"),
    [
        # mcp 2.3 `_handle_post_request`, JSON mode (also seen on loopback).
        (
            "python-sdk-2",
            b'{"jsonrpc":"2.0","id":null,"error":{"code":-32603,'
            b'"message":"Session terminated before the request completed"}}',
        ),
        # mcp 1.26: the request stream ends, "No response received" (read from source).
        (
            "python-sdk",
            b'{"jsonrpc":"2.0","id":"server-error","error":{"code":-32600,'
            b'"message":"Error processing request: No response received"}}',
        ),
    ],
)
async def test_session_ended_with_a_request_in_flight_json(
    anyio_backend: str, profile: Any, body: bytes
) -> None:
    async with running(StrictServer(profile=profile)) as (live, client):
        session_id = await handshake(client, live.url)
        answers: list[httpx.Response] = []

        async def slow_call() -> None:
            answers.append(await post(client, live.url, SLOW_CALL, session_id))

        get_headers = {**headers_for(session_id), "Accept": "text/event-stream"}
        async with (
            client.stream("GET", live.url, headers=get_headers) as standalone,
            event_lines(standalone) as lines,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(slow_call)
            await until_progress(lines)  # JSON mode: progress travels on the GET stream
            deleted = await client.delete(live.url, headers=headers_for(session_id))
            assert deleted.status_code == 200
        (answer,) = answers
        assert answer.status_code == 500
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["mcp-session-id"] == session_id
        assert answer.content == body


async def test_session_ended_with_a_request_in_flight_sse(anyio_backend: str) -> None:
    # mcp 2.3, SSE mode: the request's stream just ends, with no response (seen).
    async with running(StrictServer(json_response=False)) as (live, client):
        session_id = await handshake(client, live.url)
        headers = headers_for(session_id)
        async with client.stream(
            "POST", live.url, content=json.dumps(SLOW_CALL), headers=headers
        ) as stream:
            assert stream.status_code == 200
            async with event_lines(stream) as lines:
                await until_progress(lines)
                deleted = await client.delete(live.url, headers=headers)
                assert deleted.status_code == 200
                rest: list[str] = [line async for line in lines]
        assert not any('"id":"slow"' in line for line in rest)
