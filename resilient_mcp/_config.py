"""Small keyword-only configuration objects, and the "use the client's setting" sentinel.

Every object here is frozen and validated when built: a value out of range raises
:class:`~resilient_mcp.UsageError` (also a ``ValueError``), the one convention for
configuration mistakes throughout the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ._exceptions import UsageError

__all__ = ["USE_CLIENT_DEFAULT", "Limits", "Timeouts"]


class UseClientDefault:
    """The type of :data:`USE_CLIENT_DEFAULT` (as in httpx): "use the client's setting".

    A distinct sentinel because ``None`` already means something (no timeout).
    """

    _instance: UseClientDefault | None = None

    def __new__(cls) -> UseClientDefault:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"

    def __reduce__(self) -> str:
        return "USE_CLIENT_DEFAULT"


USE_CLIENT_DEFAULT: Final = UseClientDefault()
"""Default of every per-call ``timeout=``: the client's :attr:`Timeouts.request`."""


def _positive(owner: str, **values: float | None) -> None:
    for name, value in values.items():
        if value is not None and value <= 0:
            raise UsageError(f"{owner}.{name} must be positive, got {value!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeouts:
    """How long the client waits, in seconds. ``None`` means no limit.

    Attributes:
        request: default for every call, counted from the call (time spent waiting for
            the session to become ready, retries, re-sends and ``input_required``
            rounds included). Overridable per call.
        initialize: the whole handshake (era detection, ``initialize`` and
            ``notifications/initialized``).
        connect: establishing a TCP/TLS connection (and, on stdio, a server taking a
            line from its stdin).
        reset_on_progress: a progress notification for a call restarts its ``request``
            clock...
        max_total: ...but never past this much time since the call started.
        close: how long closing the client may take (session DELETE) before it gives up.
        keepalive: when set, a ``ping`` goes out after this many idle seconds, so that a
            dead connection or a lost session is found (and recovered) before the next
            call needs it. ``None`` (default): no keep-alive traffic. (Legacy era only:
            the modern era has no session to keep.)
        probe: how long a stdio server may take to answer the ``server/discover`` era
            probe before it is taken for a legacy server (legacy servers may ignore
            requests sent before ``initialize``). Over HTTP the probe is bounded by
            ``initialize``, and silence is a failure, not an era.

    Raises:
        UsageError: a duration that is zero or negative.
    """

    request: float | None = 60.0
    initialize: float = 30.0
    connect: float = 10.0
    reset_on_progress: bool = True
    max_total: float | None = 600.0
    close: float = 5.0
    keepalive: float | None = None
    probe: float = 2.0

    def __post_init__(self) -> None:
        _positive(
            "Timeouts",
            request=self.request,
            initialize=self.initialize,
            connect=self.connect,
            max_total=self.max_total,
            close=self.close,
            keepalive=self.keepalive,
            probe=self.probe,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """Bounds that protect the client (and its process) from a misbehaving server or caller.

    Attributes:
        max_queued: calls that may wait for the session to become ready; one more
            raises :class:`~resilient_mcp.QueueFull`.
        max_message_size: largest message accepted from the server, in bytes; a larger
            one fails the request it belongs to with :class:`~resilient_mcp.MessageTooLarge`.
        max_pending_notifications: server notifications buffered for each handler (and
            progress for each call, and server→client requests waiting for a free
            handler); past this, new ones are dropped with a warning in the log.
        max_server_requests: server→client requests (sampling, elicitation, roots,
            ping) answered at once; more wait their turn.
        max_connections: the hard ceiling of short HTTP exchanges in flight at once
            over Streamable HTTP (and of the connections kept open). Callers beyond
            the current limit wait their turn in FIFO order. The limit adapts when
            ``min_connections`` is below this (by default both are 8: fixed): it
            starts at 8, grows while the
            server answers as fast as before and shrinks when answers slow down or
            the server refuses (429, 503, a refused connection), never below
            ``min_connections`` nor above this. It also applies when you pass your
            own ``http_client``. Over legacy HTTP+SSE, where every POST is answered
            at once (202) and never waits for the server's work, it sizes the pool
            of the client's own ``httpx`` client only (``min(max_connections, 8) +
            1`` while the limit adapts, ``max_connections + 1`` when it is fixed).
            Answers to server→client requests do not wait for it.
        min_connections: the floor of the adaptive limit (capped at
            ``max_connections``): however slow or refusing the server, this many
            exchanges may still be in flight. ``min_connections=max_connections``
            (the default) fixes the limit; ``Limits(max_connections=64,
            min_connections=4)`` lets it adapt. Priority messages (the handshake,
            cancellations) have a small lane of their own either way.
        long_request: seconds after which an exchange still in flight stops counting
            against ``max_connections``, so that slow tool calls never starve the rest.
        max_input_rounds: how many ``input_required`` rounds (modern era) one call may
            go through before it fails with :class:`~resilient_mcp.InputRequiredError`.

    Raises:
        UsageError: a count below one, or a ``long_request`` that is not positive.
    """

    max_queued: int = 1024
    max_message_size: int = 16 * 1024 * 1024
    max_pending_notifications: int = 1024
    max_server_requests: int = 16
    max_connections: int = 8
    min_connections: int = 8
    long_request: float = 1.0
    max_input_rounds: int = 10

    def __post_init__(self) -> None:
        for name in (
            "max_queued",
            "max_message_size",
            "max_pending_notifications",
            "max_server_requests",
            "max_connections",
            "min_connections",
            "max_input_rounds",
        ):
            if getattr(self, name) < 1:
                raise UsageError(f"Limits.{name} must be at least 1")
        _positive("Limits", long_request=self.long_request)
