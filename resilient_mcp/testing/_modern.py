"""The modern (handshake-free, protocol 2026-07-28) era of `StrictServer`.

Every request is a self-contained POST: `params._meta` carries the protocol version and
the client's capabilities, the `MCP-Protocol-Version`, `Mcp-Method` and (for
`tools/call`, `prompts/get`, `resources/read`) `Mcp-Name` headers mirror the body, and
there are no sessions, no `initialize`, no `ping`, no GET stream and no resumption.
Server→client requests become `input_required` results (multi round-trip requests),
change notifications flow on `subscriptions/listen` streams, and closing a response
stream cancels its request.

The answers follow the 2026-07-28 specification and, where it leaves a choice, the
reference server (the `mcp` 2.3 Python SDK): its validation ladder and messages, its
error-code → HTTP-status table, JSON answers for errors raised before anything was
streamed, `event: message` SSE frames with CRLF line ends and no event ids.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from starlette.datastructures import Headers
from starlette.types import Receive, Send

from resilient_mcp.testing import _catalog
from resilient_mcp.testing._catalog import JSON
from resilient_mcp.testing._chaos import Fate

if TYPE_CHECKING:
    from resilient_mcp.testing._server import StrictServer

MODERN_PROTOCOL_VERSION: Final = "2026-07-28"
HANDSHAKE_PROTOCOL_VERSIONS: Final = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
"""Versions reachable through `initialize`; a dual-era server sends a POST whose
`MCP-Protocol-Version` header names anything else (or an unknown value) to the modern
era, as the mcp 2.3 session manager does."""

PROTOCOL_VERSION_KEY: Final = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_KEY: Final = "io.modelcontextprotocol/clientCapabilities"
CLIENT_INFO_KEY: Final = "io.modelcontextprotocol/clientInfo"
LOG_LEVEL_KEY: Final = "io.modelcontextprotocol/logLevel"
SERVER_INFO_KEY: Final = "io.modelcontextprotocol/serverInfo"
SUBSCRIPTION_ID_KEY: Final = "io.modelcontextprotocol/subscriptionId"

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
HEADER_MISMATCH: Final = -32020
MISSING_REQUIRED_CLIENT_CAPABILITY: Final = -32021
UNSUPPORTED_PROTOCOL_VERSION: Final = -32022

# The reference server's error-code → HTTP-status table; other codes go out with 200.
ERROR_STATUS: Final[dict[int, int]] = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    MISSING_REQUIRED_CLIENT_CAPABILITY: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}

# Method → the params field mirrored into `Mcp-Name`.
NAME_BEARING: Final[dict[str, str]] = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
}
# Results that carry `ttlMs` / `cacheScope` (caching.mdx §Cacheable Results).
CACHEABLE: Final = frozenset(
    {
        "server/discover",
        "tools/list",
        "prompts/list",
        "resources/list",
        "resources/templates/list",
        "resources/read",
    }
)
_ROUTING_HEADERS: Final = frozenset({"mcp-protocol-version", "mcp-method", "mcp-name"})
_PARAM_PREFIX: Final = "mcp-param-"

_JSON_TYPE: Final = "application/json"
_SSE_TYPE: Final = "text/event-stream"
_SSE_HEADERS: Final = [
    (b"content-type", _SSE_TYPE.encode()),
    (b"cache-control", b"no-cache, no-transform"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),
]
# Seconds a request may run silent before its answer commits to SSE, and between
# keep-alive comments once it has (the reference server's 15 s).
SSE_DEFER_SECONDS: Final = 15.0
_PING: Final = b": ping\r\n\r\n"
# Events a listen stream may fall behind before it is ended (the client re-listens).
_LISTEN_BUFFER: Final = 64
# How long a minted `requestState` stays valid.
_STATE_TTL_SECONDS: Final = 300.0
# Upper bound of `ask_user.rounds` and `retry_later.times`.
MAX_ROUNDS: Final = 5

_LEVELS: Final = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
_B64_SENTINEL: Final = re.compile(r"^=\?base64\?(?P<payload>.*)\?=$")

_NAME_SCHEMA: Final[JSON] = {
    "type": "object",
    "properties": {"name": {"type": "string", "description": "Your name"}},
    "required": ["name"],
}

MODERN_TOOLS: Final[list[JSON]] = [
    {
        "name": "ask_user",
        "title": "Ask the user",
        "description": (
            "Asks the user `rounds` questions (1-5), one elicitation per input_required "
            "round; completes with every answer once the last one is re-sent."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "rounds": {"type": "integer", "minimum": 1, "maximum": MAX_ROUNDS},
                "question": {"type": "string"},
            },
        },
    },
    {
        "name": "retry_later",
        "title": "Retry later",
        "description": (
            "Answers input_required with only a requestState `times` times (1-5, load "
            "shedding); completes on the next retry."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {"times": {"type": "integer", "minimum": 1, "maximum": MAX_ROUNDS}},
        },
    },
    {
        "name": "route",
        "title": "Route",
        "description": "Echoes text; `region` is mirrored in the Mcp-Param-Region header.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "text": {"type": "string"},
            },
            "required": ["region"],
        },
    },
    {
        "name": "log",
        "title": "Log",
        "description": (
            "Emits one notifications/message at `level` on this request's stream when "
            "the request's _meta asks for that level (io.modelcontextprotocol/logLevel)."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "level": {"type": "string", "enum": list(_LEVELS)},
            },
            "required": ["message"],
        },
    },
]


class ModernError(Exception):
    """A JSON-RPC error a modern request is answered with."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


@dataclass(frozen=True)
class Envelope:
    """The validated per-request `_meta` of a modern request."""

    version: str
    capabilities: JSON
    client_info: Any
    log_level: str | None
    progress_token: str | int | None


@dataclass(eq=False)
class Exchange:
    """One modern request being answered: its cancel scope and how it ended."""

    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    dropped: bool = False
    """Cut by `restart()`: the connection ends without a proper end."""


@dataclass(eq=False)
class Listener:
    """One open `subscriptions/listen` stream."""

    subscription_id: str | int
    honored: JSON
    uris: frozenset[str]
    events: MemoryObjectSendStream[JSON]
    exchange: Exchange
    graceful: bool = False
    """Ended by the server on purpose: send the listen result before closing."""

    def wants(self, event: JSON) -> bool:
        method = event["method"]
        if method == "notifications/tools/list_changed":
            return bool(self.honored.get("toolsListChanged"))
        if method == "notifications/prompts/list_changed":
            return bool(self.honored.get("promptsListChanged"))
        if method == "notifications/resources/list_changed":
            return bool(self.honored.get("resourcesListChanged"))
        if method == "notifications/resources/updated":
            return event["params"]["uri"] in self.uris
        return False


# -- pure helpers ------------------------------------------------------------------------


def error_message(request_id: Any, code: int, message: str, data: Any = None) -> JSON:
    error: JSON = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def dumps(message: JSON) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def sse_frame(message: JSON) -> bytes:
    # The reference server's framing: CRLF line ends, no event id.
    return b"event: message\r\ndata: " + dumps(message) + b"\r\n\r\n"


def decode_header_value(value: str | None) -> str | None:
    """A header value with the `=?base64?…?=` sentinel decoded; None if malformed."""
    if value is None:
        return None
    match = _B64_SENTINEL.fullmatch(value)
    if match is None:
        return value
    payload = match.group("payload")
    try:
        decoded = base64.b64decode(payload, validate=True)
    except binascii.Error:
        return None
    if base64.b64encode(decoded).decode("ascii") != payload:
        return None  # not canonical base64
    try:
        return decoded.decode("utf-8")
    except UnicodeDecodeError:
        return None


def check_routing_duplicates(raw: Iterable[tuple[bytes, bytes]]) -> None:
    """A routing header sent twice is a -32020 (first- and last-copy readers disagree)."""
    seen: set[str] = set()
    for name_bytes, _ in raw:
        name = name_bytes.decode("latin-1").lower()
        if name in _ROUTING_HEADERS:
            if name in seen:
                raise ModernError(HEADER_MISMATCH, f"{name} header appears more than once")
            seen.add(name)


def unsupported_version(requested: str, supported: tuple[str, ...]) -> ModernError | None:
    if requested in supported:
        return None
    return ModernError(
        UNSUPPORTED_PROTOCOL_VERSION,
        "Unsupported protocol version",
        {"supported": list(supported), "requested": requested},
    )


def validate_envelope(
    message: JSON, headers: Headers | None, supported: tuple[str, ...]
) -> Envelope:
    """The reference server's validation ladder; raises the first rung that fails.

    1. `params._meta` carries protocolVersion and clientCapabilities (else -32602);
    2. on HTTP the routing headers match the body (else -32020);
    3. the version is a supported string (-32602 if not a string, else -32022).
    """
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(meta, dict):
        raise ModernError(
            INVALID_PARAMS,
            "params._meta must be an object carrying the required "
            f"{PROTOCOL_VERSION_KEY!r} and {CLIENT_CAPABILITIES_KEY!r} envelope keys",
        )
    missing = [key for key in (PROTOCOL_VERSION_KEY, CLIENT_CAPABILITIES_KEY) if key not in meta]
    if missing:
        raise ModernError(
            INVALID_PARAMS,
            f"params._meta is missing the required envelope key(s): {', '.join(missing)}",
        )
    assert isinstance(params, dict)  # _meta was found in it
    version = meta[PROTOCOL_VERSION_KEY]
    method = message["method"]
    if headers is not None:
        header_version = headers.get("mcp-protocol-version")
        if header_version is None or header_version != version:
            raise ModernError(
                HEADER_MISMATCH,
                "mcp-protocol-version header does not match the request envelope's "
                "protocol version",
            )
        if headers.get("mcp-method") != method:
            raise ModernError(
                HEADER_MISMATCH, "mcp-method header does not match the request body's method"
            )
        name_key = NAME_BEARING.get(method)
        if name_key is not None:
            body_value = params.get(name_key)
            if body_value is not None and decode_header_value(headers.get("mcp-name")) != (
                body_value
            ):
                raise ModernError(
                    HEADER_MISMATCH,
                    f"mcp-name header does not match the request body's {name_key!r} parameter",
                )
    if not isinstance(version, str):
        raise ModernError(INVALID_PARAMS, "the protocol-version envelope value must be a string")
    rejection = unsupported_version(version, supported)
    if rejection is not None:
        raise rejection
    capabilities = meta[CLIENT_CAPABILITIES_KEY]
    if not isinstance(capabilities, dict):
        raise ModernError(INVALID_PARAMS, "Invalid request parameters", "")
    log_level = meta.get(LOG_LEVEL_KEY)
    if log_level is not None and log_level not in _LEVELS:
        raise ModernError(INVALID_PARAMS, "Invalid request parameters", "")
    token = meta.get("progressToken")
    if not (isinstance(token, str | int) and not isinstance(token, bool)):
        token = None
    return Envelope(version, capabilities, meta.get(CLIENT_INFO_KEY), log_level, token)


def validate_param_headers(schema: JSON, arguments: JSON, headers: Headers) -> None:
    """Check `Mcp-Param-*` headers against the arguments (top-level `x-mcp-header`s)."""
    properties = schema.get("properties", {})
    for name, spec in properties.items():
        token = spec.get("x-mcp-header") if isinstance(spec, dict) else None
        if not isinstance(token, str):
            continue
        header = f"Mcp-Param-{token}"
        values = headers.getlist(header)
        raw = values[0] if values else None
        value = arguments.get(name)
        if len(values) > 1:
            raise ModernError(HEADER_MISMATCH, f"{header} header appears more than once")
        if value is None:
            if raw is not None:
                raise ModernError(
                    HEADER_MISMATCH,
                    f"{header} header is present but the request body's {name!r} argument "
                    "is absent",
                )
            continue
        if raw is None:
            raise ModernError(
                HEADER_MISMATCH,
                f"{header} header is missing but the request body's {name!r} argument is present",
            )
        decoded = decode_header_value(raw)
        if decoded is None:
            raise ModernError(
                HEADER_MISMATCH, f"{header} header carries a malformed base64 sentinel value"
            )
        rendered = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if decoded != rendered:
            raise ModernError(
                HEADER_MISMATCH,
                f"{header} header does not match the request body's {name!r} argument",
            )


def has_capability(capabilities: JSON, name: str) -> bool:
    if name == "elicitation":
        # A bare `elicitation: {}` means form support; url-only does not.
        elicitation = capabilities.get("elicitation")
        return isinstance(elicitation, dict) and ("form" in elicitation or "url" not in elicitation)
    return isinstance(capabilities.get(name), dict)


def missing_capability(name: str, tool: str) -> ModernError:
    required: JSON = {"elicitation": {"form": {}}} if name == "elicitation" else {name: {}}
    return ModernError(
        MISSING_REQUIRED_CLIENT_CAPABILITY,
        f"Client did not declare the {name} capability required by tool {tool!r}",
        {"requiredCapabilities": required},
    )


def is_modern_request(message: Any) -> bool:
    """Whether a JSON-RPC request carries the modern protocol-version `_meta` key."""
    if not isinstance(message, dict):
        return False
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and PROTOCOL_VERSION_KEY in meta


def _text(text: str, *, is_error: bool = False) -> JSON:
    return {"content": [{"type": "text", "text": text}], "isError": is_error}


async def read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_json(
    send: Send, status: int, payload: JSON | None, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = b"" if payload is None else dumps(payload)
    headers = [(b"content-length", str(len(body)).encode())]
    if payload is not None:
        headers.insert(0, (b"content-type", _JSON_TYPE.encode()))
    headers.extend(extra or [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def cut_json(send: Send, body: bytes) -> None:
    """Start a JSON answer and drop the connection halfway through its body."""
    headers = [
        (b"content-type", _JSON_TYPE.encode()),
        (b"content-length", str(max(len(body), 1)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})


def accepts(headers: Headers) -> tuple[bool, bool]:
    """(accepts JSON, accepts SSE), with RFC 9110 wildcards as the Python SDK reads them."""
    types = {part.split(";")[0].strip().lower() for part in headers.get("accept", "").split(",")}
    wildcard = "*/*" in types
    return (
        wildcard or bool(types & {_JSON_TYPE, "application/*"}),
        wildcard or bool(types & {_SSE_TYPE, "text/*"}),
    )


def _status_of(message: JSON) -> int:
    error = message.get("error")
    return ERROR_STATUS.get(error["code"], 200) if isinstance(error, dict) else 200


class _Watch:
    """Cancels a scope when the client disconnects."""

    def __init__(self) -> None:
        self.gone = False

    async def run(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                scope.cancel()
                return


# -- request state ---------------------------------------------------------------------


class StateSealer:
    """HMAC-protected `requestState`: bound to tool and arguments, expiring."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def seal(self, payload: JSON) -> str:
        body = base64.urlsafe_b64encode(dumps(payload)).decode("ascii").rstrip("=")
        mac = hmac.new(self._key, body.encode("ascii"), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    def open(self, token: Any) -> JSON | None:
        if not isinstance(token, str) or token.count(".") != 1:
            return None
        body, mac = token.split(".")
        expected = hmac.new(self._key, body.encode("ascii"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, expected):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(payload, dict) or payload.get("exp", 0) < time.time():
            return None
        return payload


def arguments_digest(tool: str, arguments: JSON) -> str:
    raw = json.dumps([tool, arguments], sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:32]


# -- the era -----------------------------------------------------------------------------

_Emit = Callable[[JSON], Awaitable[None]]


@dataclass
class Context:
    """What a modern method handler sees."""

    request_id: str | int
    method: str
    params: JSON
    envelope: Envelope
    headers: Headers | None
    emit: _Emit | None
    """Sends a notification on this request's response stream (None: nowhere)."""

    async def notify(self, method: str, params: JSON) -> None:
        if self.emit is not None:
            await self.emit({"jsonrpc": "2.0", "method": method, "params": params})


class ModernEra:
    """Serves modern requests for one `StrictServer`."""

    def __init__(self, server: StrictServer, key: bytes) -> None:
        self._server = server
        self._sealer = StateSealer(key)
        self.exchanges: set[Exchange] = set()
        self.listeners: set[Listener] = set()
        definitions = [definition for definition, _ in server._tools.values()]
        self.tool_list: list[JSON] = definitions + MODERN_TOOLS
        self._modern_tools = {definition["name"]: definition for definition in MODERN_TOOLS}
        self._handlers: dict[str, Callable[[Context], Awaitable[JSON]]] = {
            "server/discover": self._discover,
            "tools/list": self._tools_list,
            "tools/call": self._tools_call,
            "resources/list": self._delegate,
            "resources/templates/list": self._delegate,
            "resources/read": self._resources_read,
            "prompts/list": self._delegate,
            "prompts/get": self._delegate,
            "completion/complete": self._delegate,
        }

    # -- HTTP ----------------------------------------------------------------------------

    async def reject_method(self, send: Send) -> None:
        """GET, DELETE or any other non-POST on the modern endpoint: 405, `Allow: POST`."""
        self._server._stats.http_rejections[405] += 1
        await send_json(send, 405, None, [(b"allow", b"POST")])

    async def handle_post(
        self,
        headers: Headers,
        raw: list[tuple[bytes, bytes]],
        receive: Receive,
        send: Send,
        fate: Fate,
    ) -> None:
        server = self._server
        stats = server._stats
        has_json, has_sse = accepts(headers)
        if not has_json or (not server.json_response and not has_sse):
            await self._status_only(send, 406)
            return
        body = await read_body(receive)
        if body is None:
            return
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            await self._answer(send, error_message(None, PARSE_ERROR, "Parse error"))
            return
        if isinstance(message, dict) and "id" not in message:
            await self._notification(headers, message, send)
            return
        if not _is_request(message):
            await self._answer(
                send,
                error_message(
                    None,
                    INVALID_REQUEST,
                    "Body must be a single JSON-RPC request or notification object",
                ),
            )
            return
        method: str = message["method"]
        request_id = message["id"]
        if method == "subscriptions/listen" and not has_sse:
            await self._status_only(send, 406)
            return
        stats.requests[method] += 1
        stats.modern_requests += 1
        if method == "server/discover":
            stats.discover_requests += 1
        elif method == "initialize":
            stats.initialize_requests += 1
        if method == "initialize" and server.era == "modern":
            await self._answer(send, self._initialize_refusal(message))
            return
        try:
            check_routing_duplicates(raw)
            envelope = validate_envelope(message, headers, server.modern_versions)
            if method == "tools/call":
                self._check_param_headers(message.get("params", {}), headers)
        except ModernError as exc:
            await self._answer(send, error_message(request_id, exc.code, exc.message, exc.data))
            return
        params = message.get("params")
        context = Context(
            request_id, method, params if isinstance(params, dict) else {}, envelope, headers, None
        )
        if method == "subscriptions/listen":
            await self._listen(context, receive, send)
            return
        drop = fate.number if fate.drop and method == "tools/call" else None
        await self._respond(context, receive, send, drop)

    def _initialize_refusal(self, message: JSON) -> JSON:
        """A modern-only server names its versions to a legacy `initialize` (versioning.mdx
        §Backward Compatibility), with the -32022 mcp 2.3 uses on a modern connection."""
        params = message.get("params")
        requested = params.get("protocolVersion") if isinstance(params, dict) else None
        data: JSON = {"supported": list(self._server.modern_versions)}
        if isinstance(requested, str):
            data["requested"] = requested
        return error_message(
            message["id"],
            UNSUPPORTED_PROTOCOL_VERSION,
            "This server speaks only protocol "
            + ", ".join(self._server.modern_versions)
            + "; the initialize handshake is not accepted",
            data,
        )

    async def _status_only(self, send: Send, status: int) -> None:
        self._server._stats.http_rejections[status] += 1
        await send_json(send, status, None)

    async def _answer(self, send: Send, message: JSON) -> None:
        status = _status_of(message)
        if status >= 400:
            self._server._stats.http_rejections[status] += 1
        await send_json(send, status, message)

    async def _notification(self, headers: Headers, message: JSON, send: Send) -> None:
        """202 and drop (no client notifications exist on this wire), or a rejection."""
        if message.get("jsonrpc") != "2.0" or not isinstance(message.get("method"), str):
            await self._answer(
                send,
                error_message(
                    None,
                    INVALID_REQUEST,
                    "Body must be a single JSON-RPC request or notification object",
                ),
            )
            return
        rejection = unsupported_version(
            headers.get("mcp-protocol-version", ""), self._server.modern_versions
        )
        if rejection is not None:
            await self._answer(
                send, error_message(None, rejection.code, rejection.message, rejection.data)
            )
            return
        self._server._stats.notifications[message["method"]] += 1
        await send_json(send, 202, None)

    def _check_param_headers(self, params: Any, headers: Headers) -> None:
        if not isinstance(params, dict):
            return
        name = params.get("name")
        arguments = params.get("arguments")
        if not isinstance(name, str) or (arguments is not None and not isinstance(arguments, dict)):
            return
        definition = self._definition(name)
        if definition is not None:
            validate_param_headers(definition["inputSchema"], arguments or {}, headers)

    # -- answering -------------------------------------------------------------------------

    async def _run(self, context: Context) -> JSON:
        """The JSON-RPC response to `context`'s request."""
        handler = self._handlers.get(context.method)
        if handler is None:
            return error_message(
                context.request_id, METHOD_NOT_FOUND, "Method not found", context.method
            )
        try:
            result = await handler(context)
        except ModernError as exc:
            return error_message(context.request_id, exc.code, exc.message, exc.data)
        return {"jsonrpc": "2.0", "id": context.request_id, "result": self._finish(context, result)}

    def _finish(self, context: Context, result: JSON) -> JSON:
        """Add `resultType`, caching hints and the serverInfo stamp."""
        result = dict(result)
        result.setdefault("resultType", "complete")
        if context.method in CACHEABLE and result["resultType"] == "complete":
            result.setdefault("ttlMs", self._server.ttl_ms)
            result.setdefault("cacheScope", self._server.cache_scope)
        meta = dict(result.get("_meta") or {})
        meta.setdefault(SERVER_INFO_KEY, self._server_info())
        result["_meta"] = meta
        return result

    def _server_info(self) -> JSON:
        return {
            "name": _catalog.SERVER_NAME,
            "title": "resilient-mcp strict test server",
            "version": self._server._version,
        }

    async def _respond(
        self, context: Context, receive: Receive, send: Send, drop: int | None
    ) -> None:
        if self._server.json_response:
            await self._respond_json(context, receive, send, drop)
        else:
            await self._respond_sse(context, receive, send, drop)

    async def _respond_json(
        self, context: Context, receive: Receive, send: Send, drop: int | None
    ) -> None:
        exchange = Exchange()
        self.exchanges.add(exchange)
        watch = _Watch()
        outcome: JSON | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch.run, receive, tg.cancel_scope)
                with exchange.scope:
                    outcome = await self._run(context)
                tg.cancel_scope.cancel()
        finally:
            self.exchanges.discard(exchange)
        if outcome is None:
            if watch.gone:
                self._server._count_modern_cancellation()
            elif exchange.dropped:
                await cut_json(send, b"")
            return
        if drop is not None:
            self._server._fault("drop", drop)
            await cut_json(send, dumps(outcome))
            return
        await self._answer(send, outcome)

    async def _respond_sse(
        self, context: Context, receive: Receive, send: Send, drop: int | None
    ) -> None:
        """As the reference server: JSON if the answer is ready before anything was
        streamed, else `text/event-stream` (committed on the first notification or after
        `SSE_DEFER_SECONDS` of silence, then kept alive with comments)."""
        sender, receiver = anyio.create_memory_object_stream[JSON](0)
        context.emit = sender.send
        exchange = Exchange()
        self.exchanges.add(exchange)
        watch = _Watch()
        outcome: list[JSON] = []
        committed = False
        cut = False
        drop_after = self._server._chaos.drop_after if drop is not None else None

        async def produce() -> None:
            async with sender:
                with exchange.scope:
                    outcome.append(await self._run(context))

        try:
            async with receiver, anyio.create_task_group() as tg:
                tg.start_soon(produce)
                tg.start_soon(watch.run, receive, tg.cancel_scope)
                if drop_after == "priming":
                    # Nothing to stream before the cut: commit, then drop the connection.
                    await send(
                        {"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS}
                    )
                    committed = cut = True
                    self._server._fault("drop", drop)
                    tg.cancel_scope.cancel()
                else:
                    done = False
                    first: JSON | None = None
                    with anyio.move_on_after(SSE_DEFER_SECONDS):
                        try:
                            first = await receiver.receive()
                        except anyio.EndOfStream:
                            done = True
                    if not done:
                        committed = True
                        await send(
                            {"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS}
                        )
                        chunk = _PING if first is None else sse_frame(first)
                        while True:
                            await send(
                                {"type": "http.response.body", "body": chunk, "more_body": True}
                            )
                            if (
                                first is not None
                                and drop_after == "progress"
                                and (first.get("method") == "notifications/progress")
                            ):
                                cut = True
                                self._server._fault("drop", drop)
                                tg.cancel_scope.cancel()
                                break
                            first = None
                            with anyio.move_on_after(SSE_DEFER_SECONDS):
                                try:
                                    first = await receiver.receive()
                                except anyio.EndOfStream:
                                    break
                            chunk = _PING if first is None else sse_frame(first)
                    tg.cancel_scope.cancel()
        finally:
            self.exchanges.discard(exchange)
        if cut:
            return  # returning mid-response makes the ASGI server drop the connection
        if not outcome:
            if watch.gone:
                self._server._count_modern_cancellation()
            elif exchange.dropped and not committed:
                await cut_json(send, b"")
            return
        if not committed:
            await self._answer(send, outcome[0])
            return
        await send(
            {"type": "http.response.body", "body": sse_frame(outcome[0]), "more_body": False}
        )

    # -- subscriptions -----------------------------------------------------------------

    async def _listen(self, context: Context, receive: Receive, send: Send) -> None:
        notifications = context.params.get("notifications")
        if not isinstance(notifications, dict):
            await self._answer(
                send,
                error_message(
                    context.request_id,
                    INVALID_PARAMS,
                    "Invalid params: 'notifications' must be an object",
                ),
            )
            return
        honored: JSON = {}
        for flag in ("toolsListChanged", "promptsListChanged", "resourcesListChanged"):
            if notifications.get(flag) is True:
                honored[flag] = True
        uris = notifications.get("resourceSubscriptions")
        if isinstance(uris, list) and uris and all(isinstance(uri, str) for uri in uris):
            honored["resourceSubscriptions"] = list(uris)
        subscription_id = context.request_id
        meta = {SUBSCRIPTION_ID_KEY: subscription_id}
        sender, receiver = anyio.create_memory_object_stream[JSON](_LISTEN_BUFFER)
        exchange = Exchange()
        listener = Listener(
            subscription_id,
            honored,
            frozenset(honored.get("resourceSubscriptions", ())),
            sender,
            exchange,
        )
        # Registered before the ack is written: nothing published meanwhile is lost,
        # and the ack still goes first because only this task writes the stream.
        self.listeners.add(listener)
        self.exchanges.add(exchange)
        self._server._stats.subscriptions_opened += 1
        watch = _Watch()
        try:
            async with receiver, anyio.create_task_group() as tg:
                tg.start_soon(watch.run, receive, tg.cancel_scope)
                with exchange.scope:
                    await send(
                        {"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS}
                    )
                    ack = {
                        "jsonrpc": "2.0",
                        "method": "notifications/subscriptions/acknowledged",
                        "params": {"_meta": meta, "notifications": honored},
                    }
                    await send(
                        {"type": "http.response.body", "body": sse_frame(ack), "more_body": True}
                    )
                    while True:
                        event: JSON | None = None
                        with anyio.move_on_after(SSE_DEFER_SECONDS):
                            try:
                                event = await receiver.receive()
                            except anyio.EndOfStream:
                                break
                        if event is None:
                            chunk = _PING
                        else:
                            params = dict(event.get("params") or {})
                            params["_meta"] = meta
                            chunk = sse_frame({**event, "params": params})
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                tg.cancel_scope.cancel()
        finally:
            self.listeners.discard(listener)
            self.exchanges.discard(exchange)
            sender.close()
        if watch.gone:
            self._server._count_modern_cancellation()
            return
        if exchange.dropped or not listener.graceful:
            return  # cut without the listen result
        result = {"resultType": "complete", "_meta": {**meta, SERVER_INFO_KEY: self._server_info()}}
        final = {"jsonrpc": "2.0", "id": subscription_id, "result": result}
        await send({"type": "http.response.body", "body": sse_frame(final), "more_body": False})

    def publish(self, event: JSON) -> None:
        """Deliver a change notification to every listen stream that asked for it."""
        for listener in list(self.listeners):
            if not listener.wants(event):
                continue
            try:
                listener.events.send_nowait(event)
            except anyio.WouldBlock:
                # A client that stopped reading: end its stream (it re-listens).
                self.listeners.discard(listener)
                listener.events.close()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.listeners.discard(listener)

    def close_listeners(self) -> None:
        """End every listen stream gracefully: the listen result, then the end."""
        for listener in list(self.listeners):
            listener.graceful = True
            listener.events.close()

    def drop_all(self) -> None:
        """Cut every modern connection, as a restarted process would."""
        for exchange in list(self.exchanges):
            exchange.dropped = True
            exchange.scope.cancel()

    # -- methods -------------------------------------------------------------------------

    async def _discover(self, context: Context) -> JSON:
        return {
            "supportedVersions": list(self._server.modern_versions),
            "capabilities": _catalog.CAPABILITIES,
            "instructions": _catalog.MODERN_INSTRUCTIONS,
        }

    async def _tools_list(self, context: Context) -> JSON:
        page, extra = self._server._page("tools", self.tool_list, context.params)
        return {"tools": page, **extra}

    async def _delegate(self, context: Context) -> JSON:
        """A method whose result is the same in both eras."""
        return await self._server._modern_delegate(context)

    async def _resources_read(self, context: Context) -> JSON:
        uri = context.params.get("uri")
        if not isinstance(uri, str):
            raise ModernError(INVALID_PARAMS, "Invalid params: 'uri' must be a string")
        contents = _catalog.RESOURCE_CONTENTS.get(uri)
        if contents is None:
            # 2026-07-28: -32602, no longer -32002.
            raise ModernError(INVALID_PARAMS, "Resource not found", {"uri": uri})
        return {"contents": [contents]}

    def _definition(self, name: str) -> JSON | None:
        modern = self._modern_tools.get(name)
        if modern is not None:
            return modern
        tool = self._server._tools.get(name)
        return None if tool is None else tool[0]

    async def _tools_call(self, context: Context) -> JSON:
        params = context.params
        name = params.get("name")
        if not isinstance(name, str):
            raise ModernError(INVALID_PARAMS, "Invalid params: 'name' must be a string")
        definition = self._definition(name)
        if definition is None:
            raise ModernError(INVALID_PARAMS, f"Unknown tool: {name}")
        arguments = params.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise ModernError(INVALID_PARAMS, "Invalid params: 'arguments' must be an object")
        problem = self._server._validate(definition["inputSchema"], arguments)
        if problem is not None:
            return _text(f"Input validation error: {problem}", is_error=True)
        runner = self._mrtr_tools.get(name)
        if runner is None and name in self._modern_tools:
            runner = self._simple_tools[name]
        stats = self._server._stats
        if runner is None:
            stats.tool_calls[name] += 1
            return await self._server._modern_legacy_tool(context, name, arguments)
        return await runner(context, name, arguments)

    @property
    def _mrtr_tools(self) -> dict[str, Callable[[Context, str, JSON], Awaitable[JSON]]]:
        return {
            "sample": self._tool_sample,
            "list_roots": self._tool_list_roots,
            "elicit": self._tool_elicit,
            "ask_user": self._tool_ask_user,
            "retry_later": self._tool_retry_later,
        }

    @property
    def _simple_tools(self) -> dict[str, Callable[[Context, str, JSON], Awaitable[JSON]]]:
        return {"route": self._tool_route, "log": self._tool_log}

    async def _tool_route(self, context: Context, name: str, arguments: JSON) -> JSON:
        self._server._stats.tool_calls[name] += 1
        return _text(f"{arguments['region']}: {arguments.get('text', '')}")

    async def _tool_log(self, context: Context, name: str, arguments: JSON) -> JSON:
        self._server._stats.tool_calls[name] += 1
        level = arguments.get("level", "info")
        wanted = context.envelope.log_level
        # Only when the request opted in, at or above its level, on its own stream.
        if wanted is not None and _LEVELS.index(level) >= _LEVELS.index(wanted):
            await context.notify(
                "notifications/message",
                {"level": level, "logger": "strict", "data": arguments["message"]},
            )
        return _text(f"logged at {level}")

    # -- multi round-trip tools ------------------------------------------------------------

    def _state(self, context: Context, name: str, arguments: JSON) -> JSON | None:
        """The verified `requestState` of a retry, None on a first attempt."""
        if "requestState" not in context.params:
            return None
        state = self._sealer.open(context.params["requestState"])
        if state is None or state.get("bind") != arguments_digest(name, arguments):
            raise ModernError(INVALID_PARAMS, "Invalid or expired requestState")
        return state

    def _input_required(
        self, name: str, arguments: JSON, requests: JSON | None, state: JSON
    ) -> JSON:
        self._server._stats.input_required_results += 1
        sealed = {
            **state,
            "bind": arguments_digest(name, arguments),
            "exp": time.time() + _STATE_TTL_SECONDS,
        }
        result: JSON = {"resultType": "input_required", "requestState": self._sealer.seal(sealed)}
        if requests is not None:
            result["inputRequests"] = requests
        return result

    @staticmethod
    def _response(context: Context, key: str) -> JSON | None:
        responses = context.params.get("inputResponses")
        if not isinstance(responses, dict):
            return None
        response = responses.get(key)
        return response if isinstance(response, dict) else None

    async def _ask(
        self,
        context: Context,
        name: str,
        arguments: JSON,
        capability: str,
        key: str,
        request: JSON,
    ) -> JSON | tuple[JSON]:
        """One round: (the client's response,) once re-sent with it, else input_required."""
        if not has_capability(context.envelope.capabilities, capability):
            raise missing_capability(capability, name)
        self._server._stats.tool_calls[name] += 1
        self._state(context, name, arguments)
        response = self._response(context, key)
        if response is None:
            # First attempt, or a retry without the answer: ask (again).
            return self._input_required(name, arguments, {key: request}, {"tool": name})
        return (response,)

    async def _tool_sample(self, context: Context, name: str, arguments: JSON) -> JSON:
        request = {
            "method": "sampling/createMessage",
            "params": {
                "messages": [
                    {"role": "user", "content": {"type": "text", "text": arguments["prompt"]}},
                ],
                "maxTokens": 100,
            },
        }
        outcome = await self._ask(context, name, arguments, "sampling", "sample", request)
        if isinstance(outcome, dict):
            return outcome
        (result,) = outcome
        content = result.get("content")
        blocks = content if isinstance(content, list) else [content]
        texts = [
            block["text"]
            for block in blocks
            if isinstance(block, dict) and isinstance(block.get("text"), str)
        ]
        return _text("".join(texts) if texts else json.dumps(result))

    async def _tool_list_roots(self, context: Context, name: str, arguments: JSON) -> JSON:
        request: JSON = {"method": "roots/list"}
        outcome = await self._ask(context, name, arguments, "roots", "roots", request)
        if isinstance(outcome, dict):
            return outcome
        (result,) = outcome
        return _text(json.dumps(result.get("roots", [])))

    async def _tool_elicit(self, context: Context, name: str, arguments: JSON) -> JSON:
        request = {
            "method": "elicitation/create",
            "params": {
                "mode": "form",
                "message": arguments.get("message", "What is your name?"),
                "requestedSchema": _NAME_SCHEMA,
            },
        }
        outcome = await self._ask(context, name, arguments, "elicitation", "elicit", request)
        if isinstance(outcome, dict):
            return outcome
        (result,) = outcome
        return _text(json.dumps(result))

    async def _tool_ask_user(self, context: Context, name: str, arguments: JSON) -> JSON:
        if not has_capability(context.envelope.capabilities, "elicitation"):
            raise missing_capability("elicitation", name)
        self._server._stats.tool_calls[name] += 1
        rounds = int(arguments.get("rounds", 1))
        question = str(arguments.get("question", "What is your name?"))
        state = self._state(context, name, arguments)
        answers: list[Any] = list(state.get("answers", [])) if state is not None else []
        asked = int(state.get("asked", 0)) if state is not None else 0
        if asked:
            response = self._response(context, f"q{asked}")
            if response is not None:
                if response.get("action") != "accept":
                    return _text(json.dumps({"action": response.get("action"), "answers": answers}))
                answers.append(response.get("content"))
            else:
                asked -= 1  # not answered: ask the same question again
        if len(answers) >= rounds:
            return _text(json.dumps({"action": "accept", "answers": answers}))
        number = len(answers) + 1
        request = {
            "method": "elicitation/create",
            "params": {
                "mode": "form",
                "message": f"Question {number} of {rounds}: {question}",
                "requestedSchema": _NAME_SCHEMA,
            },
        }
        return self._input_required(
            name, arguments, {f"q{number}": request}, {"answers": answers, "asked": number}
        )

    async def _tool_retry_later(self, context: Context, name: str, arguments: JSON) -> JSON:
        self._server._stats.tool_calls[name] += 1
        times = int(arguments.get("times", 1))
        state = self._state(context, name, arguments)
        shed = int(state.get("shed", 0)) if state is not None else 0
        if shed >= times:
            return _text(f"completed after {shed} retries")
        return self._input_required(name, arguments, None, {"shed": shed + 1})


def _is_request(message: Any) -> bool:
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return False
    request_id = message.get("id")
    if not isinstance(request_id, str | int) or isinstance(request_id, bool):
        return False
    if not isinstance(message.get("method"), str):
        return False
    params = message.get("params")
    return params is None or isinstance(params, dict)
