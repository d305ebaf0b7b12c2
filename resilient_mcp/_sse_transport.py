"""Legacy HTTP+SSE (MCP 2024-11-05), client side.

The client opens one long GET on the SSE URL; the server's first event, ``endpoint``,
names the URL to POST messages to. A POST is only accepted (202): every answer and every
server message comes back as an ``event: message`` on the GET stream. Each new GET is a
*new, uninitialized* session, so the stream is (re)opened only at the start of a
handshake (:meth:`LegacySSETransport.reset_session` forgets the old one; the next
``send``, the ``initialize``, opens a new one). When the stream ends or breaks, the
session is told through the connection-lost handler: it fails every pending request at
once and starts one new handshake. The transport itself never reconnects.

Because the server accepts a POST before reading it, an accepted
``notifications/initialized`` is followed by a ``ping`` of the transport's own, whose
answer on the stream shows the server has read what came before (see ``_sync``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urljoin

import anyio
import anyio.abc
import httpx

from ._classify import FailureContext, classify_http
from ._config import Limits
from ._exceptions import (
    ConnectError,
    ConnectionLost,
    Execution,
    MCPError,
    ProtocolError,
    SessionLost,
)
from ._sse import SSEDecoder, SSEEventTooLarge
from ._transport import (
    _ERROR_BODY_LIMIT,
    _JSON,
    _SSE,
    Deliver,
    HTTPTransportBase,
    map_transport_errors,
)

__all__ = ["LegacySSETransport"]


class _Stream:
    """One GET stream (= one server session) and what its reader found out."""

    __slots__ = ("endpoint", "error", "ready", "scope", "stopped", "syncs")

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.ready = anyio.Event()  # set once the endpoint is known, or the GET failed
        self.endpoint: httpx.URL | None = None
        self.error: MCPError | None = None
        self.stopped = False  # closed by us: its end is not a loss to report
        self.syncs: dict[str, anyio.Event] = {}  # our own pings, by id, awaiting the pong

    def stop(self) -> None:
        self.stopped = True
        self.scope.cancel()


class LegacySSETransport(HTTPTransportBase):
    """HTTP+SSE (MCP 2024-11-05), client side. Same keywords as the Streamable HTTP one."""

    name = "sse"

    @property
    def cancels_by_closing(self) -> bool:
        # Answers come on the shared GET stream, never on the POST: closing a POST
        # cancels nothing, in either era (mcp 2.3 serves the modern era here too).
        return False

    def _init_state(self, limits: Limits) -> None:
        self._deliver: Deliver | None = None
        self._on_lost: Callable[[str], None] = _ignore
        self._stream: _Stream | None = None
        # Set when the stream of the current session ended: nothing may be sent until
        # the next handshake (a new GET now would be a new, uninitialized session).
        self._lost = False
        self._connect_lock = anyio.Lock()
        self._syncs = 0

    @property
    def endpoint(self) -> str | None:
        """The URL messages are POSTed to, while a stream is open."""
        stream = self._stream
        return None if stream is None or stream.endpoint is None else str(stream.endpoint)

    def set_connection_lost_handler(self, handler: Callable[[str], None]) -> None:
        self._on_lost = handler

    async def open(self, deliver: Deliver, task_group: anyio.abc.TaskGroup) -> None:
        # Nothing on the network yet: the GET stream is opened by the first send.
        self._deliver = deliver
        self._task_group = task_group
        # The GET stream holds one connection for the session's lifetime.
        self._open_client(max_connections=self._max_connections + 1)

    # --- sending ---------------------------------------------------------------------

    async def send(
        self,
        message: Mapping[str, Any],
        ctx: FailureContext,
        *,
        on_sent: Callable[[], None] | None = None,
    ) -> bool:
        endpoint = await self._endpoint(ctx)
        await self._post(endpoint, message, ctx, on_sent)
        if message.get("method") == "notifications/initialized":
            await self._sync(ctx)
        # Accepted: a request's answer comes on the GET stream.
        return not ("method" in message and "id" in message)

    async def _post(
        self,
        endpoint: httpx.URL,
        message: Mapping[str, Any],
        ctx: FailureContext,
        on_sent: Callable[[], None] | None,
    ) -> None:
        """POST one message; returns once the server accepted it (2xx)."""
        client = self._require_client()
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Accept": _JSON, **self._extra_headers, "Content-Type": _JSON}
        request = client.build_request(
            "POST", endpoint, content=body, headers=headers, timeout=self._http_timeout
        )
        sent = False

        def was_sent() -> bool:
            return sent

        with map_transport_errors(ctx, sent=was_sent):
            sent = True
            if on_sent is not None:
                on_sent()
            response = await client.send(request, stream=True, auth=self._auth_arg())
            try:
                status = response.status_code
                if 200 <= status < 300:
                    return
                error_body = await _read_limited(response, _ERROR_BODY_LIMIT)
                raise classify_http(
                    status,
                    response.headers.get("content-type", ""),
                    error_body,
                    ctx,
                    retry_after=response.headers.get("retry-after"),
                )
            finally:
                with anyio.CancelScope(shield=True):
                    await response.aclose()

    async def _sync(self, ctx: FailureContext) -> None:
        """Wait until the server has read what was POSTed so far (best effort).

        The 202 for a POST comes *before* the server reads the message (Python SDK 1.x),
        so an accepted `notifications/initialized` may still be unread when the gate
        opens, and a request POSTed right after it may overtake it. A `ping` (answered
        even before initialization) POSTed after it and answered on the stream makes
        that unlikely: a server reads its messages in order. It cannot make it certain
        (the ping itself may overtake), and the answer proves nothing more; a failure
        here is not the handshake's (the next request finds out).
        """
        stream = self._stream
        if stream is None or stream.endpoint is None:
            return
        self._syncs += 1
        sync_id = f"resilient-mcp-sync-{self._syncs}"
        answered = anyio.Event()
        stream.syncs[sync_id] = answered
        ping = {"jsonrpc": "2.0", "id": sync_id, "method": "ping"}
        try:
            with anyio.move_on_after(self._timeouts.connect):
                await self._post(stream.endpoint, ping, ctx, None)
                await answered.wait()
        except MCPError as exc:
            self._log.debug("sse.sync_failed", error=repr(exc))
        finally:
            stream.syncs.pop(sync_id, None)

    async def _endpoint(self, ctx: FailureContext) -> httpx.URL:
        """The current session's POST URL, opening the GET stream if there is none yet."""
        if self._stream is not None and self._stream.endpoint is not None:
            return self._stream.endpoint
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
                return stream.endpoint
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
        with stream.scope:
            try:
                with map_transport_errors(FailureContext(), sent=lambda: False):
                    reason = await self._consume(stream)
            except MCPError as exc:
                reason = f"SSE stream failed: {exc.message}"
                if stream.endpoint is None:
                    stream.error = exc
            except Exception as exc:  # never let the reader kill the task group
                reason = f"SSE stream failed unexpectedly: {exc!r}"
                if stream.endpoint is None:
                    stream.error = ConnectionLost(reason, execution=Execution.NOT_EXECUTED)
        had_endpoint = stream.endpoint is not None
        for answered in stream.syncs.values():
            answered.set()  # no pong will come on a closed stream
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
            self._on_lost(reason)

    async def _consume(self, stream: _Stream) -> str:
        """Read the stream; returns why it ended (when it ended without an exception)."""
        client = self._require_client()
        headers = {"Accept": _SSE, **self._extra_headers}
        async with client.stream(
            "GET", self._url, headers=headers, timeout=self._http_timeout, auth=self._auth_arg()
        ) as response:
            content_type = response.headers.get("content-type", "")
            if response.status_code != 200 or not content_type.lower().startswith(_SSE):
                body = await _read_limited(response, _ERROR_BODY_LIMIT)
                stream.error = classify_http(
                    response.status_code, content_type, body, FailureContext()
                )
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
                            # Shown in logs and errors like an Mcp-Session-Id.
                            self.session_id = stream.endpoint.params.get("session_id")
                            self._log.debug("sse.endpoint", endpoint=str(stream.endpoint))
                            stream.ready.set()
                    elif event.event == "message" and stream.endpoint is not None:
                        self._deliver_event(stream, event.data)
        return "the server closed the SSE stream"

    def _resolve(self, data: str) -> httpx.URL:
        endpoint = httpx.URL(urljoin(str(self._url), data.strip()))
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

    def _deliver_event(self, stream: _Stream, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            self._log.warning("sse.malformed_event", size=len(data))
            return
        if isinstance(message, dict) and "method" not in message:
            message_id = message.get("id")
            answered = stream.syncs.get(message_id) if isinstance(message_id, str) else None
            if answered is not None:
                answered.set()  # the answer to our own ping: not the session's
                return
        if self._deliver is not None:
            self._deliver(message)

    # --- lifecycle ------------------------------------------------------------------

    async def reset_session(self) -> None:
        # A handshake starts: forget the old session; its `initialize` opens a new GET.
        self._drop_stream()
        self._lost = False
        self.session_id = None
        self.protocol_version = None

    async def end_session(self) -> None:
        self._drop_stream()

    async def aclose(self) -> None:
        self._closed = True
        self._drop_stream()
        await self._close_client()

    def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()


async def _read_limited(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk[: limit - size])
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)


def _ignore(reason: str) -> None:
    pass
