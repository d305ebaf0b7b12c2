"""pytest fixtures for the real `mcp` 2.3.0 peer server.

Use them from any conftest, e.g. in ``tests/conftest.py``::

    pytest_plugins = ["tests.peers.fixtures"]      # if ``tests`` is a package
    # or
    from tests.peers.fixtures import mcp_peer, mcp_peer_factory  # noqa: F401

The session-scoped servers are shared by every test: do not stop, kill or restart
them. A test that wants to break a server takes `mcp_peer_factory` and gets its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from .launcher import McpPeer, launch_mcp_peer

__all__ = [
    "mcp_peer",
    "mcp_peer_factory",
    "mcp_peer_json",
    "mcp_peer_stateless",
]


@pytest.fixture(scope="session")
def mcp_peer() -> Iterator[McpPeer]:
    """Shared stateful peer (SSE responses). Do not stop or restart it."""
    peer = launch_mcp_peer()
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture(scope="session")
def mcp_peer_stateless() -> Iterator[McpPeer]:
    """Shared stateless peer (no Mcp-Session-Id)."""
    peer = launch_mcp_peer(stateless=True)
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture(scope="session")
def mcp_peer_json() -> Iterator[McpPeer]:
    """Shared stateful peer answering with application/json instead of SSE."""
    peer = launch_mcp_peer(json_response=True)
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
def mcp_peer_factory() -> Iterator[Callable[..., McpPeer]]:
    """Private peers: ``factory(stateless=..., json_response=...)``; all stopped after the test.

    Private peers may be stopped, killed (`McpPeer.kill`) or restarted on the same
    port (`McpPeer.restart`, which drops every session: the next request carrying
    the old ``Mcp-Session-Id`` gets 404).
    """
    peers: list[McpPeer] = []

    def factory(*, stateless: bool = False, json_response: bool = False) -> McpPeer:
        peer = launch_mcp_peer(stateless=stateless, json_response=json_response)
        peers.append(peer)
        return peer

    try:
        yield factory
    finally:
        for peer in peers:
            peer.stop()
