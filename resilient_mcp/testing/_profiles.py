"""Server dialects: how a real MCP server answers early requests and missing or gone sessions.

Every answer here is taken from docs/reference server-dialects.md (the source of real
servers, 2026-08 snapshots); the few marked *generic* are not documented for that server
and use the spec-conformant Python SDK 2.x answer instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

Profile = Literal[
    "python-sdk",
    "python-sdk-2",
    "python-sdk-sse",
    "rmcp-legacy",
    "typescript",
    "typescript-example",
    "server-everything",
    "go",
    "docker-gateway",
    "java",
    "lsp-style",
    "lenient",
]
"""The name of a server dialect `StrictServer` can reproduce."""

PROFILES: Final[tuple[Profile, ...]] = get_args(Profile)
"""Every profile name, in documentation order."""

DEFAULT_PROFILE: Final[Profile] = "python-sdk-2"

_JSON: Final = "application/json"
_TEXT: Final = "text/plain; charset=utf-8"

# What opens a profile's early-request gate (read from each server's source):
# "initialize":  the `initialize` result: Python SDK >= 1.18 (ServerSession sets
#                Initialized right after responding; mcp 2.x `initialize_accepted`),
#                go-sdk (`state.InitializeParams != nil`), the TypeScript transport
#                (`_initialized` is set by the initialize POST itself).
# "initialized": processing `notifications/initialized` (rmcp <= 1.3, LSP-style; Java
#                counts what beats it but serves it).
GateOn = Literal["initialize", "initialized"]

# How a profile treats a request that is processed before its gate opens:
# "in-band": a JSON-RPC error in an HTTP 200 answer; the session survives.
# "http":    an HTTP error status (`early_answer`); the session survives.
# "kill":    an HTTP error status (`early_answer`) and the session dies.
# "serve":   no gate: the request is served.
EarlyMode = Literal["in-band", "http", "kill", "serve"]

# How a profile treats a POST without a session id that is not `initialize`:
# "answer":    `missing_answer`, nothing else.
# "trap":      `missing_answer` plus the id of a fresh, never-initialized session that
#              stays alive (Python SDK 1.x).
# "discarded": `missing_answer` plus the id of a fresh session that is discarded at
#              once, so using it gives the gone answer (Python SDK 2.x).
# "temporary": served by a temporary, uninitialized session that is then discarded,
#              i.e. the early answer in-band (Go SDK / Docker MCP Gateway).
MissingMode = Literal["answer", "trap", "discarded", "temporary"]


@dataclass(frozen=True)
class HttpAnswer:
    """A complete HTTP answer: status, content type and exact body bytes."""

    status: int
    content_type: str
    body: bytes

    @classmethod
    def json(cls, status: int, payload: dict[str, Any]) -> HttpAnswer:
        # Keys keep the order given, so bodies match the real servers byte for byte.
        return cls(status, _JSON, json.dumps(payload, separators=(",", ":")).encode())

    @classmethod
    def text(cls, status: int, text: str) -> HttpAnswer:
        return cls(status, _TEXT, text.encode())


# The Python SDK 2.x answers, also used where a server's own answer is not documented.
_GENERIC_MISSING: Final = HttpAnswer.json(
    400,
    {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32600, "message": "Bad Request: Missing session ID"},
    },
)
_GENERIC_GONE: Final = HttpAnswer.json(
    404,
    {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Session not found"}},
)


@dataclass(frozen=True)
class Dialect:
    """Everything that differs between profiles."""

    name: Profile
    early: EarlyMode
    early_code: int = -32602
    early_message: str = "Invalid request parameters"
    """In-band message; ``{method}`` is replaced by the request's method."""
    early_data: Any = ""
    early_answer: HttpAnswer | None = None
    gate_ping: bool = False
    """Whether `ping` is gated like any other request."""
    gate_unknown: bool = True
    """Whether methods the server does not serve are gated (else -32601 at any time)."""
    unknown_as_invalid_params: bool = False
    """Unserved methods get -32602 "Invalid request parameters" (Python SDK 1.x)."""
    missing: MissingMode = "answer"
    missing_answer: HttpAnswer = _GENERIC_MISSING
    gone: HttpAnswer = _GENERIC_GONE
    gate_on: GateOn = "initialize"
    """What opens the gate: the `initialize` result or `notifications/initialized`."""
    ack_first: bool = False
    """Streamable HTTP: a POST of notifications gets its 202 before the notification is
    processed (Python SDK `_handle_post_request`, go-sdk), rather than after it
    (TypeScript: `onmessage` runs before the 202 is returned)."""
    terminated: HttpAnswer | None = None
    """JSON response mode: what a request gets whose session ends while it is in flight
    (it may have run). None: the mcp 2.3 answer (`_TERMINATED`)."""
    cancelled_code: int = 0
    """The error code a request cancelled by the client is answered with: 0 in the
    Python SDK 1.x dispatcher; mcp 2.x's Streamable HTTP transport answers -32800
    (`_terminate_unanswered_request`), as the 2025 wire must end the request's stream."""
    header_versions: tuple[str, ...] | None = None
    """Servers that check the `MCP-Protocol-Version` header of every POST before they
    look at sessions (Go): the versions they accept. None: no such early check."""
    unsupported_version: HttpAnswer | None = None
    """What those servers answer a POST whose header names another version, e.g. the
    modern probe's ``2026-07-28``."""

    @property
    def terminated_answer(self) -> HttpAnswer:
        return _TERMINATED if self.terminated is None else self.terminated

    def early_error(self, method: str) -> tuple[int, str, Any]:
        return self.early_code, self.early_message.replace("{method}", method), self.early_data


# mcp 2.3 `_handle_post_request`, JSON mode: the request's stream closed without a
# response because the session was terminated (DELETE, idle timeout, shutdown).
_TERMINATED: Final = HttpAnswer.json(
    500,
    {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32603, "message": "Session terminated before the request completed"},
    },
)

_PYTHON_2: Final = Dialect(
    name="python-sdk-2",
    early="in-band",
    cancelled_code=-32800,
    gate_unknown=False,
    missing="discarded",
    ack_first=True,
    terminated=_TERMINATED,
)

_PYTHON_1: Final = Dialect(
    name="python-sdk",
    early="in-band",
    unknown_as_invalid_params=True,
    ack_first=True,
    # mcp 1.26 JSON mode: the request stream ends without a response, so the
    # `async for` falls through to "No response received" (default code -32600).
    terminated=HttpAnswer.json(
        500,
        {
            "jsonrpc": "2.0",
            "id": "server-error",
            "error": {"code": -32600, "message": "Error processing request: No response received"},
        },
    ),
    missing="trap",
    missing_answer=HttpAnswer.json(
        400,
        {
            "jsonrpc": "2.0",
            "id": "server-error",
            "error": {"code": -32600, "message": "Bad Request: Missing session ID"},
        },
    ),
)

_RMCP_LEGACY: Final = Dialect(
    name="rmcp-legacy",
    early="kill",
    gate_on="initialized",
    gate_ping=True,
    early_answer=HttpAnswer.text(
        500, "Encounter an error when get session: Session error: Session service terminated"
    ),
    missing_answer=HttpAnswer.text(422, "Unexpected message, expect initialize request"),
    gone=HttpAnswer.text(404, "Not Found: Session not found"),
)

_TS_NOT_INITIALIZED: Final = HttpAnswer.json(
    400,
    {
        "jsonrpc": "2.0",
        "error": {"code": -32000, "message": "Bad Request: Server not initialized"},
        "id": None,
    },
)

_TYPESCRIPT: Final = Dialect(
    name="typescript",
    early="http",
    early_answer=_TS_NOT_INITIALIZED,
    missing_answer=_TS_NOT_INITIALIZED,
    gone=HttpAnswer.json(
        404,
        {"jsonrpc": "2.0", "error": {"code": -32001, "message": "Session not found"}, "id": None},
    ),
)

_NO_VALID_SESSION: Final = HttpAnswer.json(
    400,
    {
        "jsonrpc": "2.0",
        "error": {"code": -32000, "message": "Bad Request: No valid session ID provided"},
        "id": None,
    },
)

_TYPESCRIPT_EXAMPLE: Final = Dialect(
    name="typescript-example",
    early="http",
    early_answer=_TS_NOT_INITIALIZED,
    missing_answer=_NO_VALID_SESSION,
    gone=_NO_VALID_SESSION,
)

# @modelcontextprotocol/server-everything (2026.8.31, dist/transports/streamableHttp.js):
# an example-style app, but a POST without a session id always gets a fresh transport
# (it does not check `isInitializeRequest` as the SDK's examples do), so a missing id
# meets the transport's own "Server not initialized"; an unknown id gets its 400. That
# 400's `id` is `req.body.id` and express parses no body there, so the key is absent.
# Checked against the real server (POST, GET and DELETE with a bogus id) on 2026-12-03.
_EVERYTHING_GONE: Final = HttpAnswer.json(
    400,
    {
        "jsonrpc": "2.0",
        "error": {"code": -32000, "message": "Bad Request: No valid session ID provided"},
    },
)

_SERVER_EVERYTHING: Final = Dialect(
    name="server-everything",
    early="http",
    early_answer=_TS_NOT_INITIALIZED,
    missing_answer=_TS_NOT_INITIALIZED,
    gone=_EVERYTHING_GONE,
)

_GO_VERSIONS: Final = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")

_GO: Final = Dialect(
    name="go",
    early="in-band",
    early_code=0,
    early_message='method "{method}" is invalid during session initialization',
    early_data=None,
    missing="temporary",
    # streamableServerConn.servePOST: notifications go to the connection, then 202.
    ack_first=True,
    # Go's http.Error: text/plain, nosniff, and a trailing newline.
    gone=HttpAnswer.text(404, "session not found\n"),
    # go-sdk <= v1.6 StreamableHTTPHandler.ServeHTTP: after the session lookup, before a
    # session-less POST gets its temporary session.
    header_versions=_GO_VERSIONS,
    unsupported_version=HttpAnswer.text(
        400,
        "Bad Request: Unsupported protocol version (supported versions: "
        + ",".join(_GO_VERSIONS)
        + ")\n",
    ),
)

# java-sdk over Streamable HTTP (McpStreamableServerSession): no early gate. A request
# after the `initialize` result is served at once (only its stdio and HTTP+SSE session,
# McpServerSession, parks requests until `initialized`; this server does not serve Java
# over those), and a notification is processed before its 202 (`accept(...).block()`,
# then SC_ACCEPTED). HttpServletStreamableServerTransportProvider answers a missing id 400
# and an unknown one 404, each with a serialized McpError: the bodies keep its code and
# message, not the exception fields Jackson adds.
_JAVA: Final = Dialect(
    name="java",
    early="serve",
    gate_on="initialized",
    missing_answer=HttpAnswer.json(
        400,
        {
            "jsonRpcError": {
                "code": -32601,
                "message": "Session ID required in mcp-session-id header",
            },
            "message": "Session ID required in mcp-session-id header",
        },
    ),
    gone=HttpAnswer.json(
        404,
        {
            "jsonRpcError": {"code": -32603, "message": "Session not found"},
            "message": "Session not found",
        },
    ),
)

_LSP: Final = Dialect(
    name="lsp-style",
    early="in-band",
    early_code=-32002,
    early_message="Server not initialized",
    early_data=None,
    gate_on="initialized",
)

# Generic (no real source): serves everything, counting what beats `initialized`.
_LENIENT: Final = Dialect(name="lenient", early="serve", gate_on="initialized")

# Legacy HTTP+SSE: the early answer travels as an SSE `message` event; the HTTP layer
# is handled separately (202 before queueing, 202-then-silence for dead sessions).
_PYTHON_SSE: Final = Dialect(
    name="python-sdk-sse",
    early="in-band",
    ack_first=True,
    unknown_as_invalid_params=True,
    missing_answer=HttpAnswer.text(400, "session_id is required"),
    gone=HttpAnswer.text(404, "Could not find session"),
)

DIALECTS: Final[dict[str, Dialect]] = {
    dialect.name: dialect
    for dialect in (
        _PYTHON_1,
        _PYTHON_2,
        _PYTHON_SSE,
        _RMCP_LEGACY,
        _TYPESCRIPT,
        _TYPESCRIPT_EXAMPLE,
        _SERVER_EVERYTHING,
        _GO,
        _JAVA,
        _LSP,
        _LENIENT,
    )
}
DIALECTS["docker-gateway"] = _GO
assert set(DIALECTS) == set(PROFILES)
