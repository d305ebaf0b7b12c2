"""The strict test server, exercised with plain httpx over the raw protocol."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import anyio
import httpx
import pytest

import resilient_mcp
from resilient_mcp.testing import Profile, RunningServer, StrictServer, serve

JSON = dict[str, Any]

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
CLIENT_INFO = {"name": "raw-httpx", "version": "0"}
ALL_CAPABILITIES: JSON = {"sampling": {}, "roots": {"listChanged": True}, "elicitation": {}}


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def json_server() -> Iterator[RunningServer]:
    with serve(StrictServer()) as running:
        yield running


@pytest.fixture(scope="module")
def sse_server() -> Iterator[RunningServer]:
    with serve(StrictServer(json_response=False)) as running:
        yield running


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


# -- raw protocol helpers ------------------------------------------------------------


def request(method: str, params: JSON | None = None, request_id: int | str = 1) -> JSON:
    message: JSON = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def notification(method: str, params: JSON | None = None) -> JSON:
    message: JSON = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


def initialize_request(version: str = "2025-11-25", capabilities: JSON | None = None) -> JSON:
    return request(
        "initialize",
        {
            "protocolVersion": version,
            "capabilities": capabilities or {},
            "clientInfo": CLIENT_INFO,
        },
        request_id=0,
    )


def session_headers(session_id: str | None) -> dict[str, str]:
    headers = dict(HEADERS)
    if session_id is not None:
        headers["Mcp-Session-Id"] = session_id
        headers["MCP-Protocol-Version"] = "2025-11-25"
    return headers


def post(
    client: httpx.Client, url: str, message: Any, session_id: str | None = None
) -> httpx.Response:
    return client.post(url, content=json.dumps(message), headers=session_headers(session_id))


def parse_sse(lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """Yield SSE events as {field: value}; `data` joined per the SSE rules."""
    event: dict[str, str] = {}
    for line in lines:
        if line == "":
            if event:
                yield event
            event = {}
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        event[name] = event[name] + "\n" + value if name == "data" and name in event else value
    if event:
        yield event


def messages_of(response: httpx.Response) -> list[JSON]:
    """The JSON-RPC messages of a JSON or SSE response, in order."""
    if response.headers["content-type"].startswith("application/json"):
        return [response.json()]
    assert response.headers["content-type"].startswith("text/event-stream")
    return [json.loads(e["data"]) for e in parse_sse(response.text.splitlines()) if e.get("data")]


def handshake(client: httpx.Client, url: str, capabilities: JSON | None = None) -> tuple[str, JSON]:
    response = post(client, url, initialize_request(capabilities=capabilities))
    assert response.status_code == 200
    session_id = response.headers["mcp-session-id"]
    initialized = post(client, url, notification("notifications/initialized"), session_id)
    assert initialized.status_code == 202
    return session_id, messages_of(response)[-1]


def call(
    client: httpx.Client, url: str, session_id: str, method: str, params: JSON | None = None
) -> JSON:
    response = post(client, url, request(method, params, request_id=7), session_id)
    assert response.status_code == 200
    final = messages_of(response)[-1]
    assert final["id"] == 7
    return final


def tool(client: httpx.Client, url: str, session_id: str, name: str, **arguments: Any) -> JSON:
    reply = call(client, url, session_id, "tools/call", {"name": name, "arguments": arguments})
    result: JSON = reply["result"]
    return result


# -- handshake and the strict gate ---------------------------------------------------


def test_initialize_result_and_session(json_server: RunningServer, client: httpx.Client) -> None:
    response = post(client, json_server.url, initialize_request("2025-06-18"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    session_id = response.headers["mcp-session-id"]
    assert session_id
    assert all(0x21 <= ord(ch) <= 0x7E for ch in session_id)
    result = response.json()["result"]
    assert result["protocolVersion"] == "2025-06-18"
    assert result["serverInfo"]["name"] == "resilient-mcp-strict"
    assert isinstance(result["serverInfo"]["version"], str)
    assert isinstance(result["instructions"], str)
    assert result["capabilities"] == {
        "tools": {"listChanged": True},
        "resources": {"subscribe": True, "listChanged": True},
        "prompts": {"listChanged": True},
        "logging": {},
        "completions": {},
    }
    # An unsupported version is answered with the server's latest.
    unknown = post(client, json_server.url, initialize_request("2099-01-01")).json()
    assert unknown["result"]["protocolVersion"] == "2025-11-25"
    # Bad initialize params are an in-band -32602.
    broken = post(client, json_server.url, request("initialize", {"capabilities": {}})).json()
    assert broken["error"]["code"] == -32602


def test_handshake_then_tool_call(json_server: RunningServer, client: httpx.Client) -> None:
    session_id, _ = handshake(client, json_server.url)
    assert tool(client, json_server.url, session_id, "echo", text="hi") == {
        "content": [{"type": "text", "text": "hi"}],
        "isError": False,
    }


def test_request_before_initialize_is_rejected_and_counted(client: httpx.Client) -> None:
    # A session that never saw `initialize`: the trap id mcp 1.x hands out with its
    # "Missing session ID" 400.
    with serve(StrictServer(profile="python-sdk")) as running:
        missing = post(client, running.url, request("tools/list"))
        assert missing.status_code == 400
        session_id = missing.headers["mcp-session-id"]
        early = call(client, running.url, session_id, "tools/call", {"name": "echo"})
        assert early["error"] == {
            "code": -32602,
            "message": "Invalid request parameters",
            "data": "",
        }
        assert call(client, running.url, session_id, "tools/list")["error"]["code"] == -32602
        # ping is always allowed.
        assert call(client, running.url, session_id, "ping") == {
            "jsonrpc": "2.0",
            "id": 7,
            "result": {},
        }
        assert running.stats.early_requests == 2
        assert running.stats.tool_calls["echo"] == 0
        # The session survives: an `initialize` on it opens the gate.
        opened = post(client, running.url, initialize_request(), session_id)
        assert opened.headers["mcp-session-id"] == session_id
        assert tool(client, running.url, session_id, "echo", text="x")["isError"] is False
        stats = running.stats
        assert stats.early_requests == 2
        assert stats.tool_calls["echo"] == 1
        assert stats.initialize_requests == 1
        assert stats.requests["tools/call"] == 2


def test_request_between_initialize_result_and_initialized_is_served(
    client: httpx.Client,
) -> None:
    # mcp >= 1.18 and 2.x gate on the `initialize` result, not on `initialized`
    # (ServerSession sets Initialized right after responding; 2.x
    # `Connection.initialize_accepted`). Seen on loopback against mcp 2.3.0 and 1.26.0.
    with serve(StrictServer()) as running:
        response = post(client, running.url, initialize_request())
        session_id = response.headers["mcp-session-id"]
        assert tool(client, running.url, session_id, "echo", text="x")["isError"] is False
        assert "tools" in call(client, running.url, session_id, "tools/list")["result"]
        # Unserved methods are -32601 whatever the state.
        assert call(client, running.url, session_id, "nope/nothing")["error"] == {
            "code": -32601,
            "message": "Method not found",
            "data": "nope/nothing",
        }
        stats = running.stats
        assert stats.early_requests == 0
        assert stats.tool_calls["echo"] == 1
        assert stats.initialized_notifications == 0


def test_reinitialize_restarts_the_handshake(
    json_server: RunningServer, client: httpx.Client
) -> None:
    # python-sdk-2: a re-initialize is processed inline, so its gate never closes again.
    session_id, _ = handshake(client, json_server.url)
    again = post(client, json_server.url, initialize_request(), session_id)
    assert again.headers["mcp-session-id"] == session_id
    assert "tools" in call(client, json_server.url, session_id, "tools/list")["result"]
    # A profile gated on `initialized` waits for it again.
    with serve(StrictServer(profile="lsp-style")) as running:
        session_id, _ = handshake(client, running.url)
        post(client, running.url, initialize_request(), session_id)
        reply = call(client, running.url, session_id, "tools/list")
        assert reply["error"]["code"] == -32002


# -- HTTP-level rules ----------------------------------------------------------------


def test_missing_and_unknown_session(json_server: RunningServer, client: httpx.Client) -> None:
    url = json_server.url
    missing = post(client, url, request("tools/list"))
    assert missing.status_code == 400
    assert missing.json() == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32600, "message": "Bad Request: Missing session ID"},
    }
    unknown_body = {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32600, "message": "Session not found"},
    }
    unknown = post(client, url, request("tools/list"), "no-such-session")
    assert unknown.status_code == 404
    assert unknown.json() == unknown_body
    # Even initialize with an unknown session id is a 404: the client must drop the id.
    assert post(client, url, initialize_request(), "no-such-session").status_code == 404
    assert json_server.stats.http_rejections[404] >= 2


def test_delete_ends_session(json_server: RunningServer, client: httpx.Client) -> None:
    session_id, _ = handshake(client, json_server.url)
    deleted = client.delete(json_server.url, headers=session_headers(session_id))
    assert deleted.status_code == 200
    gone = post(client, json_server.url, request("ping"), session_id)
    assert gone.status_code == 404
    assert gone.json()["error"]["message"] == "Session not found"


def test_header_rules(json_server: RunningServer, client: httpx.Client) -> None:
    url = json_server.url
    session_id, _ = handshake(client, url)
    body = json.dumps(request("ping"))
    only_json = {**session_headers(session_id), "Accept": "application/json"}
    assert client.post(url, content=body, headers=only_json).status_code == 406
    text_body = {**session_headers(session_id), "Content-Type": "text/plain"}
    assert client.post(url, content=body, headers=text_body).status_code == 415
    bad_version = {**session_headers(session_id), "MCP-Protocol-Version": "1999-01-01"}
    rejected = client.post(url, content=body, headers=bad_version)
    assert rejected.status_code == 400
    assert rejected.json()["error"] == {
        "code": -32600,
        "message": "Bad Request: Unsupported protocol version",
    }
    assert client.post(url, content="{", headers=session_headers(session_id)).status_code == 400
    assert client.put(url, headers=session_headers(session_id)).status_code == 405
    # Notifications and client responses are acknowledged with an empty 202.
    ack = post(client, url, notification("notifications/roots/list_changed"), session_id)
    assert ack.status_code == 202
    assert ack.content == b""
    answer = post(client, url, {"jsonrpc": "2.0", "id": 99, "result": {}}, session_id)
    assert answer.status_code == 202


def test_get_stream_disabled_is_405(client: httpx.Client) -> None:
    with serve(StrictServer(get_stream=False)) as running:
        session_id, _ = handshake(client, running.url)
        response = client.get(running.url, headers=session_headers(session_id))
        assert response.status_code == 405


# -- SSE mode ------------------------------------------------------------------------


def test_sse_framing_with_priming_event(sse_server: RunningServer, client: httpx.Client) -> None:
    response = post(client, sse_server.url, initialize_request())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["mcp-session-id"]
    events = list(parse_sse(response.text.splitlines()))
    assert len(events) == 2
    priming, message = events
    assert priming["id"]
    assert priming["data"] == ""
    assert "event" not in priming
    assert message["event"] == "message"
    assert message["id"]
    assert message["id"] != priming["id"]
    assert json.loads(message["data"])["result"]["protocolVersion"] == "2025-11-25"


def test_progress_events_precede_result_in_sse_mode(
    sse_server: RunningServer, client: httpx.Client
) -> None:
    session_id, _ = handshake(client, sse_server.url)
    params = {"name": "progress", "arguments": {"steps": 3}, "_meta": {"progressToken": "tok"}}
    response = post(client, sse_server.url, request("tools/call", params), session_id)
    messages = messages_of(response)
    assert [m["params"]["progress"] for m in messages[:-1]] == [1, 2, 3]
    assert all(m["method"] == "notifications/progress" for m in messages[:-1])
    assert messages[0]["params"] == {
        "progressToken": "tok",
        "progress": 1,
        "total": 3,
        "message": "step 1 of 3",
    }
    assert messages[-1]["result"]["content"][0]["text"] == "completed 3 steps"


def answer_server_request(
    client: httpx.Client, url: str, session_id: str, tool_name: str, answer: JSON
) -> tuple[JSON, JSON]:
    """Call a tool that asks the client something; answer it mid-stream.

    Returns (the server's request, the tool result).
    """
    message = request("tools/call", {"name": tool_name, "arguments": {}}, request_id=5)
    if tool_name == "sample":
        message["params"]["arguments"] = {"prompt": "Say hi"}
    asked: JSON = {}
    with client.stream(
        "POST", url, content=json.dumps(message), headers=session_headers(session_id)
    ) as response:
        for event in parse_sse(response.iter_lines()):
            if not event.get("data"):
                continue
            received = json.loads(event["data"])
            if "method" in received:
                asked = received
                reply = {"jsonrpc": "2.0", "id": received["id"], **answer}
                assert post(client, url, reply, session_id).status_code == 202
            else:
                assert received["id"] == 5
                return asked, received["result"]
    raise AssertionError("the stream ended without a result")


def test_sample_roots_and_elicit_ask_the_client(
    sse_server: RunningServer, client: httpx.Client
) -> None:
    url = sse_server.url
    session_id, _ = handshake(client, url, ALL_CAPABILITIES)
    completion = {
        "result": {
            "role": "assistant",
            "content": {"type": "text", "text": "hi there"},
            "model": "m",
        }
    }
    asked, result = answer_server_request(client, url, session_id, "sample", completion)
    assert asked["method"] == "sampling/createMessage"
    assert asked["params"]["messages"][0]["content"]["text"] == "Say hi"
    assert result["content"][0]["text"] == "hi there"

    roots = {"result": {"roots": [{"uri": "file:///work", "name": "work"}]}}
    asked, result = answer_server_request(client, url, session_id, "list_roots", roots)
    assert asked["method"] == "roots/list"
    assert json.loads(result["content"][0]["text"]) == [{"uri": "file:///work", "name": "work"}]

    accepted = {"result": {"action": "accept", "content": {"name": "Ada"}}}
    asked, result = answer_server_request(client, url, session_id, "elicit", accepted)
    assert asked["method"] == "elicitation/create"
    assert asked["params"]["requestedSchema"]["required"] == ["name"]
    assert json.loads(result["content"][0]["text"])["content"] == {"name": "Ada"}

    refused = {"error": {"code": -32601, "message": "Method not found"}}
    _, result = answer_server_request(client, url, session_id, "list_roots", refused)
    assert result["isError"] is True


def test_server_requests_need_capability_and_channel(
    json_server: RunningServer, client: httpx.Client
) -> None:
    url = json_server.url
    bare_session, _ = handshake(client, url)
    no_capability = tool(client, url, bare_session, "sample", prompt="x")
    assert no_capability["isError"] is True
    assert "sampling" in no_capability["content"][0]["text"]
    # JSON mode with no GET stream open: there is no way to reach the client.
    capable_session, _ = handshake(client, url, ALL_CAPABILITIES)
    no_channel = tool(client, url, capable_session, "list_roots")
    assert no_channel["isError"] is True
    assert "No stream" in no_channel["content"][0]["text"]


# -- features ------------------------------------------------------------------------


def test_tools(client: httpx.Client) -> None:
    with serve(StrictServer()) as running:
        url = running.url
        session_id, _ = handshake(client, url)
        listed = {
            t["name"]: t for t in call(client, url, session_id, "tools/list")["result"]["tools"]
        }
        assert set(listed) == {
            "echo",
            "add",
            "fail",
            "progress",
            "increment",
            "read_counter",
            "set_value",
            "sample",
            "list_roots",
            "elicit",
        }
        assert listed["read_counter"]["annotations"] == {"readOnlyHint": True}
        assert listed["set_value"]["annotations"] == {"idempotentHint": True}
        assert "annotations" not in listed["increment"]
        assert listed["add"]["outputSchema"]["required"] == ["sum"]

        added = tool(client, url, session_id, "add", a=2, b=3.5)
        assert added["structuredContent"] == {"sum": 5.5}
        assert json.loads(added["content"][0]["text"]) == {"sum": 5.5}
        failed = tool(client, url, session_id, "fail")
        assert failed["isError"] is True
        assert failed["content"][0]["type"] == "text"
        assert tool(client, url, session_id, "progress", steps=2)["isError"] is False

        assert tool(client, url, session_id, "increment")["content"][0]["text"] == "1"
        assert tool(client, url, session_id, "increment")["content"][0]["text"] == "2"
        assert tool(client, url, session_id, "read_counter")["content"][0]["text"] == "2"
        assert tool(client, url, session_id, "set_value", value=10)["content"][0]["text"] == "10"
        assert tool(client, url, session_id, "set_value", value=10)["content"][0]["text"] == "10"
        assert running.server.counter == 10

        invalid = tool(client, url, session_id, "add", a="two", b=1)
        assert invalid["isError"] is True
        assert "Input validation error" in invalid["content"][0]["text"]
        unknown = call(client, url, session_id, "tools/call", {"name": "x", "arguments": {}})
        assert unknown["error"] == {"code": -32602, "message": "Unknown tool: x"}

        tool_calls = running.stats.tool_calls
        assert tool_calls["increment"] == 2
        assert tool_calls["set_value"] == 2
        assert tool_calls["add"] == 1  # the invalid call never ran
        assert tool_calls["x"] == 0


def test_progress_goes_to_get_stream_in_json_mode(
    json_server: RunningServer, client: httpx.Client
) -> None:
    url = json_server.url
    session_id, _ = handshake(client, url)
    params = {"name": "progress", "arguments": {"steps": 2}, "_meta": {"progressToken": 1}}
    with client.stream("GET", url, headers=session_headers(session_id)) as stream:
        assert stream.status_code == 200
        events = parse_sse(stream.iter_lines())
        priming = next(events)
        assert priming["data"] == ""
        # A second standalone stream for the same session is refused.
        assert client.get(url, headers=session_headers(session_id)).status_code == 409
        reply = post(client, url, request("tools/call", params), session_id).json()
        assert reply["result"]["isError"] is False
        progress = [json.loads(next(events)["data"]) for _ in range(2)]
        assert [p["params"]["progress"] for p in progress] == [1, 2]
        # Ending the session ends its stream.
        assert client.delete(url, headers=session_headers(session_id)).status_code == 200
        assert list(events) == []


def test_resources_prompts_completion_logging(
    json_server: RunningServer, client: httpx.Client
) -> None:
    url = json_server.url
    session_id, _ = handshake(client, url)
    resources = call(client, url, session_id, "resources/list")["result"]["resources"]
    assert {r["uri"] for r in resources} == {"memo://one", "memo://two", "memo://blob"}
    one = call(client, url, session_id, "resources/read", {"uri": "memo://one"})["result"]
    assert one["contents"] == [
        {"uri": "memo://one", "mimeType": "text/plain", "text": "First memo."}
    ]
    blob = call(client, url, session_id, "resources/read", {"uri": "memo://blob"})["result"]
    assert "blob" in blob["contents"][0]
    missing = call(client, url, session_id, "resources/read", {"uri": "memo://zzz"})
    assert missing["error"] == {
        "code": -32002,
        "message": "Resource not found",
        "data": {"uri": "memo://zzz"},
    }
    templates = call(client, url, session_id, "resources/templates/list")["result"]
    assert templates["resourceTemplates"][0]["uriTemplate"] == "memo://{name}"
    subscribe = call(client, url, session_id, "resources/subscribe", {"uri": "memo://one"})
    assert subscribe["result"] == {}
    unsubscribe = call(client, url, session_id, "resources/unsubscribe", {"uri": "memo://one"})
    assert unsubscribe["result"] == {}

    prompts = call(client, url, session_id, "prompts/list")["result"]["prompts"]
    assert prompts[0]["arguments"] == [
        {"name": "name", "description": "Who to greet.", "required": True}
    ]
    greet = {"name": "greet", "arguments": {"name": "Ada"}}
    messages = call(client, url, session_id, "prompts/get", greet)["result"]["messages"]
    assert "Ada" in messages[0]["content"]["text"]
    no_argument = call(client, url, session_id, "prompts/get", {"name": "greet"})
    assert no_argument["error"]["code"] == -32602

    complete = {
        "ref": {"type": "ref/prompt", "name": "greet"},
        "argument": {"name": "name", "value": "al"},
    }
    completion = call(client, url, session_id, "completion/complete", complete)["result"]
    assert completion["completion"]["values"] == ["Alan", "Alice"]
    level = call(client, url, session_id, "logging/setLevel", {"level": "debug"})
    assert level["result"] == {}
    assert call(client, url, session_id, "ping")["result"] == {}
    assert call(client, url, session_id, "no/such")["error"]["code"] == -32601


def test_pagination(client: httpx.Client) -> None:
    with serve(StrictServer(extra_tools=25, page_size=10)) as running:
        url = running.url
        session_id, _ = handshake(client, url)
        names: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params = {} if cursor is None else {"cursor": cursor}
            result = call(client, url, session_id, "tools/list", params)["result"]
            names += [t["name"] for t in result["tools"]]
            pages += 1
            cursor = result.get("nextCursor")
            if cursor is None:
                break
        assert pages == 4
        assert len(names) == len(set(names)) == 35
        assert names[-1] == "tool_0024"

        for bad in ("garbage", 42):
            reply = call(client, url, session_id, "tools/list", {"cursor": bad})
            assert reply["error"] == {"code": -32602, "message": "Invalid cursor"}
        # A cursor of one list is not valid for another.
        first = call(client, url, session_id, "tools/list")["result"]["nextCursor"]
        reply = call(client, url, session_id, "prompts/list", {"cursor": first})
        assert reply["error"]["message"] == "Invalid cursor"
        resources = call(client, url, session_id, "resources/list")["result"]
        assert len(resources["resources"]) == 3
        assert "nextCursor" not in resources


# -- timing knobs ----------------------------------------------------------------------


def test_initialize_delay(client: httpx.Client) -> None:
    with serve(StrictServer(initialize_delay=0.2)) as running:
        started = time.monotonic()
        response = post(client, running.url, initialize_request())
        assert response.status_code == 200
        assert time.monotonic() - started >= 0.2


@pytest.mark.anyio
@pytest.mark.parametrize("profile", ["python-sdk", "python-sdk-2", "go"])
async def test_handshake_delay_runs_after_the_202(anyio_backend: str, profile: Any) -> None:
    # As the real `_handle_post_request`: 202 first, then the notification is
    # processed. With a delay far longer than the deadline, a 202 that waited for the
    # processing could not arrive in time, on however slow a machine.
    async with (
        serve(StrictServer(profile=profile, handshake_delay=60)) as running,
        httpx.AsyncClient(timeout=10) as client,
    ):
        url = running.url
        opened = await client.post(url, content=json.dumps(initialize_request()), headers=HEADERS)
        session_id = opened.headers["mcp-session-id"]
        headers = session_headers(session_id)
        with anyio.fail_after(10):
            body = json.dumps(notification("notifications/initialized"))
            acknowledged = await client.post(url, content=body, headers=headers)
        assert acknowledged.status_code == 202
        # Processed after the 202, and still processing: a request now meets the gate
        # these servers have, which `initialize` already opened.
        body = json.dumps(request("tools/call", {"name": "echo", "arguments": {"text": "a"}}))
        answer = (await client.post(url, content=body, headers=headers)).json()
        assert answer["result"]["content"][0]["text"] == "a"
        assert running.stats.initialized_notifications == 1
        assert running.stats.early_requests == 0


async def test_handshake_delay_holds_the_202_where_processing_comes_first(
    anyio_backend: str,
) -> None:
    # TypeScript: `onmessage` runs before the 202 is returned; lsp-style also gates on
    # `initialized`, so a request sent meanwhile is early.
    delay = 2.0  # the tools/call below must only reach the server within it
    async with (
        serve(StrictServer(profile="lsp-style", handshake_delay=delay)) as running,
        httpx.AsyncClient(timeout=10) as client,
    ):
        url = running.url
        opened = await client.post(url, content=json.dumps(initialize_request()), headers=HEADERS)
        session_id = opened.headers["mcp-session-id"]
        headers = session_headers(session_id)
        order: list[str] = []

        async def send_initialized() -> None:
            body = json.dumps(notification("notifications/initialized"))
            response = await client.post(url, content=body, headers=headers)
            assert response.status_code == 202
            order.append("202")

        async with anyio.create_task_group() as tg:
            tg.start_soon(send_initialized)
            body = json.dumps(request("tools/call", {"name": "echo", "arguments": {"text": "a"}}))
            early = (await client.post(url, content=body, headers=headers)).json()
            assert early["error"]["code"] == -32002
            order.append("early answer")

        # The 202 waited for the processing, after which the session was ready.
        assert order == ["early answer", "202"]
        ready = (await client.post(url, content=body, headers=headers)).json()
        assert ready["result"]["content"][0]["text"] == "a"
        assert running.stats.early_requests == 1
        assert running.stats.tool_calls["echo"] == 1


@pytest.mark.anyio
# mcp 2.x's Streamable HTTP transport answers REQUEST_CANCELLED; 1.x's dispatcher, 0.
@pytest.mark.parametrize(("profile", "code"), [("python-sdk-2", -32800), ("python-sdk", 0)])
async def test_cancelled_request_stops_the_tool(
    anyio_backend: str, profile: Profile, code: int
) -> None:
    async with (
        serve(StrictServer(profile=profile, json_response=False)) as running,
        httpx.AsyncClient(timeout=10) as client,
    ):
        url = running.url
        opened = await client.post(url, content=json.dumps(initialize_request()), headers=HEADERS)
        headers = session_headers(opened.headers["mcp-session-id"])
        initialized = json.dumps(notification("notifications/initialized"))
        assert (await client.post(url, content=initialized, headers=headers)).status_code == 202
        slow = {
            "name": "progress",
            "arguments": {"steps": 100, "interval": 0.05},
            "_meta": {"progressToken": "p"},
        }
        body = json.dumps(request("tools/call", slow, request_id="slow"))
        received: list[JSON] = []
        async with client.stream("POST", url, content=body, headers=headers) as stream:
            lines: list[str] = []
            async for line in stream.aiter_lines():
                lines.append(line)
                if line != "" or not lines[-2].startswith("data: {"):
                    continue
                received.append(json.loads(lines[-2].removeprefix("data: ")))
                if len(received) == 1:
                    # The first progress event proves the tool is running: cancel it.
                    cancel = notification("notifications/cancelled", {"requestId": "slow"})
                    ack = await client.post(url, content=json.dumps(cancel), headers=headers)
                    assert ack.status_code == 202
        assert received[0]["method"] == "notifications/progress"
        assert received[-1] == {
            "jsonrpc": "2.0",
            "id": "slow",
            "error": {"code": code, "message": "Request cancelled"},
        }
        assert len(received) < 100


@pytest.mark.anyio
async def test_serve_async_stops_despite_open_stream(anyio_backend: str) -> None:
    # Leaving serve() must end open GET streams instead of waiting for the client.
    started = time.monotonic()
    context = serve(StrictServer(json_response=False))
    running = await context.__aenter__()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            url = running.url
            opened = await client.post(
                url, content=json.dumps(initialize_request()), headers=HEADERS
            )
            headers = session_headers(opened.headers["mcp-session-id"])
            async with client.stream("GET", url, headers=headers) as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                await context.__aexit__(None, None, None)
                lines = [line async for line in stream.aiter_lines()]
                assert lines[0].startswith("id: ")  # only the priming event came
    finally:
        await context.__aexit__(None, None, None)
    assert running.stats.sessions_created == 1
    assert running.stats.sessions_terminated == 1
    assert time.monotonic() - started < 5


@pytest.mark.anyio
async def test_asgi_app_runs_on_any_event_loop(anyio_backend: str) -> None:
    # The app is pure anyio, so it can be mounted in an ASGI server on asyncio or trio.
    server = StrictServer()
    transport = httpx.ASGITransport(app=server.asgi_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        opened = await client.post(
            "/mcp", content=json.dumps(initialize_request()), headers=HEADERS
        )
        headers = session_headers(opened.headers["mcp-session-id"])
        body = json.dumps(notification("notifications/initialized"))
        assert (await client.post("/mcp", content=body, headers=headers)).status_code == 202
        body = json.dumps(request("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}}))
        reply = (await client.post("/mcp", content=body, headers=headers)).json()
    assert reply["result"]["structuredContent"] == {"sum": 3}
    assert server.stats.tool_calls["add"] == 1


@pytest.mark.anyio
@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_add_tool_is_listed_callable_and_announced(era: str) -> None:
    changed = anyio.Event()

    async def on_notification(method: str, params: Any) -> None:
        if method == "notifications/tools/list_changed":
            changed.set()

    server = StrictServer(era=era)  # type: ignore[arg-type]
    with anyio.fail_after(30):
        async with (
            serve(server) as running,
            resilient_mcp.connect(
                running.url, handlers=resilient_mcp.Handlers(notification=on_notification)
            ) as client,
        ):
            assert "fresh" not in {tool.name for tool in await client.list_tools()}
            server.add_tool("fresh", text="new here")
            await changed.wait()
            assert "fresh" in {tool.name for tool in await client.list_tools()}
            assert (await client.call_tool("fresh")).text == "new here"
