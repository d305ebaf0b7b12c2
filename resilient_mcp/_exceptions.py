"""The one error tree of resilient-mcp.

Every failure a caller can see is an :class:`MCPError`. Raw ``httpx``/``anyio``
exceptions and ``ExceptionGroup``\\ s never escape: they are translated at one
boundary (:func:`resilient_mcp._transports.base.map_transport_errors`). The tree is grouped
by what the caller can do about it::

    MCPError                          every error; .method .request_id .session_id .execution
    ├── TransportError                the connection failed; retrying later may work
    │   ├── ConnectError              could not reach the server (never sent)
    │   ├── ConnectionLost            the connection broke while a request was in flight
    │   └── ServerUnavailable         429 / 502 / 503 / 504; .retry_after when the server said
    ├── SessionError                  the MCP session is not usable; a new handshake fixes it
    │   ├── NotInitialized            the server says the handshake is not complete (any dialect)
    │   └── SessionLost               the server no longer knows our session (404 & friends)
    ├── HandshakeError                the handshake itself failed; this server cannot be used as is
    │   └── UnsupportedProtocolVersion
    ├── ProtocolError                 the server sent something that is not valid MCP
    │   ├── MalformedMessage          bad JSON, bad JSON-RPC, garbage SSE, wrong content type
    │   └── MessageTooLarge           over the configured size limit
    ├── HTTPStatusError               an HTTP status no other class explains (401, 405, 500, ...)
    ├── AuthError                     OAuth failed (resilient_mcp.auth: its subclasses there)
    ├── ServerError                   a JSON-RPC error answer; .code .message .data
    │   ├── InvalidParams             -32602: bad arguments, unknown tool, bad cursor
    │   ├── MethodNotFound            -32601: the server does not serve this method
    │   └── ResourceNotFound          -32002 from resources/read
    ├── ToolError                     the tool ran and reported failure (``isError``); .result
    │   └── ToolOutputError           the tool's structuredContent breaks its outputSchema
    ├── InputRequiredError            the server needs input no handler can give (modern era)
    ├── FateUnknown                   a side-effecting call may have run; it was not retried
    ├── RequestTimeout                no answer in time (also a builtin ``TimeoutError``)
    ├── RequestCancelled              the request was abandoned because the client closed
    ├── QueueFull                     backpressure: too many calls already wait for the session
    └── UsageError                    a mistake in how the client is used (also a ``ValueError``)
        └── ClientClosed              the client is closed (or was never opened)

Every error says whether the request reached execution: :attr:`MCPError.execution` is
:attr:`Execution.NOT_EXECUTED` (safe to send again), :attr:`Execution.EXECUTED` (the
server acted on it) or :attr:`Execution.MAYBE` (nobody can know: do not repeat a
side-effecting call blindly).

Caller cancellation (an anyio/trio cancel scope, ``asyncio.Task.cancel()``) is not an
error: the native cancellation exception propagates, after ``notifications/cancelled``
was queued for the server.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .types import CallToolResult

__all__ = [
    "AuthError",
    "ClientClosed",
    "ConnectError",
    "ConnectionLost",
    "Execution",
    "FateUnknown",
    "HTTPStatusError",
    "HandshakeError",
    "InputRequiredError",
    "InvalidParams",
    "MCPError",
    "MalformedMessage",
    "MessageTooLarge",
    "MethodNotFound",
    "NotInitialized",
    "ProtocolError",
    "QueueFull",
    "RequestCancelled",
    "RequestTimeout",
    "ResourceNotFound",
    "ServerError",
    "ServerUnavailable",
    "SessionError",
    "SessionLost",
    "ToolError",
    "ToolOutputError",
    "TransportError",
    "UnsupportedProtocolVersion",
    "UsageError",
]


class Execution(enum.Enum):
    """Whether the server acted on a request that failed."""

    NOT_EXECUTED = "not_executed"
    """The server certainly did not act on it: sending it again cannot do anything twice."""
    EXECUTED = "executed"
    """The server handled it and answered (with an error or a failed tool result)."""
    MAYBE = "maybe"
    """Unknown: the request may have run. Repeat it only if it is harmless to run twice."""


class MCPError(Exception):
    """Root of every error raised by resilient-mcp.

    Attributes:
        message: a human-readable description.
        method: the JSON-RPC method of the failed request, if there was one.
        request_id: the JSON-RPC id of the failed request, if one was assigned.
        session_id: the ``Mcp-Session-Id`` in use, if any.
        execution: whether the server acted on the request (see :class:`Execution`).
    """

    default_execution: Execution = Execution.MAYBE

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        request_id: str | int | None = None,
        session_id: str | None = None,
        execution: Execution | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.request_id = request_id
        self.session_id = session_id
        self.execution = execution if execution is not None else self.default_execution

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take required keyword-only arguments, which the default exception
        # pickling (``cls(*args)``) cannot pass: rebuild from the attributes instead.
        # This also makes ``copy.copy`` work, which the gate uses to give every parked
        # request its own error object.
        return (_rebuild, (type(self), self.args, self.__dict__))

    def _with_context(
        self,
        *,
        method: str | None,
        request_id: str | int | None,
        session_id: str | None,
    ) -> MCPError:
        """Fill in context the raising layer did not know; returns self for ``raise``."""
        if self.method is None:
            self.method = method
        if self.request_id is None:
            self.request_id = request_id
        if self.session_id is None:
            self.session_id = session_id
        return self

    def __str__(self) -> str:
        where = []
        if self.method is not None:
            where.append(f"method={self.method}")
        if self.request_id is not None:
            where.append(f"id={self.request_id!r}")
        if not where:
            return self.message
        return f"{self.message} ({', '.join(where)}, execution={self.execution.value})"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, method={self.method!r}, "
            f"request_id={self.request_id!r}, execution={self.execution.value!r})"
        )


def _rebuild(cls: type[MCPError], args: tuple[Any, ...], state: dict[str, Any]) -> MCPError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


# --- transport ------------------------------------------------------------------------


class AuthError(MCPError):
    """OAuth authorization failed (:mod:`resilient_mcp.auth`, which exports it with its
    subclasses); the request was not executed.

    Never retried, never a new handshake; messages say what to do and never hold a token,
    code, verifier or secret. ``error``: the OAuth error code the server answered, if any.
    """

    default_execution = Execution.NOT_EXECUTED

    def __init__(self, message: str, *, error: str | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.error = error


class TransportError(MCPError):
    """The connection to the server failed. Retrying later may succeed."""


class ConnectError(TransportError):
    """The server could not be reached; the request was never sent.

    Attributes:
        permanent: the transport knows no retry can reach it (a stdio server that exited
            and is not restarted), so it is not retried until the deadline.
    """

    default_execution = Execution.NOT_EXECUTED

    def __init__(self, message: str, *, permanent: bool = False, **context: Any) -> None:
        super().__init__(message, **context)
        self.permanent = permanent


class ConnectionLost(TransportError):
    """The connection broke (or closed) while the request was in flight."""


class ServerUnavailable(TransportError):
    """The server (or a proxy) said it cannot take the request now: 429, 502, 503, 504.

    Attributes:
        status_code: the HTTP status.
        retry_after: seconds the server asked us to wait (``Retry-After``), if it said.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        retry_after: float | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message, **context)
        self.status_code = status_code
        self.retry_after = retry_after


# --- session ----------------------------------------------------------------------------


class SessionError(MCPError):
    """The MCP session cannot serve the request; a fresh handshake would fix it."""

    default_execution = Execution.NOT_EXECUTED


class NotInitialized(SessionError):
    """The server rejected the request because, on its side, the handshake was not complete.

    Raised for every dialect of that answer (-32602 from the Python SDK, -32000 from the
    TypeScript SDK, code 0 from Go gateways, -32002 from LSP-style servers, 422 from rmcp,
    ...). The request was not executed.
    """


class SessionLost(SessionError):
    """The server no longer knows the session (expired, terminated, server restarted)."""


# --- handshake ----------------------------------------------------------------------------


class HandshakeError(MCPError):
    """The ``initialize`` → ``notifications/initialized`` handshake failed."""

    default_execution = Execution.NOT_EXECUTED


class UnsupportedProtocolVersion(HandshakeError):
    """The server offered a protocol version this client does not speak.

    Attributes:
        offered: the version the server proposed (None when it answered -32022).
        supported: when the server offered a version we cannot use, the versions this
            client speaks; when it answered -32022, the versions the server listed.
    """

    def __init__(
        self,
        message: str,
        *,
        offered: str | None,
        supported: tuple[str, ...],
        **context: Any,
    ) -> None:
        super().__init__(message, **context)
        self.offered = offered
        self.supported = supported


# --- bad data from the server ------------------------------------------------------------


class ProtocolError(MCPError):
    """The server sent something that is not valid MCP."""


class MalformedMessage(ProtocolError):
    """Unparseable JSON, an invalid JSON-RPC envelope, garbage SSE or a wrong content type."""


class MessageTooLarge(ProtocolError):
    """A message from the server exceeded :attr:`Limits.max_message_size`."""


class HTTPStatusError(MCPError):
    """The server answered with an HTTP status that no more specific error explains.

    Attributes:
        status_code: the HTTP status.
        body: the start of the response body (decoded leniently), for diagnosis.
    """

    def __init__(self, message: str, *, status_code: int, body: str = "", **context: Any) -> None:
        super().__init__(message, **context)
        self.status_code = status_code
        self.body = body


# --- errors the server reported ------------------------------------------------------------


class ServerError(MCPError):
    """The server answered the request with a JSON-RPC error.

    Attributes:
        code: the JSON-RPC error code.
        data: the error's ``data`` member, if any.
    """

    default_execution = Execution.EXECUTED

    def __init__(self, message: str, *, code: int, data: Any = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.code = code
        self.data = data


class InvalidParams(ServerError):
    """-32602: the server refused the parameters (bad arguments, unknown tool, bad cursor).

    Attributes:
        may_be_not_initialized: true when the answer has the exact shape the Python SDK
            also uses for "not initialized" (``"Invalid request parameters"``, empty
            ``data``), so the server may in fact have lost or not finished the session.
    """

    default_execution = Execution.NOT_EXECUTED

    def __init__(
        self,
        message: str,
        *,
        code: int = -32602,
        data: Any = None,
        may_be_not_initialized: bool = False,
        **context: Any,
    ) -> None:
        super().__init__(message, code=code, data=data, **context)
        self.may_be_not_initialized = may_be_not_initialized


class MethodNotFound(ServerError):
    """-32601: the server does not serve this method."""

    default_execution = Execution.NOT_EXECUTED


class ResourceNotFound(ServerError):
    """The resource asked for with ``resources/read`` does not exist (-32002)."""

    default_execution = Execution.NOT_EXECUTED


class ToolError(MCPError):
    """The tool ran and reported failure (a result with ``isError: true``).

    Raised by :meth:`CallToolResult.raise_for_error`; ``call_tool`` itself returns such
    results, because the error text is usually meant for the model.

    Attributes:
        result: the full tool result.
    """

    default_execution = Execution.EXECUTED

    def __init__(self, message: str, *, result: CallToolResult | None = None, **context: Any):
        super().__init__(message, **context)
        self.result = result


class ToolOutputError(ToolError):
    """The tool's ``structuredContent`` does not match its declared ``outputSchema``."""


class FateUnknown(MCPError):
    """A call with side effects failed in a way that leaves unknown whether it ran.

    Raised instead of the underlying transport failure (kept as ``__cause__``) for a
    ``tools/call`` that is neither read-only nor idempotent, when the connection dropped
    after the request was sent or the server answered 5xx. Such a call is never repeated
    behind your back; decide yourself (check the effect, then call again or not).

    Attributes:
        params: the request's params (tool name and arguments), to repeat it if you choose.
    """

    def __init__(self, message: str, *, params: Any = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.params = params


class InputRequiredError(MCPError):
    """The server needs input this client cannot give (modern era, ``input_required``).

    Raised when a result asks for a kind of input no handler was given for (e.g.
    ``elicitation/create`` without ``Handlers.elicitation``), when a handler failed, or
    when the server kept asking past ``Limits.max_input_rounds``. What the server did
    before asking is its own business, hence ``execution`` MAYBE for tool calls.

    Attributes:
        methods: the kinds of input the server asked for in the last round.
    """

    default_execution = Execution.MAYBE

    def __init__(self, message: str, *, methods: tuple[str, ...] = (), **context: Any) -> None:
        super().__init__(message, **context)
        self.methods = methods


# --- time and cancellation ------------------------------------------------------------------


class RequestTimeout(MCPError, TimeoutError):
    """No answer arrived within the request's timeout. ``notifications/cancelled`` was sent."""


class RequestCancelled(MCPError):
    """The request was abandoned because the client was closed while it was pending."""


# --- backpressure and usage -------------------------------------------------------------------


class QueueFull(MCPError):
    """Backpressure: more calls already wait for the session than ``Limits.max_queued``.

    Nothing was sent. Slow down, or raise the limit; the client does not retry it (that
    would only add to the queue it refused to grow).
    """

    default_execution = Execution.NOT_EXECUTED


class UsageError(MCPError, ValueError):
    """The client was used, or configured, in a way it does not support.

    Every configuration mistake raises it (an out-of-range ``Timeouts`` value, an
    unsupported target, contradicting options), at the point where it is made. It is
    also a ``ValueError``, as Python's own "operation on a closed file" is.
    """

    default_execution = Execution.NOT_EXECUTED


class ClientClosed(UsageError):
    """The client is closed, or was never opened."""
