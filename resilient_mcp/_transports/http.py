"""What the HTTP transports share: the endpoint, headers and auth, and the HTTP client.

A client passed in by the user is used as is and never closed; otherwise
:meth:`HTTPTransportBase.open` builds one of its own (with the process-wide SSL context,
its connections guarded against a server's keep-alive close, :mod:`.pool`) and
:meth:`HTTPTransportBase.aclose` closes it; with ``HTTPServer(share_pool=True)`` it leases
the process's shared client for the origin instead (one connection pool per loop, origin
and credentials) and gives it back. Either is of the server's HTTP stack (httpx or
httpx2, :mod:`.._http_stack`): every URL, timeout and marker handed to the client is
built by that stack, because each library accepts only its own.
"""

from __future__ import annotations

import functools
import ssl
from typing import cast

import anyio
import anyio.abc
import httpx
from httpx._client import UseClientDefault

from .._classify import FailureContext
from .._config import Limits, Timeouts
from .._detection import http_key
from .._exceptions import MessageTooLarge, ProtocolError
from .._http_stack import HTTPX, HTTPStack, stack_for
from .._log import Logger
from .._targets import HTTPServer
from . import pool
from .base import SendContext, Transport

__all__ = ["ERROR_BODY_LIMIT", "JSON", "SSE", "HTTPTransportBase", "content_type", "read_limited"]

JSON = "application/json"
SSE = "text/event-stream"
# How much of an error response we read (its start is all a diagnosis needs).
ERROR_BODY_LIMIT = 64 * 1024
# Headers the transports set themselves (the protocol needs them as they are).
_OURS = {
    name.lower(): name
    for name in (
        "Accept",
        "Content-Type",
        "Mcp-Session-Id",
        "MCP-Protocol-Version",
        "Last-Event-ID",
        "Mcp-Method",
        "Mcp-Name",
    )
}
# The first version that defines the MCP-Protocol-Version header.
_VERSION_HEADER_SINCE = "2025-06-18"


@functools.cache
def _shared_ssl_context(stack: HTTPStack) -> ssl.SSLContext:
    # Building a verifying SSL context (loading the CA bundle) costs ~20-30 ms; httpx does
    # it for every AsyncClient, even for plain-http URLs. One context per process (and
    # stack) serves every client: SSLContext is safe to share between connections.
    return stack.ssl_context()


class HTTPTransportBase(Transport):
    """The state both HTTP transports keep: one endpoint, one credential, one client."""

    def __init__(
        self, server: HTTPServer, *, timeouts: Timeouts, limits: Limits, logger: Logger
    ) -> None:
        self._stack = stack_for(server)
        # Parsed once: httpx re-parses a str URL on every request (~20 us each).
        self._url = self._stack.url(server.url)
        # The user's headers, with the names we also set spelled as we spell them, so
        # that ours replace theirs instead of going out twice ("accept" and "Accept").
        self._extra_headers = {
            _OURS.get(name.lower(), name): value for name, value in (server.headers or {}).items()
        }
        # Typed as httpx's: httpx2's objects keep the same API (see _http_stack).
        self._auth = cast(httpx.Auth | None, server.auth)
        self._owns_client = server.http_client is None
        self._client = cast(httpx.AsyncClient | None, server.http_client)
        self._share_pool = server.share_pool and self._owns_client
        self._lease: pool.Lease | None = None
        self._timeouts = timeouts
        self._max_size = limits.max_message_size
        self._max_connections = limits.max_connections
        self._log = logger
        self._task_group: anyio.abc.TaskGroup | None = None
        self._closed = False
        # Per-request httpx timeouts: connect is bounded here, reading is bounded by the
        # request's own deadline (an SSE response may legitimately be quiet for long).
        self._http_timeout = self._stack.timeout(connect=timeouts.connect, write=timeouts.connect)
        self._use_client_auth = self._stack.use_client_default
        # The detection key is computed on an httpx URL whatever the stack, as
        # first_transport computes it, so that both find the same cache entry.
        key_url = self._url if self._stack is HTTPX else httpx.URL(server.url)
        self._key = http_key(
            key_url, headers=self._extra_headers, auth=self._auth, http_client=self._client
        )

    def detection_key(self) -> str | None:
        return self._key

    def _build_client(self, max_connections: int | None, keepalive: int) -> httpx.AsyncClient:
        # Every request passes its own timeout: a shared client's default (its first
        # user's) never applies.
        return self._stack.client(
            verify=_shared_ssl_context(self._stack),
            timeout=self._http_timeout,
            max_connections=max_connections,
            max_keepalive_connections=keepalive,
            keepalive_expiry=pool.KEEPALIVE_EXPIRY,
        )

    def _open_client(self, *, max_connections: int) -> None:
        if self._client is not None:
            return
        if self._share_pool:
            # No bound per origin: each session's admission bounds its own exchanges,
            # and every session's GET stream needs a connection (see .pool).
            self._lease = pool.lease(
                self._stack,
                self._url,
                headers=self._extra_headers,
                auth=self._auth,
                build=lambda: self._build_client(None, pool.SHARED_KEEPALIVE),
            )
            self._client = self._lease.client
            return
        # Pooled: the admitted exchanges and the GET stream.
        self._client = self._build_client(max_connections, self._max_connections + 1)
        pool.guard_client(self._client, self._stack)

    async def _close_client(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            self._client = None
            await lease.release()
        elif self._owns_client and self._client is not None:
            with anyio.CancelScope(shield=True):
                await self._client.aclose()
            self._client = None

    def _auth_arg(self) -> httpx.Auth | UseClientDefault:
        # The stack's own marker: httpx2 takes httpx's for an auth object, and fails.
        return self._auth if self._auth is not None else self._use_client_auth

    def _require_client(self, ctx: FailureContext) -> httpx.AsyncClient:
        if self._client is None or self._closed:
            raise ProtocolError("transport is not open", **ctx.context())
        return self._client

    def _headers(self, accept: str, ctx: SendContext) -> dict[str, str]:
        """The headers of one exchange: ours, then what the message's context says."""
        headers = {**self._extra_headers, "Accept": accept}
        if ctx.session_id is not None:
            headers["Mcp-Session-Id"] = ctx.session_id
        version = ctx.protocol_version
        if version is not None and version >= _VERSION_HEADER_SINCE:
            headers["MCP-Protocol-Version"] = version
        if ctx.headers:
            headers.update(ctx.headers)
        return headers


async def read_limited(
    response: httpx.Response,
    limit: int,
    ctx: FailureContext,
    *,
    truncate: bool = False,
) -> bytes:
    """A response body of at most ``limit`` bytes.

    Raises:
        MessageTooLarge: the body is larger (unless ``truncate``: then its start).
    """
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


def content_type(response: httpx.Response) -> str:
    """The response's media type, lower-cased ("" if none)."""
    kind: str = response.headers.get("content-type", "")
    return kind.lower()
