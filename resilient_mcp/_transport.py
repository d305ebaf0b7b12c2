"""Transports move JSON-RPC messages; they know nothing about MCP sessions or methods.

A transport gets messages to the server (:meth:`Transport.send`) and hands every message
that comes back to a ``deliver`` callback given by the session. For Streamable HTTP the
answer to a request arrives in the body of its own POST, so ``send`` returns only after
that body has been read (and delivered); transports with one shared channel (stdio,
legacy SSE) deliver answers later, from a reader task.

This module is also the one place where exceptions of the layers below (``httpx``,
sockets, anyio) become :class:`~resilient_mcp.MCPError`\\ s: see
:func:`map_transport_errors`.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import json
import ssl
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import anyio
import httpx
from httpx._client import UseClientDefault

from ._admission import Admission
from ._classify import FailureContext, classify_http
from ._config import Limits, Timeouts
from ._detect import http_key
from ._exceptions import (
    ConnectError,
    ConnectionLost,
    Execution,
    MalformedMessage,
    MCPError,
    MessageTooLarge,
    ProtocolError,
    TransportError,
)
from ._headers import ParamHeader, routing_headers
from ._log import Logger
from ._retry import backoff_sleep
from ._sse import SSEDecoder, SSEEventTooLarge

__all__ = [
    "Deliver",
    "HTTPTransportBase",
    "StreamableHTTPTransport",
    "Transport",
    "map_transport_errors",
]

Deliver = Callable[[Any], None]
"""Called with every decoded message from the server (any JSON value; the session checks)."""

_JSON = "application/json"
_SSE = "text/event-stream"
_ERROR_BODY_LIMIT = 64 * 1024
# How often a dropped response stream is resumed with Last-Event-ID before giving up.
_MAX_RESUMES = 2
# Reconnection delay when the server sent no `retry:` field (the SSE spec leaves it to us).
_DEFAULT_RETRY_S = 1.0
_MAX_RETRY_S = 30.0
_MAX_GET_STREAM_FAILURES = 3
# Connections our own httpx client may open (admitted exchanges, long ones, GET stream).
_POOL_CAP = 100
# How long an answered response stream may stay open before we close it ourselves.
_DRAIN_GRACE_S = 0.5


@functools.cache
def _shared_ssl_context() -> ssl.SSLContext:
    # Building a verifying SSL context (loading the CA bundle) costs ~20-30 ms; httpx does
    # it for every AsyncClient, even for plain-http URLs. One context per process serves
    # every client: SSLContext is safe to share between connections.
    return httpx.create_ssl_context()


@contextlib.contextmanager
def map_transport_errors(ctx: FailureContext, *, sent: Callable[[], bool]) -> Iterator[None]:
    """Translate httpx/socket errors raised inside the block into :class:`MCPError`.

    Args:
        ctx: the request the block works for.
        sent: tells whether the request had been handed to the network when the error
            happened (decides :attr:`MCPError.execution`).
    """
    kw = ctx.context()
    try:
        yield
    except MCPError:
        raise
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise ConnectError(f"could not connect: {exc or type(exc).__name__}", **kw) from exc
    except httpx.UnsupportedProtocol as exc:
        raise ConnectError(f"unsupported URL: {exc}", **kw) from exc
    except (httpx.TransportError, OSError, anyio.BrokenResourceError) as exc:
        # Read/write errors, RemoteProtocolError, timeouts of the layer below: the request
        # may or may not have reached the server.
        execution = Execution.MAYBE if sent() else Execution.NOT_EXECUTED
        raise ConnectionLost(
            f"connection lost: {exc or type(exc).__name__}", execution=execution, **kw
        ) from exc
    except Exception as exc:
        # A custom httpx transport or auth flow may raise anything; the caller still gets
        # one typed error (with the original as __cause__), never a foreign exception.
        execution = Execution.MAYBE if sent() else Execution.NOT_EXECUTED
        raise TransportError(
            f"unexpected failure in the HTTP layer: {exc!r}", execution=execution, **kw
        ) from exc


class Transport(abc.ABC):
    """The interface between a session and the wire."""

    name: str = ""
    """The transport's name in the public API: ``"streamable-http"``, ``"sse"``, ``"stdio"``."""
    session_id: str | None = None
    """The transport-level session id (``Mcp-Session-Id``), once the server assigned one."""
    protocol_version: str | None = None
    """The negotiated protocol version, sent as a header where the transport has headers."""
    modern: bool = False
    """True while the session speaks the modern era (2026-07-28): no sessions, routing
    headers on every request, cancellation by closing the response stream."""
    tool_param_headers: Callable[[str], tuple[ParamHeader, ...]] | None = None
    """Looks up a tool's ``x-mcp-header`` annotations (the client's tool cache knows)."""

    def detection_key(self) -> str | None:
        """The key under which this server's detected era is cached (None: not cached)."""
        return None

    @property
    def cancels_by_closing(self) -> bool:
        """True if abandoning a request's response is how the server learns of a
        cancellation (modern HTTP); otherwise ``notifications/cancelled`` is sent."""
        return False

    @abc.abstractmethod
    async def open(self, deliver: Deliver, task_group: anyio.abc.TaskGroup) -> None:
        """Prepare the transport; server messages go to ``deliver``."""

    @abc.abstractmethod
    async def send(
        self,
        message: Mapping[str, Any],
        ctx: FailureContext,
        *,
        on_sent: Callable[[], None] | None = None,
    ) -> bool:
        """Send one message; ``on_sent`` is called once it is handed to the network.

        Returns:
            True if the answer to this request has been delivered already (or can never
            come on another channel); False if it will arrive later through ``deliver``.

        Raises:
            MCPError: the message could not be delivered or was refused, translated for
                this request (only this request).
        """

    def set_connection_lost_handler(self, handler: Callable[[str], None]) -> None:  # noqa: B027
        """Register ``handler(reason)``, called when a shared channel (one that carries
        the answers of many requests) ends: every pending request has lost its answer.

        Optional hook: transports whose answers come per request ignore it.
        """

    def set_undeliverable_handler(  # noqa: B027 - optional hook
        self, handler: Callable[[Any, MCPError], None]
    ) -> None:
        """Register ``handler(request_id, error)``, called when the answer to a request
        arrived but could not be delivered (too large, on a shared channel), so that
        request fails at once instead of waiting for its timeout.

        Optional hook: transports that read each answer in its own exchange raise the
        error from :meth:`send` instead.
        """

    async def start_listening(self) -> None:  # noqa: B027 - optional hook, default is none
        """Open the server→client channel, if the transport has an optional one."""

    async def reset_session(self) -> None:  # noqa: B027 - optional hook
        """Forget the transport-level session (a new handshake follows)."""

    async def end_session(self) -> None:  # noqa: B027 - optional hook
        """End the session on the server, best effort (e.g. HTTP DELETE)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """End the session on the server (best effort) and release resources."""


class HTTPTransportBase(Transport):
    """What the HTTP transports share: the URL, headers and auth, and the httpx client.

    A client passed in by the user is used and never closed; otherwise one is created on
    :meth:`open` (with the process-wide SSL context) and closed by :meth:`aclose`.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None,
        auth: httpx.Auth | None,
        http_client: httpx.AsyncClient | None,
        timeouts: Timeouts,
        limits: Limits,
        logger: Logger,
    ) -> None:
        # Parsed once: httpx re-parses a str URL on every request (~20 us each).
        self._url = httpx.URL(url)
        self._extra_headers = dict(headers or {})
        self._auth = auth
        self._owns_client = http_client is None
        self._client = http_client
        self._timeouts = timeouts
        self._max_size = limits.max_message_size
        self._max_connections = limits.max_connections
        self._log = logger
        self._task_group: anyio.abc.TaskGroup | None = None
        self._closed = False
        # Per-request httpx timeouts: connect is bounded here, reading is bounded by the
        # request's own deadline (an SSE response may legitimately be quiet for long).
        self._http_timeout = httpx.Timeout(
            connect=timeouts.connect, read=None, write=timeouts.connect, pool=None
        )
        self.session_id = None
        self.protocol_version = None
        self._init_state(limits)

    def _init_state(self, limits: Limits) -> None:
        """The subclass's own state (one constructor signature for every HTTP transport)."""

    def detection_key(self) -> str | None:
        return http_key(self._url)

    @property
    def cancels_by_closing(self) -> bool:
        return self.modern

    def _open_client(self, *, max_connections: int) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                verify=_shared_ssl_context(),
                timeout=self._http_timeout,
                follow_redirects=False,
                limits=httpx.Limits(
                    max_connections=max_connections,
                    # Pooled: the admitted exchanges and the GET stream.
                    max_keepalive_connections=self._max_connections + 1,
                ),
            )

    async def _close_client(self) -> None:
        if self._owns_client and self._client is not None:
            with anyio.CancelScope(shield=True):
                await self._client.aclose()
            self._client = None

    def _auth_arg(self) -> httpx.Auth | UseClientDefault:
        return self._auth if self._auth is not None else httpx.USE_CLIENT_DEFAULT

    def _require_client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise ProtocolError("transport is not open")
        return self._client


class StreamableHTTPTransport(HTTPTransportBase):
    """Streamable HTTP, client side: legacy era (MCP 2025-03-26 … 2025-11-25, sessions)
    and modern era (2026-07-28: no sessions, ``Mcp-Method``/``Mcp-Name`` headers)."""

    name = "streamable-http"

    def _init_state(self, limits: Limits) -> None:
        self._deliver: Deliver = _nowhere
        self._listening = False
        self._listen_scope: anyio.CancelScope | None = None
        # httpcore's pool rescans every queued request against every connection on each
        # change (quadratic): 500 callers on 100 connections spend >90% of their time
        # there. Few exchanges at a time, the rest queued here at O(1); see _admission.
        self._admission = Admission(limits.max_connections, long_after=limits.long_request)

    @property
    def listening(self) -> bool:
        """True while the standalone GET stream is open."""
        return self._listening

    async def open(self, deliver: Deliver, task_group: anyio.abc.TaskGroup) -> None:
        self._deliver = deliver
        self._task_group = task_group
        task_group.start_soon(self._admission.run)
        # Room for long exchanges, which stop counting against the admission limit.
        self._open_client(max_connections=max(_POOL_CAP, self._max_connections + 1))

    # --- sending ---------------------------------------------------------------------

    def _headers(self, accept: str) -> dict[str, str]:
        headers = {"Accept": accept, **self._extra_headers}
        if self.session_id is not None:
            headers["Mcp-Session-Id"] = self.session_id
        if self.protocol_version is not None and self.protocol_version >= "2025-06-18":
            headers["MCP-Protocol-Version"] = self.protocol_version
        return headers

    async def send(
        self,
        message: Mapping[str, Any],
        ctx: FailureContext,
        *,
        on_sent: Callable[[], None] | None = None,
    ) -> bool:
        client = self._require_client()
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
        headers = self._headers(f"{_JSON}, {_SSE}")
        headers["Content-Type"] = _JSON
        request_id = message.get("id") if "method" in message else None
        if self.modern and "method" in message:
            specs: tuple[ParamHeader, ...] = ()
            if message["method"] == "tools/call" and self.tool_param_headers is not None:
                name = (message.get("params") or {}).get("name")
                specs = self.tool_param_headers(name) if isinstance(name, str) else ()
            headers.update(routing_headers(message, specs))
        request = client.build_request(
            "POST", self._url, content=body, headers=headers, timeout=self._http_timeout
        )
        sent = False

        def was_sent() -> bool:
            return sent

        with map_transport_errors(ctx, sent=was_sent):
            ticket = await self._admission.acquire()
            stream = _Stream()
            try:
                # From here on the server may get the request: any failure but a refused
                # connection (ConnectError, mapped above) leaves its fate unknown.
                sent = True
                if on_sent is not None:
                    on_sent()
                stream.response = await client.send(request, stream=True, auth=self._auth_arg())
                if message.get("method") == "initialize":
                    self._capture_session_id(stream.response, ctx)
                return await self._read_post_response(stream, request_id, ctx)
            finally:
                try:
                    await stream.finish()
                finally:
                    self._admission.release(ticket)

    def _capture_session_id(self, response: httpx.Response, ctx: FailureContext) -> None:
        # Only the initialize response defines the session. The Python SDK also puts a
        # fresh, never-initialized id on its 400 "Missing session ID" answer: a trap.
        if not response.is_success:
            return
        value = response.headers.get("mcp-session-id")
        if value is None:
            self.session_id = None
            return
        if not value or not all(0x21 <= ord(ch) <= 0x7E for ch in value):
            raise MalformedMessage(
                "server sent an Mcp-Session-Id with characters outside visible ASCII",
                **ctx.context(),
            )
        self.session_id = value

    async def _read_post_response(
        self,
        stream: _Stream,
        request_id: Any,
        ctx: FailureContext,
    ) -> bool:
        response = stream.response
        assert response is not None
        is_request = request_id is not None
        status = response.status_code
        content_type = response.headers.get("content-type", "").lower()
        if status == 202 or (200 <= status < 300 and not is_request and not content_type):
            return not is_request
        if not 200 <= status < 300:
            body = await self._read_limited(response, _ERROR_BODY_LIMIT, ctx, truncate=True)
            raise classify_http(
                status, content_type, body, ctx, retry_after=response.headers.get("retry-after")
            )
        if content_type.startswith(_SSE):
            await self._read_sse_response(stream, request_id, ctx)
            return True
        if content_type.startswith(_JSON) or "+json" in content_type:
            body = await self._read_limited(response, self._max_size, ctx)
            self._deliver_json_body(body, request_id, ctx)
            return True
        body = await self._read_limited(response, _ERROR_BODY_LIMIT, ctx, truncate=True)
        if not is_request and not body:
            return True
        raise classify_http(status, content_type, body, ctx)

    async def _read_limited(
        self, response: httpx.Response, limit: int, ctx: FailureContext, *, truncate: bool = False
    ) -> bytes:
        declared = response.headers.get("content-length")
        if not truncate and declared and declared.isdigit() and int(declared) > limit:
            raise MessageTooLarge(
                f"response of {declared} bytes exceeds the {limit}-byte limit", **ctx.context()
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                if truncate:
                    chunks.append(chunk[: limit - (size - len(chunk))])
                    break
                raise MessageTooLarge(f"response exceeds the {limit}-byte limit", **ctx.context())
            chunks.append(chunk)
        return b"".join(chunks)

    def _deliver_json_body(self, body: bytes, request_id: Any, ctx: FailureContext) -> None:
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise MalformedMessage(f"response is not valid JSON: {exc}", **ctx.context()) from exc
        messages = doc if isinstance(doc, list) else [doc]
        answered = False
        for item in messages:
            if request_id is not None and _answers(item, request_id):
                answered = True
            self._deliver(item)
        if request_id is not None and not answered:
            raise MalformedMessage(
                "the response body holds no answer to this request (wrong or missing id)",
                **ctx.context(),
            )

    async def _read_sse_response(
        self, stream: _Stream, request_id: Any, ctx: FailureContext
    ) -> None:
        """Deliver the stream's messages until the answer to ``request_id`` is in.

        Leaves the rest of the stream in ``stream.rest`` for the caller to finish.
        """
        decoder = SSEDecoder(self._max_size)
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
            except (httpx.TransportError, OSError) as exc:
                # A dropped connection is not a cancellation: resume below if we can.
                self._log.debug("sse.dropped", error=str(exc), request_id=request_id)
            if request_id is None:
                return
            # The modern era has no resumption: a broken stream lost the request.
            if self.modern or decoder.last_event_id is None or resumes >= _MAX_RESUMES:
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
            await backoff_sleep(_retry_delay(decoder))  # the server's `retry:`
            with anyio.CancelScope(shield=True):
                await stream.response.aclose()
            stream.response = await self._resume(decoder.last_event_id, ctx)

    async def _resume(self, last_event_id: str, ctx: FailureContext) -> httpx.Response:
        client = self._require_client()
        headers = self._headers(_SSE)
        headers["Last-Event-ID"] = last_event_id
        request = client.build_request(
            "GET", self._url, headers=headers, timeout=self._http_timeout
        )
        response = await client.send(request, stream=True, auth=self._auth_arg())
        if response.status_code != 200 or not response.headers.get(
            "content-type", ""
        ).lower().startswith(_SSE):
            body = await self._read_limited(response, _ERROR_BODY_LIMIT, ctx, truncate=True)
            await response.aclose()
            refused = classify_http(
                response.status_code, response.headers.get("content-type", ""), body, ctx
            )
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
        return request_id is not None and _answers(message, request_id), 0

    # --- the standalone GET stream ------------------------------------------------------

    async def start_listening(self) -> None:
        # The modern era has no standalone stream (subscriptions/listen replaces it).
        if self._task_group is None or self._listening or self._closed or self.modern:
            return
        self._listening = True
        scope = anyio.CancelScope()
        self._listen_scope = scope
        self._task_group.start_soon(self._listen, scope)

    async def _listen(self, scope: anyio.CancelScope) -> None:
        # The client may close before this task first runs (connect, then exit at once).
        client = self._client
        decoder = SSEDecoder(self._max_size)
        failures = 0
        with scope:
            await self._listen_loop(client, decoder, failures)
        if scope is self._listen_scope:
            self._listening = False
            self._listen_scope = None

    async def _listen_loop(
        self, client: httpx.AsyncClient | None, decoder: SSEDecoder, failures: int
    ) -> None:
        while client is not None and not self._closed and failures < _MAX_GET_STREAM_FAILURES:
            headers = self._headers(_SSE)
            if decoder.last_event_id is not None:
                headers["Last-Event-ID"] = decoder.last_event_id
            try:
                async with client.stream(
                    "GET",
                    self._url,
                    headers=headers,
                    timeout=self._http_timeout,
                    auth=self._auth_arg(),
                ) as response:
                    if response.status_code == 405:
                        self._log.debug("get_stream.unsupported")
                        return
                    if response.status_code != 200 or not response.headers.get(
                        "content-type", ""
                    ).lower().startswith(_SSE):
                        self._log.info("get_stream.refused", status=response.status_code)
                        return
                    async for chunk in response.aiter_bytes():
                        for event in decoder.feed(chunk):
                            failures = 0
                            self._deliver_event(event.data, None)
            except SSEEventTooLarge:
                self._log.warning("get_stream.event_too_large", limit=self._max_size)
                decoder = SSEDecoder(self._max_size)
            except (httpx.TransportError, OSError) as exc:
                self._log.debug("get_stream.dropped", error=str(exc))
            failures += 1
            await backoff_sleep(_retry_delay(decoder))  # the server's `retry:`

    # --- lifecycle ------------------------------------------------------------------

    async def reset_session(self) -> None:
        self.session_id = None
        self.protocol_version = None
        # The stream belonged to the old session; the next one opens its own.
        if self._listen_scope is not None:
            self._listen_scope.cancel()
            self._listen_scope = None
            self._listening = False

    async def end_session(self) -> None:
        if self.session_id is not None and self._client is not None:
            with anyio.move_on_after(self._timeouts.close, shield=True):
                await self._terminate()
        self.session_id = None

    async def aclose(self) -> None:
        self._closed = True
        try:
            await self.end_session()
        finally:
            await self._close_client()

    async def _terminate(self) -> None:
        client = self._require_client()
        try:
            response = await client.request(
                "DELETE",
                self._url,
                headers=self._headers(f"{_JSON}, {_SSE}"),
                timeout=self._http_timeout,
                auth=self._auth_arg(),
            )
        except httpx.HTTPError as exc:
            self._log.debug("session.delete_failed", error=str(exc))
            return
        # 405: the server does not let clients end sessions; that is allowed.
        self._log.debug("session.deleted", status=response.status_code)


class _Stream:
    """One POST's response (or, after a resume, its GET continuation) and what is left."""

    __slots__ = ("response", "rest")

    def __init__(self) -> None:
        self.response: httpx.Response | None = None
        self.rest: AsyncIterator[bytes] | None = None

    async def finish(self) -> None:
        """Read what is left of an answered stream, then close it.

        The server ends the stream right after the answer (usually one more chunk);
        reading to the end lets httpx reuse the connection, where closing it unread would
        drop it and cost the next request a new TCP connection. A server that keeps the
        stream open gets a short grace period. Reading it in the background instead
        returns the answer ~0.3 ms sooner, but back-to-back requests (the handshake) then
        find the connection busy and open another: slower overall (measured).
        """
        try:
            if self.rest is not None:
                with anyio.move_on_after(_DRAIN_GRACE_S):
                    async for _ in self.rest:
                        pass
        except (httpx.HTTPError, OSError):
            pass  # the answer was delivered; how the stream ends no longer matters
        finally:
            if self.response is not None:
                with anyio.CancelScope(shield=True):
                    await self.response.aclose()


def _answers(message: Any, request_id: Any) -> bool:
    return (
        isinstance(message, dict)
        and message.get("id") == request_id
        and ("result" in message or "error" in message)
        and "method" not in message
    )


def _retry_delay(decoder: SSEDecoder) -> float:
    # The server's `retry:` is honoured, but a server cannot park us for hours.
    if decoder.retry is None:
        return _DEFAULT_RETRY_S
    return min(decoder.retry / 1000, _MAX_RETRY_S)


def _nowhere(message: Any) -> None:
    raise ProtocolError("transport used before open()")
