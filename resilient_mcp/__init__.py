"""resilient-mcp: an MCP client that keeps working when servers are strict, slow, racy or flaky.

Quick start::

    import resilient_mcp

    async with resilient_mcp.connect("http://127.0.0.1:8000/mcp") as client:
        result = await client.call_tool("echo", {"text": "hi"})
        print(result.text)

    async with resilient_mcp.connect(["uvx", "some-mcp-server"]) as client:  # stdio
        ...

Everything public is importable from here; modules whose names start with ``_`` are
implementation details. Data models live in :mod:`resilient_mcp.types`; the test
servers in :mod:`resilient_mcp.testing` (``pip install resilient-mcp[testing]``).
"""

from ._client import Client, connect
from ._config import DEFAULT, Limits, Timeouts
from ._exceptions import (
    ClientClosed,
    ConnectError,
    ConnectionLost,
    Execution,
    FateUnknown,
    HandshakeError,
    HTTPStatusError,
    InputRequiredError,
    InvalidParams,
    MalformedMessage,
    MCPError,
    MessageTooLarge,
    MethodNotFound,
    NotInitialized,
    ProtocolError,
    QueueFull,
    RequestCancelled,
    RequestTimeout,
    ResourceNotFound,
    ServerError,
    ServerUnavailable,
    SessionError,
    SessionLost,
    ToolError,
    ToolOutputError,
    TransportError,
    UnsupportedProtocolVersion,
    UsageError,
)
from ._retry import RetryPolicy, disable_backoff
from ._session import (
    LATEST_PROTOCOL_VERSION,
    LEGACY_PROTOCOL_VERSIONS,
    MODERN_PROTOCOL_VERSIONS,
    SUPPORTED_PROTOCOL_VERSIONS,
    Handlers,
    SessionState,
    SessionStats,
)
from ._stdio_transport import StdioServer

__version__ = "0.1.0.dev0"

__all__ = [
    "DEFAULT",
    "LATEST_PROTOCOL_VERSION",
    "LEGACY_PROTOCOL_VERSIONS",
    "MODERN_PROTOCOL_VERSIONS",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "Client",
    "ClientClosed",
    "ConnectError",
    "ConnectionLost",
    "Execution",
    "FateUnknown",
    "HTTPStatusError",
    "Handlers",
    "HandshakeError",
    "InputRequiredError",
    "InvalidParams",
    "Limits",
    "MCPError",
    "MalformedMessage",
    "MessageTooLarge",
    "MethodNotFound",
    "NotInitialized",
    "ProtocolError",
    "QueueFull",
    "RequestCancelled",
    "RequestTimeout",
    "ResourceNotFound",
    "RetryPolicy",
    "ServerError",
    "ServerUnavailable",
    "SessionError",
    "SessionLost",
    "SessionState",
    "SessionStats",
    "StdioServer",
    "Timeouts",
    "ToolError",
    "ToolOutputError",
    "TransportError",
    "UnsupportedProtocolVersion",
    "UsageError",
    "__version__",
    "connect",
    "disable_backoff",
]
