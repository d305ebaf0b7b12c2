"""The telemetry seam: what the core tells an observer about each call.

The core knows nothing of OpenTelemetry (or of any other backend). A client made with
``telemetry=`` binds it once (:meth:`Telemetry.bind`) to the facts of its session, and
then, for every call of the public API (one user-visible request, all its attempts,
renewed sessions and ``input_required`` rounds included):

- :meth:`Observer.start` when the call starts; the :class:`CallObserver` it returns may
  replace the request's params (to carry trace context in ``params._meta``);
- :meth:`CallObserver.sent` for every send (with its JSON-RPC id);
- :meth:`CallObserver.retry` before every backoff, :meth:`CallObserver.renew` when the
  call's session is given up for a new handshake (:mod:`._recovery`);
- :meth:`CallObserver.end` or :meth:`CallObserver.fail`, once.

A sync client's call runs on its event-loop thread, where the calling thread's ambient
context (its current span) is not current: :func:`carried` takes it along when a backend
registered a :class:`ContextCarrier` (``resilient_mcp.otel`` does, on import).

Without ``telemetry=`` none of it exists: the hot path pays one ``is None`` test per call
and per send, and nothing is imported (``resilient_mcp.otel`` is imported only by the
user who enables it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ._exceptions import MCPError

__all__ = [
    "CallObserver",
    "ClientFacts",
    "ContextCarrier",
    "Observer",
    "Telemetry",
    "carried",
    "register_carrier",
]

T = TypeVar("T")

ContextCarrier = Callable[[], Callable[[], AbstractContextManager[None]]]
"""Called in the calling thread: captures its ambient context, and returns what makes
that context current (for the ``with`` block) in the thread that runs the call."""

_carrier: ContextCarrier | None = None


def register_carrier(carrier: ContextCarrier) -> None:
    """Make sync clients carry the calling thread's context, as ``carrier`` captures it."""
    global _carrier
    _carrier = carrier


def carried(function: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    """``function``, to run on a loop thread within the calling thread's ambient context
    (itself when no backend registered a carrier: nothing is captured then)."""
    if _carrier is None:
        return function
    attached = _carrier()

    async def within() -> T:
        with attached():
            return await function()

    return within


@dataclass(frozen=True, slots=True)
class ClientFacts:
    """What an observer may read about the client it is bound to, when it needs it
    (the session id, version and transport change as sessions are renewed and the
    transport detected)."""

    session_id: Callable[[], str | None]
    protocol_version: Callable[[], str | None]
    transport: Callable[[], str]
    """``"streamable-http"``, ``"sse"`` or ``"stdio"``."""
    server_address: str | None
    """The server's host name or IP address (HTTP servers only; never the whole URL)."""
    server_port: int | None


class CallObserver(Protocol):
    """Follows one call, from its start to its end; made by :meth:`Observer.start`."""

    @property
    def params(self) -> Mapping[str, Any] | None:
        """The params to send instead of the caller's (with trace context, say)."""
        ...

    def sent(self, request_id: int | str) -> None:
        """An attempt went out with this JSON-RPC id."""

    def retry(self, attempt: int, error: MCPError, delay: float, *, sent: bool) -> None:
        """Attempt ``attempt`` failed with ``error``; the next one follows after ``delay``
        seconds (``sent``: the failed attempt had gone out; False: it waited in the gate
        for a handshake that failed)."""

    def renew(self, error: MCPError) -> None:
        """The call's session was given up (lost, not initialized, a version change): a
        new handshake follows."""

    def end(self, result: Any) -> None:
        """The call returned ``result`` (its JSON ``result``)."""

    def fail(self, error: BaseException) -> None:
        """The call raised ``error`` (an :class:`~resilient_mcp.MCPError`, or a
        cancellation)."""


class Observer(Protocol):
    """A :class:`Telemetry` bound to one client."""

    def start(self, method: str, params: Mapping[str, Any] | None) -> CallObserver:
        """A call of ``method`` starts."""
        ...


class Telemetry:
    """What ``telemetry=`` takes (:class:`~resilient_mcp.ClientOptions`): see
    :class:`resilient_mcp.otel.OpenTelemetry`. Subclasses implement :meth:`bind`."""

    def bind(self, facts: ClientFacts) -> Observer:
        """The observer of one client, whose session ``facts`` describe."""
        raise NotImplementedError
