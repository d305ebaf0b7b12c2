"""The contract between a session and the wire, and the one error boundary below it.

A transport moves encoded JSON-RPC messages and hands every message that comes back to
its :class:`Peer`. It knows no MCP method and keeps no protocol state that the session
owns: everything a message needs (its session id, protocol version, extra headers,
whether its stream may be resumed) comes with it, in an immutable :class:`SendContext`.
What the transport learns on the way (a session id the server assigned) goes back in the
:class:`Receipt`.

Every I/O path of every transport runs inside :func:`map_transport_errors`, where
exceptions of the layers below (the HTTP stack's: httpx or httpx2, sockets, anyio, a
user's auth flow) become :class:`~resilient_mcp.MCPError`\\ s; every background loop runs under
:func:`run_guarded`, so that nothing it raises can crash the task group it runs in.
"""

from __future__ import annotations

import abc
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import anyio
import anyio.abc

from .._classify import FailureContext
from .._exceptions import ConnectError, ConnectionLost, Execution, MCPError, TransportError
from .._http_stack import HTTPX, HTTPStack

__all__ = [
    "Peer",
    "Receipt",
    "SendContext",
    "Transport",
    "answers",
    "encode",
    "map_transport_errors",
    "run_guarded",
]

MessageKind = Literal["request", "notification", "response"]


@dataclass(frozen=True, slots=True)
class SendContext(FailureContext):
    """Everything a transport needs to know about one message, fixed when it is sent.

    The :class:`FailureContext` fields (method, request id, session id, whether the
    handshake was complete) name the message in errors; the transport never branches
    on the method.

    Attributes:
        kind: a request (an answer is awaited), a notification, or a response to a
            server→client request.
        protocol_version: the negotiated version, for transports with a version header.
        headers: extra headers for this message (the modern era's routing headers).
        resumable: a response stream that drops may be resumed (``Last-Event-ID``).
        priority: never waits for an admission slot behind ordinary exchanges (the
            handshake, cancellations: the caller says which; a transport knows no
            method). Answers to the server (``kind="response"``) never wait at all.
    """

    kind: MessageKind = "request"
    protocol_version: str | None = None
    headers: Mapping[str, str] | None = None
    resumable: bool = True
    priority: bool = False


@dataclass(frozen=True, slots=True)
class Receipt:
    """What :meth:`Transport.send` found out.

    Attributes:
        answer: for a request: ``"delivered"`` (its answer went to the peer during the
            send), ``"later"`` (it will come on the transport's shared channel), or
            ``"accepted"`` (the server took it without answering; the answer can only
            come on the optional server→client channel, :meth:`Transport.listen`).
            Notifications and responses get ``"delivered"`` once accepted.
        session_id: a session id the server assigned in this exchange, if any.
    """

    answer: Literal["delivered", "later", "accepted"] = "delivered"
    session_id: str | None = None


DELIVERED = Receipt()


class Peer(Protocol):
    """What a transport reports to (the session's JSON-RPC layer)."""

    def deliver(self, message: Any) -> None:
        """One decoded message from the server (any JSON value; the peer checks it)."""

    def lost(self, reason: str) -> None:
        """The shared channel that carried many requests' answers ended."""

    def undeliverable(self, request_id: Any, error: MCPError) -> None:
        """The answer to ``request_id`` arrived on a shared channel but cannot be read."""


class Transport(abc.ABC):
    """The interface between a session and the wire.

    Class attributes describe the wire, so that the layers above can decide without
    knowing which transport this is:

    Attributes:
        name: ``"streamable-http"``, ``"sse"`` or ``"stdio"``.
        per_request_streams: each request's answer travels on a stream of its own, so
            abandoning that stream is visible to the server (modern HTTP cancels so).
        acknowledges_before_processing: the server confirms receipt of a message before
            it reads it (legacy HTTP+SSE), so a confirmed delivery does not mean the
            server has processed it.
    """

    name: ClassVar[str] = ""
    per_request_streams: ClassVar[bool] = False
    acknowledges_before_processing: ClassVar[bool] = False

    def detection_key(self) -> str | None:
        """The server this transport reaches, as a detection-cache key (None: never cached)."""
        return None

    @abc.abstractmethod
    async def open(self, peer: Peer, task_group: anyio.abc.TaskGroup) -> None:
        """Prepare the transport; what the server sends goes to ``peer``.

        Raises:
            MCPError: the transport cannot be prepared (e.g. a command that cannot start).
        """

    @abc.abstractmethod
    async def send(
        self, body: bytes, ctx: SendContext, *, on_sent: Callable[[], None] | None = None
    ) -> Receipt:
        """Send one encoded message; ``on_sent`` is called once it is handed to the network.

        Raises:
            MCPError: the message could not be delivered or was refused, translated for
                this message (only this one).
        """

    async def listen(self, ctx: SendContext) -> None:  # noqa: B027 - optional, default none
        """Open the optional server→client channel, if this transport has one."""

    async def reset(self) -> None:  # noqa: B027 - optional hook
        """A new session starts: drop what belonged to the old one. Never raises."""

    async def end_session(self, ctx: SendContext) -> None:  # noqa: B027 - optional hook
        """End the session ``ctx`` names on the server, best effort (HTTP ``DELETE``)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release every resource; idempotent, and completes even when cancelled."""


def encode(message: Mapping[str, Any]) -> bytes:
    """One message as compact UTF-8 JSON (control characters escaped: no raw newline)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def answers(message: Any, request_id: Any) -> bool:
    """Whether ``message`` is the JSON-RPC response to ``request_id``."""
    return (
        isinstance(message, dict)
        and message.get("id") == request_id
        and ("result" in message or "error" in message)
        and "method" not in message
    )


@contextlib.contextmanager
def map_transport_errors(
    ctx: FailureContext, *, sent: Callable[[], bool], stack: HTTPStack = HTTPX
) -> Iterator[None]:
    """Translate any exception raised inside the block into an :class:`MCPError`.

    Most specific first; the original is kept as ``__cause__``. Cancellation passes.

    Args:
        ctx: the message the block works for.
        sent: tells whether the message had been handed to the network when the error
            happened (decides :attr:`MCPError.execution`).
        stack: the HTTP library whose exceptions are expected (httpx2 raises its own
            classes, which are not httpx's).
    """
    kw = ctx.context()
    try:
        yield
    except MCPError:
        raise
    except stack.connect_errors as exc:
        raise ConnectError(f"could not connect: {exc or type(exc).__name__}", **kw) from exc
    except stack.unsupported_url as exc:
        raise ConnectError(f"unsupported URL: {exc}", **kw) from exc
    except stack.lost_errors as exc:
        # Read/write errors, RemoteProtocolError, timeouts of the layer below: the message
        # may or may not have reached the server.
        execution = Execution.MAYBE if sent() else Execution.NOT_EXECUTED
        raise ConnectionLost(
            f"connection lost: {exc or type(exc).__name__}", execution=execution, **kw
        ) from exc
    except Exception as exc:
        # A bad Content-Encoding (DecodingError), a custom transport of the client or a
        # user's auth flow may raise anything: still one typed error, never a foreign one.
        execution = Execution.MAYBE if sent() else Execution.NOT_EXECUTED
        raise TransportError(
            f"unexpected failure in the transport: {exc!r}", execution=execution, **kw
        ) from exc


def never_sent() -> bool:
    return False


async def run_guarded(
    work: Callable[[], Awaitable[None]],
    *,
    on_failure: Callable[[MCPError], None],
    stack: HTTPStack = HTTPX,
) -> None:
    """Run a background loop; whatever it raises goes to ``on_failure`` as a typed error.

    The last resort of every background task: the task group it runs in must never be
    crashed by it (which would cancel the caller's code with a bare cancellation).
    Cancellation itself passes through. ``stack``: as for :func:`map_transport_errors`.
    """
    try:
        with map_transport_errors(FailureContext(), sent=never_sent, stack=stack):
            await work()
    except MCPError as exc:
        on_failure(exc)
