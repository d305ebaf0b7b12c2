"""The peer launchers themselves: the Node peer's lifecycle, and missing peers failing loudly.

Nothing here uses resilient_mcp: these tests check the test infrastructure.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from . import launcher
from .fixtures import PeerPool
from .launcher import EverythingPeer, PeerUnavailable

pytestmark = pytest.mark.peer


def _no_zombie(pid: int) -> None:
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_node_preload_binds_loopback_only() -> None:
    """Express's ``app.listen(PORT)`` binds every interface; the preload makes it 127.0.0.1."""
    script = (
        "const s = require('node:http').createServer();"
        "s.listen(0, () => { console.log(s.address().address); s.close(); });"
    )
    out = subprocess.run(
        [launcher.node_executable(), "--require", str(launcher.NODE_PRELOAD), "-e", script],
        input=b"",  # stdin at EOF: the preload ends the process once the script is done
        capture_output=True,
        timeout=20,
        check=True,
    )
    assert out.stdout.decode().strip() == "127.0.0.1"


def test_everything_peer_lifecycle() -> None:
    peer = EverythingPeer("streamable-http")
    try:
        assert peer.url == f"http://127.0.0.1:{peer.port}/mcp"
        assert "listening on port" in peer.stderr_text()
        # A session-less POST that is not `initialize`: the TypeScript SDK's refusal.
        response = httpx.post(
            peer.url,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream"},
            timeout=10,
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == -32000

        port, pid = peer.port, peer.pid
        peer.restart()
        assert peer.port == port
        assert peer.pid != pid
        assert peer.is_running()

        process = peer.process
        assert process is not None
        assert process.stdin is not None
        process.stdin.close()  # what the OS does when the parent dies
        assert process.wait(timeout=10) == 0
    finally:
        peer.stop()
    assert peer.pid is not None
    _no_zombie(peer.pid)


def test_missing_peers_fail_with_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No .venv-mcp126 or node_modules: a clear error naming `make test`, never a skip."""
    monkeypatch.setattr(launcher, "MCP126_STAMP", tmp_path / "missing" / ".installed")
    monkeypatch.setattr(launcher, "NODE_STAMP", tmp_path / "missing" / ".installed")
    for kind in ("mcp126", "everything"):
        with pytest.raises(PeerUnavailable, match="make test"):
            launcher.launch_peer(kind, "sse")
        with pytest.raises(PeerUnavailable, match="make test"):
            launcher.stdio_command(kind)

        pool = PeerPool()
        with pytest.raises(pytest.fail.Exception, match="make test"):
            pool.get(kind, "streamable-http")
        # Remembered: the next test that wants it fails at once, without a new attempt.
        with pytest.raises(pytest.fail.Exception, match="make test"):
            pool.get(kind, "streamable-http")
