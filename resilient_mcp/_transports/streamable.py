"""Streamable HTTP, client side: every message is its own POST; answers come back in the
POST's body (JSON or an SSE stream), or later on the optional standalone GET stream.

Both eras use it; what differs reaches the transport in each message's
:class:`~.base.SendContext`: the session id and version headers, the modern era's
routing headers, and whether a dropped response stream may be resumed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.lowlevel
import httpx

from .._classify import classify_http
from .._config import Limits, Timeouts
from .._exceptions import ConnectionLost, Execution, MalformedMessage, MCPError, MessageTooLarge
from .._log import Logger
from .._retry import backoff_sleep
from .._targets import HTTPServer
from .admission import PRIORITY_LANE, Admission, Ticket
from .base import (
    DELIVERED,
    Peer,
    Receipt,
    SendContext,
    answers,
    map_transport_errors,
    never_sent,
    run_guarded,
)
from .http import ERROR_BODY_LIMIT, JSON, SSE, HTTPTransportBase, content_type, read_limited
from .limiter import limiter_for
from .sse_decoder import SSEDecoder, SSEEventTooLarge

if TYPE_CHECKING:
    from .._http_stack import HTTPStack

__all__ = ["StreamableHTTPTransport"]

# How often a dropped response stream is resumed with Last-Event-ID before giving up.
_MAX_RESUMES = 2
# Reconnection delay when the server sent no `retry:` field (the SSE spec leaves it to us).
_DEFAULT_RETRY_S = 1.0
_MAX_RETRY_S = 30.0
_MAX_GET_STREAM_FAILURES = 3
# Connections our own HTTP client may open (admitted exchanges, long ones, GET stream).
_POOL_CAP = 100
# How long an answered response stream may take to end before we close it ourselves. A
# server that ends its stream does so right after the answer (well under a millisecond
# on loopback); the margin is for a loaded event loop, where a false alarm would cost
# this client a new connection per call from then on.
_END_GRACE_S = 0.25


class StreamableHTTPTransport(HTTPTransportBase):
    """Streamable HTTP (MCP 2025-03-26 and later), client side."""

    name = "streamable-http"
    per_request_streams = True

    def __init__(
        self, server: HTTPServer, *, timeouts: Timeouts, limits: Limits, logger: Logger
    ) -> None:
        super().__init__(server, timeouts=timeouts, limits=limits, logger=logger)
        self._peer: Peer | None = None
        self._listen_scope: anyio.CancelScope | None = None
        # httpcore's pool rescans every queued request against every connection on each
        # change (quadratic): 500 callers on 100 connections spend >90% of their time
        # there. Few exchanges at a time, the rest queued here at O(1); see admission.
        # How many: adaptive between Limits.min_connections and max_connections.
        self._admission = Admission(limiter_for(limits), long_after=limits.long_request)
        self._refusals = self._stack.connect_errors
        # Set once the server kept an answered stream open past the grace: see _finish.
        self._streams_linger = False
        # What a dropped response stream raises while it is read (this stack's classes).
        self._dropped = _dropped_errors(self._stack)

    @property
    def listening(self) -> bool:
        """True while the standalone GET stream is open."""
        return self._listen_scope is not None

    async def open(self, peer: Peer, task_group: anyio.abc.TaskGroup) -> None:
        self._peer = peer
        self._task_group = task_group
        self._admission.bind(task_group)
        # Room for long exchanges, which stop counting against the admission limit, the
        # priority lane and the GET stream: admitted exchanges never wait in the client's pool.
        self._open_client(max_connections=max(_POOL_CAP, self._max_connections + PRIORITY_LANE + 1))

    # --- sending ---------------------------------------------------------------------

    async def send(
        self, body: bytes, ctx: SendContext, *, on_sent: Callable[[], None] | None = None
    ) -> Receipt:
        client = self._require_client(ctx)
        headers = self._headers(f"{JSON}, {SSE}", ctx)
        headers["Content-Type"] = JSON
        request = client.build_request(
            "POST", self._url, content=body, headers=headers, timeout=self._http_timeout
        )
        sent = False

        def was_sent() -> bool:
            return sent

        with map_transport_errors(ctx, sent=was_sent, stack=self._stack):
            ticket = await self._admit(ctx)
            stream = _Stream()
            try:
                # The last moment a caller may still withdraw the message (its session
                # was lost while it waited): a cancellation that arrived with the slot
                # is honoured here, before the message counts as sent.
                await anyio.lowlevel.checkpoint_if_cancelled()
                # From here on the server may get the message: any failure but a refused
                # connection (ConnectError, mapped above) leaves its fate unknown.
                sent = True
                if on_sent is not None:
                    on_sent()
                try:
                    stream.response = await client.send(request, stream=True, auth=self._auth_arg())
                except self._refusals:
                    if ticket is not None:
                        self._admission.refused(ticket)  # overload: the limit shrinks
                    raise
                if ticket is not None:
                    self._admission.answered(ticket, stream.response.status_code)  # 429/503
                receipt = await self._read_post_response(stream, ctx)
                if ticket is not None and ctx.kind == "request":
                    self._admission.completed(ticket)  # the limiter's latency sample
                return receipt
            finally:
                # The slot goes back once the connection is free again: released before
                # the end of the stream was read, it let another exchange start on a new
                # connection, and under load the pool churned through connections (88
                # new ones per 2,560 calls at 32 callers, against 7; measured).
                try:
                    await self._finish(stream)
                finally:
                    if ticket is not None:
                        self._admission.release(ticket)

    async def _admit(self, ctx: SendContext) -> Ticket | None:
        """A slot for this message: none for answers to the server (the calls in the
        admission queue may be waiting for exactly these answers; their number is bounded
        by ``Limits.max_server_requests``), the priority lane for what the caller marked
        so (never behind ordinary exchanges), the FIFO for the rest."""
        if ctx.kind == "response":
            return None
        if ctx.priority:
            return await self._admission.acquire_priority()
        return await self._admission.acquire()

    async def _read_post_response(self, stream: _Stream, ctx: SendContext) -> Receipt:
        response = stream.response
        assert response is not None
        is_request = ctx.kind == "request"
        status = response.status_code
        kind = content_type(response)
        # Only a successful answer may assign a session: the Python SDK also puts a fresh,
        # never-initialized id on its 400 "Missing session ID" answers (a trap).
        # A message that names its session cannot be assigned another (only the answer
        # to initialize assigns one), so only the others are looked at.
        session_id = (
            response.headers.get("mcp-session-id")
            if ctx.session_id is None and response.is_success
            else None
        )
        if status == 202 or (200 <= status < 300 and not is_request and not kind):
            return Receipt("accepted", session_id) if is_request else DELIVERED
        if not 200 <= status < 300:
            body = await read_limited(response, ERROR_BODY_LIMIT, ctx, truncate=True)
            raise classify_http(
                status, kind, body, ctx, retry_after=response.headers.get("retry-after")
            )
        if kind.startswith(SSE):
            await self._read_sse_response(stream, ctx)
            return Receipt("delivered", session_id)
        if kind.startswith(JSON) or "+json" in kind:
            body = await read_limited(response, self._max_size, ctx)
            if not is_request and not body.strip():
                return DELIVERED  # an empty JSON answer to a notification: accepted
            self._deliver_json_body(body, ctx)
            return Receipt("delivered", session_id)
        body = await read_limited(response, ERROR_BODY_LIMIT, ctx, truncate=True)
        if not is_request and not body:
            return DELIVERED
        raise classify_http(status, kind, body, ctx)

    def _deliver(self, message: Any) -> None:
        if self._peer is not None:
            self._peer.deliver(message)

    def _deliver_json_body(self, body: bytes, ctx: SendContext) -> None:
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise MalformedMessage(f"response is not valid JSON: {exc}", **ctx.context()) from exc
        messages = doc if isinstance(doc, list) else [doc]
        answered = False
        for item in messages:
            if ctx.kind == "request" and answers(item, ctx.request_id):
                answered = True
            self._deliver(item)
        if ctx.kind == "request" and not answered:
            raise MalformedMessage(
                "the response body holds no answer to this request (wrong or missing id)",
                **ctx.context(),
            )

    async def _read_sse_response(self, stream: _Stream, ctx: SendContext) -> None:
        """Deliver the stream's messages until the answer to the request is in.

        Leaves the rest of the stream in ``stream.rest`` for :meth:`_finish`.
        """
        decoder = SSEDecoder(self._max_size)
        request_id = ctx.request_id if ctx.kind == "request" else None
        resumes = 0
        malformed = 0
        while True:
            assert stream.response is not None
            chunks = stream.response.aiter_bytes()
            try:
                async for chunk in chunks:
                    found = False
                    for event in decoder.feed(chunk):
                        answered, bad = self._deliver_event(event.data, request_id)
                        malformed += bad
                        found = found or answered
                    if found:
                        stream.rest = chunks
                        return
            except SSEEventTooLarge as exc:
                raise MessageTooLarge(str(exc), **ctx.context()) from exc
            except self._dropped as exc:
                # A dropped connection is not a cancellation: resume below if we can.
                self._log.debug("sse.dropped", error=str(exc), request_id=request_id)
            if request_id is None:
                return
            if not ctx.resumable or decoder.last_event_id is None or resumes >= _MAX_RESUMES:
                if malformed:
                    raise MalformedMessage(
                        f"response stream ended without an answer ({malformed} malformed "
                        "event(s) skipped)",
                        execution=Execution.MAYBE,
                        **ctx.context(),
                    )
                raise ConnectionLost(
                    "response stream ended before the answer arrived", **ctx.context()
                )
            resumes += 1
            decoder.end_of_stream()
            await backoff_sleep(_retry_delay(decoder))  # the server's `retry:`
            with anyio.CancelScope(shield=True):
                await stream.response.aclose()
            stream.response = await self._resume(decoder.last_event_id, ctx)

    async def _resume(self, last_event_id: str, ctx: SendContext) -> httpx.Response:
        client = self._require_client(ctx)
        headers = self._headers(SSE, ctx)
        headers["Last-Event-ID"] = last_event_id
        request = client.build_request(
            "GET", self._url, headers=headers, timeout=self._http_timeout
        )
        response = await client.send(request, stream=True, auth=self._auth_arg())
        if response.status_code != 200 or not content_type(response).startswith(SSE):
            body = await read_limited(response, ERROR_BODY_LIMIT, ctx, truncate=True)
            await response.aclose()
            refused = classify_http(response.status_code, content_type(response), body, ctx)
            # The request was sent and may have run; a refused resume cannot change that.
            # Whatever the refusal says (even "session not found"), the request's fate is
            # unknown: it is not "certainly not executed" like a refused request would be.
            raise ConnectionLost(
                f"response stream dropped and could not be resumed: {refused.message}",
                **ctx.context(),
            ) from refused
        return response

    def _deliver_event(self, data: str, request_id: Any) -> tuple[bool, int]:
        """Deliver one SSE event's message; returns (it answered request_id, malformed)."""
        if not data:
            return False, 0  # priming event: an id for resumption, no message
        try:
            message = json.loads(data)
        except ValueError:
            self._log.warning("sse.malformed_event", request_id=request_id, size=len(data))
            return False, 1
        self._deliver(message)
        return request_id is not None and answers(message, request_id), 0

    async def _finish(self, stream: _Stream) -> None:
        """Close an exchange's response, reading an answered stream to its end first.

        Reading to the end lets httpx reuse the connection, where closing it unread
        drops it and costs the next request a new one. A server usually ends its stream
        right after the answer (the spec: it SHOULD). One that keeps it open gets
        ``_END_GRACE_S``, once: from then on its answered streams are closed at once
        (the transport remembers), so it costs no other call anything, nor holds a
        connection slot. (Reading the rest in a task of its own instead was measured: a
        task per call, and a pool that grows because the next request finds the
        connection still busy, cost ~15 % more CPU per call.)
        """
        response, rest = stream.response, stream.rest
        if response is None:
            return
        if rest is not None and not self._streams_linger:
            with anyio.move_on_after(_END_GRACE_S) as scope:
                try:
                    async for _ in rest:
                        pass
                except Exception:  # noqa: S110 - answered: how the stream ends does not matter
                    pass
            if scope.cancelled_caught:
                self._streams_linger = True
                self._log.debug("sse.answered_streams_linger")
        with anyio.CancelScope(shield=True):
            await response.aclose()

    # --- the standalone GET stream ------------------------------------------------------

    async def listen(self, ctx: SendContext) -> None:
        """Open the standalone GET stream; returns once the server answered the GET (or
        after ``Timeouts.connect``), so that what follows can count on it being there:
        a JSON-mode server can send its requests nowhere else."""
        if self._task_group is None or self._listen_scope is not None or self._closed:
            return
        scope = anyio.CancelScope()
        self._listen_scope = scope
        answered = anyio.Event()
        self._task_group.start_soon(self._listen, ctx, scope, answered)
        with anyio.move_on_after(self._timeouts.connect):
            await answered.wait()

    async def _listen(
        self, ctx: SendContext, scope: anyio.CancelScope, answered: anyio.Event
    ) -> None:
        with scope:
            await run_guarded(
                lambda: self._listen_loop(ctx, answered),
                on_failure=lambda exc: self._log.warning("get_stream.failed", error=repr(exc)),
                stack=self._stack,
            )
        answered.set()
        if scope is self._listen_scope:
            self._listen_scope = None

    async def _listen_loop(self, ctx: SendContext, answered: anyio.Event) -> None:
        decoder = SSEDecoder(self._max_size)
        failures = 0
        while not self._closed and failures < _MAX_GET_STREAM_FAILURES:
            try:
                with map_transport_errors(ctx, sent=never_sent, stack=self._stack):
                    delivered = await self._listen_once(ctx, decoder, answered)
                if delivered is None:
                    return
                if delivered:
                    failures = 0  # it was healthy, then ended: start counting afresh
            except MessageTooLarge:
                self._log.warning("get_stream.event_too_large", limit=self._max_size)
                decoder = SSEDecoder(self._max_size)
            except MCPError as exc:
                self._log.debug("get_stream.dropped", error=exc.message)
            answered.set()  # a GET that failed: nobody should wait for it
            decoder.end_of_stream()
            failures += 1
            if failures >= _MAX_GET_STREAM_FAILURES:
                # What the server sends on its own is lost from here on: say so.
                self._log.warning("get_stream.given_up", failures=failures)
                return
            await backoff_sleep(_retry_delay(decoder))  # the server's `retry:`

    async def _listen_once(
        self, ctx: SendContext, decoder: SSEDecoder, answered: anyio.Event
    ) -> int | None:
        """One GET: how many events it delivered, or None if the server has no stream
        for us (stop listening).

        Raises:
            MessageTooLarge: an event over the size limit (the stream is given up).
        """
        client = self._require_client(ctx)
        headers = self._headers(SSE, ctx)
        if decoder.last_event_id is not None:
            headers["Last-Event-ID"] = decoder.last_event_id
        delivered = 0
        async with client.stream(
            "GET", self._url, headers=headers, timeout=self._http_timeout, auth=self._auth_arg()
        ) as response:
            answered.set()
            if response.status_code == 405:
                self._log.debug("get_stream.unsupported")
                return None
            if response.status_code != 200 or not content_type(response).startswith(SSE):
                self._log.info("get_stream.refused", status=response.status_code)
                return None
            try:
                async for chunk in response.aiter_bytes():
                    for event in decoder.feed(chunk):
                        delivered += 1
                        self._deliver_event(event.data, None)
            except SSEEventTooLarge as exc:
                raise MessageTooLarge(str(exc), **ctx.context()) from exc
        return delivered

    # --- lifecycle ------------------------------------------------------------------

    async def reset(self) -> None:
        # The stream belonged to the old session; the next one opens its own.
        if self._listen_scope is not None:
            self._listen_scope.cancel()
            self._listen_scope = None

    async def end_session(self, ctx: SendContext) -> None:
        if ctx.session_id is None or self._client is None or self._closed:
            return
        with anyio.move_on_after(self._timeouts.close, shield=True):
            try:
                with map_transport_errors(ctx, sent=never_sent, stack=self._stack):
                    response = await self._client.request(
                        "DELETE",
                        self._url,
                        headers=self._headers(f"{JSON}, {SSE}", ctx),
                        timeout=self._http_timeout,
                        auth=self._auth_arg(),
                    )
            except MCPError as exc:
                self._log.debug("session.delete_failed", error=exc.message)
                return
            # 405: the server does not let clients end sessions; that is allowed.
            self._log.debug("session.deleted", status=response.status_code)

    async def aclose(self) -> None:
        self._closed = True
        await self.reset()
        await self._close_client()


class _Stream:
    """One POST's response (or, after a resume, its GET continuation) and what is left."""

    __slots__ = ("response", "rest")

    def __init__(self) -> None:
        self.response: httpx.Response | None = None
        self.rest: AsyncIterator[bytes] | None = None


def _retry_delay(decoder: SSEDecoder) -> float:
    # The server's `retry:` is honoured, but a server cannot park us for hours.
    if decoder.retry is None:
        return _DEFAULT_RETRY_S
    return min(decoder.retry / 1000, _MAX_RETRY_S)


@functools.cache
def _dropped_errors(stack: HTTPStack) -> tuple[type[Exception], ...]:
    """What a dropped response stream raises while it is read: one tuple per stack, not
    one per session."""
    return (*stack.transport_errors, OSError)
