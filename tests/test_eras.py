"""Era and transport detection, the modern envelope, and the detection cache.

Unit level: a scripted server in ``httpx.MockTransport`` answers like each kind of real
server (modern, legacy Streamable HTTP, legacy HTTP+SSE), so every branch of the
back-compat rules is aimed at exactly. The fault server and the real peers cover the
same ground end to end (test_modern.py, tests/peers/).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
import structlog
from structlog.testing import capture_logs

import resilient_mcp
from resilient_mcp import (
    Handlers,
    InputRequiredError,
    Limits,
    RetryPolicy,
    UnsupportedProtocolVersion,
)
from resilient_mcp._detection import default_cache, http_key
from resilient_mcp._eras import modern as _modern
from resilient_mcp.types import ElicitRequestParams, ElicitResult

from .fake import FakeServer, json_response

pytestmark = pytest.mark.anyio

URL = "http://modern.test/mcp"
MODERN = "2026-07-28"


def _error(message: dict[str, Any], code: int, text: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": text}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": message.get("id"), "error": error}


@dataclass
class ModernServer:
    """Speaks 2026-07-28 only, checking every request as the spec says."""

    versions: tuple[str, ...] = (MODERN,)
    ttl_ms: int = 0
    cache_scope: str = "private"
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[httpx.Headers] = field(default_factory=list)
    tools: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = field(default_factory=dict)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    def methods(self) -> list[str]:
        return [str(m.get("method")) for m in self.received]

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            return httpx.Response(405)
        message = json.loads(request.content)
        self.received.append(message)
        self.headers.append(request.headers)
        method = message.get("method")
        meta = (message.get("params") or {}).get("_meta") or {}
        version = meta.get("io.modelcontextprotocol/protocolVersion")
        if version is None or "io.modelcontextprotocol/clientCapabilities" not in meta:
            return json_response(_error(message, -32602, "missing _meta"), status=400)
        if request.headers.get("mcp-protocol-version") != version:
            return json_response(_error(message, -32020, "header mismatch"), status=400)
        if request.headers.get("mcp-method") != method:
            return json_response(_error(message, -32020, "header mismatch"), status=400)
        if version not in self.versions:
            return json_response(
                _error(
                    message,
                    -32022,
                    "Unsupported protocol version",
                    {"supported": list(self.versions), "requested": version},
                ),
                status=400,
            )
        if method == "server/discover":
            return self._result(
                message,
                {
                    "supportedVersions": list(self.versions),
                    "capabilities": {"tools": {"listChanged": True}},
                    "instructions": "be modern",
                    "ttlMs": self.ttl_ms,
                    "cacheScope": self.cache_scope,
                    "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "m", "version": "9"}},
                },
            )
        if method == "tools/call":
            params = message["params"]
            tool = self.tools.get(params["name"])
            if tool is not None:
                return self._result(message, tool(params))
            return self._result(message, {"content": [{"type": "text", "text": params["name"]}]})
        if method == "tools/list":
            return self._result(message, {"tools": [{"name": "t", "inputSchema": {}}]})
        return json_response(_error(message, -32601, f"Method not found: {method}"), status=404)

    def _result(self, message: dict[str, Any], value: dict[str, Any]) -> httpx.Response:
        return json_response(
            {"jsonrpc": "2.0", "id": message["id"], "result": {"resultType": "complete", **value}}
        )


async def test_modern_server_is_detected_and_every_request_carries_the_envelope() -> None:
    server = ModernServer()
    async with (
        server.client() as http,
        resilient_mcp.connect(
            resilient_mcp.HTTPServer(URL, http_client=http), client_info=None
        ) as client,
    ):
        assert client.era == "modern"
        assert client.transport == "streamable-http"
        assert client.protocol_version == MODERN
        assert client.session_id is None
        assert client.instructions == "be modern"
        assert client.server_info is not None
        assert client.server_info.name == "m"
        assert client.capabilities is not None
        assert client.capabilities.tools is not None
        result = await client.call_tool("my tool ✓", {})
        assert result.text == "my tool ✓"
    assert server.methods() == ["server/discover", "tools/call"]
    call, headers = server.received[1], server.headers[1]
    meta = call["params"]["_meta"]
    assert meta["io.modelcontextprotocol/protocolVersion"] == MODERN
    assert meta["io.modelcontextprotocol/clientInfo"]["name"] == "resilient-mcp"
    assert meta["io.modelcontextprotocol/clientCapabilities"] == {}
    assert headers["mcp-method"] == "tools/call"
    # A name that would not survive an HTTP header travels base64-wrapped.
    encoded = base64.b64encode("my tool ✓".encode()).decode()
    assert headers["mcp-name"] == f"=?base64?{encoded}?="
    assert "mcp-session-id" not in headers


async def test_modern_capabilities_follow_the_handlers() -> None:
    async def elicit(params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(action="accept", content={})

    server = ModernServer()
    async with (
        server.client() as http,
        resilient_mcp.connect(
            resilient_mcp.HTTPServer(URL, http_client=http), handlers=Handlers(elicitation=elicit)
        ),
    ):
        pass
    meta = server.received[0]["params"]["_meta"]
    assert meta["io.modelcontextprotocol/clientCapabilities"] == {
        "elicitation": {"form": {"applyDefaults": True}}
    }


async def test_unsupported_version_answer_picks_a_mutual_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Pretend we also speak a newer modern version the server does not know yet: the
    # probe goes out in it, the server's -32022 names what it speaks, we pick that.
    monkeypatch.setattr(_modern, "MODERN_PROTOCOL_VERSIONS", ("2027-01-01", MODERN))
    server = ModernServer()
    async with (
        server.client() as http,
        resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
    ):
        assert client.era == "modern"
        assert client.protocol_version == MODERN
        await client.call_tool("t", {})
    versions = [
        m["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] for m in server.received
    ]
    assert versions == ["2027-01-01", MODERN, MODERN]


async def test_modern_only_server_without_a_common_version_is_a_typed_error() -> None:
    def future_only(request: httpx.Request) -> httpx.Response:
        message = json.loads(request.content)
        return json_response(
            _error(message, -32022, "Unsupported", {"supported": ["2031-01-01"]}), status=400
        )

    with pytest.raises(UnsupportedProtocolVersion) as caught:
        async with (
            httpx.AsyncClient(transport=httpx.MockTransport(future_only)) as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)),
        ):
            pass
    assert caught.value.supported == ("2031-01-01",)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Bad Request"}}),
        (200, {"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "nope"}}),
        (200, {"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "Invalid"}}),
        (200, {"jsonrpc": "2.0", "id": 1, "error": {"code": 0, "message": "no handshake"}}),
        (200, {"jsonrpc": "2.0", "id": 1, "result": {"something": "else"}}),
        (404, None),
        (400, None),
    ],
)
async def test_any_non_modern_answer_to_the_probe_means_legacy(
    status: int, body: dict[str, Any] | None
) -> None:
    def answer(message: dict[str, Any]) -> httpx.Response:
        if body is None:
            return httpx.Response(status, text="Bad Request")
        return json_response({**body, "id": message["id"]}, status=status)

    server = FakeServer(routes={"server/discover": answer})
    async with (
        server.client() as http,
        resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
    ):
        assert client.era == "legacy"
        assert client.protocol_version == "2025-11-25"
    assert server.methods()[:3] == ["server/discover", "initialize", "notifications/initialized"]


async def test_discover_result_offering_only_legacy_versions_means_legacy() -> None:
    def answer(message: dict[str, Any]) -> httpx.Response:
        return json_response(
            {
                "jsonrpc": "2.0",
                "id": message["id"],
                "result": {"supportedVersions": ["2025-11-25"], "capabilities": {}},
            }
        )

    server = FakeServer(routes={"server/discover": answer})
    async with (
        server.client() as http,
        resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
    ):
        assert client.era == "legacy"


async def test_forced_legacy_sends_no_probe() -> None:
    server = FakeServer()
    async with (
        server.client() as http,
        resilient_mcp.connect(
            resilient_mcp.HTTPServer(URL, http_client=http), era="legacy"
        ) as client,
    ):
        assert client.era == "legacy"
    assert server.probes == []


async def test_forced_modern_against_a_legacy_server_is_a_typed_error() -> None:
    server = FakeServer()
    with pytest.raises(UnsupportedProtocolVersion, match="modern era"):
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http), era="modern"),
        ):
            pass
    assert server.methods() == []  # no initialize was attempted


async def test_second_connect_to_a_legacy_endpoint_skips_the_probe() -> None:
    server = FakeServer()
    async with server.client() as http:
        async with resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client:
            assert client.era == "legacy"
        async with resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client:
            assert client.era == "legacy"
    assert len(server.probes) == 1
    assert server.methods().count("initialize") == 2


async def test_second_connect_to_a_modern_endpoint_reuses_a_public_discover_result() -> None:
    server = ModernServer(ttl_ms=60_000, cache_scope="public")
    async with server.client() as http:
        for _ in range(3):
            async with resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http)
            ) as client:
                assert client.era == "modern"
                assert client.instructions == "be modern"
                await client.call_tool("t", {})
    assert server.methods().count("server/discover") == 1


async def test_a_private_discover_result_is_asked_again_but_the_era_is_remembered() -> None:
    server = ModernServer(ttl_ms=60_000, cache_scope="private")
    async with server.client() as http:
        for _ in range(2):
            async with resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http)
            ) as client:
                assert client.era == "modern"
        assert server.methods() == ["server/discover", "server/discover"]
        entry = default_cache.get(http_key(httpx.URL(URL), http_client=http))
    assert entry is not None
    assert entry.era == "modern"
    assert entry.discover is None


async def test_cached_modern_endpoint_that_turned_legacy_is_detected_again() -> None:
    modern = ModernServer(ttl_ms=60_000, cache_scope="public")
    legacy = _StrictLegacy()
    current: list[Callable[[httpx.Request], Any]] = [modern.handle]

    async def route(request: httpx.Request) -> httpx.Response:
        if current[0] == legacy.handle and request.method == "POST":
            # As the Python SDK does: no session id on a non-initialize request.
            message = json.loads(request.content)
            if message.get("method") != "initialize" and "mcp-session-id" not in request.headers:
                legacy.rejected.append(message["method"])
                return json_response(
                    _error(message, -32600, "Bad Request: Missing session ID"), status=400
                )
        answer = current[0](request)
        return answer if isinstance(answer, httpx.Response) else await answer

    async with httpx.AsyncClient(transport=httpx.MockTransport(route)) as http:
        async with resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client:
            assert client.era == "modern"
        current[0] = legacy.handle  # redeployed in place as a legacy server
        async with resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client:
            # The cached discover result let us skip the probe; the first call then
            # met a legacy server, which the client detected and followed.
            result = await client.call_tool("echo", {"x": 1})
            assert json.loads(result.text) == {"x": 1}
            assert client.era == "legacy"
    assert legacy.rejected == ["tools/call", "server/discover"]
    assert legacy.methods() == ["initialize", "notifications/initialized", "tools/call"]


@dataclass
class _StrictLegacy(FakeServer):
    rejected: list[str] = field(default_factory=list)


async def test_input_required_is_answered_by_the_handlers_and_resent() -> None:
    asked: list[str] = []

    async def elicit(params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"ok": True})

    def confirm(params: dict[str, Any]) -> dict[str, Any]:
        responses = params.get("inputResponses")
        if responses is None:
            return {
                "resultType": "input_required",
                "inputRequests": {
                    "confirm": {
                        "method": "elicitation/create",
                        "params": {
                            "mode": "form",
                            "message": "Sure?",
                            "requestedSchema": {"type": "object", "properties": {}},
                        },
                    }
                },
                "requestState": "opaque-1",
            }
        assert params["requestState"] == "opaque-1"
        answer = responses["confirm"]
        return {"content": [{"type": "text", "text": f"{answer['action']}:{answer['content']}"}]}

    server = ModernServer()
    server.tools["deploy"] = confirm
    async with (
        server.client() as http,
        resilient_mcp.connect(
            resilient_mcp.HTTPServer(URL, http_client=http), handlers=Handlers(elicitation=elicit)
        ) as c,
    ):
        result = await c.call_tool("deploy", {})
    assert result.text == "accept:{'ok': True}"
    assert asked == ["Sure?"]
    assert server.methods() == ["server/discover", "tools/call", "tools/call"]


async def test_input_required_without_a_handler_is_a_typed_error() -> None:
    def ask(params: dict[str, Any]) -> dict[str, Any]:
        return {
            "resultType": "input_required",
            "inputRequests": {"r": {"method": "roots/list", "params": {}}},
        }

    server = ModernServer()
    server.tools["needs_roots"] = ask
    async with (
        server.client() as http,
        resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
    ):
        with pytest.raises(InputRequiredError, match="no handler for roots/list") as caught:
            await client.call_tool("needs_roots", {})
    assert caught.value.methods == ("roots/list",)
    assert caught.value.execution is resilient_mcp.Execution.MAYBE


async def test_input_required_rounds_are_bounded() -> None:
    sleeps: list[float] = []

    async def no_sleep(delay: float) -> None:
        sleeps.append(delay)

    def forever(params: dict[str, Any]) -> dict[str, Any]:
        return {"resultType": "input_required", "requestState": "again"}

    server = ModernServer()
    server.tools["loop"] = forever
    async with (
        server.client() as http,
        resilient_mcp.connect(
            resilient_mcp.HTTPServer(URL, http_client=http),
            limits=Limits(max_input_rounds=3),
            retry=RetryPolicy(sleep=no_sleep),
        ) as client,
    ):
        with pytest.raises(InputRequiredError, match="after 3 rounds"):
            await client.call_tool("loop", {})
    assert server.methods().count("tools/call") == 4
    # State-only rounds back off: 50 ms doubling, capped at 250 ms.
    assert sleeps == [0.05, 0.1, 0.2]


async def test_ping_and_log_level_in_the_modern_era() -> None:
    server = ModernServer()
    async with (
        server.client() as http,
        resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
    ):
        await client.ping()
        await client.set_logging_level("debug")
        await client.call_tool("t", {})
    # No ping and no logging/setLevel in 2026-07-28: a discover proves liveness, and the
    # level travels with every later request.
    assert server.methods() == ["server/discover", "server/discover", "tools/call"]
    assert server.received[-1]["params"]["_meta"]["io.modelcontextprotocol/logLevel"] == "debug"


async def test_legacy_sse_server_is_found_after_streamable_http_is_refused() -> None:
    # A 2024-11-05 server: POST to its SSE URL is 405; GET opens the event stream.
    server_posts: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/sse":
            server_posts.append(json.loads(request.content)["method"])
            return httpx.Response(405, text="Method Not Allowed")
        return httpx.Response(500)

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http,
        resilient_mcp.connect(
            resilient_mcp.HTTPServer("http://old.test/sse", http_client=http), wait_ready=False
        ) as c,
    ):
        # The mock cannot stream an endless SSE body; reaching the GET proves the switch.
        with pytest.raises(resilient_mcp.MCPError):
            await c.wait_ready(timeout=5)
        assert c.transport == "sse"
    assert server_posts == ["server/discover", "initialize"]


async def test_subscriptions_listen_carries_notifications_in_the_modern_era() -> None:
    server = ModernServer()
    listens: list[dict[str, Any]] = []
    heard: list[str] = []
    changed = anyio.Event()
    subscribed = anyio.Event()

    def handle(request: httpx.Request) -> httpx.Response:
        message = json.loads(request.content)
        if message.get("method") != "subscriptions/listen":
            return server.handle(request)
        listens.append(message["params"]["notifications"])
        if "resourceSubscriptions" in listens[-1]:
            subscribed.set()
        events = [
            {
                "jsonrpc": "2.0",
                "method": "notifications/subscriptions/acknowledged",
                "params": {"notifications": message["params"]["notifications"]},
            },
            {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"},
        ]
        body = "".join(f"data: {json.dumps(e)}\n\n" for e in events)
        # The stream then stays open; a mock cannot hold it, so it ends here (without a
        # result) and the client listens again after a backoff.
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    async def on_notification(method: str, params: Any) -> None:
        heard.append(method)
        if method == "notifications/tools/list_changed":
            changed.set()

    async def no_sleep(delay: float) -> None:
        await anyio.lowlevel.checkpoint()  # yield, so the test can close the client meanwhile

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http,
        resilient_mcp.connect(
            resilient_mcp.HTTPServer(URL, http_client=http),
            handlers=Handlers(notification=on_notification),
            retry=RetryPolicy(sleep=no_sleep),
        ) as client,
    ):
        with anyio.fail_after(5):
            await changed.wait()
        await client.subscribe_resource("file:///a")
        with anyio.fail_after(5):
            await subscribed.wait()
    assert listens[0] == {
        "toolsListChanged": True,
        "promptsListChanged": True,
        "resourcesListChanged": True,
    }
    assert any(f.get("resourceSubscriptions") == ["file:///a"] for f in listens)
    assert heard[:2] == [
        "notifications/subscriptions/acknowledged",
        "notifications/tools/list_changed",
    ]


REGION_TOOL = {
    "name": "deploy",
    "inputSchema": {
        "type": "object",
        "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "opts": {
                "type": "object",
                "properties": {
                    "dry": {"type": "boolean", "x-mcp-header": "Dry-Run"},
                    "n": {"type": "integer", "x-mcp-header": "Count"},
                },
            },
            "note": {"type": "string"},
        },
    },
}
BAD_TOOLS = [
    {"name": "empty", "inputSchema": {"properties": {"a": {"type": "string", "x-mcp-header": ""}}}},
    {
        "name": "not_token",
        "inputSchema": {"properties": {"a": {"type": "string", "x-mcp-header": "a b"}}},
    },
    {
        "name": "duplicate",
        "inputSchema": {
            "properties": {
                "a": {"type": "string", "x-mcp-header": "X"},
                "b": {"type": "string", "x-mcp-header": "x"},
            }
        },
    },
    {
        "name": "non_primitive",
        "inputSchema": {"properties": {"a": {"type": "number", "x-mcp-header": "A"}}},
    },
    {
        "name": "unreachable",
        "inputSchema": {
            "anyOf": [{"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}],
        },
    },
]


async def test_x_mcp_header_arguments_travel_as_mcp_param_headers() -> None:
    server = ModernServer()
    catalog = [REGION_TOOL, *BAD_TOOLS, {"name": "plain", "inputSchema": {}}]

    def handle(request: httpx.Request) -> httpx.Response:
        message = json.loads(request.content)
        if message.get("method") == "tools/list":
            server.received.append(message)
            server.headers.append(request.headers)
            return server._result(message, {"tools": catalog})
        return server.handle(request)

    with capture_logs() as events:
        async with (
            httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http), logger=structlog.get_logger()
            ) as c,
        ):
            names = [tool.name for tool in await c.list_tools()]
            await c.call_tool(
                "deploy", {"region": "eu-west ✓", "opts": {"dry": False, "n": 3}, "note": "x"}
            )
            await c.call_tool("deploy", {"region": "us"})  # absent values: no header
    assert names == ["deploy", "plain"]  # tools with invalid annotations are dropped
    dropped = sorted(str(e["tool"]) for e in events if e["event"] == "tool.dropped")
    assert dropped == sorted(str(t["name"]) for t in BAD_TOOLS)
    calls = [h for h in server.headers if h["mcp-method"] == "tools/call"]
    full, partial = calls
    region = base64.b64encode("eu-west ✓".encode()).decode()
    assert full["mcp-param-region"] == f"=?base64?{region}?="
    assert full["mcp-param-dry-run"] == "false"
    assert full["mcp-param-count"] == "3"
    assert "mcp-param-note" not in full
    assert partial["mcp-param-region"] == "us"
    assert "mcp-param-dry-run" not in partial


async def test_header_mismatch_lists_the_tools_again_and_retries_once() -> None:
    server = ModernServer()
    catalogs = [[{"name": "deploy", "inputSchema": {}}], [REGION_TOOL]]

    def handle(request: httpx.Request) -> httpx.Response:
        message = json.loads(request.content)
        method = message.get("method")
        if method == "tools/list":
            server.received.append(message)
            return server._result(message, {"tools": catalogs.pop(0)})
        if method == "tools/call" and "mcp-param-region" not in request.headers:
            server.received.append(message)
            return json_response(_error(message, -32020, "Mcp-Param-Region missing"), status=400)
        return server.handle(request)

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http,
        resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
    ):
        await client.list_tools()  # the server changed the tool since: no annotation here
        result = await client.call_tool("deploy", {"region": "eu"})
    assert result.text == "deploy"
    # (The tool cache also opened a subscriptions/listen stream, which this server
    # does not serve.)
    assert [m for m in server.methods() if m != "subscriptions/listen"] == [
        "server/discover",
        "tools/list",
        "tools/call",
        "tools/list",
        "tools/call",
    ]


async def test_unknown_result_type_is_malformed_not_complete() -> None:
    server = ModernServer()
    server.tools["task"] = lambda params: {"resultType": "task", "taskId": "1"}
    async with (
        server.client() as http,
        resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
    ):
        with pytest.raises(resilient_mcp.MalformedMessage, match="resultType"):
            await client.call_tool("task", {})
