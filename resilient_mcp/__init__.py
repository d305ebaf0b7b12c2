"""resilient-mcp: an MCP client that keeps working when servers are strict, slow, racy or flaky.

Quick start::

    import resilient_mcp

    async with resilient_mcp.connect("http://127.0.0.1:8000/mcp") as client:
        result = await client.call_tool("echo", {"text": "hi"})
        print(result.text)

    async with resilient_mcp.connect(["uvx", "some-mcp-server"]) as client:  # stdio
        ...

    server = resilient_mcp.HTTPServer(url, headers={"Authorization": "Bearer ..."})
    async with resilient_mcp.connect(server, timeouts=resilient_mcp.Timeouts(request=10)):
        ...

    with resilient_mcp.connect_sync(url) as client:  # from sync code: the same, blocking
        print(client.call_tool("echo", {"text": "hi"}).text)

    with resilient_mcp.connect_group_sync(config) as group:  # many servers, blocking
        print(group.call_tool("files__read_file", {"path": "a.txt"}).text)

Everything public is importable from here; modules whose names start with ``_`` are
implementation details. Data models live in :mod:`resilient_mcp.types`; the test
servers in :mod:`resilient_mcp.testing` (``pip install resilient-mcp[testing]``).
"""

from ._client import Client, connect
from ._config import USE_CLIENT_DEFAULT, Limits, Timeouts
from ._detection import Detection, DetectionCache
from ._exceptions import (
    AuthError,
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
from ._group import ClientGroup, MemberState, MemberStatus, connect_group
from ._group_sync import SyncClientGroup, connect_group_sync
from ._handlers import Handlers, ProgressCallback
from ._options import ClientOptions
from ._outcome import ContentPart, ToolOutcome, ToolStatus
from ._retry import RetryPolicy, disable_backoff
from ._session import SessionState
from ._stats import SessionStats
from ._sync import SyncClient, connect_sync
from ._targets import HTTPServer, StdioServer
from ._toolbox import Toolbox, ToolSource, ToolSpec
from ._versions import (
    LATEST_PROTOCOL_VERSION,
    LEGACY_PROTOCOL_VERSIONS,
    MODERN_PROTOCOL_VERSIONS,
    SUPPORTED_PROTOCOL_VERSIONS,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "LATEST_PROTOCOL_VERSION",
    "LEGACY_PROTOCOL_VERSIONS",
    "MODERN_PROTOCOL_VERSIONS",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "USE_CLIENT_DEFAULT",
    "AuthError",
    "Client",
    "ClientClosed",
    "ClientGroup",
    "ClientOptions",
    "ConnectError",
    "ConnectionLost",
    "ContentPart",
    "Detection",
    "DetectionCache",
    "Execution",
    "FateUnknown",
    "HTTPServer",
    "HTTPStatusError",
    "Handlers",
    "HandshakeError",
    "InputRequiredError",
    "InvalidParams",
    "Limits",
    "MCPError",
    "MalformedMessage",
    "MemberState",
    "MemberStatus",
    "MessageTooLarge",
    "MethodNotFound",
    "NotInitialized",
    "ProgressCallback",
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
    "SyncClient",
    "SyncClientGroup",
    "Timeouts",
    "ToolError",
    "ToolOutcome",
    "ToolOutputError",
    "ToolSource",
    "ToolSpec",
    "ToolStatus",
    "Toolbox",
    "TransportError",
    "UnsupportedProtocolVersion",
    "UsageError",
    "__version__",
    "connect",
    "connect_group",
    "connect_group_sync",
    "connect_sync",
    "disable_backoff",
]
