"""Exit codes: one per branch of the error tree, so a script can tell failures apart.

The table is the contract documented in docs/cli.md; codes are never reused or
renumbered. The most specific class wins: the list is searched in order.
"""

from __future__ import annotations

import enum
from typing import Final

from resilient_mcp import _exceptions as errors
from resilient_mcp.auth import AuthError


class Exit(enum.IntEnum):
    """The process exit codes of ``resilient-mcp``."""

    OK = 0
    USAGE = 1
    """Bad command line, bad target or config, or the library's UsageError."""
    TOOL_ERROR = 2
    """The tool ran and reported failure (``isError``), or broke its outputSchema."""
    CONNECT = 3
    """The server could not be reached (never sent)."""
    TRANSPORT = 4
    """The connection broke, or the server said 429/502/503/504."""
    SESSION = 5
    """The session stayed unusable (not initialized / lost) despite recovery."""
    HANDSHAKE = 6
    """The handshake failed, or no common protocol version."""
    PROTOCOL = 7
    """The server sent something that is not valid MCP."""
    HTTP_STATUS = 8
    """An HTTP status no other class explains (405, 500, ...)."""
    AUTH = 9
    """HTTP 401 or 403, or an authorization (`--auth`) that failed: credentials missing
    or refused."""
    SERVER_ERROR = 10
    """A JSON-RPC error answer (invalid params, method or resource not found, ...)."""
    TIMEOUT = 11
    """No answer within ``--timeout``."""
    FATE_UNKNOWN = 12
    """A side-effecting call may have run; it was not retried."""
    INPUT_REQUIRED = 13
    """The server asked for input (elicitation, sampling) the CLI cannot give."""
    OTHER = 14
    """Any other MCPError (queue full, cancelled)."""
    LOAD_FAILURES = 15
    """``load``: at least one request failed (the report says which classes)."""
    INTERRUPTED = 130
    """Ctrl-C."""


# Order matters: subclasses before their bases.
_TABLE: Final[tuple[tuple[type[errors.MCPError], Exit], ...]] = (
    (errors.ClientClosed, Exit.USAGE),
    (errors.UsageError, Exit.USAGE),
    (errors.ToolError, Exit.TOOL_ERROR),
    (errors.ConnectError, Exit.CONNECT),
    (errors.TransportError, Exit.TRANSPORT),
    (errors.SessionError, Exit.SESSION),
    (errors.HandshakeError, Exit.HANDSHAKE),
    (errors.ProtocolError, Exit.PROTOCOL),
    (errors.ServerError, Exit.SERVER_ERROR),
    (errors.RequestTimeout, Exit.TIMEOUT),
    (errors.FateUnknown, Exit.FATE_UNKNOWN),
    (errors.InputRequiredError, Exit.INPUT_REQUIRED),
)

_AUTH_STATUSES: Final = frozenset({401, 403})


def exit_code(error: errors.MCPError) -> Exit:
    """The exit code for an error of the library's tree."""
    if isinstance(error, errors.HTTPStatusError):
        return Exit.AUTH if error.status_code in _AUTH_STATUSES else Exit.HTTP_STATUS
    if isinstance(error, AuthError):  # --auth: authorization failed
        return Exit.AUTH
    for cls, code in _TABLE:
        if isinstance(error, cls):
            return code
    return Exit.OTHER


def error_class(error: BaseException) -> str:
    """The public name of an error's class, as scripts see it in ``--json`` output."""
    return type(error).__name__
