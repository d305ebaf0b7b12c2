"""Makes the peer fixtures available to the tests in this directory."""

from .fixtures import (
    mcp_peer,
    mcp_peer_factory,
    mcp_peer_json,
    mcp_peer_sse,
    mcp_peer_stateless,
    peer_pool,
    peer_stdio_command,
)

__all__ = [
    "mcp_peer",
    "mcp_peer_factory",
    "mcp_peer_json",
    "mcp_peer_sse",
    "mcp_peer_stateless",
    "peer_pool",
    "peer_stdio_command",
]
