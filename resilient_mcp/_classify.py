"""Turn every server's way of saying "no" into one typed error.

This module is pure: no I/O, no state. Its input is what came back for one request
(an HTTP status, content type and body, or an in-band JSON-RPC error) plus what the
client knows (the method, whether it sent a session id, whether its handshake is
complete). Its rules come from the dialect table in ``server-dialects.md``; each rule
names the server it exists for.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from ._exceptions import (
    Execution,
    HTTPStatusError,
    InvalidParams,
    MalformedMessage,
    MCPError,
    MethodNotFound,
    NotInitialized,
    ResourceNotFound,
    ServerError,
    ServerUnavailable,
    SessionLost,
    UnsupportedProtocolVersion,
)

__all__ = ["FailureContext", "classify_http", "classify_rpc_error", "parse_retry_after"]

# How much of a non-JSON body we keep on an error, for diagnosis.
_BODY_EXCERPT = 500

# Python SDK's answer to a request processed before `notifications/initialized`
# (ServerSession raises, BaseSession turns *any* handler exception into this). The same
# bytes also mean "the request did not validate", so alone it proves nothing.
_PY_SDK_GENERIC_MESSAGE = "invalid request parameters"

# rmcp 3.1.4's -32602 to a request that arrives before `initialize` (without the
# per-request `_meta` that replaces the handshake from 2026-07-28 on); the connection
# closes after it. Like the Python SDK's message, it means "not initialized" only
# while our handshake is incomplete.
_RMCP_META_MISSING = "request _meta is missing or has malformed required fields"

_NOT_INITIALIZED_PHRASES = (
    "not initialized",  # TypeScript (-32000), LSP-style (-32002), many hand-written servers
    "not been initialized",
    "before initialization",  # Python SDK log text, sometimes surfaced in messages
    "during session initialization",  # Go SDK / Docker MCP Gateway (code 0)
    "expect initialize request",  # rmcp 422 text/plain
    "missing session id",  # Python SDK 400: we sent no session id, so we are not initialized
    "mcp-session-id header is required",  # TypeScript 400 without a session id
    "session_id is required",  # Python SDK legacy SSE 400 text/plain: POST without session_id
    "initialize request",  # "must send initialize request first" and similar
)

_SESSION_GONE_PHRASES = (
    "session not found",  # Python SDK, TypeScript, rmcp, Go, others (-32603, text/plain)
    "session has been terminated",
    "invalid or expired session",
    "unknown session",  # -32004 in the wild
    "could not find session",  # Python SDK 2.x legacy SSE
    "no valid session id",  # TypeScript example apps: 400 -32000 for a stale session
    "session expired",
    "session is closed",
)

# The session ended while our request was in flight, so the request may have run
# (its response never came): mcp 2.3 Streamable HTTP, JSON response mode, answers
# HTTP 500 -32603 with the first; mcp 1.x (read from 1.26's source) 500 -32600 with the
# second. Checked before the "session gone" phrases: unlike a 404, it may have run.
_SESSION_ENDED_IN_FLIGHT_PHRASES = (
    "session terminated before the request completed",  # mcp 2.3
    "error processing request: no response received",  # mcp 1.x
)

# rmcp <= 1.3: a request that overtakes `notifications/initialized` kills the session and
# that POST gets a 500 text/plain "Encounter an error when ...". Every later request: 404.
_RMCP_SESSION_KILLED = "encounter an error when"


@dataclass(frozen=True, slots=True)
class FailureContext:
    """What the client knew when the failure happened."""

    method: str | None = None
    request_id: str | int | None = None
    session_id: str | None = None
    """The session id the failed request carried (None: it carried none)."""
    session_ready: bool = True
    """True once our handshake completed (initialize result + delivered ``initialized``)."""

    def context(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "request_id": self.request_id,
            "session_id": self.session_id,
        }


def _has(text: str, phrases: tuple[str, ...]) -> bool:
    return any(p in text for p in phrases)


def classify_rpc_error(error: Mapping[str, Any], ctx: FailureContext) -> MCPError:
    """Classify an in-band JSON-RPC ``error`` object (a response to one of our requests).

    Args:
        error: the ``error`` member: ``{"code": int, "message": str, "data"?: any}``.
        ctx: what the client knew about the request.

    Returns:
        The error to raise to the caller (never raises itself).
    """
    code = error.get("code")
    raw_message = error.get("message")
    message = raw_message if isinstance(raw_message, str) else ""
    data = error.get("data")
    kw = ctx.context()
    if not isinstance(code, int) or isinstance(code, bool):
        return MalformedMessage(f"JSON-RPC error without an integer code: {error!r}"[:300], **kw)
    text = message.lower()
    data_text = data.lower() if isinstance(data, str) else ""
    shown = message or f"JSON-RPC error {code}"

    # Explicit wording wins over codes: servers disagree on codes, not on these phrases.
    if _has(text, _SESSION_ENDED_IN_FLIGHT_PHRASES):
        return SessionLost(shown, execution=Execution.MAYBE, **kw)
    if _has(text, _SESSION_GONE_PHRASES) or _has(data_text, _SESSION_GONE_PHRASES):
        # A 400 "No valid session ID provided" to a request that carried no id is the
        # server asking for a handshake we have not done, not a lost session.
        if ctx.session_id is None and "no valid session id" in text:
            return NotInitialized(shown, **kw)
        return SessionLost(shown, **kw)
    if _has(text, _NOT_INITIALIZED_PHRASES) or _has(data_text, _NOT_INITIALIZED_PHRASES):
        return NotInitialized(shown, **kw)

    if code == -32602:
        # The Python SDK answers an early request with exactly this message and empty
        # data. Before our handshake is complete that can only mean "not initialized";
        # after it, it may still (a lost ordering on legacy SSE), or it may be a request
        # that failed validation. Both were not executed.
        generic = (text == _PY_SDK_GENERIC_MESSAGE and data in ("", None)) or text.startswith(
            _RMCP_META_MISSING
        )
        if generic and not ctx.session_ready:
            return NotInitialized(shown, **kw)
        return InvalidParams(shown, data=data, may_be_not_initialized=generic, **kw)
    if code == -32601:
        return MethodNotFound(shown, code=code, data=data, **kw)
    if code == -32002 and ctx.method == "resources/read":
        # "Resource not found" in MCP <= 2025-11-25; LSP-style servers use it for "server
        # not initialized", which the phrase check above already caught. Any other
        # -32002 falls into the legacy -32000...-32019 range below.
        return ResourceNotFound(shown, code=code, data=data, **kw)
    if code == -32022:
        supported = data.get("supported") if isinstance(data, Mapping) else None
        versions = (
            tuple(v for v in supported if isinstance(v, str))
            if isinstance(supported, list | tuple)
            else ()
        )
        return UnsupportedProtocolVersion(shown, offered=None, supported=versions, **kw)
    if code in (-32700, -32600):
        # Parse error / invalid request: the server could not even read the request.
        return ServerError(shown, code=code, data=data, execution=Execution.NOT_EXECUTED, **kw)
    if -32019 <= code <= -32000:
        # Implementation-defined and, from 2026-07-28 on, "legacy, assume nothing": a
        # TypeScript proxy forwards its client's -32000 "Connection closed" / -32001
        # "Request timed out" here, after which nobody knows whether the call ran.
        return ServerError(shown, code=code, data=data, execution=Execution.MAYBE, **kw)
    return ServerError(shown, code=code, data=data, **kw)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header (delta-seconds or HTTP-date) into seconds from now."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "inf", "nan" and negative numbers parse as floats but are no delay a server
        # can have meant: fall back to our own backoff rather than retrying at once.
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        # asctime dates and "-0000" carry no zone; HTTP-dates are always GMT.
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _excerpt(body: bytes) -> str:
    return body[:_BODY_EXCERPT].decode("utf-8", errors="replace")


def _json_error_in(body: bytes, content_type: str) -> Mapping[str, Any] | None:
    """The JSON-RPC ``error`` object in an HTTP error body, if the body holds one."""
    if not body or ("json" not in content_type and not body.lstrip().startswith(b"{")):
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if isinstance(doc, Mapping):
        error = doc.get("error")
        if isinstance(error, Mapping):
            return error
    return None


def classify_http(
    status: int,
    content_type: str,
    body: bytes,
    ctx: FailureContext,
    *,
    retry_after: str | None = None,
) -> MCPError:
    """Classify an HTTP response that carries no JSON-RPC result for our request.

    Args:
        status: the HTTP status (any non-2xx, or a 2xx with an unusable body).
        content_type: the response's ``Content-Type`` (may be empty).
        body: the (size-limited) response body.
        ctx: what the client knew about the request.
        retry_after: the ``Retry-After`` header, if any.

    Returns:
        The error to raise to the caller (never raises itself).
    """
    kw = ctx.context()
    content_type = content_type.lower()
    error = _json_error_in(body, content_type)
    text = (str(error.get("message", "")) if error is not None else _excerpt(body)).lower()

    if status in (429, 502, 503, 504):
        # 429/503 are refusals before the request ran; a gateway's 502/504 may have
        # forwarded it first.
        execution = Execution.NOT_EXECUTED if status in (429, 503) else Execution.MAYBE
        return ServerUnavailable(
            f"HTTP {status}: server unavailable",
            status_code=status,
            retry_after=parse_retry_after(retry_after),
            execution=execution,
            **kw,
        )

    if status in (401, 403):
        # Authorization, never the session: whatever the body says ("not initialized",
        # a -32000 envelope), a new handshake would not help and must not be tried.
        return HTTPStatusError(
            f"HTTP {status}: the server refused the credentials"
            + (" (pass an auth object, e.g. resilient_mcp.auth.OAuth)" if status == 401 else ""),
            status_code=status,
            body=_excerpt(body),
            execution=Execution.NOT_EXECUTED,
            **kw,
        )

    if error is not None:
        classified = classify_rpc_error(error, ctx)
        rejected = isinstance(classified, ServerError) and not isinstance(
            classified, MethodNotFound
        )
        if rejected and status == 404 and ctx.session_id is not None:
            # The spec: 404 to a request that carried a session id = session gone,
            # whatever the body says (-32600, -32001, -32603 ...).
            return SessionLost(classified.message, **kw)
        if rejected and status in (400, 404):
            # An HTTP-level rejection: the request never reached a handler.
            classified.execution = Execution.NOT_EXECUTED
        return classified

    # No JSON-RPC body: text/plain, HTML, empty.
    if _has(text, _SESSION_GONE_PHRASES) or (status == 404 and ctx.session_id is not None):
        return SessionLost(f"HTTP {status}: {_excerpt(body) or 'session not found'}", **kw)
    if _has(text, _NOT_INITIALIZED_PHRASES):
        return NotInitialized(f"HTTP {status}: {_excerpt(body)}", **kw)
    if status == 500 and _RMCP_SESSION_KILLED in text:
        # rmcp's session worker died on the early request before running it.
        return SessionLost(f"HTTP 500: {_excerpt(body)}", execution=Execution.NOT_EXECUTED, **kw)
    if 200 <= status < 300:
        return MalformedMessage(
            f"HTTP {status} with unexpected content type {content_type or 'none'!r}", **kw
        )
    # 5xx and 408 may come after the request ran; any other 4xx refused it as a whole
    # (auth, method, media type, size).
    execution = Execution.MAYBE if status >= 500 or status == 408 else Execution.NOT_EXECUTED
    return HTTPStatusError(
        f"HTTP {status}" + (f": {_excerpt(body)[:200]}" if body else ""),
        status_code=status,
        body=_excerpt(body),
        execution=execution,
        **kw,
    )
