"""The session: owns the handshake, the gate, and every request.

Nothing reaches the server before it can take it: a request made while the session is
not ready parks in a bounded FIFO queue (the *gate*) and is released only after

1. the ``initialize`` result arrived and its protocol version was accepted, and
2. ``notifications/initialized`` was *delivered* (over HTTP: its 202 came back).

The handshake is single-flight: whoever finds the session not ready and no handshake
running starts one; everyone else parks. Book-keeping (states, queue, pending requests)
is plain synchronous code with no ``await`` inside, so it needs no lock on one event
loop; I/O happens outside it. When the session closes, everything pending fails at once.
"""

from __future__ import annotations

import contextvars
import copy
import enum
import itertools
import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.abc
import pydantic
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._classify import FailureContext, classify_rpc_error
from ._config import DEFAULT, Limits, Timeouts, _Default
from ._exceptions import (
    ClientClosed,
    ConnectionLost,
    Execution,
    FateUnknown,
    HandshakeError,
    HTTPStatusError,
    InvalidParams,
    MalformedMessage,
    MCPError,
    QueueFull,
    RequestCancelled,
    RequestTimeout,
    ServerUnavailable,
    UnsupportedProtocolVersion,
)
from ._log import Logger
from ._retry import SAFE_METHODS, RetryPolicy, retry_decision
from ._transport import Transport
from .types import (
    ClientCapabilities,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    Implementation,
    InitializeResult,
    LoggingMessage,
    Progress,
    Root,
)

__all__ = [
    "LATEST_PROTOCOL_VERSION",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "Handlers",
    "Session",
    "SessionState",
    "SessionStats",
]

LATEST_PROTOCOL_VERSION = "2025-11-25"
SUPPORTED_PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")

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
    ) -> None:
        self._transport = transport
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
        self._task_group: anyio.abc.TaskGroup | None = None
        self._notify_send: MemoryObjectSendStream[_Queued] | None = None
        self._notification_listeners: list[Callable[[str, Mapping[str, Any]], None]] = []
        # Server->client requests being answered, by id, so the server can cancel them.
        self._serving: dict[tuple[str, str], anyio.CancelScope] = {}
        # The standalone server->client stream costs the server a connection and work;
        # it is opened only once someone would hear what comes on it.
        self._wants_stream = handlers.listens()
        self.stats = SessionStats()

    # --- introspection ---------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def initialize_result(self) -> InitializeResult | None:
        return self._init

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
        self._wants_stream = True
        if self._state is SessionState.READY:
            await self._transport.start_listening()

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
                await self._handshake()
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
            await self._transport.reset_session()
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
        self._log.debug(
            "session.state",
            state="ready",
            protocol_version=self._transport.protocol_version,
            time_to_ready_ms=round(self.stats.time_to_ready * 1000, 2),
        )
        self._release(None)
        if self._wants_stream:
            await self._transport.start_listening()

    async def _handshake(self) -> None:
        # A new session never carries the old one's id (the spec: a fresh initialize
        # without it), nor its negotiated version.
        await self._transport.reset_session()
        params = {
            "protocolVersion": LATEST_PROTOCOL_VERSION,
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
        if version not in SUPPORTED_PROTOCOL_VERSIONS:
            # The spec: a client that cannot use the offered version should disconnect.
            await self._transport.end_session()
            raise UnsupportedProtocolVersion(
                f"server offered protocol version {version!r}; this client speaks "
                f"{', '.join(SUPPORTED_PROTOCOL_VERSIONS)}",
                offered=version,
                supported=SUPPORTED_PROTOCOL_VERSIONS,
                method="initialize",
                session_id=self._transport.session_id,
            )
        self._transport.protocol_version = version
        self._init = result
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
            if self._state is not SessionState.READY:
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
        or uninitialized session first gets one coordinated new handshake.

        Raises:
            FateUnknown: a side-effecting ``tools/call`` may have run; not retried.
            MCPError: any other failure, typed (see :mod:`resilient_mcp._exceptions`).
        """
        policy = retry or self._retry
        deadline, per_request = self._deadline(timeout)
        if policy.timeout is not None:
            deadline = min(deadline, anyio.current_time() + policy.timeout)
        safe = idempotent or method in SAFE_METHODS
        ambiguous_retried = False
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
        if progress is not None:
            params = dict(params or {})
            params["_meta"] = {**params.get("_meta", {}), "progressToken": request_id}
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
            # (Only for a request that went out: the spec forbids naming one that did not.)
            if cancellable and pending.sent:
                self._cancel_on_server(request_id, "cancelled by the client")
            raise
        finally:
            del self._pending[request_id]
        if pending.done and not isinstance(pending.error, MCPError):
            # Progress that came before the answer reaches the callback before the caller
            # sees the answer (as if handled inline, yet without blocking the reader).
            await pending.wait_progress_handled()
        if scope.cancelled_caught and not pending.done:
            if cancellable and pending.sent:
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

    def _on_notification(self, method: str, params: Any) -> None:
        if not isinstance(params, Mapping):
            self._log.warning("notification.malformed", method=method)
            return
        if method == "notifications/cancelled":
            scope = self._serving.get(_server_request_key(params.get("requestId")))
            if scope is not None:
                scope.cancel()
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
