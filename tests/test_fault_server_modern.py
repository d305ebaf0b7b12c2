"""StrictServer's modern era (protocol 2026-07-28), driven with raw httpx.

Each test proves one wire behaviour of the spec (or of the mcp 2.3 reference server
where the spec leaves a choice): per-request `_meta`, routing headers, status codes,
`server/discover`, `input_required` rounds, `subscriptions/listen`, cancellation by
closing the stream, chaos, the dual era, and how legacy profiles answer a modern probe.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

from resilient_mcp.testing import PROFILES, Chaos, RunningServer, StrictServer, serve

pytestmark = pytest.mark.anyio

JSON = dict[str, Any]

VERSION = "2026-07-28"
ACCEPT = "application/json, text/event-stream"
NAME_BEARING = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


def meta(
    *, version: str = VERSION, capabilities: JSON | None = None, extra: JSON | None = None
) -> JSON:
    return {
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": capabilities or {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw-httpx", "version": "0"},
        **(extra or {}),
    }


def request(
    method: str,
    params: JSON | None = None,
    request_id: int | str = 1,
    *,
    version: str = VERSION,
    capabilities: JSON | None = None,
    extra: JSON | None = None,
) -> JSON:
    """A modern request; `extra` adds `_meta` keys (progressToken, logLevel)."""
    body_params = dict(params or {})
    body_params["_meta"] = meta(version=version, capabilities=capabilities, extra=extra)
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": body_params}


def headers_for(message: JSON, **override: str | None) -> dict[str, str]:
    """The headers a conforming modern client sends for `message`."""
    headers = {
        "Accept": ACCEPT,
        "Content-Type": "application/json",
        "MCP-Protocol-Version": message["params"]["_meta"][
            "io.modelcontextprotocol/protocolVersion"
        ],
        "Mcp-Method": message["method"],
    }
    key = NAME_BEARING.get(message["method"])
    if key is not None:
        headers["Mcp-Name"] = message["params"][key]
    for name, value in override.items():
        name = name.replace("_", "-")
        headers.pop(name, None)
        for existing in [k for k in headers if k.lower() == name.lower()]:
            del headers[existing]
        if value is not None:
            headers[name] = value
    return headers


async def post(
    client: httpx.AsyncClient, url: str, message: JSON, **override: str | None
) -> httpx.Response:
    return await client.post(
        url, content=json.dumps(message), headers=headers_for(message, **override)
    )


def tool_call(
    name: str,
    arguments: JSON,
    request_id: int | str = 1,
    *,
    capabilities: JSON | None = None,
    extra: JSON | None = None,
) -> JSON:
    return request(
        "tools/call",
        {"name": name, "arguments": arguments},
        request_id,
        capabilities=capabilities,
        extra=extra,
    )


def error_of(response: httpx.Response) -> JSON:
    body = response.json()
    assert "result" not in body
    error: JSON = body["error"]
    return error


def sse_messages(text: str) -> list[JSON]:
    """The JSON-RPC messages of a complete SSE body (comment lines skipped)."""
    messages = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].lstrip() for line in block.split("\n") if line.startswith("data:")]
        if data:
            messages.append(json.loads("\n".join(data)))
    return messages


@asynccontextmanager
async def running(server: StrictServer) -> AsyncIterator[tuple[RunningServer, httpx.AsyncClient]]:
    async with serve(server) as live, httpx.AsyncClient(timeout=10) as client:
        yield live, client


class EventReader:
    """Reads SSE messages one at a time from a streamed response."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()
        self.raw: list[str] = []

    async def next(self) -> JSON:
        data: list[str] = []
        async for line in self._lines:
            self.raw.append(line)
            if line == "":
                if data:
                    return dict(json.loads("\n".join(data)))
                continue
            if line.startswith("data:"):
                data.append(line[5:].lstrip())
        raise EOFError


# -- discover, results, caching ---------------------------------------------------------


async def test_discover_result_and_no_session() -> None:
    async with running(StrictServer(era="modern")) as (live, client):
        response = await post(client, live.url, request("server/discover", request_id="d1"))
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert "mcp-session-id" not in response.headers
        body = response.json()
        assert body["id"] == "d1"
        result = body["result"]
        assert result["resultType"] == "complete"
        assert result["supportedVersions"] == [VERSION]
        assert result["capabilities"]["tools"] == {"listChanged": True}
        assert isinstance(result["instructions"], str)
        assert result["ttlMs"] == 0
        assert result["cacheScope"] == "private"
        assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"]
        stats = live.stats
        assert (stats.discover_requests, stats.modern_requests) == (1, 1)
        assert stats.initialize_requests == 0
        assert stats.sessions_created == 0


async def test_every_result_has_result_type_and_cacheable_ones_hints() -> None:
    server = StrictServer(era="modern", ttl_ms=60_000, cache_scope="public")
    async with running(server) as (live, client):
        cacheable = [
            request("tools/list"),
            request("resources/list"),
            request("resources/templates/list"),
            request("prompts/list"),
            request("resources/read", {"uri": "memo://one"}),
        ]
        for message in cacheable:
            result = (await post(client, live.url, message)).json()["result"]
            assert result["resultType"] == "complete", message["method"]
            assert (result["ttlMs"], result["cacheScope"]) == (60_000, "public")
        others = [
            tool_call("echo", {"text": "hi"}),
            request("prompts/get", {"name": "greet", "arguments": {"name": "Ada"}}),
            request(
                "completion/complete",
                {
                    "ref": {"type": "ref/prompt", "name": "greet"},
                    "argument": {"name": "name", "value": "A"},
                },
            ),
        ]
        for message in others:
            result = (await post(client, live.url, message)).json()["result"]
            assert result["resultType"] == "complete", message["method"]
            assert "ttlMs" not in result
        tools = (await post(client, live.url, request("tools/list"))).json()["result"]["tools"]
        names = {tool["name"] for tool in tools}
        assert {"echo", "increment", "ask_user", "retry_later", "route", "log"} <= names


async def test_unknown_resource_is_invalid_params_not_32002() -> None:
    async with running(StrictServer(era="modern")) as (live, client):
        response = await post(client, live.url, request("resources/read", {"uri": "memo://nope"}))
        assert response.status_code == 400
        assert error_of(response) == {
            "code": -32602,
            "message": "Resource not found",
            "data": {"uri": "memo://nope"},
        }


# -- _meta and header validation ----------------------------------------------------------


async def test_missing_meta_fields_are_invalid_params_with_400() -> None:
    async with running(StrictServer(era="modern")) as (live, client):
        bare = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        headers = {
            "Accept": ACCEPT,
            "Content-Type": "application/json",
            "MCP-Protocol-Version": VERSION,
            "Mcp-Method": "tools/list",
        }
        response = await client.post(live.url, content=json.dumps(bare), headers=headers)
        assert response.status_code == 400
        error = error_of(response)
        assert error["code"] == -32602
        assert "io.modelcontextprotocol/clientCapabilities" in error["message"]

        no_caps = request("tools/list")
        del no_caps["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"]
        response = await post(client, live.url, no_caps)
        assert response.status_code == 400
        assert error_of(response)["message"] == (
            "params._meta is missing the required envelope key(s): "
            "io.modelcontextprotocol/clientCapabilities"
        )
        # clientInfo is only a SHOULD.
        no_info = request("tools/list")
        del no_info["params"]["_meta"]["io.modelcontextprotocol/clientInfo"]
        assert (await post(client, live.url, no_info)).status_code == 200
        bad_level = request("tools/list", extra={"io.modelcontextprotocol/logLevel": "loud"})
        response = await post(client, live.url, bad_level)
        assert (response.status_code, error_of(response)["code"]) == (400, -32602)


@pytest.mark.parametrize(
    ("message", "override", "expected"),
    [
        (
            request("tools/list"),
            {"MCP-Protocol-Version": None},
            "mcp-protocol-version header does not match the request envelope's protocol version",
        ),
        (
            request("tools/list"),
            {"MCP-Protocol-Version": "2025-11-25"},
            "mcp-protocol-version header does not match the request envelope's protocol version",
        ),
        (
            request("tools/list"),
            {"Mcp-Method": "tools/call"},
            "mcp-method header does not match the request body's method",
        ),
        (
            request("tools/list"),
            {"Mcp-Method": None},
            "mcp-method header does not match the request body's method",
        ),
        (
            tool_call("echo", {"text": "x"}),
            {"Mcp-Name": None},
            "mcp-name header does not match the request body's 'name' parameter",
        ),
        (
            request("resources/read", {"uri": "memo://one"}),
            {"Mcp-Name": "memo://two"},
            "mcp-name header does not match the request body's 'uri' parameter",
        ),
        (
            request("prompts/get", {"name": "greet", "arguments": {"name": "A"}}),
            {"Mcp-Name": "other"},
            "mcp-name header does not match the request body's 'name' parameter",
        ),
    ],
)
async def test_header_mismatch_is_32020_with_400(
    message: JSON, override: dict[str, str | None], expected: str
) -> None:
    async with running(StrictServer(era="modern")) as (live, client):
        response = await post(client, live.url, message, **override)
        assert response.status_code == 400
        assert error_of(response) == {"code": -32020, "message": expected}
        assert response.json()["id"] == 1


async def test_mcp_name_may_be_base64_encoded_and_duplicates_are_rejected() -> None:
    async with running(StrictServer(era="modern")) as (live, client):
        message = tool_call("echo", {"text": "x"})
        encoded = "=?base64?" + base64.b64encode(b"echo").decode() + "?="
        assert (await post(client, live.url, message, Mcp_Name=encoded)).status_code == 200
        headers = [*headers_for(message).items(), ("Mcp-Method", "tools/call")]
        response = await client.post(live.url, content=json.dumps(message), headers=headers)
        assert response.status_code == 400
        assert error_of(response) == {
            "code": -32020,
            "message": "mcp-method header appears more than once",
        }


async def test_unsupported_version_names_the_supported_ones() -> None:
    server = StrictServer(era="modern", modern_versions=("2099-01-01",))
    async with running(server) as (live, client):
        response = await post(client, live.url, request("server/discover"))
        assert response.status_code == 400
        assert error_of(response) == {
            "code": -32022,
            "message": "Unsupported protocol version",
            "data": {"supported": ["2099-01-01"], "requested": VERSION},
        }
        # The client picks from `supported` and retries.
        retry = request("server/discover", request_id=2, version="2099-01-01")
        result = (await post(client, live.url, retry)).json()["result"]
        assert result["supportedVersions"] == ["2099-01-01"]
        # A header that disagrees with the body is told so before the version is judged.
        mismatch = await post(client, live.url, request("tools/list"), MCP_Protocol_Version="x")
        assert error_of(mismatch)["code"] == -32020


async def test_unknown_method_is_404_with_a_json_rpc_body() -> None:
    async with running(StrictServer(era="modern", json_response=False)) as (live, client):
        for method in ("foo/bar", "ping", "logging/setLevel", "resources/subscribe"):
            response = await post(client, live.url, request(method))
            assert response.status_code == 404, method
            assert response.headers["content-type"] == "application/json"
            assert error_of(response) == {
                "code": -32601,
                "message": "Method not found",
                "data": method,
            }
        assert live.stats.http_rejections[404] == 4


async def test_legacy_traffic_on_a_modern_only_server() -> None:
    async with running(StrictServer(era="modern")) as (live, client):
        for method in ("GET", "DELETE"):
            response = await client.request(method, live.url, headers={"Accept": ACCEPT})
            assert (response.status_code, response.headers["allow"]) == (405, "POST")
        initialize = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "legacy", "version": "1"},
            },
        }
        response = await client.post(
            live.url,
            content=json.dumps(initialize),
            headers={"Accept": ACCEPT, "Content-Type": "application/json"},
        )
        assert response.status_code == 400
        error = error_of(response)
        assert error["code"] == -32022
        assert error["data"] == {"supported": [VERSION], "requested": "2025-11-25"}
        assert "mcp-session-id" not in response.headers
        assert live.stats.initialize_requests == 1
        assert live.stats.sessions_created == 0
        # A session id is ignored, never echoed.
        listed = await post(client, live.url, request("tools/list"), Mcp_Session_Id="abc")
        assert listed.status_code == 200
        assert "mcp-session-id" not in listed.headers


async def test_notifications_are_accepted_and_dropped() -> None:
    async with running(StrictServer(era="modern")) as (live, client):
        note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}
        headers = {
            "Accept": ACCEPT,
            "Content-Type": "application/json",
            "MCP-Protocol-Version": VERSION,
            "Mcp-Method": "notifications/cancelled",
        }
        response = await client.post(live.url, content=json.dumps(note), headers=headers)
        assert (response.status_code, response.content) == (202, b"")
        headers["MCP-Protocol-Version"] = "1999-01-01"
        response = await client.post(live.url, content=json.dumps(note), headers=headers)
        assert response.status_code == 400
        body = response.json()
        assert body["id"] is None
        assert body["error"]["code"] == -32022


async def test_envelope_and_accept_errors() -> None:
    async with running(StrictServer(era="modern", json_response=False)) as (live, client):
        base = headers_for(request("tools/list"))
        response = await client.post(live.url, content="{", headers=base)
        assert response.status_code == 400
        assert response.json() == {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32700, "message": "Parse error"},
        }
        batch = json.dumps([request("tools/list")])
        response = await client.post(live.url, content=batch, headers=base)
        assert (response.status_code, error_of(response)["code"]) == (400, -32600)
        only_json = {**base, "Accept": "application/json"}
        response = await client.post(
            live.url, content=json.dumps(request("tools/list")), headers=only_json
        )
        assert (response.status_code, response.content) == (406, b"")


# -- streaming, logging, progress, cancellation ---------------------------------------


async def test_sse_answers_stream_progress_then_the_result() -> None:
    async with running(StrictServer(era="modern", json_response=False)) as (live, client):
        message = tool_call("progress", {"steps": 2}, extra={"progressToken": "tok"})
        response = await post(client, live.url, message)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["x-accel-buffering"] == "no"
        assert "\r\n" in response.text
        assert "id:" not in response.text  # no resumption: no event ids
        messages = sse_messages(response.text)
        assert [m.get("method") for m in messages[:2]] == ["notifications/progress"] * 2
        assert messages[0]["params"]["progressToken"] == "tok"
        assert messages[-1]["result"]["content"][0]["text"] == "completed 2 steps"
        # Nothing streamed before the answer: plain JSON, even in SSE mode.
        quick = await post(client, live.url, tool_call("echo", {"text": "x"}))
        assert quick.headers["content-type"] == "application/json"


async def test_log_messages_only_when_the_request_asks_for_them() -> None:
    async with running(StrictServer(era="modern", json_response=False)) as (live, client):
        opted_in = tool_call(
            "log",
            {"message": "hello", "level": "warning"},
            extra={"io.modelcontextprotocol/logLevel": "info"},
        )
        messages = sse_messages((await post(client, live.url, opted_in)).text)
        assert messages[0] == {
            "jsonrpc": "2.0",
            "method": "notifications/message",
            "params": {"level": "warning", "logger": "strict", "data": "hello"},
        }
        assert messages[1]["result"]["resultType"] == "complete"
        for message in (
            tool_call("log", {"message": "quiet"}),
            tool_call(
                "log",
                {"message": "low", "level": "debug"},
                extra={"io.modelcontextprotocol/logLevel": "info"},
            ),
        ):
            response = await post(client, live.url, message)
            assert response.headers["content-type"] == "application/json"
            assert "result" in response.json()


@pytest.mark.parametrize("json_response", [True, False])
async def test_closing_the_stream_cancels_the_request(json_response: bool) -> None:
    server = StrictServer(era="modern", json_response=json_response)
    async with running(server) as (live, client):
        message = tool_call("progress", {"steps": 50, "interval": 0.1}, extra={"progressToken": 1})
        with anyio.move_on_after(0.4):
            async with client.stream(
                "POST", live.url, content=json.dumps(message), headers=headers_for(message)
            ) as response:
                async for _ in response.aiter_raw():
                    pass
        # The server notices the closed stream on its own loop: wait for that event.
        assert await anyio.to_thread.run_sync(live.server.wait_for_cancellations, 1)
        assert live.stats.modern_cancellations == 1
        assert live.stats.tool_calls["progress"] == 1


# -- multi round-trip requests ---------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments", "capability", "key", "method", "answer", "text"),
    [
        (
            "elicit",
            {},
            {"elicitation": {}},
            "elicit",
            "elicitation/create",
            {"action": "accept", "content": {"name": "Ada"}},
            '{"action": "accept", "content": {"name": "Ada"}}',
        ),
        (
            "sample",
            {"prompt": "Capital of France?"},
            {"sampling": {}},
            "sample",
            "sampling/createMessage",
            {
                "role": "assistant",
                "content": {"type": "text", "text": "Paris"},
                "model": "m",
                "stopReason": "endTurn",
            },
            "Paris",
        ),
        (
            "list_roots",
            {},
            {"roots": {}},
            "roots",
            "roots/list",
            {"roots": [{"uri": "file:///w", "name": "w"}]},
            '[{"uri": "file:///w", "name": "w"}]',
        ),
    ],
)
async def test_input_required_then_complete(
    tool: str, arguments: JSON, capability: JSON, key: str, method: str, answer: JSON, text: str
) -> None:
    async with running(StrictServer(era="modern")) as (live, client):
        first = await post(client, live.url, tool_call(tool, arguments, capabilities=capability))
        assert first.status_code == 200
        result = first.json()["result"]
        assert result["resultType"] == "input_required"
        assert "ttlMs" not in result
        assert list(result["inputRequests"]) == [key]
        assert result["inputRequests"][key]["method"] == method
        assert isinstance(result["requestState"], str)
        retry = tool_call(tool, arguments, request_id=2, capabilities=capability)
        retry["params"]["inputResponses"] = {key: answer}
        retry["params"]["requestState"] = result["requestState"]
        done = (await post(client, live.url, retry)).json()
        assert done["id"] == 2
        assert done["result"]["resultType"] == "complete"
        assert done["result"]["content"][0]["text"] == text
        assert live.stats.input_required_results == 1
        # Without the capability: -32021 naming it, never an input request.
        refused = await post(client, live.url, tool_call(tool, arguments, request_id=3))
        assert refused.status_code == 400
        error = error_of(refused)
        assert error["code"] == -32021
        assert list(error["data"]["requiredCapabilities"]) == list(capability)


async def test_multi_round_input_required_with_state_echo() -> None:
    caps: JSON = {"elicitation": {"form": {}}}
    async with running(StrictServer(era="modern")) as (live, client):
        arguments = {"rounds": 3, "question": "Name?"}
        result = (
            await post(client, live.url, tool_call("ask_user", arguments, capabilities=caps))
        ).json()["result"]
        answers = []
        for number in range(1, 4):
            assert result["resultType"] == "input_required"
            key = f"q{number}"
            asked = result["inputRequests"][key]
            assert asked["params"]["message"] == f"Question {number} of 3: Name?"
            # A retry without the answer gets the same question again.
            again = tool_call("ask_user", arguments, request_id=f"r{number}", capabilities=caps)
            again["params"]["requestState"] = result["requestState"]
            repeat = (await post(client, live.url, again)).json()["result"]
            assert list(repeat["inputRequests"]) == [key]
            retry = tool_call("ask_user", arguments, request_id=number + 10, capabilities=caps)
            retry["params"]["requestState"] = repeat["requestState"]
            retry["params"]["inputResponses"] = {
                key: {"action": "accept", "content": {"n": number}}
            }
            answers.append({"n": number})
            result = (await post(client, live.url, retry)).json()["result"]
        assert result["resultType"] == "complete"
        assert json.loads(result["content"][0]["text"]) == {"action": "accept", "answers": answers}


async def test_request_state_is_integrity_protected_and_bound() -> None:
    caps: JSON = {"elicitation": {}}
    async with running(StrictServer(era="modern")) as (live, client):
        first = (
            await post(client, live.url, tool_call("ask_user", {"rounds": 2}, capabilities=caps))
        ).json()
        state = first["result"]["requestState"]
        # Change one character in the middle, always to a different one (the last
        # character of base64 may only carry padding bits, and may already be any value).
        mid = len(state) // 2
        tampered = state[:mid] + ("A" if state[mid] != "A" else "B") + state[mid + 1 :]
        for forged, arguments in ((tampered, {"rounds": 2}), (state, {"rounds": 1})):
            retry = tool_call("ask_user", arguments, request_id=2, capabilities=caps)
            retry["params"]["requestState"] = forged
            retry["params"]["inputResponses"] = {"q1": {"action": "accept", "content": {}}}
            response = await post(client, live.url, retry)
            assert response.status_code == 400
            assert error_of(response) == {
                "code": -32602,
                "message": "Invalid or expired requestState",
            }


async def test_state_only_input_required() -> None:
    async with running(StrictServer(era="modern")) as (live, client):
        arguments = {"times": 2}
        result = (await post(client, live.url, tool_call("retry_later", arguments))).json()[
            "result"
        ]
        rounds = 0
        while result["resultType"] == "input_required":
            rounds += 1
            assert "inputRequests" not in result
            retry = tool_call("retry_later", arguments, request_id=rounds + 1)
            retry["params"]["requestState"] = result["requestState"]
            result = (await post(client, live.url, retry)).json()["result"]
        assert rounds == 2
        assert result["content"][0]["text"] == "completed after 2 retries"


async def test_mcp_param_headers_mirror_annotated_arguments() -> None:
    async with running(StrictServer(era="modern")) as (live, client):
        message = tool_call("route", {"region": "us-west1", "text": "hi"})
        ok = await post(client, live.url, message, Mcp_Param_Region="us-west1")
        assert ok.json()["result"]["content"][0]["text"] == "us-west1: hi"
        encoded = "=?base64?" + base64.b64encode("Zürich".encode()).decode() + "?="
        swiss = tool_call("route", {"region": "Zürich"})
        assert (await post(client, live.url, swiss, Mcp_Param_Region=encoded)).status_code == 200
        for value, expected in (
            (
                None,
                "Mcp-Param-Region header is missing but the request body's 'region' "
                "argument is present",
            ),
            ("eu", "Mcp-Param-Region header does not match the request body's 'region' argument"),
        ):
            response = await post(client, live.url, message, Mcp_Param_Region=value)
            assert response.status_code == 400
            assert error_of(response) == {"code": -32020, "message": expected}
        assert live.stats.tool_calls["route"] == 2


# -- subscriptions/listen --------------------------------------------------------------


async def test_listen_acknowledges_then_streams_only_what_was_asked() -> None:
    async with running(StrictServer(era="modern")) as (live, client):  # JSON mode: still SSE
        listen = request(
            "subscriptions/listen",
            {
                "notifications": {
                    "toolsListChanged": True,
                    "promptsListChanged": False,
                    "resourceSubscriptions": ["memo://one"],
                }
            },
            request_id="sub-1",
        )
        async with client.stream(
            "POST", live.url, content=json.dumps(listen), headers=headers_for(listen)
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            reader = EventReader(response)
            ack = await reader.next()
            assert ack == {
                "jsonrpc": "2.0",
                "method": "notifications/subscriptions/acknowledged",
                "params": {
                    "_meta": {"io.modelcontextprotocol/subscriptionId": "sub-1"},
                    "notifications": {
                        "toolsListChanged": True,
                        "resourceSubscriptions": ["memo://one"],
                    },
                },
            }
            assert live.stats.subscriptions_opened == 1
            live.server.notify_prompts_changed()  # not asked for
            live.server.notify_resource_updated("memo://two")  # not subscribed
            live.server.notify_tools_changed()
            live.server.notify_resource_updated("memo://one")
            tools = await reader.next()
            assert tools == {
                "jsonrpc": "2.0",
                "method": "notifications/tools/list_changed",
                "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": "sub-1"}},
            }
            updated = await reader.next()
            assert updated["method"] == "notifications/resources/updated"
            assert updated["params"] == {
                "uri": "memo://one",
                "_meta": {"io.modelcontextprotocol/subscriptionId": "sub-1"},
            }
            live.server.close_subscriptions()
            final = await reader.next()
            assert final["id"] == "sub-1"
            assert final["result"]["resultType"] == "complete"
            assert final["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == "sub-1"
            with pytest.raises(EOFError):
                await reader.next()
        assert live.stats.modern_cancellations == 0


async def test_closing_a_listen_stream_cancels_it() -> None:
    async with running(StrictServer(era="modern", json_response=False)) as (live, client):
        listen = request("subscriptions/listen", {"notifications": {"toolsListChanged": True}})
        async with client.stream(
            "POST", live.url, content=json.dumps(listen), headers=headers_for(listen)
        ) as response:
            await EventReader(response).next()
        # The server notices the closed stream on its own loop: wait for that event.
        assert await anyio.to_thread.run_sync(live.server.wait_for_cancellations, 1)
        assert live.stats.modern_cancellations == 1
        live.server.notify_tools_changed()  # nobody listens any more: nothing breaks


async def test_listen_needs_sse_and_a_filter() -> None:
    async with running(StrictServer(era="modern")) as (live, client):
        listen = request("subscriptions/listen", {"notifications": {"toolsListChanged": True}})
        response = await post(client, live.url, listen, Accept="application/json")
        assert response.status_code == 406
        no_filter = request("subscriptions/listen")
        response = await post(client, live.url, no_filter)
        assert (response.status_code, error_of(response)["code"]) == (400, -32602)


async def test_restart_cuts_listen_streams_without_a_result() -> None:
    async with running(StrictServer(era="modern")) as (live, client):
        listen = request("subscriptions/listen", {"notifications": {"toolsListChanged": True}})
        async with client.stream(
            "POST", live.url, content=json.dumps(listen), headers=headers_for(listen)
        ) as response:
            reader = EventReader(response)
            await reader.next()
            live.server.restart()
            with pytest.raises((EOFError, httpx.RemoteProtocolError)):
                await reader.next()
        assert live.stats.restarts == 1


# -- chaos -----------------------------------------------------------------------------


async def test_chaos_refusals_apply_to_modern_requests() -> None:
    server = StrictServer(era="modern", chaos=Chaos(seed=1, reject_rate=1.0, reject_status=429))
    async with running(server) as (live, client):
        response = await post(client, live.url, request("server/discover"))
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        assert live.stats.modern_requests == 0
        assert live.stats.discover_requests == 0
        assert live.stats.faults == [(1, "429")]


async def test_chaos_cuts_a_json_answer_after_the_tool_ran() -> None:
    server = StrictServer(era="modern", chaos=Chaos(seed=1, drop_rate=1.0))
    async with running(server) as (live, client):
        with pytest.raises(httpx.RemoteProtocolError):
            await post(client, live.url, tool_call("increment", {"key": "k"}))
        assert live.server.counter == 1
        assert live.stats.faults == [(1, "drop")]
        # Only tools/call is cut.
        assert (await post(client, live.url, request("tools/list"))).status_code == 200


async def test_chaos_cuts_an_sse_answer_after_the_first_progress_event() -> None:
    chaos = Chaos(seed=1, drop_rate=1.0, drop_after="progress")
    server = StrictServer(era="modern", json_response=False, chaos=chaos)
    async with running(server) as (live, client):
        message = tool_call("progress", {"steps": 3}, extra={"progressToken": "p"})
        async with client.stream(
            "POST", live.url, content=json.dumps(message), headers=headers_for(message)
        ) as response:
            reader = EventReader(response)
            first = await reader.next()
            assert first["method"] == "notifications/progress"
            with pytest.raises((EOFError, httpx.RemoteProtocolError)):
                await reader.next()
        assert live.stats.faults == [(1, "drop")]


# -- dual era --------------------------------------------------------------------------


async def test_dual_era_serves_both_and_counts_them_apart() -> None:
    async with running(StrictServer(era="dual")) as (live, client):
        legacy_headers = {"Accept": ACCEPT, "Content-Type": "application/json"}
        initialize = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "legacy", "version": "1"},
            },
        }
        opened = await client.post(live.url, content=json.dumps(initialize), headers=legacy_headers)
        assert opened.status_code == 200
        session_id = opened.headers["mcp-session-id"]
        session_headers = {
            **legacy_headers,
            "Mcp-Session-Id": session_id,
            "MCP-Protocol-Version": "2025-11-25",
        }
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        await client.post(live.url, content=json.dumps(note), headers=session_headers)
        listed = await client.post(
            live.url,
            content=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
            headers=session_headers,
        )
        legacy_tools = {tool["name"] for tool in listed.json()["result"]["tools"]}
        assert "resultType" not in listed.json()["result"]
        assert "ask_user" not in legacy_tools  # modern-only tool

        # The modern header routes to the modern era, session id or not.
        modern = await post(client, live.url, request("tools/list"), Mcp_Session_Id=session_id)
        assert modern.json()["result"]["resultType"] == "complete"
        assert "mcp-session-id" not in modern.headers
        discover = await post(client, live.url, request("server/discover"))
        assert discover.json()["result"]["supportedVersions"] == [VERSION]
        # GET with the modern header: 405; the legacy GET still needs its session.
        get = await client.get(
            live.url, headers={"Accept": ACCEPT, "MCP-Protocol-Version": VERSION}
        )
        assert get.status_code == 405
        stats = live.stats
        assert (stats.initialize_requests, stats.sessions_created) == (1, 1)
        assert (stats.modern_requests, stats.discover_requests) == (2, 1)
        assert stats.early_requests == 0


async def test_dual_era_modern_body_without_the_header_is_legacy() -> None:
    # As mcp 2.3: era routing reads the header only.
    async with running(StrictServer(era="dual")) as (live, client):
        response = await post(
            client, live.url, request("server/discover"), MCP_Protocol_Version=None
        )
        assert response.status_code == 400
        assert error_of(response) == {"code": -32600, "message": "Bad Request: Missing session ID"}
        assert live.stats.modern_requests == 0
        assert live.stats.discover_requests == 1


# -- legacy profiles answering a modern probe -----------------------------------------

_GENERIC = (
    400,
    {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32600, "message": "Bad Request: Missing session ID"},
    },
)
_TS = (
    400,
    {
        "jsonrpc": "2.0",
        "error": {"code": -32000, "message": "Bad Request: Server not initialized"},
        "id": None,
    },
)
PROBE_ANSWERS: dict[str, tuple[int, JSON | str]] = {
    "python-sdk-2": _GENERIC,
    "python-sdk": (
        400,
        {
            "jsonrpc": "2.0",
            "id": "server-error",
            "error": {"code": -32600, "message": "Bad Request: Missing session ID"},
        },
    ),
    "rmcp-legacy": (422, "Unexpected message, expect initialize request"),
    "typescript": _TS,
    # Seen on the real server (2026.8.31): every session-less POST gets a fresh transport.
    "server-everything": _TS,
    "typescript-example": (
        400,
        {
            "jsonrpc": "2.0",
            "error": {"code": -32000, "message": "Bad Request: No valid session ID provided"},
            "id": None,
        },
    ),
    "go": (
        400,
        "Bad Request: Unsupported protocol version "
        "(supported versions: 2025-11-25,2025-06-18,2025-03-26,2024-11-05)\n",
    ),
    "docker-gateway": (
        400,
        "Bad Request: Unsupported protocol version "
        "(supported versions: 2025-11-25,2025-06-18,2025-03-26,2024-11-05)\n",
    ),
    # java-sdk's servlet transport: any POST without a session id but `initialize`.
    "java": (
        400,
        {
            "jsonRpcError": {
                "code": -32601,
                "message": "Session ID required in mcp-session-id header",
            },
            "message": "Session ID required in mcp-session-id header",
        },
    ),
    "lsp-style": _GENERIC,
    "lenient": _GENERIC,
}


def test_every_streamable_profile_has_a_probe_answer() -> None:
    assert set(PROBE_ANSWERS) == set(PROFILES) - {"python-sdk-sse"}


@pytest.mark.parametrize("profile", sorted(PROBE_ANSWERS))
async def test_legacy_profile_answers_a_modern_probe_like_the_real_server(profile: Any) -> None:
    async with running(StrictServer(profile=profile)) as (live, client):
        response = await post(client, live.url, request("server/discover"))
        status, body = PROBE_ANSWERS[profile]
        assert response.status_code == status
        if isinstance(body, str):
            assert response.headers["content-type"] == "text/plain; charset=utf-8"
            assert response.text == body
        else:
            assert response.json() == body
        stats = live.stats
        assert stats.discover_requests == 1
        assert stats.early_requests == 0
        assert stats.modern_requests == 0
        # The client falls back to the handshake, which works.
        initialize = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "fallback", "version": "1"},
            },
        }
        opened = await client.post(
            live.url,
            content=json.dumps(initialize),
            headers={"Accept": ACCEPT, "Content-Type": "application/json"},
        )
        assert opened.status_code == 200
        assert opened.json()["result"]["protocolVersion"] == "2025-11-25"


async def test_legacy_sse_profile_answers_a_probe_with_405() -> None:
    async with running(StrictServer(profile="python-sdk-sse")) as (live, client):
        response = await post(client, live.url, request("server/discover"))
        assert response.status_code == 405
        assert response.text == "Method Not Allowed"
        assert live.stats.discover_requests == 1
        assert live.stats.http_rejections[405] == 1


def test_constructor_rejects_bad_modern_options() -> None:
    with pytest.raises(ValueError, match="era"):
        StrictServer(era="future")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="python-sdk-sse"):
        StrictServer(era="dual", profile="python-sdk-sse")
    with pytest.raises(ValueError, match="modern_versions"):
        StrictServer(era="modern", modern_versions=("2025-11-25",))
    with pytest.raises(ValueError, match="modern_versions"):
        StrictServer(era="modern", modern_versions=())
    with pytest.raises(ValueError, match="ttl_ms"):
        StrictServer(era="modern", ttl_ms=-1)
    server = StrictServer(era="dual", modern_versions=("2026-07-28", "2027-01-01"))
    assert (server.era, server.modern_versions) == ("dual", ("2026-07-28", "2027-01-01"))
