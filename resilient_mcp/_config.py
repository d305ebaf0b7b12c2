"""Small keyword-only configuration objects."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT", "Limits", "Timeouts"]


class _Default:
    """Sentinel: "use the client's setting" (``None`` already means "no timeout")."""

    _instance: _Default | None = None

    def __new__(cls) -> _Default:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = _Default()


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeouts:
    """How long the client waits, in seconds. ``None`` means no limit.

    Attributes:
        request: default for every request, counted from the call (time spent waiting
            for the session to become ready included). Overridable per call.
        initialize: the whole handshake (``initialize`` and ``notifications/initialized``).
        connect: establishing a TCP/TLS connection.
        reset_on_progress: a progress notification for a request restarts its ``request``
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
        for name in (
            "request",
            "initialize",
            "connect",
            "max_total",
            "close",
            "keepalive",
            "probe",
        ):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"Timeouts.{name} must be positive, got {value!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """Bounds that protect the client (and its process) from a misbehaving server or caller.

    Attributes:
        max_queued: requests that may wait for the session to become ready; one more
            raises :class:`~resilient_mcp.QueueFull`.
        max_message_size: largest message accepted from the server, in bytes; a larger
            one fails the request it belongs to with :class:`~resilient_mcp.MessageTooLarge`.
        max_pending_notifications: server notifications buffered for the handlers; past
            this, new ones are dropped with a warning in the log.
        max_connections: short HTTP exchanges in flight at once (and the connections
            kept open). Callers beyond it wait their turn in FIFO order. Small is fast:
            httpcore's pool costs CPU per connection on every request. Over Streamable
            HTTP it also applies when you pass your own ``http_client``; over legacy
            HTTP+SSE it sizes the pool of the client's own ``httpx`` client only.
        long_request: seconds after which an exchange still in flight stops counting
            against ``max_connections``, so that slow tool calls never starve the rest.
        max_input_rounds: how many ``input_required`` rounds (modern era) one call may
            go through before it fails with :class:`~resilient_mcp.InputRequiredError`.
    """

    max_queued: int = 1024
    max_message_size: int = 16 * 1024 * 1024
    max_pending_notifications: int = 1024
    max_connections: int = 8
    long_request: float = 1.0
    max_input_rounds: int = 10

    def __post_init__(self) -> None:
        for name in (
            "max_queued",
            "max_message_size",
            "max_pending_notifications",
            "max_connections",
            "max_input_rounds",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be at least 1")
        if self.long_request <= 0:
            raise ValueError(f"Limits.long_request must be positive, got {self.long_request!r}")
