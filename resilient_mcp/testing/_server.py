"""StrictServer: a Streamable HTTP MCP server that is as strict as a real one.

By default it is a stateful legacy-era server (the `initialize` handshake, sessions) that
behaves like the Python SDK 2.x; `profile=` selects another server's dialect (see
`_profiles`), `chaos=` adds seeded faults (see `_chaos`), and `era=` adds or selects the
handshake-free 2026-07-28 era (see `_modern`).

Everything runs on anyio, so the ASGI app works under any ASGI server (uvicorn on
asyncio in `serve()`, or a trio-based server when mounted elsewhere).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import itertools
import json
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Final, Literal

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.applications import Starlette
from starlette.datastructures import Headers, QueryParams
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from resilient_mcp.testing import _catalog
from resilient_mcp.testing._catalog import JSON
from resilient_mcp.testing._chaos import Chaos, Dice, Fate
from resilient_mcp.testing._events import EventKind, EventLog
from resilient_mcp.testing._modern import (
    HANDSHAKE_PROTOCOL_VERSIONS,
    MODERN_PROTOCOL_VERSION,
    Context,
    ModernEra,
    ModernError,
    accepts,
    is_modern_request,
)
from resilient_mcp.testing._profiles import DEFAULT_PROFILE, DIALECTS, PROFILES, HttpAnswer, Profile

ENDPOINT_PATH: Final = "/mcp"
SSE_PATH: Final = "/sse"
MESSAGES_PATH: Final = "/messages/"
LATEST_PROTOCOL_VERSION: Final = "2025-11-25"
Era = Literal["legacy", "modern", "dual"]
"""Which protocol era(s) a `StrictServer` speaks."""
ERAS: Final[tuple[Era, ...]] = ("legacy", "modern", "dual")
SUPPORTED_PROTOCOL_VERSIONS: Final = ("2025-11-25", "2025-06-18", "2025-03-26")

_PARSE_ERROR: Final = -32700
_INVALID_REQUEST: Final = -32600
_METHOD_NOT_FOUND: Final = -32601
_INVALID_PARAMS: Final = -32602
_INTERNAL_ERROR: Final = -32603
_RESOURCE_NOT_FOUND: Final = -32002

_SESSION_HEADER: Final = "mcp-session-id"
_VERSION_HEADER: Final = "mcp-protocol-version"
_JSON_TYPE: Final = "application/json"
_SSE_TYPE: Final = "text/event-stream"

# Buffer of the standalone GET stream: progress and server requests queue here while
# the client is slow to read, instead of blocking the tool that produced them.
_GET_STREAM_BUFFER: Final = 64
# Finished response streams kept per session for resumption (GET + Last-Event-ID).
_REPLAY_STREAMS: Final = 16
# How long restart() waits for the server's event loop to run it.
_LOOP_CALL_TIMEOUT: Final = 10.0


def _server_version() -> str:
    try:
        return metadata.version("resilient-mcp")
    except metadata.PackageNotFoundError:
        # Running from a source tree that was never installed.
        return "0.0.0"


@dataclass
class ServerStats:
    """Counters a test can assert on; mutated only by the server.

    Counters are `collections.Counter`, so a method or tool never seen reads as 0.
    Values are plain ints, so reading them from another thread while the server runs
    is safe (a read may simply be a moment out of date).
    """

    requests: Counter[str] = field(default_factory=Counter)
    """JSON-RPC requests that reached the protocol layer, by method (including
    `initialize`, early-rejected and unknown methods)."""
    notifications: Counter[str] = field(default_factory=Counter)
    """JSON-RPC notifications received from clients, by method."""
    initialize_requests: int = 0
    """`initialize` requests received."""
    initialized_notifications: int = 0
    """`notifications/initialized` received."""
    early_requests: int = 0
    """Requests processed before their session's `notifications/initialized` had been
    processed, whatever the profile did with them (an in-band error, an HTTP error,
    killing the session, holding the request, or, with `lenient`, serving it). A
    correct client keeps this at 0 under every profile."""
    tool_calls: Counter[str] = field(default_factory=Counter)
    """Tool executions by tool name: only calls that passed the handshake gate and
    argument validation, i.e. the tool really ran. A call is counted once, when it
    starts, even if its response is later lost (cut stream, restart, disconnect);
    a call refused by any profile or by chaos is never counted."""
    executions: Counter[str] = field(default_factory=Counter)
    """Executions of ``increment`` by its ``key`` argument: a test gives every call its own
    key and proves at-most-once by finding no key above 1."""
    sessions_created: int = 0
    """Sessions opened by `initialize`."""
    sessions_terminated: int = 0
    """Sessions ended by DELETE or by the server shutting down."""
    http_rejections: Counter[int] = field(default_factory=Counter)
    """HTTP-level rejections by status code (400, 404, 405, 406, 409, 415, 422, 429,
    500, 503)."""
    posts: int = 0
    """HTTP POSTs received (each one draws its fate from the chaos dice)."""
    faults: list[tuple[int, str]] = field(default_factory=list)
    """Injected faults in order, as (POST number, kind) with kind one of "429",
    "503", "drop" and "expired"; the POST number is the one the fault hit (for an
    expiry noticed on GET or DELETE: the number of POSTs so far)."""
    restarts: int = 0
    """Calls of `StrictServer.restart()`."""
    discover_requests: int = 0
    """`server/discover` requests received, in any era: the modern answers and a legacy
    profile's rejections of a modern probe alike (a POST refused by chaos before it is
    read is not counted). A client that caches the server's era sends one per server."""
    modern_requests: int = 0
    """Requests handled by the modern (2026-07-28) era, whatever the answer: results,
    validation errors (-32602, -32020, -32022) and unknown methods (-32601)."""
    modern_cancellations: int = 0
    """Modern requests (listen streams included) whose client closed the response stream
    before the end: the 2026-07-28 cancellation signal."""
    input_required_results: int = 0
    """`input_required` results sent (each round of a multi round-trip request)."""
    subscriptions_opened: int = 0
    """`subscriptions/listen` streams opened (acknowledged)."""

    @property
    def total_requests(self) -> int:
        """All JSON-RPC requests counted in `requests`."""
        return sum(self.requests.values())


class _RpcError(Exception):
    """An in-band JSON-RPC error raised by a method handler."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class _NoChannel(Exception):
    """There is no stream on which a server→client message could travel."""


@dataclass(eq=False)
class _InFlight:
    scope: anyio.CancelScope
    # Why the scope was cancelled: "cancelled" (client notification) or "terminated".
    reason: str | None = None


@dataclass(eq=False)
class _Pending:
    done: anyio.Event
    response: JSON | None = None


@dataclass(eq=False)
class _Session:
    id: str
    protocol_version: str
    client_capabilities: JSON
    initialized: bool = False
    ready: anyio.Event = field(default_factory=anyio.Event)
    """Set once `initialized` is (or when the session ends)."""
    created: float = field(default_factory=time.monotonic)
    requests: int = 0
    """Requests (not `initialize`) that named this session, for expiry by count."""
    ended: bool = False
    dropped: bool = False
    """Ended by restart(): its open connections are cut, not finished."""
    legacy: bool = False
    """A legacy HTTP+SSE session (python-sdk-sse)."""
    inbound: MemoryObjectSendStream[JSON] | None = None
    """Legacy SSE: where POSTed messages queue for processing."""
    log_level: str = "info"
    subscriptions: set[str] = field(default_factory=set)
    """Resource URIs subscribed with `resources/subscribe` (legacy era)."""
    get_stream: MemoryObjectSendStream[JSON] | None = None
    in_flight: dict[str, _InFlight] = field(default_factory=dict)
    pending: dict[int, _Pending] = field(default_factory=dict)
    next_request_id: int = 0
    logs: list[EventLog] = field(default_factory=list)
    """Response streams kept for resumption, oldest first."""
    event_index: dict[int, EventLog] = field(default_factory=dict)

    def mark_initialized(self) -> None:
        self.initialized = True
        self.ready.set()

    def reset_handshake(self) -> None:
        self.initialized = False
        if self.ready.is_set():
            self.ready = anyio.Event()

    def add_log(self, log: EventLog) -> None:
        self.logs.append(log)
        while len(self.logs) > _REPLAY_STREAMS:
            old = next((lg for lg in self.logs if lg.done and lg.reader_seq is None), None)
            if old is None:
                return
            self.logs.remove(old)
            for event_id in [k for k, v in self.event_index.items() if v is old]:
                del self.event_index[event_id]

    def find_event(self, event_id: int) -> tuple[EventLog, int] | None:
        """The stream holding `event_id` and the event's position in it."""
        log = self.event_index.get(event_id)
        if log is None:
            return None
        seq = log.find(event_id)
        return None if seq is None else (log, seq)

    async def send_standalone(self, message: JSON) -> bool:
        """Queue `message` on the GET stream; False when no stream is open."""
        stream = self.get_stream
        if stream is None:
            return False
        try:
            await stream.send(message)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        return True


class _Outbound:
    """Where one request's server→client messages go.

    In SSE mode that is the request's own response stream (`emit`); in JSON mode it is
    the session's standalone GET stream if one is open, else nowhere.
    """

    def __init__(
        self, session: _Session | None, emit: Callable[[JSON], Awaitable[None]] | None
    ) -> None:
        self._session = session
        self._emit = emit

    async def notify(self, message: JSON) -> None:
        if self._emit is not None:
            await self._emit(message)
        elif self._session is not None:
            # Dropped when no GET stream is open, as a real JSON-mode server does.
            await self._session.send_standalone(message)

    async def request(self, method: str, params: JSON) -> JSON:
        """Send a server→client request and return the client's response message."""
        session = self._session
        if session is None:
            raise _NoChannel
        request_id = session.next_request_id
        session.next_request_id += 1
        pending = _Pending(anyio.Event())
        session.pending[request_id] = pending
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        try:
            if self._emit is not None:
                await self._emit(message)
            elif not await session.send_standalone(message):
                raise _NoChannel
            await pending.done.wait()
        finally:
            session.pending.pop(request_id, None)
        if pending.response is None:
            # The session ended while waiting.
            raise _NoChannel
        return pending.response


@dataclass(eq=False)
class _Call:
    session: _Session
    request_id: str | int
    params: JSON
    outbound: _Outbound

    @property
    def progress_token(self) -> str | int | None:
        meta = self.params.get("_meta")
        if isinstance(meta, dict):
            token = meta.get("progressToken")
            if isinstance(token, str | int) and not isinstance(token, bool):
                return token
        return None


_Handler = Callable[[_Call], Awaitable[JSON]]
_ToolRun = Callable[[_Call, JSON], Awaitable[JSON]]


class _Disconnect:
    """Watches an HTTP request's receive channel and cancels work when the client leaves."""

    def __init__(self) -> None:
        self.gone = False

    async def watch(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                scope.cancel()
                return


def _result(request_id: str | int, result: JSON) -> JSON:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def _error(request_id: str | int | None, code: int, message: str, data: Any = None) -> JSON:
    error: JSON = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def _text_result(text: str, *, is_error: bool = False) -> JSON:
    return {"content": [{"type": "text", "text": text}], "isError": is_error}


def _dumps(message: JSON) -> bytes:
    # Compact JSON never contains a raw newline, so it fits on one SSE data line.
    return json.dumps(message, separators=(",", ":")).encode()


def _sse_event(event_id: str, message: JSON | None) -> bytes:
    if message is None:
        # Priming event: an id the client can resume from, and empty data.
        return f"id: {event_id}\ndata: \n\n".encode()
    return b"event: message\nid: " + event_id.encode() + b"\ndata: " + _dumps(message) + b"\n\n"


_accepts = accepts


def _is_id(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


def _type_ok(expected: Any, value: Any) -> bool:
    if isinstance(value, bool):
        return bool(expected == "boolean")
    match expected:
        case "string":
            return isinstance(value, str)
        case "integer":
            return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        case "number":
            return isinstance(value, int | float)
        case "object":
            return isinstance(value, dict)
        case "array":
            return isinstance(value, list)
        case _:
            return True


def _validate_arguments(schema: JSON, arguments: JSON) -> str | None:
    """Check `arguments` against the small JSON Schema subset our tools use."""
    properties: JSON = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in arguments:
            return f"missing required argument '{name}'"
    for name, value in arguments.items():
        spec = properties.get(name)
        if spec is None:
            if schema.get("additionalProperties") is False:
                return f"unexpected argument '{name}'"
            continue
        if not _type_ok(spec.get("type"), value):
            return f"argument '{name}' must be of type {spec.get('type')}"
        if "minimum" in spec and value < spec["minimum"]:
            return f"argument '{name}' must be >= {spec['minimum']}"
        if "maximum" in spec and value > spec["maximum"]:
            return f"argument '{name}' must be <= {spec['maximum']}"
    return None


def _encode_cursor(kind: str, offset: int) -> str:
    raw = json.dumps({"list": kind, "offset": offset}).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _decode_cursor(kind: str, cursor: Any, length: int) -> int:
    invalid = _RpcError(_INVALID_PARAMS, "Invalid cursor")
    if not isinstance(cursor, str):
        raise invalid
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        raise invalid from None
    if not isinstance(decoded, dict) or decoded.get("list") != kind:
        raise invalid
    offset = decoded.get("offset")
    # Only offsets this server could have issued are valid: strictly inside the list.
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 < offset < length:
        raise invalid
    return offset


class _Endpoint:
    """ASGI callable for one route; a class so Starlette routes it as raw ASGI."""

    def __init__(self, handler: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handler(scope, receive, send)


class _SsePostCounter:
    """ASGI middleware of the legacy SSE profile: counts POSTs to `/sse` (a modern or
    Streamable HTTP probe) in `ServerStats`, then lets the app answer them unchanged."""

    def __init__(self, app: ASGIApp, server: StrictServer) -> None:
        self._app = app
        self._server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == SSE_PATH
        ):
            await self._app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return
        with contextlib.suppress(ValueError):
            message = json.loads(body)
            if isinstance(message, dict) and message.get("method") == "server/discover":
                self._server._stats.discover_requests += 1
        self._server._stats.http_rejections[405] += 1
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self._app(scope, replay, send)


_Work = Callable[["_Outbound"], Awaitable[JSON | None]]


class StrictServer:
    """A Streamable HTTP MCP server that is as strict as a real one.

    In the legacy era (the default) it speaks protocol 2025-11-25 (and accepts
    2025-06-18 and 2025-03-26) at the endpoint `/mcp` and issues `Mcp-Session-Id` on
    `initialize`. How it treats a
    request processed before the session's `notifications/initialized` has been
    processed, a POST without a session and a session that is gone depends on
    `profile`; the default, ``"python-sdk-2"``, answers early requests with the
    in-band error ``{"code": -32602, "message": "Invalid request parameters",
    "data": ""}`` like the Python SDK. `PROFILES` lists every profile and
    docs/testing.md what each one sends.

    With ``era="modern"`` it speaks the handshake-free protocol 2026-07-28 instead (no
    `initialize`, no sessions, per-request `_meta`, `server/discover`, `input_required`
    results, `subscriptions/listen`), as the spec and the `mcp` 2.3 server do; with
    ``era="dual"`` it speaks both, choosing per POST as `mcp` 2.3 does: an
    `MCP-Protocol-Version` header naming anything but a handshake-era version (2024-11-05
    … 2025-11-25) goes to the modern era, everything else (`initialize`, session
    requests, requests without the header) to the legacy era and its profile. A legacy
    server answers a modern probe (a `server/discover` POST without a session) exactly
    as the real server of its profile does.

    All parameters are keyword-only and fixed for the server's lifetime:

    - `era`: ``"legacy"`` (default), ``"modern"`` or ``"dual"``.
    - `modern_versions`: the modern protocol versions served, newest last; a request for
      another one gets -32022 with ``data.supported`` set to these (also the
      ``supportedVersions`` of `server/discover`).
    - `ttl_ms`, `cache_scope`: the caching hints of modern cacheable results
      (`server/discover`, the `*/list` methods and `resources/read`).
    - `profile`: the server dialect to reproduce (a name from `PROFILES`).
    - `chaos`: faults to inject (`Chaos`), None for none.
    - `json_response`: answer requests with `application/json` (default) or, when False,
      with `text/event-stream` (priming event, then `event: message` events).
    - `get_stream`: offer the standalone GET SSE stream; False answers GET with 405.
    - `handshake_delay`: seconds of simulated work before `notifications/initialized`
      marks the session ready; its 202 is sent only afterwards.
    - `initialize_delay`: seconds of simulated work before the `initialize` result.
    - `extra_tools`: number of filler tools `tool_0000`, `tool_0001`, ... to add.
    - `page_size`: page length of every `*/list` method (None: no pagination).

    Serve it with `serve()`, or mount `asgi_app()` in any ASGI server (run its
    lifespan, or dropped streams complete their work before the connection closes). A
    server holds its sessions in memory; serve one `StrictServer` from one place at a
    time.

    Raises:
        ValueError: for an unknown profile or era, an out-of-range parameter, or a modern
            era with the legacy SSE profile.
    """

    def __init__(
        self,
        *,
        era: Era = "legacy",
        modern_versions: tuple[str, ...] = (MODERN_PROTOCOL_VERSION,),
        ttl_ms: int = 0,
        cache_scope: Literal["public", "private"] = "private",
        profile: Profile = DEFAULT_PROFILE,
        chaos: Chaos | None = None,
        json_response: bool = True,
        get_stream: bool = True,
        handshake_delay: float = 0.0,
        initialize_delay: float = 0.0,
        extra_tools: int = 0,
        page_size: int | None = None,
    ) -> None:
        if profile not in DIALECTS:
            raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        if handshake_delay < 0 or initialize_delay < 0:
            raise ValueError("delays must be >= 0")
        if extra_tools < 0:
            raise ValueError("extra_tools must be >= 0")
        if page_size is not None and page_size < 1:
            raise ValueError("page_size must be >= 1 or None")
        if era not in ERAS:
            raise ValueError(f"unknown era {era!r}; choose one of {', '.join(ERAS)}")
        if era != "legacy" and profile == "python-sdk-sse":
            raise ValueError("the python-sdk-sse profile is legacy HTTP+SSE; use era='legacy'")
        modern_versions = tuple(modern_versions)
        if not modern_versions or not all(
            isinstance(v, str) and v and v not in HANDSHAKE_PROTOCOL_VERSIONS
            for v in modern_versions
        ):
            raise ValueError("modern_versions must be non-empty modern (not handshake) versions")
        if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or ttl_ms < 0:
            raise ValueError("ttl_ms must be an int >= 0")
        if cache_scope not in ("public", "private"):
            raise ValueError("cache_scope must be 'public' or 'private'")
        self._era: Era = era
        self._modern_versions = modern_versions
        self._ttl_ms = ttl_ms
        self._cache_scope: Literal["public", "private"] = cache_scope
        self._profile: Profile = profile
        self._dialect = DIALECTS[profile]
        self._chaos = chaos if chaos is not None else Chaos()
        self._chaos_given = chaos
        self._dice = Dice(self._chaos)
        self._json_response = json_response
        self._get_stream = get_stream
        self._handshake_delay = handshake_delay
        self._initialize_delay = initialize_delay
        self._extra_tools = extra_tools
        self._page_size = page_size
        self._stats = ServerStats()
        # Lets a test (in another thread) wait for a cancellation instead of polling.
        self._cancellations = threading.Condition()
        self._counter = 0
        self._sessions: dict[str, _Session] = {}
        # Legacy SSE sessions whose GET stream ended: the Python SDK 1.x still accepts
        # POSTs for them (202) and never answers.
        self._dead_legacy: set[str] = set()
        # Event ids only need to be unique; one server-wide sequence is simplest.
        self._event_ids = itertools.count(1)
        self._serving_lock = threading.Lock()
        self._serving = False
        self._version = _server_version()
        # Where detached work (of streams cut by chaos) runs: the app's lifespan.
        self._background: TaskGroup | None = None
        # Set by serve(): how to run a callable on the server's event loop.
        self._loop_thread: int | None = None
        self._loop_call: Callable[[Callable[[], None]], object] | None = None

        self._tools: dict[str, tuple[JSON, _ToolRun]] = {}
        runners: dict[str, _ToolRun] = {
            "echo": self._tool_echo,
            "add": self._tool_add,
            "fail": self._tool_fail,
            "progress": self._tool_progress,
            "increment": self._tool_increment,
            "read_counter": self._tool_read_counter,
            "set_value": self._tool_set_value,
            "sample": self._tool_sample,
            "list_roots": self._tool_list_roots,
            "elicit": self._tool_elicit,
        }
        for definition in _catalog.TOOLS:
            self._tools[definition["name"]] = (definition, runners[definition["name"]])
        for index in range(extra_tools):
            definition = _catalog.extra_tool(index)
            self._tools[definition["name"]] = (definition, self._tool_extra)
        self._tool_list = [definition for definition, _ in self._tools.values()]
        self._modern = ModernEra(self, secrets.token_bytes(32))

        self._handlers: dict[str, _Handler] = {
            "tools/list": self._tools_list,
            "tools/call": self._tools_call,
            "resources/list": self._resources_list,
            "resources/templates/list": self._resource_templates_list,
            "resources/read": self._resources_read,
            "resources/subscribe": self._subscribe,
            "resources/unsubscribe": self._unsubscribe,
            "prompts/list": self._prompts_list,
            "prompts/get": self._prompts_get,
            "completion/complete": self._complete,
            "logging/setLevel": self._set_level,
        }

    # -- public surface -------------------------------------------------------------

    @property
    def stats(self) -> ServerStats:
        """Counters of what the server saw (see `ServerStats`)."""
        return self._stats

    @property
    def counter(self) -> int:
        """The value `increment`, `set_value` and `read_counter` work on."""
        return self._counter

    @property
    def profile(self) -> Profile:
        """The server dialect this server reproduces (in its legacy era)."""
        return self._profile

    @property
    def era(self) -> Era:
        """The protocol era(s) this server speaks: "legacy", "modern" or "dual"."""
        return self._era

    @property
    def modern_versions(self) -> tuple[str, ...]:
        """The modern protocol versions served (`server/discover` supportedVersions)."""
        return self._modern_versions

    @property
    def ttl_ms(self) -> int:
        """`ttlMs` of modern cacheable results."""
        return self._ttl_ms

    @property
    def cache_scope(self) -> Literal["public", "private"]:
        """`cacheScope` of modern cacheable results."""
        return self._cache_scope

    @property
    def chaos(self) -> Chaos | None:
        """The faults this server injects, as given."""
        return self._chaos_given

    @property
    def endpoint_path(self) -> str:
        """Where a client connects: `/mcp`, or `/sse` for the legacy SSE profile."""
        return SSE_PATH if self._dialect.name == "python-sdk-sse" else ENDPOINT_PATH

    @property
    def json_response(self) -> bool:
        """True: responses are `application/json`; False: `text/event-stream`."""
        return self._json_response

    @property
    def get_stream(self) -> bool:
        """Whether GET opens a standalone SSE stream (else 405)."""
        return self._get_stream

    @property
    def handshake_delay(self) -> float:
        """Seconds `notifications/initialized` takes to be processed."""
        return self._handshake_delay

    @property
    def initialize_delay(self) -> float:
        """Seconds `initialize` takes to be answered."""
        return self._initialize_delay

    @property
    def extra_tools(self) -> int:
        """Number of filler tools beyond the built-in ones."""
        return self._extra_tools

    @property
    def page_size(self) -> int | None:
        """Page length of the list methods, or None for unpaginated lists."""
        return self._page_size

    def asgi_app(self) -> Starlette:
        """A Starlette app serving this server, to mount in any ASGI server.

        The routes are `/mcp` (Streamable HTTP), or `/sse` (GET) and `/messages/`
        (POST) for the legacy SSE profile.
        """
        if self._dialect.name == "python-sdk-sse":
            routes = [
                Route(SSE_PATH, endpoint=_Endpoint(self._handle_legacy_get), methods=["GET"]),
                Route(
                    MESSAGES_PATH, endpoint=_Endpoint(self._handle_legacy_post), methods=["POST"]
                ),
            ]
            # A modern probe POSTs to the SSE URL and gets Starlette's own 405 (as from
            # the real server); the middleware only counts it.
            middleware = [Middleware(_SsePostCounter, server=self)]
            return Starlette(routes=routes, middleware=middleware, lifespan=self._lifespan)
        routes = [Route(ENDPOINT_PATH, endpoint=_Endpoint(self._handle_http))]
        return Starlette(routes=routes, lifespan=self._lifespan)

    def _count_modern_cancellation(self) -> None:
        with self._cancellations:
            self._stats.modern_cancellations += 1
            self._cancellations.notify_all()

    def wait_for_cancellations(self, count: int, timeout: float = 10.0) -> bool:
        """Block until `stats.modern_cancellations` reaches `count`; False on timeout.

        For tests: the server notices a closed response stream on its own loop, some
        time after the client closed it. Blocking, so call it from a worker thread in
        async code (``await anyio.to_thread.run_sync(server.wait_for_cancellations, 1)``).
        """
        with self._cancellations:
            return self._cancellations.wait_for(
                lambda: self._stats.modern_cancellations >= count, timeout
            )

    def restart(self) -> None:
        """Lose every session at once, as a restarted server process would.

        Open connections (response streams, GET streams, requests in flight) are cut
        without a proper end, every session id answers the profile's "gone" answer
        from now on, and the counters (`stats`, `counter`) are kept. Safe to call from
        any thread while `serve()` runs the server.

        Raises:
            RuntimeError: the server's event loop did not run the restart in time.
        """
        self._in_server_loop(self._restart_now)

    def notify_tools_changed(self) -> None:
        """Announce that the tool list changed: `notifications/tools/list_changed` on
        every modern listen stream that asked for it and every legacy GET stream. Safe
        to call from any thread while `serve()` runs the server."""
        self._in_server_loop(lambda: self._broadcast("notifications/tools/list_changed"))

    def notify_prompts_changed(self) -> None:
        """As `notify_tools_changed`, for `notifications/prompts/list_changed`."""
        self._in_server_loop(lambda: self._broadcast("notifications/prompts/list_changed"))

    def notify_resources_changed(self) -> None:
        """As `notify_tools_changed`, for `notifications/resources/list_changed`."""
        self._in_server_loop(lambda: self._broadcast("notifications/resources/list_changed"))

    def notify_resource_updated(self, uri: str) -> None:
        """Announce that resource `uri` changed: `notifications/resources/updated` on the
        modern listen streams subscribed to `uri` and to the legacy sessions that
        `resources/subscribe`d it. Safe to call from any thread while served."""
        self._in_server_loop(
            lambda: self._broadcast("notifications/resources/updated", {"uri": uri})
        )

    def close_subscriptions(self) -> None:
        """End every modern `subscriptions/listen` stream gracefully: each gets its
        listen result (``resultType: "complete"`` with its subscription id), then its
        end, as a server shutting down does. Safe to call from any thread."""
        self._in_server_loop(self._modern.close_listeners)

    # -- lifecycle hooks used by serve() --------------------------------------------

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            self._background = tg
            try:
                yield
            finally:
                self._background = None
                tg.cancel_scope.cancel()

    def _claim(self) -> None:
        with self._serving_lock:
            if self._serving:
                raise RuntimeError("this StrictServer is already being served")
            self._serving = True

    def _release(self) -> None:
        with self._serving_lock:
            self._serving = False

    def _attach_loop(
        self, thread: int | None, call: Callable[[Callable[[], None]], object] | None
    ) -> None:
        self._loop_thread = thread
        self._loop_call = call

    def _in_server_loop(self, fn: Callable[[], None]) -> None:
        call = self._loop_call
        if call is None or threading.get_ident() == self._loop_thread:
            fn()
            return
        done = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)
            finally:
                done.set()

        call(run)
        if not done.wait(_LOOP_CALL_TIMEOUT):
            raise RuntimeError("the server's event loop did not respond")
        if errors:
            raise errors[0]

    def _restart_now(self) -> None:
        self._stats.restarts += 1
        for session in list(self._sessions.values()):
            self._terminate(session, dropped=True)
        self._modern.drop_all()

    def _close_all(self) -> None:
        """End every session so open streams finish and the ASGI server can stop."""
        for session in list(self._sessions.values()):
            self._terminate(session)
        self._modern.close_listeners()

    def _broadcast(self, method: str, params: JSON | None = None) -> None:
        event: JSON = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            event["params"] = params
        self._modern.publish(event)
        uri = params.get("uri") if params is not None else None
        for session in list(self._sessions.values()):
            stream = session.get_stream
            if stream is None or not session.initialized:
                continue
            if uri is not None and uri not in session.subscriptions:
                continue
            # Dropped when the client is not reading, as a full GET stream does.
            with contextlib.suppress(
                anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError
            ):
                stream.send_nowait(dict(event))

    def _terminate(self, session: _Session, *, dropped: bool = False) -> None:
        if self._sessions.pop(session.id, None) is None:
            return
        self._stats.sessions_terminated += 1
        session.ended = True
        session.dropped = dropped
        if session.legacy:
            self._dead_legacy.add(session.id)
        if session.get_stream is not None:
            session.get_stream.close()
            session.get_stream = None
        for in_flight in session.in_flight.values():
            in_flight.reason = "terminated"
            in_flight.scope.cancel()
        for pending in session.pending.values():
            pending.done.set()
        session.ready.set()  # wakes requests held until initialized

    def _fault(self, kind: str, number: int | None = None) -> None:
        self._stats.faults.append((self._stats.posts if number is None else number, kind))

    def _live_session(self, session_id: str) -> _Session | None:
        """The session `session_id` names, or None if it is unknown or has expired."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        ttl = self._chaos.expire_after_seconds
        if ttl is not None and time.monotonic() - session.created >= ttl:
            self._terminate(session)
            self._fault("expired")
            return None
        return session

    def _expired_by_count(self, session: _Session) -> bool:
        limit = self._chaos.expire_after_requests
        if limit is not None and session.requests >= limit:
            self._terminate(session)
            self._fault("expired")
            return True
        return False

    def _gated(self, method: str) -> bool:
        """Whether `method` is held to the handshake by this profile."""
        if method == "ping":
            return self._dialect.gate_ping
        if method not in self._handlers:
            return self._dialect.gate_unknown
        return True

    # -- HTTP layer -----------------------------------------------------------------

    async def _handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = Headers(scope=scope)
        method = scope["method"]
        if self._routes_modern(headers):
            if method == "POST":
                fate = await self._chaos_gate(receive, send)
                if fate is not None:
                    await self._modern.handle_post(headers, scope["headers"], receive, send, fate)
            else:
                # No GET stream, no DELETE: 405 as the reference server answers.
                await self._modern.reject_method(send)
            return
        if method == "POST":
            await self._handle_post(headers, receive, send)
        elif method == "GET":
            await self._handle_get(headers, receive, send)
        elif method == "DELETE":
            await self._handle_delete(headers, send)
        else:
            await self._reject(
                send, 405, "Method Not Allowed", extra=[(b"allow", b"GET, POST, DELETE")]
            )

    def _routes_modern(self, headers: Headers) -> bool:
        """Whether this HTTP request is for the modern era (see the class docstring)."""
        if self._era == "modern":
            return True
        if self._era == "legacy":
            return False
        version = headers.get(_VERSION_HEADER)
        return version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS

    async def _reject(
        self,
        send: Send,
        status: int,
        message: str,
        *,
        code: int = _INVALID_REQUEST,
        session_id: str | None = None,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self._stats.http_rejections[status] += 1
        await _send_json(send, status, _error(None, code, message), session_id, extra)

    async def _answer(
        self,
        send: Send,
        answer: HttpAnswer,
        *,
        session_id: str | None = None,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        if answer.status >= 400:
            self._stats.http_rejections[answer.status] += 1
        headers = [
            (b"content-type", answer.content_type.encode()),
            (b"content-length", str(len(answer.body)).encode()),
        ]
        if session_id is not None:
            headers.append((_SESSION_HEADER.encode(), session_id.encode()))
        headers.extend(extra or [])
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    async def _answer_gone(self, send: Send) -> None:
        await self._answer(send, self._dialect.gone)

    async def _lookup(self, headers: Headers, send: Send) -> _Session | None:
        """The session a GET or DELETE names; None after answering 400 or "gone"."""
        session_id = headers.get(_SESSION_HEADER)
        if session_id is None:
            await self._reject(send, 400, "Bad Request: Missing session ID")
            return None
        session = self._live_session(session_id)
        if session is None:
            await self._answer_gone(send)
            return None
        return session

    async def _version_ok(self, headers: Headers, send: Send, session: _Session) -> bool:
        version = headers.get(_VERSION_HEADER)
        if version is not None and version not in SUPPORTED_PROTOCOL_VERSIONS:
            await self._reject(
                send, 400, "Bad Request: Unsupported protocol version", session_id=session.id
            )
            return False
        return True

    async def _chaos_gate(self, receive: Receive, send: Send) -> Fate | None:
        """Draw this POST's fate, add its latency; None after refusing it (429/503)."""
        self._stats.posts += 1
        fate = self._dice.roll()
        if fate.latency > 0:
            await anyio.sleep(fate.latency)  # simulated server work
        if not fate.reject:
            return fate
        await _read_body(receive)
        status = self._chaos.reject_status
        self._fault(str(status), fate.number)
        extra = []
        if self._chaos.retry_after is not None:
            extra.append((b"retry-after", str(self._chaos.retry_after).encode()))
        text = "Too Many Requests" if status == 429 else "Service Unavailable"
        await self._answer(send, HttpAnswer.text(status, text), extra=extra)
        return None

    async def _handle_post(self, headers: Headers, receive: Receive, send: Send) -> None:
        fate = await self._chaos_gate(receive, send)
        if fate is None:
            return
        # Like the SDK's session manager, an unknown session id is a 404 before anything
        # else is looked at, even for `initialize`.
        session_id = headers.get(_SESSION_HEADER)
        session: _Session | None = None
        if session_id is not None:
            session = self._live_session(session_id)
            if session is None:
                await self._answer_gone(send)
                return
        has_json, has_sse = _accepts(headers)
        if not (has_json and has_sse):
            await self._reject(
                send,
                406,
                "Not Acceptable: Client must accept both application/json and text/event-stream",
            )
            return
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != _JSON_TYPE:
            await self._reject(
                send, 415, "Unsupported Media Type: Content-Type must be application/json"
            )
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client left before sending its whole body
        try:
            message = json.loads(body)
        except ValueError as exc:
            await self._reject(send, 400, f"Parse error: {exc}", code=_PARSE_ERROR)
            return
        if isinstance(message, dict) and message.get("method") == "server/discover":
            # A modern probe (or a confused client): counted whatever the answer.
            self._stats.discover_requests += 1
        if not await self._dialect_version_ok(headers, send):
            return
        if isinstance(message, list):
            await self._reject(send, 400, "Invalid Request: batches are not supported")
            return
        kind = _classify(message)
        if kind is None:
            await self._reject(send, 400, "Invalid Request: not a JSON-RPC 2.0 message")
            return
        if kind == "request" and message["method"] == "initialize":
            await self._initialize(message, session, receive, send)
            return
        if session is None:
            await self._answer_missing(kind, message, receive, send)
            return
        if not await self._version_ok(headers, send, session):
            return
        if kind == "notification":
            await self._on_notification(session, message)
            await _send_json(send, 202, None, session.id)
        elif kind == "response":
            self._on_client_response(session, message)
            await _send_json(send, 202, None, session.id)
        else:
            await self._on_request(session, message, receive, send, fate)

    async def _dialect_version_ok(self, headers: Headers, send: Send) -> bool:
        """Servers that check `MCP-Protocol-Version` before looking at sessions (Go)."""
        dialect = self._dialect
        version = headers.get(_VERSION_HEADER)
        if (
            dialect.header_versions is None
            or dialect.unsupported_version is None
            or version is None
            or version in dialect.header_versions
        ):
            return True
        await self._answer(send, dialect.unsupported_version)
        return False

    async def _answer_missing(self, kind: str, message: JSON, receive: Receive, send: Send) -> None:
        """Answer a POST without a session id that is not `initialize`."""
        dialect = self._dialect
        if dialect.missing == "trap":
            # A fresh session that stays alive but is never initialized.
            trap = _Session(
                id=secrets.token_hex(16),
                protocol_version=LATEST_PROTOCOL_VERSION,
                client_capabilities={},
            )
            self._sessions[trap.id] = trap
            self._stats.sessions_created += 1
            await self._answer(send, dialect.missing_answer, session_id=trap.id)
        elif dialect.missing == "discarded":
            # The id of a session that was opened for this request and discarded.
            await self._answer(send, dialect.missing_answer, session_id=secrets.token_hex(16))
        elif dialect.missing == "temporary":
            if kind != "request":
                await _send_json(send, 202, None, None)
                return
            temporary = _Session(
                id="", protocol_version=LATEST_PROTOCOL_VERSION, client_capabilities={}
            )
            early = self._gated(message["method"])
            # A modern probe is on no session at all: never an early request.
            if early and not is_modern_request(message):
                self._stats.early_requests += 1
            await self._respond(
                receive,
                send,
                None,
                None,
                lambda outbound: self._run_request(temporary, message, outbound, early=early),
            )
        else:
            await self._answer(send, dialect.missing_answer)

    async def _on_request(
        self, session: _Session, message: JSON, receive: Receive, send: Send, fate: Fate
    ) -> None:
        method: str = message["method"]
        if self._expired_by_count(session):
            await self._answer_gone(send)
            return
        session.requests += 1
        dialect = self._dialect
        early = not session.initialized and self._gated(method)
        if early:
            self._stats.early_requests += 1
            if dialect.early in ("http", "kill"):
                self._stats.requests[method] += 1
                if dialect.early == "kill":
                    self._terminate(session)
                assert dialect.early_answer is not None
                await self._answer(send, dialect.early_answer)
                return
            if dialect.early == "hold":
                if not await self._hold(session, receive):
                    return  # the client gave up
                if session.ended:
                    if session.dropped:
                        await _cut_json(send, None, b"")
                    else:
                        await self._answer_gone(send)
                    return
                early = False
            elif dialect.early == "serve":
                early = False
        drop = fate.number if fate.drop and method == "tools/call" else None
        await self._respond(
            receive,
            send,
            session,
            session.id,
            lambda outbound: self._run_request(session, message, outbound, early=early),
            drop=drop,
        )

    async def _hold(self, session: _Session, receive: Receive) -> bool:
        """Wait until the session is initialized; False if the client left first."""
        disconnect = _Disconnect()
        async with anyio.create_task_group() as tg:
            tg.start_soon(disconnect.watch, receive, tg.cancel_scope)
            await session.ready.wait()
            tg.cancel_scope.cancel()
        return not disconnect.gone

    async def _handle_get(self, headers: Headers, receive: Receive, send: Send) -> None:
        last_event_id = headers.get("last-event-id")
        if not self._get_stream and last_event_id is None:
            await self._reject(
                send,
                405,
                "Method Not Allowed: no standalone SSE stream",
                extra=[(b"allow", b"POST, DELETE")],
            )
            return
        session = await self._lookup(headers, send)
        if session is None:
            return
        if not _accepts(headers)[1]:
            await self._reject(
                send,
                406,
                "Not Acceptable: Client must accept text/event-stream",
                session_id=session.id,
            )
            return
        if not await self._version_ok(headers, send, session):
            return
        if last_event_id is not None:
            await self._resume(session, last_event_id, receive, send)
            return
        if session.get_stream is not None:
            await self._reject(
                send,
                409,
                "Conflict: Only one SSE stream is allowed per session",
                session_id=session.id,
            )
            return
        sender, receiver = anyio.create_memory_object_stream[JSON](_GET_STREAM_BUFFER)
        session.get_stream = sender
        disconnect = _Disconnect()
        try:
            async with receiver:
                await _start_sse(send, session.id)
                await _send_chunk(send, _sse_event(self._next_event_id(), None))
                async with anyio.create_task_group() as tg:
                    tg.start_soon(disconnect.watch, receive, tg.cancel_scope)
                    async for message in receiver:
                        await _send_chunk(send, _sse_event(self._next_event_id(), message))
                    # The session ended (DELETE, shutdown or restart): end the response.
                    tg.cancel_scope.cancel()
        finally:
            if session.get_stream is sender:
                session.get_stream = None
            sender.close()
        if not disconnect.gone and not session.dropped:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _resume(
        self, session: _Session, last_event_id: str, receive: Receive, send: Send
    ) -> None:
        """Replay a response stream after `last_event_id`, then follow it to its end."""
        found = session.find_event(int(last_event_id)) if last_event_id.isdigit() else None
        if found is None:
            # As the Go SDK: a stream that cannot be replayed is a 400.
            await self._reject(
                send, 400, "Bad Request: Unknown Last-Event-ID", session_id=session.id
            )
            return
        log, seq = found
        if log.reader_seq is not None:
            await self._reject(
                send, 409, "Conflict: the stream is being read", session_id=session.id
            )
            return
        await _start_sse(send, session.id)
        disconnect = _Disconnect()
        ended = False
        async with anyio.create_task_group() as tg:
            tg.start_soon(disconnect.watch, receive, tg.cancel_scope)
            ended = await self._pump(log, send, seq + 1, None)
            tg.cancel_scope.cancel()
        if ended and not disconnect.gone:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _handle_delete(self, headers: Headers, send: Send) -> None:
        session = await self._lookup(headers, send)
        if session is None or not await self._version_ok(headers, send, session):
            return
        self._terminate(session)
        await _send_json(send, 200, None, session.id)

    def _next_event_id(self) -> str:
        return str(next(self._event_ids))

    async def _respond(
        self,
        receive: Receive,
        send: Send,
        session: _Session | None,
        session_id: str | None,
        work: _Work,
        *,
        drop: int | None = None,
    ) -> None:
        """Run `work` for one POSTed request and answer in the configured response mode.

        `work` returns the response message, or None when the session was terminated
        under it. A client disconnect cancels the work. `drop` is the number of the
        POST whose response chaos cuts, or None.
        """
        if self._json_response:
            await self._respond_json(receive, send, session, session_id, work, drop)
        else:
            await self._respond_sse(receive, send, session, session_id, work, drop)

    async def _respond_json(
        self,
        receive: Receive,
        send: Send,
        session: _Session | None,
        session_id: str | None,
        work: _Work,
        drop: int | None,
    ) -> None:
        disconnect = _Disconnect()
        outcome: JSON | None = None
        finished = False
        async with anyio.create_task_group() as tg:
            tg.start_soon(disconnect.watch, receive, tg.cancel_scope)
            outcome = await work(_Outbound(session, None))
            finished = True
            tg.cancel_scope.cancel()
        if not finished:
            return
        if outcome is None:
            if session is not None and session.dropped:
                await _cut_json(send, session_id, b"")
                return
            await _send_json(
                send,
                500,
                _error(None, _INTERNAL_ERROR, "Session terminated before the request completed"),
                session_id,
            )
        elif drop is not None:
            # The work is done; the client never gets to know.
            self._fault("drop", drop)
            await _cut_json(send, session_id, _dumps(outcome))
        else:
            await _send_json(send, 200, outcome, session_id)

    async def _respond_sse(
        self,
        receive: Receive,
        send: Send,
        session: _Session | None,
        session_id: str | None,
        work: _Work,
        drop: int | None,
    ) -> None:
        log = EventLog()
        if session is not None:
            session.add_log(log)

        async def emit(message: JSON) -> None:
            progress = message.get("method") == "notifications/progress"
            await self._append(session, log, "progress" if progress else "message", message)

        async def produce() -> None:
            outcome: JSON | None = None
            try:
                outcome = await work(_Outbound(session, emit))
                if outcome is not None:
                    await emit(outcome)
            finally:
                log.finish(aborted=outcome is None and session is not None and session.dropped)

        await _start_sse(send, session_id)
        await self._append(session, log, "priming", None)
        # Work whose stream chaos will cut goes on after the connection is gone.
        detached = self._background if drop is not None else None
        disconnect = _Disconnect()
        ended = False
        async with anyio.create_task_group() as tg:
            if detached is not None:
                detached.start_soon(produce)
            else:
                tg.start_soon(produce)
            tg.start_soon(disconnect.watch, receive, tg.cancel_scope)
            drop_after = self._chaos.drop_after if drop is not None else None
            ended = await self._pump(log, send, 0, drop_after, drop)
            if not ended and detached is None and not log.done:
                # No lifespan task group: finish the work here, then cut.
                await _wait_done(log)
            tg.cancel_scope.cancel()
        if ended and not disconnect.gone:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _append(
        self, session: _Session | None, log: EventLog, kind: EventKind, message: JSON | None
    ) -> None:
        event_id = next(self._event_ids)
        await log.append(event_id, kind, _sse_event(str(event_id), message))
        if session is not None:
            session.event_index[event_id] = log
            for evicted in log.evicted:
                session.event_index.pop(evicted, None)
        log.evicted.clear()

    async def _pump(
        self,
        log: EventLog,
        send: Send,
        seq: int,
        drop_after: EventKind | None,
        drop: int | None = None,
    ) -> bool:
        """Send the events of `log` from position `seq` on.

        Returns True when the stream ended with its last event, False when it was cut
        (by chaos after an event of kind `drop_after`, or by a restart).
        """
        log.attach(seq)
        try:
            while True:
                changed = log.changed
                while seq < log.next_seq:
                    event = log.get(seq)
                    if event is None:  # fell out of the replay window
                        seq = log.first_seq
                        continue
                    await _send_chunk(send, event.chunk)
                    seq += 1
                    log.advance(seq)
                    if drop_after is not None and event.kind == drop_after:
                        self._fault("drop", drop)
                        return False
                if log.done:
                    return not log.aborted
                await changed.wait()
        finally:
            log.detach()

    # -- legacy HTTP+SSE transport (python-sdk-sse) ----------------------------------

    async def _handle_legacy_get(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        # Every GET is a new, uninitialized session with its own endpoint URL.
        session = _Session(
            id=uuid.uuid4().hex,
            protocol_version=LATEST_PROTOCOL_VERSION,
            client_capabilities={},
            legacy=True,
        )
        self._sessions[session.id] = session
        self._stats.sessions_created += 1
        outgoing, to_client = anyio.create_memory_object_stream[JSON](_GET_STREAM_BUFFER)
        session.get_stream = outgoing
        inbound, from_client = anyio.create_memory_object_stream[JSON](_GET_STREAM_BUFFER)
        session.inbound = inbound
        disconnect = _Disconnect()
        try:
            async with to_client, from_client:
                headers = [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                ]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                endpoint = f"{MESSAGES_PATH}?session_id={session.id}"
                await _send_chunk(send, f"event: endpoint\ndata: {endpoint}\n\n".encode())
                async with anyio.create_task_group() as tg:
                    tg.start_soon(disconnect.watch, receive, tg.cancel_scope)
                    tg.start_soon(self._legacy_process, session, from_client)
                    async for message in to_client:
                        await _send_chunk(
                            send, b"event: message\ndata: " + _dumps(message) + b"\n\n"
                        )
                    tg.cancel_scope.cancel()
        finally:
            session.inbound = None
            inbound.close()
            self._terminate(session, dropped=session.dropped)
        if not disconnect.gone and not session.dropped:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _legacy_process(
        self, session: _Session, from_client: MemoryObjectReceiveStream[JSON]
    ) -> None:
        async with anyio.create_task_group() as tg:
            async for message in from_client:
                tg.start_soon(self._legacy_handle, session, message)

    async def _legacy_handle(self, session: _Session, message: JSON) -> None:
        kind = _classify(message)
        if kind == "notification":
            await self._on_notification(session, message)
            return
        if kind == "response":
            self._on_client_response(session, message)
            return
        if kind != "request":
            return
        if message["method"] == "initialize":
            _, response = self._accept_initialize(message, session)
            if self._initialize_delay > 0:
                await anyio.sleep(self._initialize_delay)  # simulated server work
            await session.send_standalone(response)
            return
        early = not session.initialized and self._gated(message["method"])
        if early:
            self._stats.early_requests += 1
        outcome = await self._run_request(session, message, _Outbound(session, None), early=early)
        if outcome is not None:
            await session.send_standalone(outcome)

    async def _handle_legacy_post(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        fate = await self._chaos_gate(receive, send)
        if fate is None:
            return
        session_id = QueryParams(scope["query_string"]).get("session_id")
        if session_id is None:
            await self._answer(send, self._dialect.missing_answer)
            return
        try:
            uuid.UUID(hex=session_id)
        except ValueError:
            await self._answer(send, HttpAnswer.text(400, "Invalid session ID"))
            return
        session = self._live_session(session_id)
        if session is None and session_id not in self._dead_legacy:
            await self._answer_gone(send)
            return
        body = await _read_body(receive)
        if body is None:
            return
        try:
            message = json.loads(body)
        except ValueError:
            message = None
        kind = _classify(message)
        if kind is None:
            await self._answer(send, HttpAnswer.text(400, "Could not parse message"))
            return
        assert isinstance(message, dict)  # checked by _classify
        if session is not None and kind == "request" and message["method"] != "initialize":
            if self._expired_by_count(session):
                session = None  # now dead: accepted, never answered
            else:
                session.requests += 1
        # As the Python SDK 1.x: 202 first, then the message is queued, so two POSTs
        # in flight can be processed in either order.
        await self._answer(send, HttpAnswer.text(202, "Accepted"))
        if session is None:
            return  # a dead session: accepted, never answered
        await anyio.sleep(fate.jitter)
        inbound = session.inbound
        if inbound is None:
            return  # the session died meanwhile
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await inbound.send(message)

    # -- JSON-RPC layer -------------------------------------------------------------

    def _accept_initialize(
        self, message: JSON, existing: _Session | None
    ) -> tuple[_Session | None, JSON]:
        """Check `initialize`, open (or restart) the session; (session, response)."""
        self._stats.requests["initialize"] += 1
        self._stats.initialize_requests += 1
        request_id = message["id"]
        params = message.get("params")
        problem = _initialize_problem(params)
        if problem is not None:
            error = _error(request_id, _INVALID_PARAMS, "Invalid request parameters", problem)
            return existing, error
        assert isinstance(params, dict)  # checked by _initialize_problem
        requested = params["protocolVersion"]
        version = requested if requested in SUPPORTED_PROTOCOL_VERSIONS else LATEST_PROTOCOL_VERSION
        if existing is not None:
            # Re-initializing a live session restarts its handshake.
            session = existing
            session.reset_handshake()
            session.protocol_version = version
            session.client_capabilities = params["capabilities"]
        else:
            session = _Session(
                id=secrets.token_hex(16),
                protocol_version=version,
                client_capabilities=params["capabilities"],
            )
            self._sessions[session.id] = session
            self._stats.sessions_created += 1
        result: JSON = {
            "protocolVersion": version,
            "capabilities": _catalog.CAPABILITIES,
            "serverInfo": {
                "name": _catalog.SERVER_NAME,
                "title": "resilient-mcp strict test server",
                "version": self._version,
            },
            "instructions": _catalog.INSTRUCTIONS,
        }
        return session, _result(request_id, result)

    async def _initialize(
        self, message: JSON, existing: _Session | None, receive: Receive, send: Send
    ) -> None:
        session, response = self._accept_initialize(message, existing)
        refused = "error" in response

        async def answer(_: _Outbound) -> JSON:
            if self._initialize_delay > 0 and not refused:
                await anyio.sleep(self._initialize_delay)  # simulated server work
            return response

        await self._respond(
            receive, send, session, session.id if session is not None else None, answer
        )

    async def _on_notification(self, session: _Session, message: JSON) -> None:
        method = message["method"]
        self._stats.notifications[method] += 1
        params = message.get("params")
        if method == "notifications/initialized":
            self._stats.initialized_notifications += 1
            if self._handshake_delay > 0:
                await anyio.sleep(self._handshake_delay)  # simulated server work
            # The caller sends the 202 only after this point: when the client sees
            # it, the session is ready.
            session.mark_initialized()
        elif method == "notifications/cancelled" and isinstance(params, dict):
            request_id = params.get("requestId")
            if _is_id(request_id):
                in_flight = session.in_flight.get(json.dumps(request_id))
                if in_flight is not None:
                    in_flight.reason = "cancelled"
                    in_flight.scope.cancel()

    def _on_client_response(self, session: _Session, message: JSON) -> None:
        request_id = message["id"]
        if isinstance(request_id, int) and not isinstance(request_id, bool):
            pending = session.pending.get(request_id)
            if pending is not None:
                pending.response = message
                pending.done.set()

    async def _run_request(
        self, session: _Session, message: JSON, outbound: _Outbound, *, early: bool = False
    ) -> JSON | None:
        request_id = message["id"]
        key = json.dumps(request_id)
        in_flight = _InFlight(anyio.CancelScope())
        session.in_flight[key] = in_flight
        try:
            with in_flight.scope:
                return await self._dispatch(session, message, outbound, early=early)
        finally:
            if session.in_flight.get(key) is in_flight:
                del session.in_flight[key]
        # Reached only when the scope was cancelled by us, not by a disconnect.
        if in_flight.reason == "cancelled":
            # What the Python SDK 1.x answers for a request the client cancelled.
            return _error(request_id, 0, "Request cancelled")
        return None

    async def _dispatch(
        self, session: _Session, message: JSON, outbound: _Outbound, *, early: bool
    ) -> JSON:
        method: str = message["method"]
        request_id = message["id"]
        self._stats.requests[method] += 1
        params = message.get("params", {})
        if early:
            code, text, data = self._dialect.early_error(method)
            return _error(request_id, code, text, data)
        if method == "ping":
            return _result(request_id, {})
        handler = self._handlers.get(method)
        if handler is None:
            if self._dialect.unknown_as_invalid_params:
                # The Python SDK 1.x fails to validate an unknown request type.
                return _error(request_id, _INVALID_PARAMS, "Invalid request parameters", "")
            # As in the Python SDK 2.x: unserved methods are -32601 whatever the state.
            return _error(request_id, _METHOD_NOT_FOUND, "Method not found", method)
        if not isinstance(params, dict):
            return _error(request_id, _INVALID_PARAMS, "Invalid params: params must be an object")
        try:
            result = await handler(_Call(session, request_id, params, outbound))
        except _RpcError as exc:
            return _error(request_id, exc.code, exc.message, exc.data)
        return _result(request_id, result)

    # -- methods --------------------------------------------------------------------

    def _page(self, kind: str, items: list[JSON], params: JSON) -> tuple[list[JSON], JSON]:
        cursor = params.get("cursor")
        start = 0 if cursor is None else _decode_cursor(kind, cursor, len(items))
        if self._page_size is None:
            return items[start:], {}
        end = start + self._page_size
        extra = {"nextCursor": _encode_cursor(kind, end)} if end < len(items) else {}
        return items[start:end], extra

    async def _tools_list(self, call: _Call) -> JSON:
        page, extra = self._page("tools", self._tool_list, call.params)
        return {"tools": page, **extra}

    async def _tools_call(self, call: _Call) -> JSON:
        name = call.params.get("name")
        if not isinstance(name, str):
            raise _RpcError(_INVALID_PARAMS, "Invalid params: 'name' must be a string")
        tool = self._tools.get(name)
        if tool is None:
            raise _RpcError(_INVALID_PARAMS, f"Unknown tool: {name}")
        arguments = call.params.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise _RpcError(_INVALID_PARAMS, "Invalid params: 'arguments' must be an object")
        definition, run = tool
        problem = _validate_arguments(definition["inputSchema"], arguments)
        if problem is not None:
            # 2025-11-25: input validation errors are tool execution errors, so a
            # model can read them and correct itself.
            return _text_result(f"Input validation error: {problem}", is_error=True)
        self._stats.tool_calls[name] += 1
        return await run(call, arguments)

    async def _resources_list(self, call: _Call) -> JSON:
        page, extra = self._page("resources", _catalog.RESOURCES, call.params)
        return {"resources": page, **extra}

    async def _resource_templates_list(self, call: _Call) -> JSON:
        page, extra = self._page("templates", _catalog.RESOURCE_TEMPLATES, call.params)
        return {"resourceTemplates": page, **extra}

    async def _resources_read(self, call: _Call) -> JSON:
        uri = call.params.get("uri")
        if not isinstance(uri, str):
            raise _RpcError(_INVALID_PARAMS, "Invalid params: 'uri' must be a string")
        contents = _catalog.RESOURCE_CONTENTS.get(uri)
        if contents is None:
            raise _RpcError(_RESOURCE_NOT_FOUND, "Resource not found", {"uri": uri})
        return {"contents": [contents]}

    async def _empty(self, call: _Call) -> JSON:
        return {}

    async def _subscribe(self, call: _Call) -> JSON:
        uri = call.params.get("uri")
        if not isinstance(uri, str):
            raise _RpcError(_INVALID_PARAMS, "Invalid params: 'uri' must be a string")
        call.session.subscriptions.add(uri)
        return {}

    async def _unsubscribe(self, call: _Call) -> JSON:
        uri = call.params.get("uri")
        if not isinstance(uri, str):
            raise _RpcError(_INVALID_PARAMS, "Invalid params: 'uri' must be a string")
        call.session.subscriptions.discard(uri)
        return {}

    # -- what the modern era shares with the legacy one -----------------------------

    def _modern_call(self, context: Context) -> _Call:
        """A legacy `_Call` for a modern request: no session, notifications on its stream."""
        session = _Session(
            id="",
            protocol_version=context.envelope.version,
            client_capabilities=context.envelope.capabilities,
        )
        return _Call(session, context.request_id, context.params, _Outbound(None, context.emit))

    async def _modern_delegate(self, context: Context) -> JSON:
        """Methods whose results are the same in both eras."""
        handler = self._handlers[context.method]
        try:
            return await handler(self._modern_call(context))
        except _RpcError as exc:
            raise ModernError(exc.code, exc.message, exc.data) from None

    async def _modern_legacy_tool(self, context: Context, name: str, arguments: JSON) -> JSON:
        """Run a catalog tool that needs nothing from the client."""
        _, run = self._tools[name]
        return await run(self._modern_call(context), arguments)

    @staticmethod
    def _validate(schema: JSON, arguments: JSON) -> str | None:
        return _validate_arguments(schema, arguments)

    async def _prompts_list(self, call: _Call) -> JSON:
        page, extra = self._page("prompts", _catalog.PROMPTS, call.params)
        return {"prompts": page, **extra}

    async def _prompts_get(self, call: _Call) -> JSON:
        name = call.params.get("name")
        if name != "greet":
            raise _RpcError(_INVALID_PARAMS, f"Unknown prompt: {name}")
        arguments = call.params.get("arguments") or {}
        who = arguments.get("name") if isinstance(arguments, dict) else None
        if not isinstance(who, str):
            raise _RpcError(_INVALID_PARAMS, "Missing required argument: name")
        return {
            "description": "Greets someone by name.",
            "messages": [
                {"role": "user", "content": {"type": "text", "text": f"Please greet {who}."}},
            ],
        }

    async def _complete(self, call: _Call) -> JSON:
        ref = call.params.get("ref")
        argument = call.params.get("argument")
        if not isinstance(ref, dict) or not isinstance(argument, dict):
            raise _RpcError(_INVALID_PARAMS, "Invalid params: 'ref' and 'argument' are required")
        prefix = str(argument.get("value", "")).lower()
        candidates: tuple[str, ...] = ()
        if argument.get("name") == "name":
            if ref.get("type") == "ref/prompt" and ref.get("name") == "greet":
                candidates = _catalog.GREET_NAMES
            elif ref.get("type") == "ref/resource" and ref.get("uri") == "memo://{name}":
                candidates = tuple(str(r["name"]) for r in _catalog.RESOURCES)
        values = [value for value in candidates if value.lower().startswith(prefix)]
        return {"completion": {"values": values, "total": len(values), "hasMore": False}}

    async def _set_level(self, call: _Call) -> JSON:
        level = call.params.get("level")
        if level not in _catalog.LOG_LEVELS:
            raise _RpcError(_INVALID_PARAMS, f"Invalid params: unknown log level {level!r}")
        call.session.log_level = level
        return {}

    # -- tools ----------------------------------------------------------------------

    async def _tool_echo(self, call: _Call, arguments: JSON) -> JSON:
        return _text_result(arguments["text"])

    async def _tool_add(self, call: _Call, arguments: JSON) -> JSON:
        structured = {"sum": arguments["a"] + arguments["b"]}
        # Structured content is also serialized into a text block for older clients.
        return {
            "content": [{"type": "text", "text": json.dumps(structured)}],
            "structuredContent": structured,
            "isError": False,
        }

    async def _tool_fail(self, call: _Call, arguments: JSON) -> JSON:
        return _text_result("The fail tool always fails.", is_error=True)

    async def _tool_progress(self, call: _Call, arguments: JSON) -> JSON:
        steps = int(arguments["steps"])
        interval = float(arguments.get("interval", 0))
        token = call.progress_token
        for step in range(1, steps + 1):
            if interval > 0:
                await anyio.sleep(interval)  # simulated slow work between steps
            if token is not None:
                await call.outbound.notify(
                    {
                        "jsonrpc": "2.0",
                        "method": "notifications/progress",
                        "params": {
                            "progressToken": token,
                            "progress": step,
                            "total": steps,
                            "message": f"step {step} of {steps}",
                        },
                    }
                )
        return _text_result(f"completed {steps} steps")

    async def _tool_increment(self, call: _Call, arguments: JSON) -> JSON:
        key = arguments.get("key")
        if isinstance(key, str):
            self._stats.executions[key] += 1
        self._counter += 1
        return _text_result(str(self._counter))

    async def _tool_read_counter(self, call: _Call, arguments: JSON) -> JSON:
        return _text_result(str(self._counter))

    async def _tool_set_value(self, call: _Call, arguments: JSON) -> JSON:
        self._counter = int(arguments["value"])
        return _text_result(str(self._counter))

    async def _tool_extra(self, call: _Call, arguments: JSON) -> JSON:
        return _text_result(str(arguments.get("text", "ok")))

    async def _ask_client(
        self, call: _Call, capability: str, method: str, params: JSON
    ) -> tuple[JSON | None, JSON | None]:
        """Send a server→client request; (result, None) or (None, isError tool result)."""
        if capability not in call.session.client_capabilities:
            return None, _text_result(
                f"The client did not declare the {capability} capability", is_error=True
            )
        try:
            response = await call.outbound.request(method, params)
        except _NoChannel:
            return None, _text_result(
                f"No stream to send {method} on: use json_response=False or open the GET stream",
                is_error=True,
            )
        error = response.get("error")
        if isinstance(error, dict):
            return None, _text_result(
                f"The client answered {method} with error {error.get('code')}: "
                f"{error.get('message')}",
                is_error=True,
            )
        result = response.get("result")
        if not isinstance(result, dict):
            return None, _text_result(
                f"The client's {method} result is not an object", is_error=True
            )
        return result, None

    async def _tool_sample(self, call: _Call, arguments: JSON) -> JSON:
        params = {
            "messages": [
                {"role": "user", "content": {"type": "text", "text": arguments["prompt"]}},
            ],
            "maxTokens": 100,
        }
        result, failure = await self._ask_client(call, "sampling", "sampling/createMessage", params)
        if result is None:
            assert failure is not None
            return failure
        content = result.get("content")
        # 2025-11-25 allows a list of content blocks as well as a single one.
        blocks = content if isinstance(content, list) else [content]
        texts = [
            block["text"]
            for block in blocks
            if isinstance(block, dict) and isinstance(block.get("text"), str)
        ]
        return _text_result("".join(texts) if texts else json.dumps(result))

    async def _tool_list_roots(self, call: _Call, arguments: JSON) -> JSON:
        result, failure = await self._ask_client(call, "roots", "roots/list", {})
        if result is None:
            assert failure is not None
            return failure
        return _text_result(json.dumps(result.get("roots", [])))

    async def _tool_elicit(self, call: _Call, arguments: JSON) -> JSON:
        params = {
            "message": arguments.get("message", "What is your name?"),
            "requestedSchema": {
                "type": "object",
                "properties": {"name": {"type": "string", "description": "Your name"}},
                "required": ["name"],
            },
        }
        result, failure = await self._ask_client(call, "elicitation", "elicitation/create", params)
        if result is None:
            assert failure is not None
            return failure
        return _text_result(json.dumps(result))


def _classify(message: Any) -> str | None:
    """'request', 'notification' or 'response'; None if not a JSON-RPC 2.0 message."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return None
    if "method" in message:
        if not isinstance(message["method"], str):
            return None
        if "id" not in message:
            return "notification"
        return "request" if _is_id(message["id"]) else None
    if ("result" in message) != ("error" in message):
        return "response" if "id" in message else None
    return None


def _initialize_problem(params: Any) -> str | None:
    if not isinstance(params, dict):
        return "initialize needs params"
    if not isinstance(params.get("protocolVersion"), str):
        return "protocolVersion must be a string"
    if not isinstance(params.get("capabilities"), dict):
        return "capabilities must be an object"
    info = params.get("clientInfo")
    if not isinstance(info, dict) or not isinstance(info.get("name"), str):
        return "clientInfo.name must be a string"
    if not isinstance(info.get("version"), str):
        return "clientInfo.version must be a string"
    return None


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(
    send: Send,
    status: int,
    payload: JSON | None,
    session_id: str | None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = b"" if payload is None else _dumps(payload)
    # Like the Python SDK, even an empty 202/200 says application/json.
    headers = [
        (b"content-type", _JSON_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    if session_id is not None:
        headers.append((_SESSION_HEADER.encode(), session_id.encode()))
    headers.extend(extra or [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _start_sse(send: Send, session_id: str | None) -> None:
    headers = [
        (b"content-type", _SSE_TYPE.encode()),
        (b"cache-control", b"no-cache, no-transform"),
    ]
    if session_id is not None:
        headers.append((_SESSION_HEADER.encode(), session_id.encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})


async def _send_chunk(send: Send, chunk: bytes) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _cut_json(send: Send, session_id: str | None, body: bytes) -> None:
    """Start a JSON response and close the connection halfway through its body."""
    headers = [
        (b"content-type", _JSON_TYPE.encode()),
        (b"content-length", str(max(len(body), 1)).encode()),
    ]
    if session_id is not None:
        headers.append((_SESSION_HEADER.encode(), session_id.encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
    # Returning now, with the response incomplete, makes the ASGI server drop the
    # connection.


async def _wait_done(log: EventLog) -> None:
    while not log.done:
        await log.changed.wait()
