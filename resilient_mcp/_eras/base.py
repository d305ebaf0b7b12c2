"""What every era strategy offers the session, and what the session gives it.

A strategy is made for one transport by the negotiation (:mod:`.._negotiate`) and lives
as long as the session it established; a recovery makes a new one. It holds what the
server told us (versions, capabilities, a session id) and decides everything that
differs between eras: how a session is established and ended, the context and the
decoration of each outgoing message, how a call the era replaces is answered, how a
request abandoned by its caller is cancelled, and how the server's notifications are
heard.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anyio
import anyio.abc

from .._config import Timeouts
from .._deadline import Deadline
from .._exceptions import MCPError
from .._handlers import Handlers
from .._headers import ParamHeader
from .._log import Logger
from .._retry import RetryPolicy
from .._rpc import Cancel, Reply, Rpc
from .._transports.base import MessageKind, SendContext, Transport
from ..types import Era as EraName
from ..types import Implementation, ServerCapabilities

__all__ = ["SERVERS_ANSWER", "EraName", "EraStrategy", "Outgoing", "Setup", "Wishes"]


@dataclass
class Wishes:
    """What the user asked for that outlives any one session (and era)."""

    log_level: str | None = None
    """The last ``set_logging_level()``: the modern era sends it with every request."""
    subscriptions: set[str] = field(default_factory=set)
    """Subscribed resource URIs: renewed on every new legacy session, the filter of the
    modern era's listen stream."""
    stream: bool = False
    """Someone would hear the server's own messages (a handler, a subscription, a cached
    tool list): the server→client channel is worth opening."""
    listen: bool = False
    """The same for the modern era, whose listen stream carries only notifications:
    ``Handlers.notification``, a subscription or a cached tool list."""


@dataclass(frozen=True, slots=True)
class Setup:
    """What the session gives every strategy it makes (fixed for the client's life)."""

    rpc: Rpc
    task_group: anyio.abc.TaskGroup
    timeouts: Timeouts
    handlers: Handlers
    client_info: Implementation
    retry: RetryPolicy
    wishes: Wishes
    param_headers: Callable[[str], tuple[ParamHeader, ...]]
    """A tool's ``x-mcp-header`` annotations, from the client's tool cache."""
    log: Callable[[], Logger]
    """The session's logger (it gains the session id once there is one)."""


class _ServersAnswer:
    def __repr__(self) -> str:
        return "SERVERS_ANSWER"


SERVERS_ANSWER: Any = _ServersAnswer()
"""``Outgoing.answer`` default: the call's result is what the server answers."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A call as it goes on the wire in this era.

    Attributes:
        method, params, headers: the request to send (``method`` None: send nothing).
        answer: the call's result, if not the server's: what the era answers itself
            (``method`` None), or what a request standing in for the call means.
    """

    method: str | None
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None
    answer: Any = SERVERS_ANSWER


class EraStrategy(abc.ABC):
    """One era's way of speaking to one server over one transport."""

    name: ClassVar[EraName]

    def __init__(self, transport: Transport, setup: Setup) -> None:
        self.transport = transport
        self.setup = setup
        self.protocol_version: str | None = None
        self.closed = False  # its session is over: no more background work

    # --- what the server told us --------------------------------------------------------

    @property
    def session_id(self) -> str | None:
        """The transport-level session id, if the era has sessions and one was assigned."""
        return None

    @property
    @abc.abstractmethod
    def server_info(self) -> Implementation | None: ...

    @property
    @abc.abstractmethod
    def capabilities(self) -> ServerCapabilities | None: ...

    @property
    @abc.abstractmethod
    def instructions(self) -> str | None: ...

    # --- messages -----------------------------------------------------------------------

    def context(
        self,
        kind: MessageKind,
        method: str | None,
        request_id: int | str | None = None,
        *,
        ready: bool = True,
        headers: Mapping[str, str] | None = None,
        priority: bool = False,
    ) -> SendContext:
        """The context of one message in this era.

        The handshake's messages (sent before the session is ready) and answers to the
        server take the priority lane of admission, as do messages marked ``priority``:
        every parked call waits for the handshake, so it must not wait behind calls.
        """
        return SendContext(
            method=method,
            request_id=request_id,
            session_id=self.session_id,
            session_ready=ready,
            kind=kind,
            protocol_version=self.protocol_version,
            headers=headers,
            resumable=self.resumable,
            priority=priority or not ready or kind == "response",
        )

    resumable: ClassVar[bool] = True
    """A dropped response stream may be resumed with ``Last-Event-ID``."""

    def decorate(
        self, method: str, params: Mapping[str, Any] | None
    ) -> tuple[Mapping[str, Any] | None, Mapping[str, str] | None]:
        """What this era adds to every request it sends: (params, extra headers)."""
        return params, None

    def outgoing(self, method: str, params: Mapping[str, Any] | None) -> Outgoing:
        """How a call goes out in this era (or how the era answers it itself)."""
        params, headers = self.decorate(method, params)
        return Outgoing(method, params, headers)

    @abc.abstractmethod
    def cancel_hook(self) -> Cancel | None:
        """How a request abandoned by its caller is cancelled (None: nothing to send)."""

    @abc.abstractmethod
    def on_accepted(self) -> Callable[[], Awaitable[None]] | None:
        """What makes the answer of a request accepted without it reachable (None: such an
        answer is a protocol error in this era)."""

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        deadline: Deadline,
        *,
        ready: bool = True,
        cancellable: bool = True,
    ) -> Reply:
        """Send one request in this era, without the gate or retries (the era's own use:
        the handshake, probes, the listen stream).

        Raises:
            MCPError: the request failed.
        """
        params, headers = self.decorate(method, params)
        rpc = self.setup.rpc
        request_id = rpc.next_id()
        ctx = self.context("request", method, request_id, ready=ready, headers=headers)
        return await rpc.request(
            self.transport,
            request_id,
            method,
            params,
            ctx,
            deadline,
            cancel=self.cancel_hook() if cancellable else None,
            on_accepted=self.on_accepted(),
        )

    async def notify(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        *,
        ready: bool = True,
        priority: bool = False,
    ) -> None:
        """Send a notification and wait until the transport confirmed its delivery.

        Raises:
            MCPError: it was not delivered.
        """
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        ctx = self.context("notification", method, ready=ready, priority=priority)
        await self.setup.rpc.send(self.transport, message, ctx)

    def notify_cancelled(self, request_id: int, reason: str) -> None:
        """Tell the server (in the background) that we abandoned ``request_id``."""
        if not self.closed:
            self.setup.task_group.start_soon(self._send_cancelled, request_id, reason)

    async def _send_cancelled(self, request_id: int, reason: str) -> None:
        with anyio.move_on_after(self.setup.timeouts.close):
            try:
                # Priority: it frees the server of work that holds a connection slot, so
                # it must not queue behind the calls waiting for one.
                await self.notify(
                    "notifications/cancelled",
                    {"requestId": request_id, "reason": reason},
                    priority=True,
                )
            except MCPError as exc:
                self.setup.log().debug(
                    "cancel.not_delivered", request_id=request_id, error=repr(exc)
                )

    # --- life -----------------------------------------------------------------------------

    async def establish(self) -> None:  # noqa: B027 - the modern era has nothing to do
        """Make the session usable (the legacy handshake).

        Raises:
            MCPError: it failed.
        """

    @abc.abstractmethod
    async def open_stream(self) -> None:
        """Start hearing what the server sends on its own (idempotent)."""

    @abc.abstractmethod
    async def ready(self, generation: int) -> None:
        """The session became ready, as generation ``generation`` (> 1 after a recovery):
        open what the user's wishes ask for."""

    @property
    def keeps_alive(self) -> bool:
        """Whether idle keep-alive pings mean anything in this era."""
        return False

    def forgets_detection_on_loss(self) -> bool:
        """A lost session means the detected era no longer holds (modern: no sessions)."""
        return False

    async def end(self) -> None:  # noqa: B027 - optional hook
        """End the session on the server, best effort."""

    def close(self) -> None:
        """Stop the strategy's background work (its session is over)."""
        self.closed = True
