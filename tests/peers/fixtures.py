"""pytest fixtures for the real peer servers (see `tests/peers/launcher.py`).

Use them from any conftest, e.g. in ``tests/conftest.py``::

    pytest_plugins = ["tests.peers.fixtures"]      # if ``tests`` is a package
    # or
    from tests.peers.fixtures import mcp_peer, mcp_peer_factory  # noqa: F401

The session-scoped servers are shared by every test: do not stop, kill or restart
them. A test that wants to break a server takes `mcp_peer_factory` and gets its own.

`peer_pool` serves every peer and HTTP transport, each started on first use and
stopped at the end of the session; `peer_stdio_command` gives the command line of a
peer's stdio server. Peers that ``make test`` installs (``.venv-mcp126``,
``node_modules``) *fail* the test with a message saying to run ``make test`` when they
are missing: a missing peer is a broken setup, never a silent skip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from .launcher import (
    HttpTransport,
    McpPeer,
    PeerKind,
    PeerProcess,
    PeerStartError,
    PeerUnavailable,
    launch_mcp_peer,
    launch_peer,
    stdio_command,
)

__all__ = [
    "PeerPool",
    "mcp_peer",
    "mcp_peer_factory",
    "mcp_peer_json",
    "mcp_peer_sse",
    "mcp_peer_stateless",
    "peer_pool",
    "peer_stdio_command",
]


class PeerPool:
    """Shared peers, one per (kind, transport), started on first use. Do not stop them.

    A peer that failed to start is not tried again in the same session: every test
    that wants it fails at once with the first error.
    """

    def __init__(self) -> None:
        self._peers: dict[tuple[PeerKind, HttpTransport], PeerProcess] = {}
        self._failed: dict[tuple[PeerKind, HttpTransport], str] = {}

    def get(self, kind: PeerKind, transport: HttpTransport = "streamable-http") -> PeerProcess:
        key = (kind, transport)
        if key in self._failed:
            pytest.fail(self._failed[key], pytrace=False)
        peer = self._peers.get(key)
        if peer is None or not peer.is_running():
            try:
                peer = launch_peer(kind, transport)
            except PeerStartError as exc:
                self._failed[key] = f"{kind}/{transport}: {exc}"
                pytest.fail(self._failed[key], pytrace=False)
            self._peers[key] = peer
        return peer

    def stop_all(self) -> None:
        peers, self._peers = list(self._peers.values()), {}
        for peer in peers:
            peer.stop()


@pytest.fixture(scope="session")
def peer_pool() -> Iterator[PeerPool]:
    """Every peer over every HTTP transport, lazily started, stopped after the session."""
    pool = PeerPool()
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture(scope="session")
def peer_stdio_command() -> Callable[[PeerKind], list[str]]:
    """``command(kind)``: the command line of peer `kind`'s stdio server (absolute paths)."""

    def command(kind: PeerKind) -> list[str]:
        try:
            return stdio_command(kind)
        except PeerUnavailable as exc:
            pytest.fail(f"{kind}/stdio: {exc}", pytrace=False)

    return command


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


@pytest.fixture(scope="session")
def mcp_peer_sse() -> Iterator[McpPeer]:
    """Shared peer over the legacy HTTP+SSE transport (``GET /sse``)."""
    peer = launch_mcp_peer(sse=True)
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
def mcp_peer_factory() -> Iterator[Callable[..., McpPeer]]:
    """Private peers: ``factory(stateless=..., json_response=..., sse=...)``; all stopped after
    the test.

    Private peers may be stopped, killed (`McpPeer.kill`) or restarted on the same
    port (`McpPeer.restart`, which drops every session: the next request carrying
    the old ``Mcp-Session-Id`` gets 404).
    """
    peers: list[McpPeer] = []

    def factory(
        *, stateless: bool = False, json_response: bool = False, sse: bool = False
    ) -> McpPeer:
        peer = launch_mcp_peer(stateless=stateless, json_response=json_response, sse=sse)
        peers.append(peer)
        return peer

    try:
        yield factory
    finally:
        for peer in peers:
            peer.stop()
