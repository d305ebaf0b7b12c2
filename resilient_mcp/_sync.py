"""The sync client: ``with resilient_mcp.connect_sync(url) as client: ...``.

For scripts and sync frameworks. A :class:`SyncClient` is an async
:class:`~resilient_mcp.Client` kept open on a private event-loop thread
(:mod:`._loop_thread`); its methods block the calling thread until the call ends. The
arguments, options, results, errors and per-call ``timeout=`` are the async client's.
"""

from __future__ import annotations

import enum
import functools
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

from ._api import Timeout
from ._callbacks import SyncProgressCallback, async_progress
from ._client import Client
from ._config import USE_CLIENT_DEFAULT
from ._exceptions import ClientClosed, MCPError
from ._handlers import ProgressCallback
from ._log import default_logger
from ._loop_thread import LoopThread
from ._options import ClientOptions, Unpack
from ._retry import RetryPolicy
from ._session import SessionState
from ._stats import SessionStats
from ._targets import HTTPServer, StdioServer
from ._telemetry import carried
from .types import (
    CallToolResult,
    CompleteResult,
    Era,
    GetPromptResult,
    Implementation,
    LoggingLevel,
    Prompt,
    PromptReference,
    ReadResourceResult,
    Resource,
    ResourceTemplate,
    ResourceTemplateReference,
    ServerCapabilities,
    Tool,
)

__all__ = ["SyncClient", "connect_sync"]

T = TypeVar("T")
Target = str | HTTPServer | StdioServer | Sequence[str] | Mapping[str, Any]


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


def _stop_quietly(loop: LoopThread) -> None:
    """The end of a client nobody closed (garbage collected, or the interpreter exits)."""
    try:
        loop.stop()
    except MCPError as exc:
        default_logger().warning("client.close_failed", error=repr(exc))


class SyncClient:
    """A blocking MCP client bound to one server. Safe to call from many threads at once.

    Made by :func:`connect_sync` (``SyncClient(target, **options)`` is the same), with
    the options of :class:`~resilient_mcp.ClientOptions`; opened by ``with`` or
    :meth:`open`, closed by leaving the block or :meth:`close`. The methods are those of
    :class:`~resilient_mcp.Client`, blocking, with the same arguments (``timeout=`` on
    every call), results and errors.

    It runs an async client on an event-loop thread of its own (one thread per open
    client, started by opening and joined by closing: a few hundred microseconds and
    one idle thread). A client never closed is closed when it is garbage collected, or
    at the latest when the interpreter exits.

    ``handlers`` and ``progress=`` callbacks may be plain functions: they run in a
    worker thread (so they may block, and may call this client); async ones run in the
    loop. Calling the client from an async callback raises :class:`UsageError`.

    A KeyboardInterrupt in a thread waiting for a call cancels that call (the server is
    told, as for any cancelled call) and propagates; the client stays usable.

    Raises:
        UsageError: (at construction) an unsupported target, an unknown option, or an
            option of the wrong kind.
    """

    def __init__(self, target: Target, /, **options: Unpack[ClientOptions]) -> None:
        # Made here, outside any loop (as connect() allows): option errors raise at once,
        # and the session facts are readable before opening. Plain-function handlers run
        # in worker threads (the Client does that for both kinds of client).
        self._client = Client(target, **options)
        self._loop = LoopThread(self._client, name=f"resilient-mcp-sync-{id(self):x}")
        self._state = _State.UNOPENED
        self._lock = threading.Lock()  # opening and closing
        self._finalizer: weakref.finalize[[LoopThread], SyncClient] | None = None

    def __repr__(self) -> str:
        return f"<SyncClient {self._client!r}>"

    # --- lifecycle -----------------------------------------------------------------------

    def open(self) -> Self:
        """Open the client: start its loop thread, connect and (by default,
        ``wait_ready=True``) complete the handshake. Returns the client itself, for
        ``client = connect_sync(url).open()``.

        Raises:
            ClientClosed: it was opened (or closed) before; create a new one.
            MCPError: as entering :class:`~resilient_mcp.Client` (``ConnectError``,
                ``HandshakeError``, ``UnsupportedProtocolVersion``, ``RequestTimeout``);
                nothing is left running.
        """
        with self._lock:
            if self._state is not _State.UNOPENED:
                raise ClientClosed("a SyncClient can be opened only once; create a new one")
            self._state = _State.OPEN
            try:
                self._loop.start()
            except BaseException:
                self._state = _State.CLOSED
                raise
            self._finalizer = weakref.finalize(self, _stop_quietly, self._loop)
        return self

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        except MCPError as failure:
            if exc is None:
                raise
            # The block's own exception propagates; the close failure is only logged.
            default_logger().error("client.close_failed", error=repr(failure))

    def close(self) -> None:
        """Close the client from any thread: pending calls fail with
        ``RequestCancelled``, later calls raise ``ClientClosed``. Returns once the
        session is ended (a stdio server stopped) and the loop thread is gone.
        Idempotent; closing a client never opened just makes it unusable.

        Raises:
            ClientClosed: a background task of the client had failed (as its cause).
        """
        with self._lock:
            self._state = _State.CLOSED
        self._loop.stop()
        if self._finalizer is not None:
            self._finalizer.detach()

    def _run(self, function: Callable[[], Awaitable[T]]) -> T:
        if self._state is not _State.OPEN:
            raise ClientClosed(
                "the client is not open: use `with resilient_mcp.connect_sync(url) as "
                "client` or `client = resilient_mcp.connect_sync(url).open()`"
            )
        # carried(): the calling thread's current span (if telemetry is loaded) stays
        # the parent of the call's span on the loop thread.
        return self._loop.run(carried(function))

    # --- session facts (read without a round trip; still readable after close) ------------

    @property
    def server_info(self) -> Implementation | None:
        """The server's name and version (None before the handshake completed, or when a
        modern server did not say)."""
        return self._client.server_info

    @property
    def capabilities(self) -> ServerCapabilities | None:
        """What the server offers (None before the handshake completed)."""
        return self._client.capabilities

    @property
    def instructions(self) -> str | None:
        """The server's usage instructions for the model, if it sent any."""
        return self._client.instructions

    @property
    def era(self) -> Era | None:
        """``"modern"`` or ``"legacy"``, as detected or forced; None before ready."""
        return self._client.era

    @property
    def transport(self) -> str:
        """The transport in use: ``"streamable-http"``, ``"sse"`` or ``"stdio"``."""
        return self._client.transport

    @property
    def protocol_version(self) -> str | None:
        """The negotiated protocol version."""
        return self._client.protocol_version

    @property
    def session_id(self) -> str | None:
        """The ``Mcp-Session-Id`` the server assigned, if it uses sessions."""
        return self._client.session_id

    @property
    def state(self) -> SessionState:
        """The session's state (new, initializing, ready, closing, closed)."""
        return self._client.state

    @property
    def stats(self) -> SessionStats:
        """Counters: requests, handshakes, peak queue, time to ready, dropped messages."""
        return self._client.stats

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the handshake completed (starting it if needed).

        Raises:
            RequestTimeout: not ready within ``timeout`` seconds.
            HandshakeError: the handshake failed (transport errors are raised as such).
        """
        self._run(functools.partial(self._client.wait_ready, timeout))

    # --- requests (each as the async Client's method of the same name) ------------------

    def request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        progress: ProgressCallback | SyncProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        idempotent: bool = False,
    ) -> Any:
        """Send any JSON-RPC request and return its raw ``result``
        (:meth:`Client.request <resilient_mcp.Client.request>`).

        Raises:
            FateUnknown: a side-effecting ``tools/call`` may have run; not retried.
            MCPError: the request failed (see the error tree).
        """
        return self._run(
            functools.partial(
                self._client.request,
                method,
                params,
                timeout=timeout,
                progress=async_progress(progress),
                retry=retry,
                idempotent=idempotent,
            )
        )

    def list_tools(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> list[Tool]:
        """All tools, following every pagination cursor; cached until the server sends
        ``notifications/tools/list_changed``."""
        return self._run(functools.partial(self._client.list_tools, timeout=timeout))

    def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        progress: ProgressCallback | SyncProgressCallback | None = None,
        idempotent: bool | None = None,
        retry: RetryPolicy | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> CallToolResult:
        """Call a tool and return its result, also when it reports ``isError``
        (:meth:`Client.call_tool <resilient_mcp.Client.call_tool>`: at most once unless
        idempotent, ``structuredContent`` checked against the tool's ``outputSchema``).

        Raises:
            InvalidParams: the server refused the name or the arguments.
            ToolOutputError: the structured result breaks the tool's output schema.
            FateUnknown: the call may have run and was not repeated.
        """
        return self._run(
            functools.partial(
                self._client.call_tool,
                name,
                arguments,
                timeout=timeout,
                progress=async_progress(progress),
                idempotent=idempotent,
                retry=retry,
                meta=meta,
            )
        )

    def list_resources(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> list[Resource]:
        """All resources, following every pagination cursor."""
        return self._run(functools.partial(self._client.list_resources, timeout=timeout))

    def list_resource_templates(
        self, *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> list[ResourceTemplate]:
        """All resource templates, following every pagination cursor."""
        return self._run(functools.partial(self._client.list_resource_templates, timeout=timeout))

    def read_resource(
        self, uri: str, *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> ReadResourceResult:
        """Read one resource.

        Raises:
            ResourceNotFound: the server has no resource at ``uri`` (-32002).
            InvalidParams: the same from servers that use -32602 for it.
        """
        return self._run(functools.partial(self._client.read_resource, uri, timeout=timeout))

    def subscribe_resource(self, uri: str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> None:
        """Ask for ``notifications/resources/updated`` about ``uri`` (received by
        ``Handlers(notification=...)``)."""
        self._run(functools.partial(self._client.subscribe_resource, uri, timeout=timeout))

    def unsubscribe_resource(self, uri: str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> None:
        """Stop notifications about ``uri``."""
        self._run(functools.partial(self._client.unsubscribe_resource, uri, timeout=timeout))

    def list_prompts(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> list[Prompt]:
        """All prompts, following every pagination cursor."""
        return self._run(functools.partial(self._client.list_prompts, timeout=timeout))

    def get_prompt(
        self,
        name: str,
        arguments: Mapping[str, str] | None = None,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> GetPromptResult:
        """Render a prompt with its arguments.

        Raises:
            ServerError: unknown prompt or missing required arguments (usually
                ``InvalidParams``).
        """
        return self._run(
            functools.partial(self._client.get_prompt, name, arguments, timeout=timeout)
        )

    def complete(
        self,
        ref: PromptReference | ResourceTemplateReference,
        argument: Mapping[str, str],
        *,
        context: Mapping[str, str] | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> CompleteResult:
        """Ask for completions of a prompt or resource-template argument
        (``argument`` is ``{"name": ..., "value": ...}``)."""
        return self._run(
            functools.partial(
                self._client.complete, ref, argument, context=context, timeout=timeout
            )
        )

    def set_logging_level(
        self, level: LoggingLevel, *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> None:
        """Ask the server to send log messages of ``level`` and above.

        Raises:
            UsageError: ``level`` is not one of the eight syslog levels.
        """
        self._run(functools.partial(self._client.set_logging_level, level, timeout=timeout))

    def ping(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> None:
        """Check that the server answers.

        Raises:
            RequestTimeout: no answer in time (the connection is likely dead).
        """
        self._run(functools.partial(self._client.ping, timeout=timeout))


def connect_sync(target: Target, /, **options: Unpack[ClientOptions]) -> SyncClient:
    """Connect to an MCP server from sync code (use as ``with``, or call ``.open()``).

    Args:
        target: what to connect to, as for :func:`~resilient_mcp.connect` (a URL, an
            ``HTTPServer``, a command or ``StdioServer``, an ``mcpServers`` entry).
        **options: see :class:`~resilient_mcp.ClientOptions`.

    Returns:
        A :class:`SyncClient`, not yet open.

    Raises:
        UsageError: on an unsupported target or an unknown option (at once).
        MCPError: on opening, as entering :class:`~resilient_mcp.Client`
            (``ConnectError``, ``HandshakeError``, ``UnsupportedProtocolVersion``,
            ``RequestTimeout``).
    """
    return SyncClient(target, **options)
