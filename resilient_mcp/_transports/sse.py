"""Legacy HTTP+SSE (MCP 2024-11-05), client side.

The client opens one long GET on the SSE URL; the server's first event, ``endpoint``,
names the URL to POST messages to. A POST is only accepted (202): every answer and every
server message comes back as an ``event: message`` on the GET stream. Each new GET is a
*new, uninitialized* session, so the stream is (re)opened only at the start of a
handshake (:meth:`LegacySSETransport.reset` forgets the old one; the next ``send``, the
``initialize``, opens a new one). When the stream ends or breaks, the peer is told
(:meth:`~.base.Peer.lost`): it fails every pending request at once and starts one new
handshake. The transport itself never reconnects.

The server accepts a POST *before* it reads it, so a confirmed delivery does not mean
the message was processed (``acknowledges_before_processing``): the session decides
what to do about that, not the transport.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import urljoin

import anyio
import anyio.abc
import httpx

from .._classify import FailureContext, classify_http
from .._config import Limits, Timeouts
from .._exceptions import (
    ConnectError,
    ConnectionLost,
    Execution,
    MCPError,
    ProtocolError,
    SessionLost,
)
from .._log import Logger
from .._targets import HTTPServer
from .base import (
    DELIVERED,
    Peer,
    Receipt,
    SendContext,
    map_transport_errors,
    run_guarded,
)
from .http import ERROR_BODY_LIMIT, JSON, SSE, HTTPTransportBase, content_type, read_limited
from .limiter import START_LIMIT
from .sse_decoder import SSEDecoder, SSEEventTooLarge

__all__ = ["LegacySSETransport"]


class _Stream:
    """One GET stream (= one server session) and what its reader found out."""

    __slots__ = ("endpoint", "error", "ready", "scope", "session_id", "stopped")

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.ready = anyio.Event()  # set once the endpoint is known, or the GET failed
        self.endpoint: httpx.URL | None = None
        self.session_id: str | None = None  # the endpoint's, shown like an Mcp-Session-Id
        self.error: MCPError | None = None
        self.stopped = False  # closed by us: its end is not a loss to report

    def stop(self) -> None:
        self.stopped = True
        self.scope.cancel()


class LegacySSETransport(HTTPTransportBase):
    """HTTP+SSE (MCP 2024-11-05), client side."""

    name = "sse"
    # Answers come on the shared GET stream, never on the POST: closing a POST cancels
    # nothing, in either era (mcp 2.3 serves the modern era here too).
    per_request_streams = False
    acknowledges_before_processing = True

    def __init__(
        self, server: HTTPServer, *, timeouts: Timeouts, limits: Limits, logger: Logger
    ) -> None:
        super().__init__(server, timeouts=timeouts, limits=limits, logger=logger)
        self._adaptive = limits.min_connections < limits.max_connections
        self._peer: Peer | None = None
        self._stream: _Stream | None = None
        # Set when the stream of the current session ended: nothing may be sent until
        # the next handshake (a new GET now would be a new, uninitialized session).
        self._lost = False
        self._connect_lock = anyio.Lock()

    @property
    def endpoint(self) -> str | None:
        """The URL messages are POSTed to, while a stream is open."""
        stream = self._stream
        return None if stream is None or stream.endpoint is None else str(stream.endpoint)

    async def open(self, peer: Peer, task_group: anyio.abc.TaskGroup) -> None:
        # Nothing on the network yet: the GET stream is opened by the first send.
        self._peer = peer
        self._task_group = task_group
        # The GET stream holds one connection for the session's lifetime. POSTs are
        # answered 202 before the server works, so its latency never caps them: an
        # adaptive limit keeps the pool at the starting size (see Limits).
        pool = self._max_connections
        if self._adaptive:
            pool = min(pool, START_LIMIT)
        self._open_client(max_connections=pool + 1)

    # --- sending ---------------------------------------------------------------------

    async def send(
        self, body: bytes, ctx: SendContext, *, on_sent: Callable[[], None] | None = None
    ) -> Receipt:
        stream = await self._connected(ctx)
        assert stream.endpoint is not None
        await self._post(stream.endpoint, body, ctx, on_sent)
        # Accepted: a request's answer comes on the GET stream.
        if ctx.kind == "request":
            return Receipt("later", stream.session_id)
        return Receipt(DELIVERED.answer, stream.session_id)

    async def _post(
        self,
        endpoint: httpx.URL,
        body: bytes,
        ctx: SendContext,
        on_sent: Callable[[], None] | None,
    ) -> None:
        """POST one message; returns once the server accepted it (2xx)."""
        client = self._require_client(ctx)
        headers = {**self._extra_headers, "Accept": JSON, "Content-Type": JSON}
        request = client.build_request(
            "POST", endpoint, content=body, headers=headers, timeout=self._http_timeout
        )
        sent = False

        def was_sent() -> bool:
            return sent

        with map_transport_errors(ctx, sent=was_sent, stack=self._stack):
            sent = True
            if on_sent is not None:
                on_sent()
            response = await client.send(request, stream=True, auth=self._auth_arg())
            try:
                status = response.status_code
                if 200 <= status < 300:
                    return
                error_body = await read_limited(response, ERROR_BODY_LIMIT, ctx, truncate=True)
                raise classify_http(
                    status,
                    content_type(response),
                    error_body,
                    ctx,
                    retry_after=response.headers.get("retry-after"),
                )
            finally:
                with anyio.CancelScope(shield=True):
                    await response.aclose()

    async def _connected(self, ctx: FailureContext) -> _Stream:
        """The current session's stream, opening the GET stream if there is none yet."""
        if self._stream is not None and self._stream.endpoint is not None:
            return self._stream
        async with self._connect_lock:
            if self._closed:
                raise ProtocolError("transport is closed", **ctx.context())
            if self._lost:
                # The session's stream is gone; only a new handshake may open another.
                raise SessionLost("the SSE stream of this session was lost", **ctx.context())
            if self._stream is None:
                self._connect()
            stream = self._stream
            assert stream is not None
            with anyio.move_on_after(self._timeouts.connect):
                await stream.ready.wait()
            if stream.endpoint is not None:
                return stream
            error = stream.error
            if stream is self._stream:
                self._stream = None
                stream.stop()
            if error is None:
                error = ConnectError(
                    f"no endpoint event within {self._timeouts.connect} s", **ctx.context()
                )
            raise error._with_context(**ctx.context())

    def _connect(self) -> None:
        if self._task_group is None:
            raise ProtocolError("transport is not open")
        stream = _Stream()
        self._stream = stream
        self._task_group.start_soon(self._read_stream, stream)

    # --- the GET stream --------------------------------------------------------------

    async def _read_stream(self, stream: _Stream) -> None:
        reason = "the server closed the SSE stream"

        def failed(exc: MCPError) -> None:
            nonlocal reason
            reason = f"SSE stream failed: {exc.message}"
            if stream.endpoint is None:
                stream.error = exc

        async def consume() -> None:
            nonlocal reason
            reason = await self._consume(stream)

        with stream.scope:
            await run_guarded(consume, on_failure=failed, stack=self._stack)
        had_endpoint = stream.endpoint is not None
        if not stream.ready.is_set():
            stream.error = stream.error or ConnectionLost(
                "the SSE stream ended before the endpoint event",
                execution=Execution.NOT_EXECUTED,
            )
            stream.ready.set()
        if stream.stopped or self._closed or stream is not self._stream:
            return
        self._stream = None
        if had_endpoint:
            self._lost = True
            self._log.info("sse.stream_lost", reason=reason)
            if self._peer is not None:
                self._peer.lost(reason)

    async def _consume(self, stream: _Stream) -> str:
        """Read the stream; returns why it ended (when it ended without an exception)."""
        ctx = FailureContext()
        client = self._require_client(ctx)
        headers = {**self._extra_headers, "Accept": SSE}
        async with client.stream(
            "GET", self._url, headers=headers, timeout=self._http_timeout, auth=self._auth_arg()
        ) as response:
            kind = content_type(response)
            if response.status_code != 200 or not kind.startswith(SSE):
                body = await read_limited(response, ERROR_BODY_LIMIT, ctx, truncate=True)
                stream.error = classify_http(response.status_code, kind, body, ctx)
                stream.error.execution = Execution.NOT_EXECUTED
                return f"GET refused with HTTP {response.status_code}"
            decoder = SSEDecoder(self._max_size)
            async for chunk in response.aiter_bytes():
                try:
                    events = list(decoder.feed(chunk))
                except SSEEventTooLarge as exc:
                    return f"SSE event too large: {exc}"
                for event in events:
                    if event.event == "endpoint":
                        if stream.endpoint is None:
                            stream.endpoint = self._resolve(event.data)
                            stream.session_id = stream.endpoint.params.get("session_id")
                            self._log.debug("sse.endpoint", endpoint=str(stream.endpoint))
                            stream.ready.set()
                    elif event.event == "message" and stream.endpoint is not None:
                        self._deliver_event(event.data)
        return "the server closed the SSE stream"

    def _resolve(self, data: str) -> httpx.URL:
        endpoint = self._stack.url(urljoin(str(self._url), data.strip()))
        if (endpoint.scheme, endpoint.host, endpoint.port) != (
            self._url.scheme,
            self._url.host,
            self._url.port,
        ):
            raise ProtocolError(
                "the endpoint event names a different origin than the SSE URL",
                execution=Execution.NOT_EXECUTED,
            )
        return endpoint

    def _deliver_event(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            self._log.warning("sse.malformed_event", size=len(data))
            return
        if self._peer is not None:
            self._peer.deliver(message)

    # --- lifecycle ------------------------------------------------------------------

    async def reset(self) -> None:
        # A handshake starts: forget the old session; its `initialize` opens a new GET.
        stream = self._stream
        self._drop_stream()
        self._lost = False
        if stream is not None and stream.endpoint is not None and self._peer is not None:
            # The recovery may have begun on a POST's 404 before this stream's own end
            # was read (a restarted server): what the old session accepted can only be
            # answered on it, so it fails now (may have run) instead of at its deadline.
            self._peer.lost("the SSE stream of the replaced session was abandoned")

    async def end_session(self, ctx: SendContext) -> None:
        self._drop_stream()

    async def aclose(self) -> None:
        self._closed = True
        self._drop_stream()
        await self._close_client()

    def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
