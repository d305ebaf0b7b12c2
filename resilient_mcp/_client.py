"""The public client: ``async with resilient_mcp.connect(url) as client: ...``."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import anyio

from ._api import MCPMethods, Timeout
from ._callbacks import async_handlers
from ._catalog import Catalog
from ._config import USE_CLIENT_DEFAULT
from ._exceptions import ClientClosed
from ._handlers import ProgressCallback
from ._host import Host, first_failure, interrupt_in
from ._log import default_logger
from ._negotiate import first_transport
from ._options import ClientOptions, Unpack, resolve_options
from ._retry import RetryPolicy
from ._session import Session, SessionState
from ._stats import SessionStats
from ._targets import HTTPServer, StdioServer, resolve_target
from ._telemetry import ClientFacts
from ._transports.base import Transport
from ._transports.http import HTTPTransportBase
from ._transports.sse import LegacySSETransport
from ._transports.stdio import StdioTransport
from ._transports.streamable import StreamableHTTPTransport
from .types import (
    Era,
    Implementation,
    ServerCapabilities,
)

__all__ = ["Client", "connect"]


try:
    from importlib.metadata import version as _dist_version

    _VERSION = _dist_version("resilient-mcp")
except Exception:  # not installed (running from a source tree)
    _VERSION = "0.0.0"

# Who we are unless told otherwise: one instance for every client (never mutated).
_CLIENT_INFO = Implementation(name="resilient-mcp", version=_VERSION)


class _ClientState(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class Client(MCPMethods):
    """An MCP client bound to one server. Safe to share between tasks.

    Made by :func:`connect` (``Client(target, **options)`` is the same), entered with
    ``async with``. Calls may be made from any task; a call made before the session is
    ready waits for it (see ``wait_ready`` in :class:`~resilient_mcp.ClientOptions`).
    It may be entered in one task and left (or closed with :meth:`aclose`) in another of
    the same event loop, also after the entering task has ended: its background work
    runs in a task of its own, not in the entering task.

    Every call takes ``timeout=`` (seconds, ``None`` for no limit; by default
    ``Timeouts.request``): one deadline for everything the call does (waiting for the
    session, retries, pages, re-sends).

    Every method raises :class:`~resilient_mcp.MCPError` subclasses only; the
    ``Raises`` sections name the ones specific to that method.

    Raises:
        UsageError: (at construction) an unsupported target, an unknown option, or an
            option of the wrong kind.
    """

    def __init__(
        self,
        target: str | HTTPServer | StdioServer | Sequence[str] | Mapping[str, Any],
        /,
        **options: Unpack[ClientOptions],
    ) -> None:
        server = resolve_target(target)
        opts = resolve_options(options)
        self._server = server
        self._wait_ready = opts.wait_ready
        base_log = opts.logger if opts.logger is not None else default_logger()
        where = server.describe()
        self._log = base_log.bind(**{"url" if isinstance(server, HTTPServer) else "server": where})
        self._catalog = Catalog(self._log)
        wire: Transport
        switch = None
        if isinstance(server, StdioServer):
            wire = StdioTransport(
                server, timeouts=opts.timeouts, limits=opts.limits, logger=self._log
            )
        else:
            name, switchable = first_transport(server, era=opts.era, cache=opts.detection_cache)

            def http(name: str) -> HTTPTransportBase:
                cls = LegacySSETransport if name == "sse" else StreamableHTTPTransport
                return cls(server, timeouts=opts.timeouts, limits=opts.limits, logger=self._log)

            wire = http(name)
            switch = http if switchable else None
        self._session = Session(
            wire,
            timeouts=opts.timeouts,
            limits=opts.limits,
            handlers=async_handlers(opts.handlers),
            client_info=opts.client_info or _CLIENT_INFO,
            logger=self._log,
            retry=opts.retry,
            era=opts.era,
            cache=opts.detection_cache,
            switch=switch,
            param_headers=self._catalog.param_headers,
        )
        self._calls = self._session.calls
        if opts.telemetry is not None:
            self._calls.telemetry = opts.telemetry.bind(self._facts())
        self._session.add_notification_listener(self._catalog.on_notification)
        self._state = _ClientState.UNOPENED
        self._host: Host | None = None
        self._closed: anyio.Event | None = None  # set once a close has finished

    def _facts(self) -> ClientFacts:
        """What telemetry may know of this client: the server's host and port (never
        the URL, which may hold a secret), the session's id, version and transport."""
        host: str | None = None
        port: int | None = None
        if isinstance(self._server, HTTPServer):
            parts = urlsplit(self._server.url)
            host = parts.hostname
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError:  # an invalid port: the transport will say so
                port = None
        session = self._session  # (not self: the client stays out of the observer's refs)

        def version() -> str | None:
            era = session.strategy
            return era.protocol_version if era is not None else None

        return ClientFacts(
            session_id=lambda: session.session_id,
            protocol_version=version,
            transport=lambda: session.transport.name,
            server_address=host,
            server_port=port,
        )

    def __repr__(self) -> str:
        return f"<Client {self._server.describe()} {self._session!r}>"

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is not _ClientState.UNOPENED:
            raise ClientClosed("a Client can be opened only once; create a new one")
        self._state = _ClientState.OPEN
        self._host = Host(self._log)
        try:
            await self._session.start(await self._host.open())
            if self._wait_ready:
                # No deadline of our own: the handshake is bounded by Timeouts.initialize
                # and its error (method "initialize") is the one to raise.
                await self._calls.establish()
            else:
                self._session.start_handshake()
        except BaseException as exc:
            await self._shutdown(exc)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown(exc)

    async def _shutdown(self, exc: BaseException | None) -> None:
        """Close the session, then stop the host; from any task, once (later callers
        wait for the first one's close to finish)."""
        self._state = _ClientState.CLOSED
        if self._closed is not None:
            with anyio.CancelScope(shield=True):
                await self._closed.wait()
            return
        self._closed = anyio.Event()
        host, self._host = self._host, None
        try:
            if host is None:
                return
            try:
                with anyio.CancelScope(shield=True):
                    await self._session.aclose()
            finally:
                failure = await host.close()
                if failure is not None:
                    # An interrupt stays what it is; any other failure of the background
                    # work (guarded: it should never fail) is passed on as the cause. The
                    # caller's own exception (if any) propagates by itself.
                    interrupt = interrupt_in(failure)
                    if interrupt is not None:
                        raise interrupt
                    if exc is None:
                        first = first_failure(failure)
                        raise ClientClosed(f"a background task failed: {first!r}") from first
        finally:
            self._closed.set()

    async def aclose(self) -> None:
        """Close the client from any task: pending calls fail with ``RequestCancelled``,
        every later call raises ``ClientClosed``, and the background work (a stdio
        server too) is stopped before it returns. Leaving the ``async with`` block later
        does nothing more.

        Raises:
            ClientClosed: a background task had failed (its error is the cause).
        """
        if self._state is _ClientState.UNOPENED:
            return
        await self._shutdown(None)

    # --- session facts --------------------------------------------------------------------

    @property
    def server_info(self) -> Implementation | None:
        """The server's name and version (None before the handshake completed, or when a
        modern server did not say)."""
        era = self._session.strategy
        return era.server_info if era is not None else None

    @property
    def capabilities(self) -> ServerCapabilities | None:
        """What the server offers (None before the handshake completed)."""
        era = self._session.strategy
        return era.capabilities if era is not None else None

    @property
    def instructions(self) -> str | None:
        """The server's usage instructions for the model, if it sent any."""
        era = self._session.strategy
        return era.instructions if era is not None else None

    @property
    def era(self) -> Era | None:
        """``"modern"`` (2026-07-28, no handshake) or ``"legacy"`` (``initialize``
        handshake), as detected or forced; None before the session is ready."""
        return self._session.era

    @property
    def transport(self) -> str:
        """The transport in use: ``"streamable-http"``, ``"sse"`` or ``"stdio"`` (with
        ``transport="auto"``, the one detection settled on)."""
        return self._session.transport.name

    @property
    def protocol_version(self) -> str | None:
        """The negotiated protocol version."""
        era = self._session.strategy
        return era.protocol_version if era is not None else None

    @property
    def session_id(self) -> str | None:
        """The ``Mcp-Session-Id`` the server assigned, if it uses sessions."""
        return self._session.session_id

    @property
    def state(self) -> SessionState:
        """The session's state (new, initializing, ready, closing, closed)."""
        return self._session.state

    @property
    def stats(self) -> SessionStats:
        """Counters: requests, handshakes, peak queue, time to ready, dropped messages."""
        return self._session.stats

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the handshake completed (starting it if needed).

        Raises:
            RequestTimeout: not ready within ``timeout`` seconds.
            HandshakeError: the handshake failed (transport errors are raised as such).
        """
        self._check_open()
        deadline = math.inf if timeout is None else anyio.current_time() + timeout
        await self._session.wait_ready(deadline)

    # --- requests -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state is not _ClientState.OPEN:
            raise ClientClosed(
                "the client is not open: use `async with resilient_mcp.connect(url) as client`"
            )

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        idempotent: bool = False,
    ) -> Any:
        """Send any JSON-RPC request and return its raw ``result``.

        For methods this client has no helper for. ``idempotent=True`` allows re-sending
        it after a failure that leaves its fate unknown (reads are always idempotent).

        Raises:
            FateUnknown: a side-effecting ``tools/call`` may have run; not retried.
            MCPError: the request failed (see the error tree).
        """
        self._check_open()
        deadline = self._calls.deadline(timeout, retry)
        return await self._calls.call(
            method, params, deadline, progress=progress, retry=retry, idempotent=idempotent
        )


def connect(
    target: str | HTTPServer | StdioServer | Sequence[str] | Mapping[str, Any],
    /,
    **options: Unpack[ClientOptions],
) -> Client:
    """Connect to an MCP server (use as ``async with``).

    Args:
        target: what to connect to, one of

            - a URL (``"http://127.0.0.1:8000/mcp"``, or a legacy ``.../sse`` endpoint);
            - an :class:`~resilient_mcp.HTTPServer`, for headers, auth, a shared
              ``httpx`` client or a forced HTTP transport;
            - a command to start as a stdio server: ``["uvx", "my-server"]``, or a
              :class:`~resilient_mcp.StdioServer` for its environment, working directory
              and restart policy;
            - an ``mcpServers`` config entry as written for Claude Desktop, Cursor or
              FastMCP: ``{"command": ..., "args": [...], "env": {...}}`` or
              ``{"url": ..., "headers": {...}, "type": "sse"|"http"}`` (or a whole
              config naming exactly one server).
        **options: see :class:`~resilient_mcp.ClientOptions`.

    Returns:
        A :class:`Client`, to be entered with ``async with``.

    Raises:
        UsageError: on an unsupported target or an unknown option (at once).
        ConnectError: on entering the block: unreachable, or the command could not be
            started.
        HandshakeError: on entering the block: the handshake failed.
        UnsupportedProtocolVersion: on entering the block: no common version
            (including era="modern" against a legacy server).
        RequestTimeout: on entering the block: ``Timeouts.initialize`` ran out.
    """
    return Client(target, **options)
