"""The classifier against every row of ``server-dialects.md``.

Each case is one thing a real server sends (named after the server and the row it comes
from) plus what the client knew; the expectation is the exact error class, whether the
request ran, and the attributes a retry policy reads. Pure functions only: no I/O.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from resilient_mcp._classify import (
    FailureContext,
    classify_http,
    classify_rpc_error,
    parse_retry_after,
)
from resilient_mcp._exceptions import (
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

NOT_EXECUTED = Execution.NOT_EXECUTED
EXECUTED = Execution.EXECUTED
MAYBE = Execution.MAYBE

SID = "4efef178aab54dfcbf015e618ca87585"
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"

# The Python SDK's answer to an early request (and to a request that failed validation).
PY_GENERIC: dict[str, Any] = {"code": -32602, "message": "Invalid request parameters", "data": ""}
RMCP_META = {
    "code": -32602,
    "message": "request _meta is missing or has malformed required fields: protocolVersion",
}


def ctx(
    method: str = "tools/call",
    *,
    session_id: str | None = SID,
    ready: bool = True,
    request_id: str | int = 7,
) -> FailureContext:
    return FailureContext(
        method=method, request_id=request_id, session_id=session_id, session_ready=ready
    )


def rpc_body(error: dict[str, Any], id_: object = 7) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "error": error}).encode()


@dataclass(frozen=True)
class Expect:
    cls: type[MCPError]
    execution: Execution
    code: int | None = None
    status_code: int | None = None
    retry_after: float | None = None
    may_be_not_initialized: bool | None = None
    supported: tuple[str, ...] | None = None
    data: object = None
    message_contains: str | None = None


def check(err: MCPError, expect: Expect, context: FailureContext) -> None:
    assert type(err) is expect.cls, repr(err)
    assert err.execution is expect.execution, repr(err)
    # The context is always carried, whatever the class.
    assert err.method == context.method
    assert err.request_id == context.request_id
    assert err.session_id == context.session_id
    assert err.message
    if expect.message_contains is not None:
        assert expect.message_contains.lower() in err.message.lower()
    if expect.code is not None:
        assert isinstance(err, ServerError)
        assert err.code == expect.code
    if expect.data is not None:
        assert isinstance(err, ServerError)
        assert err.data == expect.data
    if expect.status_code is not None:
        assert isinstance(err, ServerUnavailable | HTTPStatusError)
        assert err.status_code == expect.status_code
    if isinstance(err, ServerUnavailable):
        assert err.retry_after == expect.retry_after
    if isinstance(err, InvalidParams):
        assert expect.may_be_not_initialized is not None, "state the expectation"
        assert err.may_be_not_initialized is expect.may_be_not_initialized
    if expect.supported is not None:
        assert isinstance(err, UnsupportedProtocolVersion)
        assert err.supported == expect.supported
        assert err.offered is None


# --- in-band JSON-RPC errors (stdio, SSE `message` events, HTTP 200) ---------------------

RPC_CASES = [
    # The session ended with the request in flight: never NOT_EXECUTED, whatever the code.
    pytest.param(
        {"code": -32603, "message": "Session terminated before the request completed"},
        ctx("tools/call"),
        Expect(SessionLost, MAYBE),
        id="python-sdk-2.3-32603-session-terminated-in-flight",
    ),
    # Early requests.
    pytest.param(
        PY_GENERIC,
        ctx("tools/list", ready=False),
        Expect(NotInitialized, NOT_EXECUTED),
        id="python-sdk-early-32602-before-ready",
    ),
    pytest.param(
        {"code": -32602, "message": "Invalid request parameters"},
        ctx("tools/list", ready=False),
        Expect(NotInitialized, NOT_EXECUTED),
        id="python-sdk-early-32602-no-data-before-ready",
    ),
    pytest.param(
        PY_GENERIC,
        ctx("tools/list", ready=False, request_id="req-2"),
        Expect(NotInitialized, NOT_EXECUTED),
        id="python-sdk-lt-1.18-32602-between-initialize-result-and-initialized",
    ),
    pytest.param(
        PY_GENERIC,
        ctx("tools/list", ready=True),
        Expect(InvalidParams, NOT_EXECUTED, code=-32602, may_be_not_initialized=True),
        id="python-sdk-early-32602-after-ready-ambiguous",
    ),
    pytest.param(
        PY_GENERIC,
        ctx("tools/list", session_id=None, ready=True),
        Expect(InvalidParams, NOT_EXECUTED, code=-32602, may_be_not_initialized=True),
        id="python-sdk-legacy-sse-32602-lost-ordering-after-ready",
    ),
    pytest.param(
        {"code": -32602, "message": "Unknown tool: x"},
        ctx(),
        Expect(InvalidParams, NOT_EXECUTED, code=-32602, may_be_not_initialized=False),
        id="python-sdk-32602-unknown-tool-after-ready",
    ),
    pytest.param(
        {"code": -32602, "message": "Unknown tool: x"},
        ctx(ready=False),
        Expect(InvalidParams, NOT_EXECUTED, code=-32602, may_be_not_initialized=False),
        id="python-sdk-32602-unknown-tool-before-ready",
    ),
    pytest.param(
        {"code": -32602, "message": "Invalid request parameters", "data": "cursor: bad"},
        ctx(ready=False),
        Expect(
            InvalidParams,
            NOT_EXECUTED,
            code=-32602,
            may_be_not_initialized=False,
            data="cursor: bad",
        ),
        id="32602-generic-message-with-data-is-real-invalid-params",
    ),
    pytest.param(
        {"code": -32601, "message": "Method not found", "data": "resources/list"},
        ctx("resources/list", ready=False),
        Expect(MethodNotFound, NOT_EXECUTED, code=-32601, data="resources/list"),
        id="python-sdk-2x-early-32601-unserved-method",
    ),
    pytest.param(
        RMCP_META,
        ctx("tools/list", session_id=None, ready=False),
        Expect(NotInitialized, NOT_EXECUTED, message_contains="_meta is missing"),
        id="rmcp-3.1.4-32602-meta-missing-before-ready",
    ),
    pytest.param(
        RMCP_META,
        ctx("tools/list", session_id=None, ready=True),
        Expect(InvalidParams, NOT_EXECUTED, code=-32602, may_be_not_initialized=True),
        id="rmcp-3.1.4-32602-meta-missing-after-ready",
    ),
    pytest.param(
        {"code": 0, "message": 'method "tools/call" is invalid during session initialization'},
        ctx(ready=False),
        Expect(NotInitialized, NOT_EXECUTED, message_contains="during session initialization"),
        id="go-sdk-docker-gateway-code-0-during-initialization",
    ),
    pytest.param(
        {"code": -32002, "message": "Server not initialized"},
        ctx("tools/list", session_id=None, ready=False),
        Expect(NotInitialized, NOT_EXECUTED),
        id="lsp-style-32002-server-not-initialized",
    ),
    pytest.param(
        {"code": -32000, "message": "Bad Request: Server not initialized"},
        ctx(ready=False),
        Expect(NotInitialized, NOT_EXECUTED),
        id="typescript-32000-server-not-initialized-in-band",
    ),
    # Gone sessions reported in-band.
    pytest.param(
        {"code": -32004, "message": "Unknown session"},
        ctx(),
        Expect(SessionLost, NOT_EXECUTED),
        id="wild-32004-unknown-session",
    ),
    pytest.param(
        {"code": -32603, "message": "Session not found"},
        ctx(),
        Expect(SessionLost, NOT_EXECUTED),
        id="wild-32603-session-not-found",
    ),
    pytest.param(
        {"code": -32600, "message": "Session not found"},
        ctx(),
        Expect(SessionLost, NOT_EXECUTED),
        id="python-sdk-32600-session-not-found-in-band",
    ),
    # -32002 depends on the method and the words.
    pytest.param(
        {"code": -32002, "message": "Resource not found", "data": {"uri": "file:///x"}},
        ctx("resources/read"),
        Expect(ResourceNotFound, NOT_EXECUTED, code=-32002, data={"uri": "file:///x"}),
        id="mcp-32002-resource-not-found-on-resources-read",
    ),
    pytest.param(
        {"code": -32002, "message": "Server not initialized"},
        ctx("resources/read", ready=False),
        Expect(NotInitialized, NOT_EXECUTED),
        id="lsp-style-32002-server-not-initialized-on-resources-read",
    ),
    pytest.param(
        {"code": -32002, "message": "Quota exceeded"},
        ctx("tools/call"),
        Expect(ServerError, MAYBE, code=-32002),
        id="32002-other-method-other-text",
    ),
    # -32000/-32001: no spec meaning; a TypeScript proxy forwards its client's codes.
    pytest.param(
        {"code": -32000, "message": "MCP error -32000: Connection closed"},
        ctx(),
        Expect(ServerError, MAYBE, code=-32000),
        id="typescript-proxy-32000-connection-closed",
    ),
    pytest.param(
        {"code": -32001, "message": "MCP error -32001: Request timed out"},
        ctx(),
        Expect(ServerError, MAYBE, code=-32001),
        id="typescript-proxy-32001-request-timed-out",
    ),
    pytest.param(
        {"code": -32603, "message": "Internal error: division by zero"},
        ctx(),
        Expect(ServerError, EXECUTED, code=-32603),
        id="32603-internal-error-executed",
    ),
    pytest.param(
        {"code": -32603, "message": None},
        ctx(),
        Expect(ServerError, EXECUTED, code=-32603, message_contains="-32603"),
        id="32603-non-string-message",
    ),
    # Protocol 2026-07-28 codes.
    pytest.param(
        {
            "code": -32022,
            "message": "Unsupported protocol version",
            "data": {"supported": ["2025-06-18", "2026-07-28", 7]},
        },
        ctx("initialize", session_id=None, ready=False),
        Expect(UnsupportedProtocolVersion, NOT_EXECUTED, supported=("2025-06-18", "2026-07-28")),
        id="protocol-2026-32022-unsupported-version-data-supported",
    ),
    pytest.param(
        {"code": -32022, "message": "Unsupported protocol version"},
        ctx("initialize", session_id=None, ready=False),
        Expect(UnsupportedProtocolVersion, NOT_EXECUTED, supported=()),
        id="protocol-2026-32022-without-data",
    ),
    pytest.param(
        {"code": -32022, "message": "Unsupported", "data": {"supported": "2025-06-18"}},
        ctx("initialize", session_id=None, ready=False),
        Expect(UnsupportedProtocolVersion, NOT_EXECUTED, supported=()),
        id="protocol-2026-32022-supported-not-a-list",
    ),
    # The server could not read the request at all.
    pytest.param(
        {"code": -32700, "message": "Parse error"},
        ctx(),
        Expect(ServerError, NOT_EXECUTED, code=-32700),
        id="jsonrpc-32700-parse-error",
    ),
    pytest.param(
        {"code": -32600, "message": "Invalid Request"},
        ctx(),
        Expect(ServerError, NOT_EXECUTED, code=-32600),
        id="jsonrpc-32600-invalid-request",
    ),
    # Malformed error objects.
    pytest.param(
        {"message": "oops"},
        ctx(),
        Expect(MalformedMessage, MAYBE),
        id="malformed-code-missing",
    ),
    pytest.param(
        {"code": "-32602", "message": "Invalid request parameters"},
        ctx(),
        Expect(MalformedMessage, MAYBE),
        id="malformed-code-string",
    ),
    pytest.param(
        {"code": -32602.0, "message": "Invalid request parameters"},
        ctx(),
        Expect(MalformedMessage, MAYBE),
        id="malformed-code-float",
    ),
    pytest.param(
        {"code": True, "message": "Session not found"},
        ctx(),
        Expect(MalformedMessage, MAYBE),
        id="malformed-code-bool",
    ),
    pytest.param(
        {"code": None},
        ctx(),
        Expect(MalformedMessage, MAYBE),
        id="malformed-code-null",
    ),
]


@pytest.mark.parametrize(("error", "context", "expect"), RPC_CASES)
def test_classify_rpc_error(error: dict[str, Any], context: FailureContext, expect: Expect) -> None:
    check(classify_rpc_error(error, context), expect, context)


# --- HTTP responses without a result for our request ------------------------------------

HTTP_CASES = [
    # A session that ended with our request in flight: it may have run.
    pytest.param(
        500,
        JSON,
        rpc_body(
            {"code": -32603, "message": "Session terminated before the request completed"}, None
        ),
        ctx("tools/call"),
        None,
        Expect(SessionLost, MAYBE, message_contains="session terminated"),
        id="python-sdk-2.3-500-32603-session-terminated-in-flight",
    ),
    pytest.param(
        500,
        JSON,
        rpc_body(
            {"code": -32603, "message": "Session terminated before the request completed"}, None
        ),
        ctx("tools/list", ready=False),
        None,
        Expect(SessionLost, MAYBE),
        id="python-sdk-2.3-500-session-terminated-during-handshake",
    ),
    pytest.param(
        500,
        JSON,
        rpc_body(
            {"code": -32600, "message": "Error processing request: No response received"},
            "server-error",
        ),
        ctx("tools/call"),
        None,
        Expect(SessionLost, MAYBE, message_contains="no response received"),
        id="python-sdk-1x-500-32600-no-response-received",
    ),
    # Early requests.
    pytest.param(
        400,
        JSON,
        rpc_body({"code": -32600, "message": "Bad Request: Missing session ID"}, "server-error"),
        ctx("tools/list", session_id=None, ready=False),
        None,
        Expect(NotInitialized, NOT_EXECUTED, message_contains="missing session id"),
        id="python-sdk-1x-400-missing-session-id-id-server-error",
    ),
    pytest.param(
        400,
        JSON,
        rpc_body({"code": -32600, "message": "Bad Request: Missing session ID"}, None),
        ctx("tools/list", session_id=None, ready=False),
        None,
        Expect(NotInitialized, NOT_EXECUTED),
        id="python-sdk-2x-400-missing-session-id-id-null",
    ),
    pytest.param(
        200,
        "text/event-stream",
        rpc_body(PY_GENERIC),
        ctx("tools/list", ready=False),
        None,
        Expect(NotInitialized, NOT_EXECUTED),
        id="python-sdk-http-200-32602-before-ready",
    ),
    pytest.param(
        500,
        "text/plain",
        b"Encounter an error when send message to session: transport closed",
        ctx("tools/list", ready=False),
        None,
        Expect(SessionLost, NOT_EXECUTED, message_contains="encounter an error"),
        id="rmcp-le-1.3-500-encounter-an-error-early-request",
    ),
    pytest.param(
        404,
        TEXT,
        b"Not Found: Session not found",
        ctx("tools/list"),
        None,
        Expect(SessionLost, NOT_EXECUTED, message_contains="session not found"),
        id="rmcp-le-1.3-404-session-not-found-after-kill",
    ),
    pytest.param(
        422,
        "text/plain",
        b"Unexpected message, expect initialize request",
        ctx("tools/list", session_id=None, ready=False),
        None,
        Expect(NotInitialized, NOT_EXECUTED, message_contains="expect initialize request"),
        id="rmcp-le-1.3-422-expect-initialize-request",
    ),
    pytest.param(
        400,
        JSON,
        rpc_body({"code": -32000, "message": "Bad Request: Server not initialized"}, None),
        ctx("tools/list", session_id=None, ready=False),
        None,
        Expect(NotInitialized, NOT_EXECUTED),
        id="typescript-400-32000-server-not-initialized",
    ),
    pytest.param(
        400,
        JSON,
        rpc_body(
            {"code": -32000, "message": "Bad Request: Mcp-Session-Id header is required"}, None
        ),
        ctx("tools/list", session_id=None, ready=False),
        None,
        Expect(NotInitialized, NOT_EXECUTED),
        id="typescript-400-32000-session-id-header-required",
    ),
    pytest.param(
        200,
        JSON,
        rpc_body(
            {"code": 0, "message": 'method "tools/call" is invalid during session initialization'}
        ),
        ctx(ready=False),
        None,
        Expect(NotInitialized, NOT_EXECUTED),
        id="go-sdk-docker-gateway-200-code-0",
    ),
    # Gone sessions.
    pytest.param(
        404,
        JSON,
        rpc_body({"code": -32600, "message": "Session not found"}, "server-error"),
        ctx(),
        None,
        Expect(SessionLost, NOT_EXECUTED),
        id="python-sdk-404-32600-session-not-found",
    ),
    pytest.param(
        404,
        JSON,
        rpc_body({"code": -32600, "message": "Not Found: Session has been terminated"}),
        ctx(),
        None,
        Expect(SessionLost, NOT_EXECUTED),
        id="python-sdk-404-session-has-been-terminated",
    ),
    pytest.param(
        404,
        JSON,
        rpc_body({"code": -32600, "message": "Not Found: Invalid or expired session ID"}),
        ctx(),
        None,
        Expect(SessionLost, NOT_EXECUTED),
        id="python-sdk-404-invalid-or-expired-session-id",
    ),
    pytest.param(
        404,
        TEXT,
        b"Could not find session",
        ctx(session_id=None),
        None,
        Expect(SessionLost, NOT_EXECUTED, message_contains="could not find session"),
        id="python-sdk-2x-legacy-sse-404-could-not-find-session",
    ),
    pytest.param(
        400,
        TEXT,
        b"session_id is required",
        ctx(session_id=None, ready=False),
        None,
        Expect(NotInitialized, NOT_EXECUTED),
        id="python-sdk-legacy-sse-400-session-id-is-required",
    ),
    pytest.param(
        404,
        JSON,
        rpc_body({"code": -32001, "message": "Session not found"}, None),
        ctx(),
        None,
        Expect(SessionLost, NOT_EXECUTED),
        id="typescript-404-32001-session-not-found",
    ),
    pytest.param(
        404,
        JSON,
        rpc_body({"code": -32001, "message": "Gone"}, None),
        ctx(),
        None,
        Expect(SessionLost, NOT_EXECUTED),
        id="typescript-404-32001-other-text-with-session",
    ),
    pytest.param(
        400,
        JSON,
        rpc_body({"code": -32000, "message": "Bad Request: No valid session ID provided"}, None),
        ctx(),
        None,
        Expect(SessionLost, NOT_EXECUTED),
        id="typescript-examples-400-32000-no-valid-session-id-with-session",
    ),
    pytest.param(
        400,
        JSON,
        rpc_body({"code": -32000, "message": "Bad Request: No valid session ID provided"}, None),
        ctx(session_id=None, ready=False),
        None,
        Expect(NotInitialized, NOT_EXECUTED),
        id="typescript-examples-400-32000-no-valid-session-id-without-session",
    ),
    pytest.param(
        404,
        "text/plain",
        b"session not found\n",
        ctx(),
        None,
        Expect(SessionLost, NOT_EXECUTED),
        id="go-sdk-404-text-plain-session-not-found",
    ),
    pytest.param(
        404,
        JSON,
        rpc_body({"code": -32004, "message": "Unknown session"}),
        ctx(),
        None,
        Expect(SessionLost, NOT_EXECUTED),
        id="wild-404-32004-unknown-session",
    ),
    pytest.param(
        200,
        JSON,
        rpc_body({"code": -32603, "message": "Session not found"}),
        ctx(),
        None,
        Expect(SessionLost, NOT_EXECUTED),
        id="wild-200-32603-session-not-found",
    ),
    pytest.param(
        503,
        TEXT,
        b"Service Unavailable",
        ctx(),
        None,
        Expect(ServerUnavailable, NOT_EXECUTED, status_code=503),
        id="wild-503-gone-session",
    ),
    pytest.param(
        404,
        "",
        b"",
        ctx(),
        None,
        Expect(SessionLost, NOT_EXECUTED),
        id="spec-404-empty-body-with-session",
    ),
    pytest.param(
        404,
        "text/html",
        b"<html>Not Found</html>",
        ctx(session_id=None),
        None,
        Expect(HTTPStatusError, NOT_EXECUTED, status_code=404),
        id="404-without-session-is-plain-http-error",
    ),
    pytest.param(
        404,
        JSON,
        rpc_body({"code": -32601, "message": "Method not found", "data": "tasks/list"}),
        ctx("tasks/list"),
        None,
        Expect(MethodNotFound, NOT_EXECUTED, code=-32601),
        id="modern-404-32601-method-not-found-not-session-lost",
    ),
    # Load shedding and gateways.
    pytest.param(
        429,
        JSON,
        b'{"error": "slow down"}',
        ctx(),
        "30",
        Expect(ServerUnavailable, NOT_EXECUTED, status_code=429, retry_after=30.0),
        id="429-retry-after-seconds",
    ),
    pytest.param(
        503,
        TEXT,
        b"",
        ctx(),
        "120",
        Expect(ServerUnavailable, NOT_EXECUTED, status_code=503, retry_after=120.0),
        id="503-retry-after-seconds",
    ),
    pytest.param(
        503,
        TEXT,
        b"",
        ctx(),
        "Wed, 21 Oct 2015 07:28:00 GMT",
        Expect(ServerUnavailable, NOT_EXECUTED, status_code=503, retry_after=0.0),
        id="503-retry-after-http-date-in-the-past",
    ),
    pytest.param(
        429,
        TEXT,
        b"",
        ctx(),
        "soon",
        Expect(ServerUnavailable, NOT_EXECUTED, status_code=429, retry_after=None),
        id="429-retry-after-garbage",
    ),
    pytest.param(
        502,
        "text/html",
        b"<html>Bad Gateway</html>",
        ctx(),
        None,
        Expect(ServerUnavailable, MAYBE, status_code=502),
        id="502-gateway-maybe",
    ),
    pytest.param(
        504,
        "text/html",
        b"<html>Gateway Timeout</html>",
        ctx(),
        "10",
        Expect(ServerUnavailable, MAYBE, status_code=504, retry_after=10.0),
        id="504-gateway-maybe",
    ),
    # Statuses no dialect explains.
    pytest.param(
        401,
        JSON,
        b'{"error": "invalid_token"}',
        ctx(),
        None,
        Expect(HTTPStatusError, NOT_EXECUTED, status_code=401),
        id="401-unauthorized",
    ),
    pytest.param(
        405,
        TEXT,
        b"Method Not Allowed",
        ctx(),
        None,
        Expect(HTTPStatusError, NOT_EXECUTED, status_code=405),
        id="405-method-not-allowed",
    ),
    pytest.param(
        415,
        TEXT,
        b"Unsupported Media Type",
        ctx(),
        None,
        Expect(HTTPStatusError, NOT_EXECUTED, status_code=415),
        id="415-unsupported-media-type",
    ),
    pytest.param(
        408,
        TEXT,
        b"Request Timeout",
        ctx(),
        None,
        Expect(HTTPStatusError, MAYBE, status_code=408),
        id="408-request-timeout-maybe",
    ),
    pytest.param(
        500,
        TEXT,
        b"Internal Server Error",
        ctx(),
        None,
        Expect(HTTPStatusError, MAYBE, status_code=500, message_contains="internal server error"),
        id="500-generic-maybe",
    ),
    pytest.param(
        200,
        "text/html; charset=utf-8",
        b"<html><body>Sign in</body></html>",
        ctx(),
        None,
        Expect(MalformedMessage, MAYBE, message_contains="text/html"),
        id="200-text-html-malformed",
    ),
    pytest.param(
        200,
        "",
        b"",
        ctx(),
        None,
        Expect(MalformedMessage, MAYBE),
        id="200-empty-no-content-type-malformed",
    ),
    pytest.param(
        400,
        JSON,
        rpc_body({"message": "no code"}),
        ctx(),
        None,
        Expect(MalformedMessage, MAYBE),
        id="400-error-object-without-code-malformed",
    ),
    # Protocol 2026-07-28: all sent with HTTP 400.
    pytest.param(
        400,
        JSON,
        rpc_body({"code": -32020, "message": "Mcp-Method header does not match body"}),
        ctx(),
        None,
        Expect(ServerError, NOT_EXECUTED, code=-32020),
        id="protocol-2026-400-32020-header-mismatch",
    ),
    pytest.param(
        400,
        JSON,
        rpc_body({"code": -32021, "message": "Missing required client capability: sampling"}),
        ctx(),
        None,
        Expect(ServerError, NOT_EXECUTED, code=-32021),
        id="protocol-2026-400-32021-missing-client-capability",
    ),
    pytest.param(
        400,
        JSON,
        rpc_body(
            {
                "code": -32022,
                "message": "Unsupported protocol version",
                "data": {"supported": ["2026-07-28"]},
            }
        ),
        ctx("initialize", session_id=None, ready=False),
        None,
        Expect(UnsupportedProtocolVersion, NOT_EXECUTED, supported=("2026-07-28",)),
        id="protocol-2026-400-32022-unsupported-version",
    ),
    pytest.param(
        400,
        JSON,
        rpc_body({"code": -32603, "message": "Internal error"}),
        ctx(),
        None,
        Expect(ServerError, NOT_EXECUTED, code=-32603),
        id="400-json-rpc-error-is-http-level-rejection",
    ),
]


@pytest.mark.parametrize(
    ("status", "content_type", "body", "context", "retry_after", "expect"), HTTP_CASES
)
def test_classify_http(
    status: int,
    content_type: str,
    body: bytes,
    context: FailureContext,
    retry_after: str | None,
    expect: Expect,
) -> None:
    err = classify_http(status, content_type, body, context, retry_after=retry_after)
    check(err, expect, context)


def test_classify_http_retry_after_http_date_in_the_future() -> None:
    header = email.utils.formatdate(time.time() + 120, usegmt=True)
    err = classify_http(503, TEXT, b"", ctx(), retry_after=header)
    assert type(err) is ServerUnavailable
    assert err.retry_after is not None
    assert 100.0 < err.retry_after <= 120.0


def test_classify_http_keeps_a_body_excerpt_for_diagnosis() -> None:
    err = classify_http(500, TEXT, b"x" * 10_000, ctx())
    assert type(err) is HTTPStatusError
    assert err.body == "x" * 500
    assert len(err.message) < 300


def test_failure_context_defaults() -> None:
    context = FailureContext()
    assert context.session_ready is True
    assert context.context() == {"method": None, "request_id": None, "session_id": None}
    err = classify_rpc_error({"code": -32603, "message": "boom"}, context)
    assert (err.method, err.request_id, err.session_id) == (None, None, None)


# --- Retry-After ----------------------------------------------------------------------------

NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("120", 120.0, id="seconds"),
        pytest.param("  5 ", 5.0, id="seconds-with-whitespace"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("1.5", 1.5, id="fractional-seconds-lenient"),
        pytest.param("-5", None, id="negative-means-no-hint"),
        pytest.param("Wed, 21 Oct 2015 07:28:30 GMT", 30.0, id="imf-fixdate"),
        pytest.param("Wednesday, 21-Oct-15 07:28:30 GMT", 30.0, id="rfc850-date"),
        pytest.param("Wed, 21 Oct 2015 07:27:00 GMT", 0.0, id="date-in-the-past"),
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("   ", None, id="blank"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("Wed, 21 Oct 2015", None, id="date-without-time"),
        pytest.param("0x10", None, id="hex"),
        pytest.param("inf", None, id="infinity"),
        pytest.param("-inf", None, id="negative-infinity"),
        pytest.param("nan", None, id="nan"),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.fixture
def local_time_not_utc() -> Iterator[None]:
    """Run with a local time zone five hours off UTC (naive dates must not use it)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "EST+05"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.mark.usefixtures("local_time_not_utc")
@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Wed Oct 21 07:28:30 2015", id="asctime-date"),
        pytest.param("Wed, 21 Oct 2015 07:28:30 -0000", id="minus-zero-zone"),
        pytest.param("Wed, 21 Oct 2015 07:28:30 GMT", id="imf-fixdate"),
    ],
)
def test_parse_retry_after_dates_are_gmt_whatever_the_local_zone(value: str) -> None:
    assert parse_retry_after(value, now=NOW) == 30.0
