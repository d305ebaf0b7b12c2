"""The session: owns the handshake, the gate, and every request.

Nothing reaches the server before it can take it: a request made while the session is
not ready parks in a bounded FIFO queue (the *gate*) and is released only after

1. the ``initialize`` result arrived and its protocol version was accepted, and
2. ``notifications/initialized`` was *delivered* (over HTTP: its 202 came back).

The handshake is single-flight: whoever finds the session not ready and no handshake
running starts one; everyone else parks.

"Handshake" covers era detection too: in the modern era (2026-07-28) there is no
``initialize``; a ``server/discover`` probe tells the two eras apart (see
:meth:`Session._establish`), and every request then carries the protocol version, the
client's capabilities and its info in ``_meta``.

Book-keeping (states, queue, pending requests) is plain synchronous code with no
``await`` inside, so it needs no lock on one event loop; I/O happens outside it. When
the session closes, everything pending fails at once.
"""

from __future__ import annotations

import contextvars
import copy
import enum
import itertools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import anyio
import anyio.abc
import pydantic
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import _detect
from ._classify import FailureContext, classify_rpc_error
from ._config import DEFAULT, Limits, Timeouts, _Default
from ._exceptions import (
    ClientClosed,
    ConnectError,
    ConnectionLost,
    Execution,
    FateUnknown,
    HandshakeError,
    HTTPStatusError,
    InputRequiredError,
    InvalidParams,
    MalformedMessage,
    MCPError,
    MethodNotFound,
    QueueFull,
    RequestCancelled,
    RequestTimeout,
    ServerUnavailable,
    UnsupportedProtocolVersion,
)
from ._log import Logger
from ._retry import SAFE_METHODS, RetryPolicy, backoff_disabled, retry_decision
from ._transport import Transport
from .types import (
    ClientCapabilities,
    CreateMessageRequestParams,
    CreateMessageResult,
    DiscoverResult,
    ElicitRequestParams,
    ElicitResult,
    Implementation,
    InitializeResult,
    LoggingMessage,
    Progress,
    Root,
    ServerCapabilities,
)

__all__ = [
    "LATEST_PROTOCOL_VERSION",
    "LEGACY_PROTOCOL_VERSIONS",
    "MODERN_PROTOCOL_VERSIONS",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "Era",
    "EraMode",
    "Handlers",
    "Session",
    "SessionState",
    "SessionStats",
]

MODERN_PROTOCOL_VERSIONS = ("2026-07-28",)
"""Versions of the modern era (no handshake, no sessions), newest first."""
LEGACY_PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
"""Versions reached through the ``initialize`` handshake, newest first."""
SUPPORTED_PROTOCOL_VERSIONS = MODERN_PROTOCOL_VERSIONS + LEGACY_PROTOCOL_VERSIONS
LATEST_PROTOCOL_VERSION = SUPPORTED_PROTOCOL_VERSIONS[0]

Era = Literal["modern", "legacy"]
EraMode = Literal["auto", "modern", "legacy"]

# Reserved request `_meta` keys of the modern era.
_META_VERSION = "io.modelcontextprotocol/protocolVersion"
_META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
_META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
_META_LOG_LEVEL = "io.modelcontextprotocol/logLevel"
_META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"
# A server that answers `input_required` with state only (nothing to ask) is polled
# back with a short, growing delay.
_STATE_ONLY_DELAY_S = 0.05
_STATE_ONLY_DELAY_MAX_S = 0.25

ProgressCallback = Callable[[Progress], Awaitable[None]]
_M = TypeVar("_M")

# A notification for the handler worker; progress carries its request (and so its
# callback), looked up when the notification arrived: by the time the worker runs, the
# request may have finished.
_Queued = tuple[str, Mapping[str, Any], "_Pending | None"]

# Set while the worker runs a notification handler: a request made from inside a handler
# must not wait for the (busy) worker to run its own progress callbacks.
_in_handler: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "resilient_mcp_in_handler", default=False
)

# How many lost sessions one call follows to the next before giving up (each new session
# is one handshake shared by every caller). Only a server that never keeps a session
# reaches it; the call's deadline usually ends things first.
_MAX_SESSION_FOLLOWS = 32

# JSON-RPC error codes we send.
_METHOD_NOT_FOUND = -32601
_INVALID_PARAMS = -32602
_INTERNAL_ERROR = -32603


class SessionState(enum.Enum):
    """Where a session is in its life. Transitions only go forward, except that a
    failed or lost handshake returns to ``NEW`` so that a later one can be tried."""

    NEW = "new"
    INITIALIZING = "initializing"
    READY = "ready"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, kw_only=True, slots=True)
class Handlers:
    """Callbacks for what the server sends on its own. All are optional and async.

    A capability is advertised to the server only when its handler is given (a server
    may change behaviour when it sees one: server-filesystem replaces its allowed
    directories with the client's roots).

    Attributes:
        sampling: answers ``sampling/createMessage`` (advertises ``sampling``).
        elicitation: answers ``elicitation/create`` (advertises ``elicitation``).
        roots: returns the roots for ``roots/list`` (advertises ``roots``).
        log: receives ``notifications/message``.
        notification: receives every server notification as (method, params), after the
            specific handlers.
    """

    sampling: Callable[[CreateMessageRequestParams], Awaitable[CreateMessageResult]] | None = None
    elicitation: Callable[[ElicitRequestParams], Awaitable[ElicitResult]] | None = None
    roots: Callable[[], Awaitable[list[Root]]] | None = None
    log: Callable[[LoggingMessage], Awaitable[None]] | None = None
    notification: Callable[[str, Mapping[str, Any]], Awaitable[None]] | None = None

    def listens(self) -> bool:
        """True if any handler would hear what the server sends outside a request."""
        return any(
            h is not None
            for h in (self.sampling, self.elicitation, self.roots, self.log, self.notification)
        )

    def capabilities(self) -> ClientCapabilities:
        return ClientCapabilities(
            sampling={} if self.sampling else None,
            elicitation={"form": {}} if self.elicitation else None,
            roots={"listChanged": False} if self.roots else None,
        )


class _Waiter:
    """One request parked in the gate."""

    __slots__ = ("error", "event")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.error: MCPError | None = None


class _Pending:
    """One request on the wire, waiting for its answer."""

    __slots__ = (
        "done",
        "error",
        "event",
        "hard_deadline",
        "method",
        "progress",
        "progress_drained",
        "progress_queued",
        "result",
        "scope",
        "sent",
        "timeout",
    )

    def __init__(self, method: str) -> None:
        self.method = method
        self.done = False
        self.result: Any = None
        self.error: Any = None  # the JSON-RPC error object, or an MCPError
        self.event: anyio.Event | None = None  # created only if the caller has to wait
        self.progress: ProgressCallback | None = None
        self.sent = False  # handed to the network (so the server may have it)
        self.progress_queued = 0  # progress notifications queued for the callback
        self.progress_drained: anyio.Event | None = None
        self.scope: anyio.CancelScope | None = None
        self.timeout: float | None = None
        self.hard_deadline = math.inf

    def resolve(self, result: Any = None, error: Any = None) -> None:
        if self.done:
            return
        self.done = True
        self.result = result
        self.error = error
        if self.event is not None:
            self.event.set()

    async def wait(self) -> None:
        if not self.done:
            self.event = anyio.Event()
            await self.event.wait()

    def mark_sent(self) -> None:
        self.sent = True

    def progress_handled(self) -> None:
        self.progress_queued -= 1
        if self.progress_queued == 0 and self.progress_drained is not None:
            self.progress_drained.set()

    async def wait_progress_handled(self) -> None:
        """Wait until the callback has seen every progress queued for this request."""
        if self.progress_queued > 0 and not _in_handler.get():
            self.progress_drained = anyio.Event()
            await self.progress_drained.wait()


@dataclass
class SessionStats:
    """Counters a caller can read (``client.stats``)."""

    requests: int = 0
    handshakes: int = 0
    queued_peak: int = 0
    unknown_responses: int = 0
    dropped_notifications: int = 0
    time_to_ready: float | None = None
    """Seconds from the start of the last successful handshake to the gate opening."""
    retries: int = 0
    """Requests sent again after a failure (each re-send counts once)."""
    recoveries: int = 0
    """New handshakes started because the server lost or never finished the session."""
    session_changes: int = 0
    """Times the server-assigned session id changed to a new one."""


class Session:
    """One MCP session over one transport. Used through :class:`~resilient_mcp.Client`."""

    def __init__(
        self,
        transport: Transport,
        *,
        timeouts: Timeouts,
        limits: Limits,
        handlers: Handlers,
        client_info: Implementation,
        logger: Logger,
        retry: RetryPolicy | None = None,
        era: EraMode = "auto",
        switch_transport: Callable[[str], Transport] | None = None,
    ) -> None:
        self._transport = transport
        self._era_mode: EraMode = era
        # Given when the user left the transport to us: builds the other HTTP transport
        # when this one is refused (Streamable HTTP <-> legacy HTTP+SSE).
        self._switch_factory = switch_transport
        # Only what was detected (nothing forced) goes into, and comes from, the cache.
        self._detects = era == "auto" and (
            switch_transport is not None or transport.name == "stdio"
        )
        self._probe_went_unanswered = False
        self._era: Era | None = None
        self._discover: DiscoverResult | None = None
        self._server_info: Implementation | None = None
        self._log_level: str | None = None
        self._listen_scope: anyio.CancelScope | None = None
        self._subscriptions: set[str] = set()
        self._timeouts = timeouts
        self._limits = limits
        self._handlers = handlers
        self._client_info = client_info
        self._log = logger
        self._state = SessionState.NEW
        self._retry = retry or RetryPolicy()
        # Bumped by every successful handshake: a failure seen on generation N triggers a
        # recovery only while N is current, so many failures make one new handshake.
        self._generation = 0
        self._last_session_id: str | None = None
        self._last_activity = 0.0
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._queue: deque[_Waiter] = deque()
        self._handshaking = False
        self._last_failure: MCPError | None = None
        self._init: InitializeResult | None = None
        self._client_capabilities = handlers.capabilities().model_dump(exclude_none=True)
        self._client_info_json = client_info.model_dump(exclude_none=True)
        self._task_group: anyio.abc.TaskGroup | None = None
        self._notify_send: MemoryObjectSendStream[_Queued] | None = None
        self._notification_listeners: list[Callable[[str, Mapping[str, Any]], None]] = []
        # Server->client requests being answered, by id, so the server can cancel them.
        self._serving: dict[tuple[str, str], anyio.CancelScope] = {}
        # The standalone server->client stream costs the server a connection and work;
        # it is opened only once someone would hear what comes on it.
        self._wants_stream = handlers.listens()
        # Modern servers ask for input inside results, and send logs only inside the
        # request they belong to: a subscriptions/listen stream serves notifications.
        self._wants_listen = handlers.notification is not None
        self.stats = SessionStats()

    # --- introspection ---------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def initialize_result(self) -> InitializeResult | None:
        return self._init

    @property
    def discover_result(self) -> DiscoverResult | None:
        return self._discover

    @property
    def era(self) -> Era | None:
        """The era the server speaks, once detected."""
        return self._era

    @property
    def server_capabilities(self) -> ServerCapabilities | None:
        if self._era == "modern" and self._discover is not None:
            return self._discover.capabilities
        return self._init.capabilities if self._init is not None else None

    @property
    def server_info(self) -> Implementation | None:
        if self._era == "modern":
            return self._server_info
        return self._init.serverInfo if self._init is not None else None

    @property
    def instructions(self) -> str | None:
        if self._era == "modern" and self._discover is not None:
            return self._discover.instructions
        return self._init.instructions if self._init is not None else None

    @property
    def transport(self) -> Transport:
        return self._transport

    def __repr__(self) -> str:
        return (
            f"<Session [{self._state.value}] [Requests: {len(self._pending)} active, "
            f"{len(self._queue)} queued]>"
        )

    async def listen(self) -> None:
        """Open the server->client stream (now if ready, else once ready). Idempotent."""
        if self._wants_stream and self._listen_scope is not None:
            return
        self._wants_stream = self._wants_listen = True
        if self._state is SessionState.READY:
            await self._start_stream()

    async def _start_stream(self) -> None:
        """Open the channel for server notifications: the legacy GET stream, or a modern
        ``subscriptions/listen`` request (restarted when the subscriptions change)."""
        if self._listen_scope is not None:
            self._listen_scope.cancel()
            self._listen_scope = None
        if not self._transport.modern:
            await self._transport.start_listening()
            return
        if self._task_group is None or self._state is not SessionState.READY:
            return
        scope = anyio.CancelScope()
        self._listen_scope = scope
        self._task_group.start_soon(self._listen_modern, scope)

    async def _resubscribe(self, generation: int) -> None:
        for uri in sorted(self._subscriptions):
            if generation != self._generation:
                return  # lost again meanwhile: the next session does it
            try:
                await self.request("resources/subscribe", {"uri": uri})
            except MCPError as exc:
                self._log.warning("resubscribe.failed", uri=uri, error=repr(exc))

    async def _listen_modern(self, scope: anyio.CancelScope) -> None:
        failures = 0
        with scope:
            while self._state is SessionState.READY and self._transport.modern:
                wanted: dict[str, Any] = {
                    "toolsListChanged": True,
                    "promptsListChanged": True,
                    "resourcesListChanged": True,
                }
                if self._subscriptions:
                    wanted["resourceSubscriptions"] = sorted(self._subscriptions)
                started = anyio.current_time()
                try:
                    await self._send_request(
                        "subscriptions/listen", {"notifications": wanted}, deadline=math.inf
                    )
                    reason = "ended by the server"
                except MethodNotFound:
                    self._log.info("listen.unsupported")
                    return
                except MCPError as exc:
                    reason = type(exc).__name__
                # A stream that lived long was healthy; one that ends at once, again and
                # again, is backed off from and finally given up on.
                failures = 1 if anyio.current_time() - started > 30 else failures + 1
                if failures > self._retry.attempts * 3:
                    self._log.warning("listen.given_up", reason=reason)
                    return
                delay = self._retry.backoff(failures, None)
                self._log.debug("listen.restart", reason=reason, delay_ms=round(delay * 1000))
                if delay > 0:
                    await self._retry.sleep(delay)  # backoff

    def add_notification_listener(self, listener: Callable[[str, Mapping[str, Any]], None]) -> None:
        """Register a synchronous, non-blocking observer of every server notification."""
        self._notification_listeners.append(listener)

    # --- lifecycle ------------------------------------------------------------------

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Open the transport and start the background workers (not the handshake)."""
        if self._state is not SessionState.NEW or self._task_group is not None:
            raise ClientClosed("a session can be started only once")
        self._task_group = task_group
        send, receive = anyio.create_memory_object_stream[_Queued](
            self._limits.max_pending_notifications
        )
        self._notify_send = send
        task_group.start_soon(self._notification_worker, receive)
        if self._timeouts.keepalive is not None:
            task_group.start_soon(self._keepalive, self._timeouts.keepalive)
        self._transport.set_connection_lost_handler(self.connection_lost)
        self._transport.set_undeliverable_handler(self._undeliverable)
        await self._transport.open(self._on_message, task_group)

    async def wait_ready(self, deadline: float = math.inf) -> None:
        """Return once the session is ready, starting the handshake if none is running.

        Raises:
            ClientClosed: the session is closing or closed.
            QueueFull: too many requests are already waiting.
            RequestTimeout: ``deadline`` passed first (nothing was sent).
            MCPError: the handshake failed (a copy of its error).
        """
        if self._state is SessionState.READY:
            return
        if self._state in (SessionState.CLOSING, SessionState.CLOSED):
            raise ClientClosed("the client is closed")
        if len(self._queue) >= self._limits.max_queued:
            raise QueueFull(
                f"{len(self._queue)} requests already wait for the session "
                f"(Limits.max_queued={self._limits.max_queued})"
            )
        waiter = _Waiter()
        self._queue.append(waiter)
        self.stats.queued_peak = max(self.stats.queued_peak, len(self._queue))
        self.start_handshake()
        try:
            with anyio.move_on_after(deadline - anyio.current_time()) as scope:
                await waiter.event.wait()
        finally:
            if not waiter.event.is_set():
                self._queue.remove(waiter)
        if scope.cancelled_caught:
            raise RequestTimeout(
                "timed out waiting for the session to become ready",
                execution=Execution.NOT_EXECUTED,
            )
        if waiter.error is not None:
            raise waiter.error

    def start_handshake(self) -> None:
        """Start a handshake unless the session is ready or one is running (single flight)."""
        if self._handshaking or self._state is not SessionState.NEW:
            return
        if self._task_group is None:
            raise ClientClosed("the client is not open")
        self._handshaking = True
        self._task_group.start_soon(self._run_handshake)

    def _release(self, error: MCPError | None) -> None:
        """Open the gate: wake every parked request in arrival order."""
        while self._queue:
            waiter = self._queue.popleft()
            if error is not None:
                # Each waiter raises its own copy: one exception object raised in many
                # tasks would collect a mixed-up traceback.
                waiter.error = copy.copy(error)
                waiter.error.__cause__ = error.__cause__
                waiter.error.execution = Execution.NOT_EXECUTED
                waiter.error.request_id = None
            waiter.event.set()

    async def _run_handshake(self) -> None:
        started = anyio.current_time()
        previous_id = self._last_session_id
        self._state = SessionState.INITIALIZING
        self.stats.handshakes += 1
        log = self._log.bind(attempt=self.stats.handshakes)
        log.debug("session.state", state="initializing")
        error: MCPError | None = None
        try:
            with anyio.fail_after(self._timeouts.initialize):
                await self._establish()
        except TimeoutError:
            error = RequestTimeout(
                f"handshake did not complete within {self._timeouts.initialize} s",
                method="initialize",
                session_id=self._transport.session_id,
                execution=Execution.NOT_EXECUTED,
            )
        except MCPError as exc:
            error = exc
        except Exception as exc:
            # Never let a surprise kill the task group: the parked requests get a typed
            # error instead of a hang or a cancellation.
            error = HandshakeError(f"handshake failed unexpectedly: {exc!r}", method="initialize")
            error.__cause__ = exc
        finally:
            self._handshaking = False
        if self._state in (SessionState.CLOSING, SessionState.CLOSED):
            self._release(ClientClosed("the client was closed during the handshake"))
            return
        if error is not None:
            self._state = SessionState.NEW
            self._last_failure = error
            log.info("session.handshake_failed", error=repr(error))
            try:
                await self._transport.reset_session()
            except MCPError as exc:
                # The parked callers get the handshake's error either way; a transport
                # that cannot reset must not leave them waiting.
                log.info("session.reset_failed", error=repr(exc))
            self._release(error)
            return
        self._state = SessionState.READY
        self._last_failure = None
        self._generation += 1
        if previous_id is not None and self._transport.session_id != previous_id:
            self.stats.session_changes += 1
        self.stats.time_to_ready = anyio.current_time() - started
        self._last_session_id = self._transport.session_id
        self._log = self._log.bind(session_id=self._transport.session_id)
        self._log.info(
            "session.state",
            state="ready",
            era=self._era,
            transport=self._transport.name,
            protocol_version=self._transport.protocol_version,
            time_to_ready_ms=round(self.stats.time_to_ready * 1000, 2),
        )
        self._release(None)
        if self._wants_listen if self._transport.modern else self._wants_stream:
            await self._start_stream()
        if self._subscriptions and not self._transport.modern and self._generation > 1:
            # A new legacy session starts without the old one's subscriptions.
            assert self._task_group is not None
            self._task_group.start_soon(self._resubscribe, self._generation)

    # --- era and transport detection ------------------------------------------------------

    async def _establish(self) -> None:
        """Make the session usable: detect the era (and transport), then handshake.

        The back-compat rules of 2026-07-28: probe with a modern request; anything but
        modern evidence means a legacy server (never keyed to one error code); over
        HTTP, a legacy ``initialize`` refused with 400/404/405 means the legacy HTTP+SSE
        transport. What was found is cached per endpoint (:mod:`._detect`).
        """
        await self._transport.reset_session()
        self._transport.modern = False
        self._era = None
        self._probe_went_unanswered = False
        key = self._transport.detection_key()
        hint = _detect.cache.get(key) if self._detects else None
        try:
            await self._establish_era(hint)
        except MCPError as exc:
            if hint is not None and not _is_outage(exc):
                _detect.cache.forget(key)  # the cached assumption no longer holds
            if self._switch_factory is None or not _refuses_transport(exc, self._transport.name):
                raise
            target = "sse" if self._transport.name == "streamable-http" else "streamable-http"
            self._log.info(
                "transport.fallback",
                refused=self._transport.name,
                trying=target,
                error=type(exc).__name__,
            )
            await self._replace_transport(self._switch_factory(target))
            await self._establish_era(None)

    async def _replace_transport(self, transport: Transport) -> None:
        old, self._transport = self._transport, transport
        with anyio.CancelScope(shield=True):
            await old.aclose()
        assert self._task_group is not None
        transport.set_connection_lost_handler(self.connection_lost)
        transport.set_undeliverable_handler(self._undeliverable)
        await transport.open(self._on_message, self._task_group)

    async def _establish_era(self, hint: _detect.Detection | None) -> None:
        mode = self._era_mode
        probe = mode == "modern" or (
            mode == "auto"
            and self._transport.name != "sse"  # HTTP+SSE predates the modern era
            and (hint is None or hint.era == "modern")
        )
        if probe:
            if await self._probe(hint):
                return
            if mode == "modern":
                raise UnsupportedProtocolVersion(
                    "the server does not speak the modern era (2026-07-28); "
                    "connect with era='auto' or era='legacy'",
                    offered=None,
                    supported=(),
                    method="server/discover",
                )
        try:
            await self._legacy_handshake()
        except (UnsupportedProtocolVersion, MethodNotFound) as exc:
            # A cached "legacy" that stopped holding: a modern-only server refuses
            # `initialize` (-32022 naming modern versions, or "method not found").
            modern_named = isinstance(exc, MethodNotFound) or any(
                v in MODERN_PROTOCOL_VERSIONS for v in exc.supported
            )
            # (After a probe that went unanswered, a slow server may have taken it late
            # and settled on the modern era: its -32022 to initialize says so.)
            if (
                (probe and not self._probe_went_unanswered)
                or mode == "legacy"
                or not modern_named
                or getattr(exc, "offered", None) is not None
            ):
                raise
            if not await self._probe(None):
                raise
            return
        self._remember("legacy")

    def _remember(self, era: Era, discover: Mapping[str, Any] | None = None) -> None:
        if not self._detects:
            return  # what a forced era or transport found is not a detection to share
        version = self._transport.protocol_version or ""
        expires = 0.0
        if discover is not None and self._discover is not None:
            # Only a "public" answer may serve another client (perhaps another user).
            if self._discover.cacheScope == "public" and self._discover.ttlMs > 0:
                expires = time.monotonic() + self._discover.ttlMs / 1000
            else:
                discover = None
        _detect.cache.put(
            self._transport.detection_key(),
            _detect.Detection(
                era=era,
                transport=self._transport.name,
                version=version,
                discover=discover,
                discover_expires=expires,
            ),
        )

    async def _probe(self, hint: _detect.Detection | None) -> bool:
        """Ask ``server/discover``; True (and adopted) if the server speaks modern."""
        cached = hint.fresh_discover() if hint is not None and hint.era == "modern" else None
        if cached is not None and hint is not None:
            self._transport.modern = True
            self._transport.protocol_version = hint.version
            self._adopt(cached)
            self._log.debug("era.cached", era="modern", version=hint.version)
            return True
        version = hint.version if hint is not None and hint.era == "modern" else None
        version = version or MODERN_PROTOCOL_VERSIONS[0]
        # stdio: a legacy server may ignore a request before `initialize`; silence is
        # an answer there. Over HTTP, every request gets an HTTP answer; silence is a
        # failure (bounded by the handshake's own timeout), not an era.
        silence_is_legacy = self._transport.name == "stdio"
        tried: set[str] = set()
        while version not in tried:
            tried.add(version)
            self._transport.modern = True
            self._transport.protocol_version = version
            deadline = (
                anyio.current_time() + self._timeouts.probe if silence_is_legacy else math.inf
            )
            try:
                raw = await self._send_request(
                    "server/discover", None, deadline=deadline, cancellable=False
                )
            except UnsupportedProtocolVersion as exc:
                mutual = [v for v in MODERN_PROTOCOL_VERSIONS if v in exc.supported]
                if mutual:
                    version = mutual[0]
                    continue  # a version we both speak: ask again in it
                if exc.supported and not any(v in LEGACY_PROTOCOL_VERSIONS for v in exc.supported):
                    raise  # modern-only, and no version in common: a real incompatibility
                break
            except (ConnectError, ServerUnavailable, ClientClosed):
                raise  # an outage is never an era verdict
            except ConnectionLost:
                if not silence_is_legacy:
                    raise
                break
            except RequestTimeout:
                if not silence_is_legacy:
                    raise
                self._probe_went_unanswered = True
                break
            except MCPError as exc:
                self._log.debug("era.probe_refused", error=type(exc).__name__)
                break  # any other refusal: a legacy server (whatever code it used)
            try:
                result = DiscoverResult.model_validate(raw)
            except pydantic.ValidationError:
                break  # not a discover result: not modern evidence
            mutual = [v for v in MODERN_PROTOCOL_VERSIONS if v in result.supportedVersions]
            if not mutual:
                # It answers discover but offers only handshake versions: legacy.
                break
            if version not in mutual:
                version = mutual[0]
                self._transport.protocol_version = version
            self._adopt(result, raw)
            self._remember("modern", raw)
            self._log.debug("era.detected", era="modern", version=version)
            return True
        self._transport.modern = False
        self._transport.protocol_version = None
        return False

    def _adopt(self, result: DiscoverResult | Mapping[str, Any], raw: Any = None) -> None:
        if not isinstance(result, DiscoverResult):
            raw = result
            result = DiscoverResult.model_validate(result)
        self._era = "modern"
        self._discover = result
        self._init = None
        meta = raw.get("_meta") if isinstance(raw, Mapping) else None
        info = meta.get(_META_SERVER_INFO) if isinstance(meta, Mapping) else None
        try:
            self._server_info = Implementation.model_validate(info) if info else None
        except pydantic.ValidationError:
            self._server_info = None

    async def _legacy_handshake(self) -> None:
        # A new session never carries the old one's id (the spec: a fresh initialize
        # without it), nor its negotiated version.
        await self._transport.reset_session()
        self._transport.modern = False
        params = {
            "protocolVersion": LEGACY_PROTOCOL_VERSIONS[0],
            "capabilities": self._handlers.capabilities().model_dump(exclude_none=True),
            "clientInfo": self._client_info.model_dump(exclude_none=True),
        }
        # initialize is never cancelled with notifications/cancelled (the spec forbids it);
        # its deadline is the handshake's, enforced by the caller.
        raw = await self._send_request("initialize", params, deadline=math.inf, cancellable=False)
        try:
            result = InitializeResult.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise HandshakeError(
                f"invalid initialize result: {exc.error_count()} error(s)",
                method="initialize",
                session_id=self._transport.session_id,
            ) from exc
        version = result.protocolVersion
        if version not in LEGACY_PROTOCOL_VERSIONS:
            # The spec: a client that cannot use the offered version should disconnect.
            await self._transport.end_session()
            raise UnsupportedProtocolVersion(
                f"server offered protocol version {version!r}; this client's handshake "
                f"speaks {', '.join(LEGACY_PROTOCOL_VERSIONS)}",
                offered=version,
                supported=LEGACY_PROTOCOL_VERSIONS,
                method="initialize",
                session_id=self._transport.session_id,
            )
        self._transport.protocol_version = version
        self._init = result
        self._era = "legacy"
        self._discover = None
        try:
            await self.notify("notifications/initialized", None)
        except MCPError as exc:
            # Never ignored: a server that did not get `initialized` rejects what follows.
            raise HandshakeError(
                f"notifications/initialized was not delivered: {exc.message}",
                method="notifications/initialized",
                session_id=self._transport.session_id,
            ) from exc

    async def aclose(self) -> None:
        """Close the session: fail everything pending, end it on the server, stop workers."""
        if self._state in (SessionState.CLOSING, SessionState.CLOSED):
            return
        self._state = SessionState.CLOSING
        self._log.debug("session.state", state="closing")
        if self._listen_scope is not None:
            self._listen_scope.cancel()
        self._release(ClientClosed("the client was closed"))
        for request_id, pending in list(self._pending.items()):
            pending.resolve(
                error=RequestCancelled(
                    "the client was closed while the request was pending",
                    method=pending.method,
                    request_id=request_id,
                    session_id=self._transport.session_id,
                )
            )
            # The caller may be inside the transport (reading its response): stop it now,
            # before ending the session turns its wait into some other failure.
            if pending.scope is not None:
                pending.scope.cancel()
        try:
            await self._transport.aclose()
        finally:
            if self._notify_send is not None:
                self._notify_send.close()
            self._state = SessionState.CLOSED
            self._log.debug("session.state", state="closed")

    def connection_lost(self, reason: str) -> None:
        """Fail every pending request at once (for transports with one shared channel).

        The channel was the session's (legacy SSE: a new stream is a new session), so
        one new handshake is started too (single flight, see :meth:`recover`).
        """
        self.recover(self._generation, "stream lost")
        for request_id, pending in list(self._pending.items()):
            pending.resolve(
                error=ConnectionLost(
                    reason,
                    method=pending.method,
                    request_id=request_id,
                    session_id=self._transport.session_id,
                )
            )

    # --- requests -----------------------------------------------------------------------

    def _deadline(self, timeout: float | _Default | None) -> tuple[float, float | None]:
        value = self._timeouts.request if isinstance(timeout, _Default) else timeout
        if value is None:
            return math.inf, None
        return anyio.current_time() + value, value

    async def _keepalive(self, interval: float) -> None:
        """Ping after ``interval`` idle seconds; a lost session is recovered by the ping."""
        while True:
            # A timer, not a poll: wake when the session will have been idle long enough.
            await anyio.sleep_until(self._last_activity + interval)
            if self._state is not SessionState.READY or self._transport.modern:
                # (The modern era has no session to keep alive.)
                self._last_activity = anyio.current_time()
                continue
            if anyio.current_time() - self._last_activity < interval:
                continue  # something else talked to the server meanwhile
            try:
                await self.request("ping", timeout=min(interval, self._timeouts.initialize))
            except MCPError as exc:
                self._log.info("keepalive.failed", error=repr(exc))
                self._last_activity = anyio.current_time()

    async def establish(self) -> None:
        """Wait for a ready session, retrying a handshake that failed on a transient error.

        Raises:
            MCPError: the handshake failed for good (or the retry policy gave up).
        """
        policy = self._retry
        failures = 1
        while True:
            try:
                await self.wait_ready()
                return
            except MCPError as exc:
                again, _ = retry_decision(exc, safe=True)
                if not again or failures >= policy.attempts:
                    raise
                delay = policy.backoff(failures, getattr(exc, "retry_after", None))
                self._log.info(
                    "handshake.retry",
                    attempt=failures,
                    error=type(exc).__name__,
                    delay_ms=round(delay * 1000, 1),
                )
                if delay > 0:
                    await policy.sleep(delay)  # backoff
                failures += 1

    def recover(self, generation: int, reason: str) -> None:
        """Start one new handshake because session ``generation`` is lost or uninitialized.

        Single flight: only the first report about the current session acts; requests
        made meanwhile park in the gate and go out on the new session.
        """
        if generation != self._generation or self._state is not SessionState.READY:
            return  # already recovering, or already recovered
        if self._era == "modern":
            # A modern server has no session to lose: being told otherwise means our
            # picture of it is stale. Detect again from scratch.
            _detect.cache.forget(self._transport.detection_key())
        self.stats.recoveries += 1
        self._log.info(
            "session.recover",
            reason=reason,
            old_session_id=self._transport.session_id,
            generation=generation,
        )
        self._state = SessionState.NEW
        self.start_handshake()

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: float | _Default | None = DEFAULT,
        progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        idempotent: bool = False,
    ) -> Any:
        """Send a request once the session is ready; return its JSON ``result``.

        Failures are retried only when that is safe (see :func:`retry_decision`): the
        request certainly did not run, or it is a read, or ``idempotent`` is true. A lost
        or uninitialized session first gets one coordinated new handshake. A modern
        ``input_required`` result is answered through the handlers and the request sent
        again with the answers (the protocol's own re-send, not a retry), up to
        ``Limits.max_input_rounds`` times.

        Raises:
            FateUnknown: a side-effecting ``tools/call`` may have run; not retried.
            InputRequiredError: the server asked for input no handler can give.
            MCPError: any other failure, typed (see :mod:`resilient_mcp._exceptions`).
        """
        if method == "logging/setLevel" and params is not None:
            # Kept: the modern era sends the level with every request instead.
            level = params.get("level")
            self._log_level = level if isinstance(level, str) else None
        result = await self._request(method, params, timeout, progress, retry, idempotent)
        _check_result_type(result, method)
        uri = (params or {}).get("uri")
        if method == "resources/subscribe" and isinstance(uri, str):
            self._subscriptions.add(uri)  # renewed on every new session (legacy era)
        elif method == "resources/unsubscribe" and isinstance(uri, str):
            self._subscriptions.discard(uri)
        rounds = 0
        delay = _STATE_ONLY_DELAY_S
        policy = retry or self._retry
        while isinstance(result, Mapping) and result.get("resultType") == "input_required":
            rounds += 1
            asked = result.get("inputRequests")
            methods = _input_methods(asked)
            if rounds > self._limits.max_input_rounds:
                raise InputRequiredError(
                    f"the server still asked for input after {self._limits.max_input_rounds} "
                    "rounds (Limits.max_input_rounds)",
                    methods=methods,
                    method=method,
                    execution=_input_execution(method),
                )
            again = {
                k: v
                for k, v in (params or {}).items()
                if k not in ("inputResponses", "requestState")
            }
            if asked:
                again["inputResponses"] = await self._answer_inputs(method, asked)
                delay = _STATE_ONLY_DELAY_S
            else:
                if not backoff_disabled():
                    await policy.sleep(delay)  # backoff: the server has nothing to ask yet
                delay = min(delay * 2, _STATE_ONLY_DELAY_MAX_S)
            state = result.get("requestState")
            if state is not None:
                again["requestState"] = state  # opaque: echoed byte for byte
            self._log.debug("request.input_round", method=method, round=rounds, asked=methods)
            result = await self._request(method, again, timeout, progress, retry, idempotent)
            _check_result_type(result, method)
        return result

    async def _answer_inputs(self, method: str, asked: Any) -> dict[str, Any]:
        """Run every input request of one round through the handlers, concurrently."""
        if not isinstance(asked, Mapping) or not all(
            isinstance(item, Mapping) and isinstance(item.get("method"), str)
            for item in asked.values()
        ):
            raise MalformedMessage(
                "input_required result with malformed inputRequests", method=method
            )
        answers: dict[str, Any] = {}
        failure: InputRequiredError | None = None

        async def answer(key: str, item: Mapping[str, Any], scope: anyio.CancelScope) -> None:
            nonlocal failure
            kind = item["method"]
            try:
                answers[key] = await self._serve(kind, item.get("params") or {})
            except Exception as exc:
                if failure is None:
                    reason = (
                        f"no handler for {kind} was given"
                        if isinstance(exc, _RPCFailure) and exc.code == _METHOD_NOT_FOUND
                        else f"the {kind} handler failed: {exc!r}"
                    )
                    failure = InputRequiredError(
                        f"the server needs input to complete {method}: {reason}",
                        methods=(kind,),
                        method=method,
                        execution=_input_execution(method),
                    )
                    failure.__cause__ = exc
                scope.cancel()  # one refusal ends the round; do not wait for the others

        async with anyio.create_task_group() as tg:
            for key, item in asked.items():
                tg.start_soon(answer, str(key), item, tg.cancel_scope)
        if failure is not None:
            raise failure
        return answers

    async def _request(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        timeout: float | _Default | None,
        progress: ProgressCallback | None,
        retry: RetryPolicy | None,
        idempotent: bool,
    ) -> Any:
        policy = retry or self._retry
        deadline, per_request = self._deadline(timeout)
        if policy.timeout is not None:
            deadline = min(deadline, anyio.current_time() + policy.timeout)
        safe = idempotent or method in SAFE_METHODS
        ambiguous_retried = False
        version_retried = False
        attempt = 1  # sends so far
        failures = 0  # failures of the server (not of the session): they use up attempts
        session_failures = 0
        while True:
            generation = self._generation
            try:
                return await self._attempt(method, params, deadline, per_request, progress, attempt)
            except (_HandshakeFailed, MCPError) as caught:
                in_gate = isinstance(caught, _HandshakeFailed)
                exc = caught.error if isinstance(caught, _HandshakeFailed) else caught
                # In the gate, the call never went out: the session it waited for did not
                # come (a refused connection, a 503 on `initialized`...); retrying it is
                # always safe, and it uses up an attempt like any failure to get through,
                # so an unreachable server is given up on after `attempts`.
                again, rehandshake = retry_decision(exc, safe=safe or in_gate)
                if isinstance(exc, InvalidParams) and exc.may_be_not_initialized:
                    # One new handshake settles it; after that it is a real -32602.
                    again = rehandshake = not ambiguous_retried
                    ambiguous_retried = True
                elif isinstance(exc, UnsupportedProtocolVersion) and self._era == "modern":
                    # -32022: the server changed its versions under us. Detecting again
                    # picks a mutual version (or finds a legacy server); it refused the
                    # request before running it.
                    again = rehandshake = not version_retried
                    version_retried = True
                if rehandshake:
                    # The session was lost, not the request: follow it to the next one
                    # (the shared handshake is the wait), bounded by the deadline and a
                    # cap against a server that never keeps a session.
                    self.recover(generation, reason=type(exc).__name__)
                    session_failures += 1
                    exhausted = session_failures > _MAX_SESSION_FOLLOWS
                    delay = 0.0
                else:
                    failures += 1
                    exhausted = failures >= policy.attempts
                    delay = policy.backoff(failures, getattr(exc, "retry_after", None))
                if not again or exhausted or anyio.current_time() + delay >= deadline:
                    final = exc if in_gate else self._final_error(exc, method, params, safe)
                    raise final from (exc.__cause__ if final is exc else exc)
                self.stats.retries += not in_gate  # a call parked in the gate was not re-sent
                self._log.info(
                    "request.retry",
                    method=method,
                    attempt=attempt,
                    error=type(exc).__name__,
                    delay_ms=round(delay * 1000, 1),
                )
                if delay > 0:
                    await policy.sleep(delay)  # backoff: the only kind of sleep we do
                attempt += not in_gate

    def _final_error(
        self, error: MCPError, method: str, params: Mapping[str, Any] | None, safe: bool
    ) -> MCPError:
        """The error to raise when no retry follows."""
        if (
            method == "tools/call"
            and not safe
            and error.execution is Execution.MAYBE
            and isinstance(error, ConnectionLost | ServerUnavailable | HTTPStatusError)
        ):
            # At most once: it may have run, so it is not repeated; say so distinctly.
            return FateUnknown(
                f"the tool call may or may not have run ({error.message}); "
                "it was not retried because it is not marked idempotent",
                params=dict(params or {}),
                method=method,
                request_id=error.request_id,
                session_id=error.session_id,
            )
        return error

    async def _attempt(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        deadline: float,
        per_request: float | None,
        progress: ProgressCallback | None,
        attempt: int,
    ) -> Any:
        if self._state is not SessionState.READY:
            try:
                await self.wait_ready(deadline)
            except RequestTimeout as exc:
                # The call's own deadline passed in the gate: final, and never sent.
                exc.method = method
                raise
            except MCPError as exc:
                # The error is this call's now: it was never sent.
                exc.method = method
                exc._with_context(
                    method=method, request_id=None, session_id=self._transport.session_id
                )
                raise _HandshakeFailed(exc) from exc
        if self._transport.modern:
            if method == "ping":
                # The modern era has no ping; the cheapest round trip that proves the
                # server answers is server/discover. Its answer stands for ping's: {}.
                await self._send_request(
                    "server/discover", None, deadline=deadline, timeout=per_request, attempt=attempt
                )
                return {}
            elif method == "logging/setLevel":
                return {}  # replaced by the level in every request's _meta (kept above)
            elif method in ("resources/subscribe", "resources/unsubscribe"):
                # Replaced by the filter of the subscriptions/listen stream.
                uri = (params or {}).get("uri")
                if isinstance(uri, str):
                    if method == "resources/subscribe":
                        self._subscriptions.add(uri)
                    else:
                        self._subscriptions.discard(uri)
                    self._wants_stream = self._wants_listen = True
                    await self._start_stream()
                return {}
        return await self._send_request(
            method,
            params,
            deadline=deadline,
            timeout=per_request,
            progress=progress,
            attempt=attempt,
        )

    async def _send_request(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        *,
        deadline: float,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
        cancellable: bool = True,
        attempt: int = 1,
    ) -> Any:
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        meta: dict[str, Any] = {"progressToken": request_id} if progress is not None else {}
        if self._transport.modern:
            # No handshake told the server who we are: every request says it.
            meta.update(self._envelope())
        if meta:
            params = dict(params or {})
            params["_meta"] = {**params.get("_meta", {}), **meta}
        if params is not None:
            message["params"] = params
        pending = _Pending(method)
        pending.progress = progress
        pending.timeout = timeout
        self._pending[request_id] = pending
        self.stats.requests += 1
        ctx = FailureContext(
            method=method,
            request_id=request_id,
            session_id=self._transport.session_id,
            session_ready=self._state is SessionState.READY,
        )
        started = anyio.current_time()
        if self._timeouts.max_total is not None:
            pending.hard_deadline = started + self._timeouts.max_total
        try:
            with anyio.CancelScope(deadline=deadline) as scope:
                pending.scope = scope
                answered = await self._transport.send(message, ctx, on_sent=pending.mark_sent)
                if not answered:
                    if self._transport.cancels_by_closing:
                        # Modern HTTP has no other channel: a 202 means no answer at all.
                        raise MalformedMessage(
                            "the server accepted the request (202) without answering it",
                            execution=Execution.MAYBE,
                            **ctx.context(),
                        )
                    # Accepted (202): the answer will come on the server->client stream,
                    # so that stream must be open whoever else is listening.
                    await self._transport.start_listening()
                elif not pending.done:
                    # Only reachable for a transport that closed the exchange without an
                    # answer and without raising: still this request's failure alone.
                    raise ConnectionLost(
                        "the server closed the exchange without answering", **ctx.context()
                    )
                await pending.wait()
        except MCPError as exc:
            self._log.debug(
                "request.failed", method=method, request_id=request_id, error=type(exc).__name__
            )
            if isinstance(pending.error, RequestCancelled):
                raise pending.error from exc  # closing the client is what ended it
            raise
        except anyio.get_cancelled_exc_class():
            # The caller gave up. Tell the server, without delaying the cancellation.
            # (Only for a request that went out: the spec forbids naming one that did not.
            # Modern HTTP servers learn it from the closed response stream instead.)
            if cancellable and pending.sent and not self._transport.cancels_by_closing:
                self._cancel_on_server(request_id, "cancelled by the client")
            raise
        finally:
            del self._pending[request_id]
        if pending.done and not isinstance(pending.error, MCPError):
            # Progress that came before the answer reaches the callback before the caller
            # sees the answer (as if handled inline, yet without blocking the reader).
            await pending.wait_progress_handled()
        if scope.cancelled_caught and not pending.done:
            if cancellable and pending.sent and not self._transport.cancels_by_closing:
                self._cancel_on_server(request_id, "request timed out")
            self._log.debug("request.timeout", method=method, request_id=request_id)
            raise RequestTimeout(
                f"no answer within {timeout if timeout is not None else 'the deadline'} s",
                # Still waiting for a connection slot: it never left, so it cannot have run.
                execution=Execution.MAYBE if pending.sent else Execution.NOT_EXECUTED,
                **ctx.context(),
            )
        if pending.error is not None:
            error = pending.error
            if not isinstance(error, MCPError):
                error = (
                    classify_rpc_error(error, ctx)
                    if isinstance(error, Mapping)
                    else (
                        MalformedMessage(f"invalid error member: {error!r}"[:200], **ctx.context())
                    )
                )
            self._log.debug(
                "request.error", method=method, request_id=request_id, error=type(error).__name__
            )
            raise error
        self._last_activity = anyio.current_time()
        self._log.debug(
            "request.ok",
            method=method,
            request_id=request_id,
            attempt=attempt,
            elapsed_ms=round((anyio.current_time() - started) * 1000, 3),
        )
        return pending.result

    def _envelope(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            _META_VERSION: self._transport.protocol_version,
            _META_CAPABILITIES: self._client_capabilities,
            _META_CLIENT_INFO: self._client_info_json,
        }
        if self._log_level is not None:
            meta[_META_LOG_LEVEL] = self._log_level
        return meta

    def _cancel_on_server(self, request_id: int, reason: str) -> None:
        if self._task_group is None or self._state is not SessionState.READY:
            return
        self._task_group.start_soon(self._send_cancelled, request_id, reason)

    async def _send_cancelled(self, request_id: int, reason: str) -> None:
        with anyio.move_on_after(self._timeouts.close):
            try:
                await self.notify(
                    "notifications/cancelled", {"requestId": request_id, "reason": reason}
                )
            except MCPError as exc:
                self._log.debug("cancel.not_delivered", request_id=request_id, error=repr(exc))

    async def notify(self, method: str, params: Mapping[str, Any] | None) -> None:
        """Send a notification and wait until the transport confirmed its delivery.

        Raises:
            MCPError: it was not delivered.
        """
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        ctx = FailureContext(
            method=method,
            session_id=self._transport.session_id,
            session_ready=self._state is SessionState.READY,
        )
        await self._transport.send(message, ctx)

    # --- incoming ---------------------------------------------------------------------------

    def _on_message(self, message: Any) -> None:
        """Route one message from the server. Never blocks, never raises."""
        if not isinstance(message, dict):
            self._log.warning("message.malformed", kind=type(message).__name__)
            return
        method = message.get("method")
        if isinstance(method, str):
            if "id" in message:
                if self._task_group is not None:
                    # Registered now, not when the task starts: a cancellation may
                    # arrive in the very same stream before the task first runs.
                    scope = anyio.CancelScope()
                    self._serving[_server_request_key(message["id"])] = scope
                    self._task_group.start_soon(self._answer_server_request, message, scope)
            else:
                self._on_notification(method, message.get("params") or {})
            return
        request_id = message.get("id")
        pending = self._pending.get(request_id) if isinstance(request_id, int) else None
        if pending is None:
            self.stats.unknown_responses += 1
            self._log.warning("response.unknown_id", request_id=repr(request_id)[:80])
            return
        if "error" in message:
            pending.resolve(error=message["error"])
        elif "result" in message:
            pending.resolve(result=message["result"])
        else:
            pending.resolve(
                error=MalformedMessage(
                    "response has neither result nor error",
                    method=pending.method,
                    request_id=request_id,
                )
            )

    def _undeliverable(self, request_id: Any, error: MCPError) -> None:
        """The transport read the answer to ``request_id`` but cannot deliver it."""
        pending = self._pending.get(request_id) if isinstance(request_id, int) else None
        if pending is None:
            return
        error._with_context(
            method=pending.method, request_id=request_id, session_id=self._transport.session_id
        )
        error.execution = Execution.EXECUTED  # it was answered: it ran
        pending.resolve(error=error)

    def _on_notification(self, method: str, params: Any) -> None:
        if not isinstance(params, Mapping):
            self._log.warning("notification.malformed", method=method)
            return
        if method == "notifications/cancelled":
            request_id = params.get("requestId")
            scope = self._serving.get(_server_request_key(request_id))
            if scope is not None:
                scope.cancel()
            ours = self._pending.get(request_id) if isinstance(request_id, int) else None
            if ours is not None and ours.method == "subscriptions/listen":
                # A modern server ends a listen stream this way on stdio: the stream is
                # over (it will be opened again), as if the server had answered it.
                ours.resolve(result={})
        progress = self._on_progress(params) if method == "notifications/progress" else None
        for listener in self._notification_listeners:
            listener(method, params)
        if self._notify_send is None:
            return
        if progress is not None:
            progress.progress_queued += 1
        try:
            self._notify_send.send_nowait((method, params, progress))
        except anyio.WouldBlock:
            self.stats.dropped_notifications += 1
            self._log.warning("notification.dropped", method=method, reason="handlers too slow")
            if progress is not None:
                progress.progress_handled()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            if progress is not None:
                progress.progress_handled()

    def _on_progress(self, params: Mapping[str, Any]) -> _Pending | None:
        """Extend the request's deadline if configured; return it if it has a callback."""
        token = params.get("progressToken")
        pending = self._pending.get(token) if isinstance(token, int) else None
        if pending is None:
            return None
        if (
            self._timeouts.reset_on_progress
            and pending.scope is not None
            and pending.timeout is not None
        ):
            pending.scope.deadline = min(
                anyio.current_time() + pending.timeout, pending.hard_deadline
            )
        return pending if pending.progress is not None else None

    async def _notification_worker(self, receive: MemoryObjectReceiveStream[_Queued]) -> None:
        # One worker, so handlers see notifications in the order the server sent them
        # (progress must not go backwards), and a slow handler never blocks the reader.
        _in_handler.set(True)
        async with receive:
            try:
                async for method, params, pending in receive:
                    try:
                        await self._handle_notification(method, params, pending)
                    finally:
                        if pending is not None:
                            pending.progress_handled()
            finally:
                # Stopped (the client is closing): nothing left will be handled, so no
                # request may keep waiting for it.
                while True:
                    try:
                        *_, pending = receive.receive_nowait()
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                    if pending is not None:
                        pending.progress_handled()

    async def _handle_notification(
        self, method: str, params: Mapping[str, Any], pending: _Pending | None = None
    ) -> None:
        handlers = self._handlers
        # Each handler is isolated: one's bug neither kills the session nor hides the
        # notification from the others (the generic handler sees *every* notification).
        if method == "notifications/progress":
            if pending is not None and pending.progress is not None:
                await self._run_handler(
                    method, pending.progress, lambda: Progress.model_validate(params)
                )
        elif method == "notifications/message" and handlers.log is not None:
            await self._run_handler(
                method, handlers.log, lambda: LoggingMessage.model_validate(params)
            )
        if handlers.notification is not None:
            try:
                await handlers.notification(method, params)
            except Exception as exc:
                self._log.error("handler.failed", method=method, error=repr(exc))

    async def _run_handler(
        self, method: str, handler: Callable[[_M], Awaitable[None]], parse: Callable[[], _M]
    ) -> None:
        try:
            await handler(parse())
        except Exception as exc:  # a user handler's bug (or bad params) must not kill us
            self._log.error("handler.failed", method=method, error=repr(exc))

    async def _answer_server_request(
        self, message: dict[str, Any], scope: anyio.CancelScope
    ) -> None:
        request_id = message["id"]
        method = message["method"]
        params = message.get("params") or {}
        response: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
        key = _server_request_key(request_id)
        try:
            with scope:  # the server may withdraw its request (notifications/cancelled)
                response["result"] = await self._serve(method, params)
            if scope.cancelled_caught:
                # A cancelled request gets no answer (the spec: SHOULD NOT respond).
                self._log.debug("server_request.cancelled", method=method)
                return
        except _RPCFailure as failure:
            response["error"] = {"code": failure.code, "message": failure.message}
        except pydantic.ValidationError as exc:
            response["error"] = {"code": _INVALID_PARAMS, "message": f"invalid params: {exc}"}
        except Exception as exc:  # the handler's failure is the server's answer, not ours
            self._log.warning("handler.failed", method=method, error=repr(exc))
            response["error"] = {"code": _INTERNAL_ERROR, "message": str(exc) or type(exc).__name__}
        finally:
            self._serving.pop(key, None)
        try:
            await self._transport.send(
                response,
                FailureContext(method=method, session_id=self._transport.session_id),
            )
        except MCPError as exc:
            self._log.warning("response.not_delivered", method=method, error=repr(exc))

    async def _serve(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        handlers = self._handlers
        if method == "ping":
            return {}
        if method == "roots/list" and handlers.roots is not None:
            roots = await handlers.roots()
            return {"roots": [r.model_dump(exclude_none=True) for r in roots]}
        if method == "sampling/createMessage" and handlers.sampling is not None:
            sampled = await handlers.sampling(CreateMessageRequestParams.model_validate(params))
            return sampled.model_dump(exclude_none=True)
        if method == "elicitation/create" and handlers.elicitation is not None:
            answer = await handlers.elicitation(ElicitRequestParams.model_validate(params))
            return answer.model_dump(exclude_none=True)
        raise _RPCFailure(_METHOD_NOT_FOUND, f"Method not found: {method}")


def _refuses_transport(error: MCPError, transport: str) -> bool:
    """Whether ``error`` from establishing a session says "wrong transport"."""
    if _is_outage(error):
        return False  # the server is down or slow: no verdict about its transport
    if transport == "streamable-http":
        # The spec: a legacy initialize refused with 400/404/405 (no modern error body)
        # means a 2024-11-05 HTTP+SSE server.
        return isinstance(error, HTTPStatusError) and error.status_code in (400, 404, 405)
    # A cached HTTP+SSE assumption that fails in any other way: detect from scratch.
    return True


def _check_result_type(result: Any, method: str) -> None:
    # 2026-07-28: absent means "complete"; a value we do not know (an extension we did
    # not ask for) means a result we cannot read, which must not pass for a complete one.
    kind = result.get("resultType") if isinstance(result, Mapping) else None
    if kind is not None and kind not in ("complete", "input_required"):
        raise MalformedMessage(
            f"result of unknown resultType {kind!r}"[:200],
            method=method,
            execution=Execution.EXECUTED,
        )


def _is_outage(error: MCPError) -> bool:
    """A failure that says nothing about the server's era or transport."""
    return isinstance(
        error, ConnectError | ConnectionLost | ServerUnavailable | RequestTimeout | ClientClosed
    )


def _input_methods(asked: Any) -> tuple[str, ...]:
    if not isinstance(asked, Mapping):
        return ()
    return tuple(str(item.get("method")) for item in asked.values() if isinstance(item, Mapping))


def _input_execution(method: str) -> Execution:
    # A tool may have done work before it stopped to ask; a read has no effects.
    return Execution.MAYBE if method == "tools/call" else Execution.NOT_EXECUTED


def _server_request_key(request_id: Any) -> tuple[str, str]:
    # JSON-RPC ids are strings or numbers and 1 != "1": keep the type in the key.
    return (type(request_id).__name__, str(request_id))


class _HandshakeFailed(Exception):
    """Internal: the gate opened with an error (the awaited handshake failed)."""

    def __init__(self, error: MCPError) -> None:
        super().__init__(error.message)
        self.error = error


class _RPCFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
