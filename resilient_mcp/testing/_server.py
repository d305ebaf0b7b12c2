"""StrictServer: a stateful Streamable HTTP MCP server that is as strict as the Python SDK.

Everything runs on anyio, so the ASGI app works under any ASGI server (uvicorn on
asyncio in `serve()`, or a trio-based server when mounted elsewhere).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import secrets
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Final

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from resilient_mcp.testing import _catalog
from resilient_mcp.testing._catalog import JSON

ENDPOINT_PATH: Final = "/mcp"
LATEST_PROTOCOL_VERSION: Final = "2025-11-25"
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
    """Requests rejected with -32602 because they were processed before the session's
    `notifications/initialized` had been processed."""
    tool_calls: Counter[str] = field(default_factory=Counter)
    """Tool executions by tool name (only calls that passed the handshake gate and
    argument validation, i.e. the tool really ran)."""
    sessions_created: int = 0
    """Sessions opened by `initialize`."""
    sessions_terminated: int = 0
    """Sessions ended by DELETE or by the server shutting down."""
    http_rejections: Counter[int] = field(default_factory=Counter)
    """HTTP-level rejections by status code (400, 404, 405, 406, 409, 415)."""

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
    log_level: str = "info"
    get_stream: MemoryObjectSendStream[JSON] | None = None
    in_flight: dict[str, _InFlight] = field(default_factory=dict)
    pending: dict[int, _Pending] = field(default_factory=dict)
    next_request_id: int = 0

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


def _accepts(headers: Headers) -> tuple[bool, bool]:
    """(accepts JSON, accepts SSE), with RFC 9110 wildcards as the Python SDK reads them."""
    types = {part.split(";")[0].strip().lower() for part in headers.get("accept", "").split(",")}
    wildcard = "*/*" in types
    return (
        wildcard or bool(types & {_JSON_TYPE, "application/*"}),
        wildcard or bool(types & {_SSE_TYPE, "text/*"}),
    )


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
    """ASGI callable for the MCP endpoint; a class so Starlette routes it as raw ASGI."""

    def __init__(self, server: StrictServer) -> None:
        self._server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._server._handle_http(scope, receive, send)


class StrictServer:
    """A stateful Streamable HTTP MCP server that is as strict as the Python SDK.

    It speaks protocol 2025-11-25 (and accepts 2025-06-18 and 2025-03-26) at the
    endpoint `/mcp`, issues `Mcp-Session-Id` on `initialize`, and answers any request
    other than `ping`/`initialize` that is processed before the session's
    `notifications/initialized` has been processed with the in-band error
    `{"code": -32602, "message": "Invalid request parameters", "data": ""}`.

    All parameters are keyword-only and fixed for the server's lifetime:

    - `json_response`: answer requests with `application/json` (default) or, when False,
      with `text/event-stream` (priming event, then `event: message` events).
    - `get_stream`: offer the standalone GET SSE stream; False answers GET with 405.
    - `handshake_delay`: seconds of simulated work before `notifications/initialized`
      marks the session ready; its 202 is sent only afterwards.
    - `initialize_delay`: seconds of simulated work before the `initialize` result.
    - `extra_tools`: number of filler tools `tool_0000`, `tool_0001`, ... to add.
    - `page_size`: page length of every `*/list` method (None: no pagination).

    Serve it with `serve()`, or mount `asgi_app()` in any ASGI server. A server holds
    its sessions in memory; serve one `StrictServer` from one place at a time.
    """

    def __init__(
        self,
        *,
        json_response: bool = True,
        get_stream: bool = True,
        handshake_delay: float = 0.0,
        initialize_delay: float = 0.0,
        extra_tools: int = 0,
        page_size: int | None = None,
    ) -> None:
        if handshake_delay < 0 or initialize_delay < 0:
            raise ValueError("delays must be >= 0")
        if extra_tools < 0:
            raise ValueError("extra_tools must be >= 0")
        if page_size is not None and page_size < 1:
            raise ValueError("page_size must be >= 1 or None")
        self._json_response = json_response
        self._get_stream = get_stream
        self._handshake_delay = handshake_delay
        self._initialize_delay = initialize_delay
        self._extra_tools = extra_tools
        self._page_size = page_size
        self._stats = ServerStats()
        self._counter = 0
        self._sessions: dict[str, _Session] = {}
        # Event ids only need to be unique; one server-wide sequence is simplest.
        self._event_ids = itertools.count(1)
        self._serving_lock = threading.Lock()
        self._serving = False
        self._version = _server_version()

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

        self._handlers: dict[str, _Handler] = {
            "tools/list": self._tools_list,
            "tools/call": self._tools_call,
            "resources/list": self._resources_list,
            "resources/templates/list": self._resource_templates_list,
            "resources/read": self._resources_read,
            "resources/subscribe": self._empty,
            "resources/unsubscribe": self._empty,
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
        """A Starlette app serving this server at `/mcp`, to mount in any ASGI server."""
        return Starlette(routes=[Route(ENDPOINT_PATH, endpoint=_Endpoint(self))])

    # -- lifecycle hooks used by serve() --------------------------------------------

    def _claim(self) -> None:
        with self._serving_lock:
            if self._serving:
                raise RuntimeError("this StrictServer is already being served")
            self._serving = True

    def _release(self) -> None:
        with self._serving_lock:
            self._serving = False

    def _close_all(self) -> None:
        """End every session so open streams finish and the ASGI server can stop."""
        for session in list(self._sessions.values()):
            self._terminate(session)

    def _terminate(self, session: _Session) -> None:
        if self._sessions.pop(session.id, None) is None:
            return
        self._stats.sessions_terminated += 1
        if session.get_stream is not None:
            session.get_stream.close()
            session.get_stream = None
        for in_flight in session.in_flight.values():
            in_flight.reason = "terminated"
            in_flight.scope.cancel()
        for pending in session.pending.values():
            pending.done.set()

    # -- HTTP layer -----------------------------------------------------------------

    async def _handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = Headers(scope=scope)
        method = scope["method"]
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

    async def _lookup(self, headers: Headers, send: Send) -> _Session | None:
        """The session a non-initialize message names; None after answering 400/404."""
        session_id = headers.get(_SESSION_HEADER)
        if session_id is None:
            await self._reject(send, 400, "Bad Request: Missing session ID")
            return None
        session = self._sessions.get(session_id)
        if session is None:
            await self._reject(send, 404, "Session not found")
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

    async def _handle_post(self, headers: Headers, receive: Receive, send: Send) -> None:
        # Like the SDK's session manager, an unknown session id is a 404 before anything
        # else is looked at, even for `initialize`.
        session_id = headers.get(_SESSION_HEADER)
        if session_id is not None and session_id not in self._sessions:
            await self._reject(send, 404, "Session not found")
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
        if isinstance(message, list):
            await self._reject(send, 400, "Invalid Request: batches are not supported")
            return
        kind = _classify(message)
        if kind is None:
            await self._reject(send, 400, "Invalid Request: not a JSON-RPC 2.0 message")
            return
        if kind == "request" and message["method"] == "initialize":
            await self._initialize(message, session_id, receive, send)
            return
        session = await self._lookup(headers, send)
        if session is None or not await self._version_ok(headers, send, session):
            return
        if kind == "notification":
            await self._on_notification(session, message)
            await _send_json(send, 202, None, session.id)
        elif kind == "response":
            self._on_client_response(session, message)
            await _send_json(send, 202, None, session.id)
        else:
            await self._respond(
                receive,
                send,
                session,
                session.id,
                lambda outbound: self._run_request(session, message, outbound),
            )

    async def _handle_get(self, headers: Headers, receive: Receive, send: Send) -> None:
        if not self._get_stream:
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
                    # The session ended (DELETE or shutdown): finish the response.
                    tg.cancel_scope.cancel()
        finally:
            if session.get_stream is sender:
                session.get_stream = None
            sender.close()
        if not disconnect.gone:
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
        work: Callable[[_Outbound], Awaitable[JSON | None]],
    ) -> None:
        """Run `work` for one POSTed request and answer in the configured response mode.

        `work` returns the response message, or None when the session was terminated
        under it. A client disconnect cancels the work.
        """
        disconnect = _Disconnect()
        outcome: JSON | None = None
        finished = False
        if self._json_response:
            async with anyio.create_task_group() as tg:
                tg.start_soon(disconnect.watch, receive, tg.cancel_scope)
                outcome = await work(_Outbound(session, None))
                finished = True
                tg.cancel_scope.cancel()
            if not finished:
                return
            if outcome is None:
                await _send_json(
                    send,
                    500,
                    _error(
                        None, _INTERNAL_ERROR, "Session terminated before the request completed"
                    ),
                    session_id,
                )
            else:
                await _send_json(send, 200, outcome, session_id)
            return

        async def emit(message: JSON) -> None:
            await _send_chunk(send, _sse_event(self._next_event_id(), message))

        await _start_sse(send, session_id)
        await _send_chunk(send, _sse_event(self._next_event_id(), None))
        async with anyio.create_task_group() as tg:
            tg.start_soon(disconnect.watch, receive, tg.cancel_scope)
            outcome = await work(_Outbound(session, emit))
            if outcome is not None:
                await emit(outcome)
            tg.cancel_scope.cancel()
        if not disconnect.gone:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    # -- JSON-RPC layer -------------------------------------------------------------

    async def _initialize(
        self, message: JSON, session_id: str | None, receive: Receive, send: Send
    ) -> None:
        self._stats.requests["initialize"] += 1
        self._stats.initialize_requests += 1
        request_id = message["id"]
        params = message.get("params")
        problem = _initialize_problem(params)
        existing = self._sessions.get(session_id) if session_id is not None else None
        if problem is not None:
            error = _error(request_id, _INVALID_PARAMS, "Invalid request parameters", problem)

            async def refuse(_: _Outbound) -> JSON:
                return error

            await self._respond(receive, send, existing, session_id, refuse)
            return
        assert isinstance(params, dict)  # checked by _initialize_problem
        requested = params["protocolVersion"]
        version = requested if requested in SUPPORTED_PROTOCOL_VERSIONS else LATEST_PROTOCOL_VERSION
        if existing is not None:
            # Re-initializing a live session restarts its handshake.
            session = existing
            session.initialized = False
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

        async def answer(_: _Outbound) -> JSON:
            if self._initialize_delay > 0:
                await anyio.sleep(self._initialize_delay)  # simulated server work
            return _result(request_id, result)

        await self._respond(receive, send, session, session.id, answer)

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
            session.initialized = True
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
        self, session: _Session, message: JSON, outbound: _Outbound
    ) -> JSON | None:
        request_id = message["id"]
        key = json.dumps(request_id)
        in_flight = _InFlight(anyio.CancelScope())
        session.in_flight[key] = in_flight
        try:
            with in_flight.scope:
                return await self._dispatch(session, message, outbound)
        finally:
            if session.in_flight.get(key) is in_flight:
                del session.in_flight[key]
        # Reached only when the scope was cancelled by us, not by a disconnect.
        if in_flight.reason == "cancelled":
            # What the Python SDK 1.x answers for a request the client cancelled.
            return _error(request_id, 0, "Request cancelled")
        return None

    async def _dispatch(self, session: _Session, message: JSON, outbound: _Outbound) -> JSON:
        method: str = message["method"]
        request_id = message["id"]
        self._stats.requests[method] += 1
        params = message.get("params", {})
        if method == "ping":
            return _result(request_id, {})
        handler = self._handlers.get(method)
        if handler is None:
            # As in the Python SDK 2.x: unserved methods are -32601 whatever the state.
            return _error(request_id, _METHOD_NOT_FOUND, "Method not found", method)
        if not session.initialized:
            self._stats.early_requests += 1
            return _error(request_id, _INVALID_PARAMS, "Invalid request parameters", "")
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
