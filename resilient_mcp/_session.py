"""The session: one client's life with one server, composed of the layers below.

- :mod:`._gate` holds calls until the session is ready and runs the single-flight
  handshake; :mod:`._negotiate` is that handshake (era and transport detection, then the
  era's own establishment); :mod:`._eras` speak each era;
- :mod:`._recovery` decides about every failure (retry, new session, or fail);
- :mod:`._rpc` correlates requests and answers; :mod:`._inbound` routes what the server
  sends on its own; :mod:`._transports` move the bytes.

What is left here is the state that ties them: the session's generation (bumped by every
successful handshake, so that many failures of one session make one recovery), the
current era strategy and transport, and the client's life (start, keep-alive, close).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc

from ._calls import Calls
from ._config import Limits, Timeouts
from ._detection import DetectionCache
from ._eras.base import EraName, EraStrategy, Setup, Wishes
from ._exceptions import ClientClosed, Execution, MCPError, RequestCancelled, RequestTimeout
from ._gate import Gate
from ._handlers import Handlers, serve
from ._headers import ParamHeader
from ._inbound import Inbound
from ._log import Logger
from ._negotiate import negotiate
from ._retry import RetryPolicy
from ._rpc import Rpc
from ._served import ServerRequests
from ._stats import SessionStats
from ._transports.base import SendContext, Transport
from .types import EraMode, Implementation

__all__ = ["Session", "SessionState"]

TransportFactory = Callable[[str], Transport]


class SessionState(enum.Enum):
    """Where a session is in its life. Transitions only go forward, except that a
    failed or lost handshake returns to ``NEW`` so that a later one can be tried."""

    NEW = "new"
    INITIALIZING = "initializing"
    READY = "ready"
    CLOSING = "closing"
    CLOSED = "closed"


class Session:
    """One MCP session over one transport (which detection may switch). Used through
    :class:`~resilient_mcp.Client`."""

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
        cache: DetectionCache,
        switch: TransportFactory | None = None,
        param_headers: Callable[[str], tuple[ParamHeader, ...]] = lambda name: (),
    ) -> None:
        self._transport = transport
        self._mode: EraMode = era
        self._switch = switch
        self._cache = cache
        # Only what was detected (nothing forced) goes into, and comes from, the cache.
        self._detects = era == "auto" and (switch is not None or transport.name == "stdio")
        self._timeouts = timeouts
        self._handlers = handlers
        self._client_info = client_info
        self._log = logger
        self._retry = retry or RetryPolicy()
        self._param_headers = param_headers
        self.stats = SessionStats()
        self.wishes = Wishes(
            # The server->client stream costs the server a connection and work; it is
            # opened only once someone would hear what comes on it.
            stream=handlers.listens(),
            # Modern servers ask for input inside results, and send logs only inside the
            # request they belong to: a subscriptions/listen stream serves notifications.
            listen=handlers.notification is not None,
        )
        self._server_requests = ServerRequests(
            stats=self.stats,
            logger=logger,
            max_queued=limits.max_pending_notifications,
            max_workers=limits.max_server_requests,
            serve=functools.partial(serve, handlers),
            respond=self._respond,
        )
        self.rpc = Rpc(
            stats=self.stats,
            logger=logger,
            on_notification=self._on_notification,
            on_lost=self._on_lost,
            server_requests=self._server_requests,
        )
        self._inbound = Inbound(
            handlers=handlers,
            rpc=self.rpc,
            server_requests=self._server_requests,
            stats=self.stats,
            logger=logger,
            max_pending=limits.max_pending_notifications,
        )
        self.gate = Gate(
            max_queued=limits.max_queued,
            stats=self.stats,
            handshake=self._handshake,
            opened=self._opened,
        )
        self._setup: Setup | None = None
        self._era: EraStrategy | None = None
        # Bumped by every successful handshake: a failure seen on generation N triggers a
        # recovery only while N is current, so many failures make one new handshake.
        self._generation = 0
        self._last_session_id: str | None = None
        self._id_bound = False  # session_id is bound into self._log
        self._closing = False
        self._closed = False
        self._task_group: anyio.abc.TaskGroup | None = None
        self.calls = Calls(
            self, timeouts=timeouts, limits=limits, handlers=handlers, retry=self._retry
        )

    # --- introspection ---------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        if self._closed:
            return SessionState.CLOSED
        if self._closing:
            return SessionState.CLOSING
        if self.gate.is_open:
            return SessionState.READY
        return SessionState.INITIALIZING if self.gate.running else SessionState.NEW

    @property
    def era(self) -> EraName | None:
        """The era the server speaks, once detected."""
        return self._era.name if self._era is not None else None

    @property
    def strategy(self) -> EraStrategy | None:
        return self._era

    @property
    def generation(self) -> int:
        """Bumped by every successful handshake."""
        return self._generation

    @property
    def log(self) -> Logger:
        return self._log

    @property
    def transport(self) -> Transport:
        return self._transport

    @property
    def session_id(self) -> str | None:
        return self._era.session_id if self._era is not None else None

    def __repr__(self) -> str:
        return (
            f"<Session [{self.state.value}] [Requests: {len(self.rpc)} active, "
            f"{len(self.gate)} queued]>"
        )

    def add_notification_listener(self, listener: Callable[[str, Mapping[str, Any]], None]) -> None:
        """Register a synchronous, non-blocking observer of every server notification."""
        self._inbound.add_listener(listener)

    # --- life ---------------------------------------------------------------------------

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Open the transport and start the background work (not the handshake).

        Raises:
            ClientClosed: the session was started before.
            MCPError: the transport cannot be opened (a command that cannot start).
        """
        if self._task_group is not None or self._closing:
            raise ClientClosed("a session can be started only once")
        self._task_group = task_group
        self._setup = Setup(
            rpc=self.rpc,
            task_group=task_group,
            timeouts=self._timeouts,
            handlers=self._handlers,
            client_info=self._client_info,
            retry=self._retry,
            wishes=self.wishes,
            param_headers=self._param_headers,
            log=lambda: self._log,
        )
        self._server_requests.start(task_group)
        self._inbound.start(task_group)
        self.gate.bind(task_group)
        if self._timeouts.keepalive is not None:
            task_group.start_soon(self.calls.keep_alive, self._timeouts.keepalive)
        await self._transport.open(self.rpc, task_group)

    def start_handshake(self) -> None:
        """Start a handshake unless the session is ready or one is running (single flight).

        Raises:
            ClientClosed: the session is not open.
        """
        if self._task_group is None:
            raise ClientClosed("the client is not open")
        self.gate.start()

    async def wait_ready(self, deadline: float) -> None:
        """Return once the session is ready (see :meth:`Gate.wait`)."""
        if self._task_group is None:
            raise ClientClosed("the client is not open")
        await self.gate.wait(deadline)

    async def _handshake(self) -> None:
        setup = self._setup
        assert setup is not None
        started = anyio.current_time()
        self.stats.handshakes += 1
        log = self._log.bind(attempt=self.stats.handshakes)
        log.debug("session.state", state="initializing")
        previous = self._era
        if previous is not None:
            previous.close()
        self._era = None
        era: EraStrategy | None = None
        try:
            with anyio.move_on_after(self._timeouts.initialize) as scope:
                era = await negotiate(
                    self._transport,
                    setup,
                    mode=self._mode,
                    cache=self._cache,
                    detects=self._detects,
                    switch=self._switch_transport if self._switch is not None else None,
                    log=log,
                )
            if era is None or scope.cancelled_caught:
                # Only the handshake's own deadline is named so; an inner request's
                # timeout (an MCPError) passes through as what it is.
                raise RequestTimeout(
                    f"handshake did not complete within {self._timeouts.initialize} s",
                    method="initialize",
                    execution=Execution.NOT_EXECUTED,
                )
        except MCPError as error:
            if era is not None:
                era.close()
            if not self._closing:
                log.info("session.handshake_failed", error=repr(error))
                # The parked calls get the handshake's error either way; a transport
                # that cannot reset must not leave them waiting (reset never raises).
                await self._transport.reset()
            raise
        if self._closing:
            era.close()
            raise ClientClosed("the client was closed during the handshake")
        self._era = era
        self._generation += 1
        session_id = era.session_id
        if self._last_session_id is not None and session_id != self._last_session_id:
            self.stats.session_changes += 1
        self._last_session_id = session_id
        self.stats.time_to_ready = anyio.current_time() - started
        if session_id is not None or self._id_bound:
            # (A modern session has none: no bound copy, ~0.3 KB per session, for it.)
            self._log = self._log.bind(session_id=session_id)
            self.rpc.bind(self._log)
            self._id_bound = True
        self._log.info(
            "session.state",
            state="ready",
            era=era.name,
            transport=self._transport.name,
            protocol_version=era.protocol_version,
            time_to_ready_ms=round(self.stats.time_to_ready * 1000, 2),
        )

    async def _opened(self) -> None:
        era = self._era
        if era is not None:
            await era.ready(self._generation)

    async def _switch_transport(self, name: str) -> Transport:
        """Detection found the other HTTP transport: replace ours by it."""
        assert self._switch is not None
        assert self._task_group is not None
        old, self._transport = self._transport, self._switch(name)
        with anyio.CancelScope(shield=True):
            await old.aclose()
        await self._transport.open(self.rpc, self._task_group)
        return self._transport

    async def listen(self) -> None:
        """Open the server's stream (now if ready, else once ready). Idempotent."""
        self.wishes.stream = self.wishes.listen = True
        era = self._era
        if era is not None and self.gate.is_open:
            await era.open_stream()

    def recover(self, generation: int, reason: str) -> None:
        """Start one new handshake because session ``generation`` is lost or uninitialized.

        Single flight: only the first report about the current session acts; calls made
        meanwhile park in the gate and go out on the new session.
        """
        era = self._era
        if generation != self._generation or not self.gate.is_open or era is None:
            return  # already recovering, or already recovered
        if era.forgets_detection_on_loss():
            self._cache.forget(self._transport.detection_key())
        self.stats.recoveries += 1
        self._log.info(
            "session.recover", reason=reason, old_session_id=era.session_id, generation=generation
        )
        era.close()
        self.gate.close()
        # What has not gone out yet would only reach the lost session (and hold the
        # connection slots the new handshake needs): it waits for the next one instead.
        withdrawn = self.rpc.withdraw()
        if withdrawn:
            self._log.debug("session.withdrawn", requests=withdrawn, generation=generation)
        self.gate.start()

    def _on_lost(self, reason: str) -> None:
        # The channel was the session's (legacy SSE: a new stream is a new session): one
        # new handshake (single flight), then the pending requests fail (and retry).
        self.recover(self._generation, "stream lost")

    async def aclose(self) -> None:
        """Close the session: fail everything pending, end it on the server, stop workers."""
        if self._closing or self._closed:
            return
        self._closing = True
        self._log.debug("session.state", state="closing")
        self.gate.shut(ClientClosed("the client was closed"))
        era = self._era
        if era is not None:
            era.close()
        self.rpc.cancel_all(
            lambda ctx: RequestCancelled(
                "the client was closed while the request was pending", **ctx.context()
            )
        )
        self._inbound.close()
        try:
            if era is not None:
                await era.end()
        finally:
            try:
                await self._transport.aclose()
            finally:
                self._closed = True
                self._log.debug("session.state", state="closed")

    # --- what the server sends on its own ---------------------------------------------------

    def _on_notification(self, method: str, params: Mapping[str, Any]) -> None:
        self._inbound.route(method, params)

    async def _respond(self, response: dict[str, Any], method: str) -> None:
        """Answer a server→client request (at once: it jumps the admission queue)."""
        era = self._era
        ctx = (
            era.context("response", method)
            if era is not None
            else SendContext(method=method, kind="response", priority=True)
        )
        try:
            await self.rpc.send(self._transport, response, ctx)
        except MCPError as exc:
            self._log.warning("response.not_delivered", method=method, error=repr(exc))
