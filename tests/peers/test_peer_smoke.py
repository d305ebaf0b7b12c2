"""The peer server works with the official `mcp` client; the launcher cleans up.

Nothing here uses resilient_mcp: these tests check the test infrastructure itself.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import anyio
import httpx
import mcp_types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning

from .launcher import McpPeer, async_mcp_peer

pytestmark = pytest.mark.peer

T = TypeVar("T")

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
LEGACY_VERSION = "2025-11-25"


def run(coro_fn: Callable[[], Coroutine[Any, Any, T]], timeout: float = 20.0) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro_fn()

    return asyncio.run(bounded())


def text_of(result: mcp_types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, mcp_types.TextContent)
    return block.text


@pytest.fixture(params=["stateful", "stateless", "json"])
def any_peer(request: pytest.FixtureRequest) -> McpPeer:
    name = {"stateful": "mcp_peer", "stateless": "mcp_peer_stateless", "json": "mcp_peer_json"}
    peer = request.getfixturevalue(name[request.param])
    assert isinstance(peer, McpPeer)
    return peer


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_tools_with_official_client(any_peer: McpPeer, mode: str) -> None:
    assert any_peer.url.startswith("http://127.0.0.1:")
    assert any_peer.url.endswith("/mcp")
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async def main() -> None:
        async with Client(any_peer.url, mode=mode) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert {"echo", "add", "progress", "log", "fail", "sleep"} <= tools

            assert text_of(await client.call_tool("echo", {"text": "hi"})) == "hi"

            added = await client.call_tool("add", {"a": 2, "b": 40})
            assert not added.is_error
            assert added.structured_content == {"result": 42}

            failed = await client.call_tool("fail", {"message": "nope"})
            assert failed.is_error
            assert "nope" in text_of(failed)

            done = await client.call_tool("progress", {"steps": 3}, progress_callback=on_progress)
            assert text_of(done) == "done 3"

    run(main)
    if not any_peer.json_response:  # a JSON response cannot carry notifications
        assert [p[0] for p in seen] == [1, 2, 3]


def test_resources_prompts_completion(mcp_peer: McpPeer) -> None:
    async def main() -> None:
        async with Client(mcp_peer.url, mode="legacy") as client:
            caps = client.server_capabilities
            assert caps.logging is not None
            assert caps.completions is not None

            uris = [str(r.uri) for r in (await client.list_resources()).resources]
            assert "resource://static/hello" in uris
            templates = (await client.list_resource_templates()).resource_templates
            assert [t.uri_template for t in templates] == ["resource://greeting/{name}"]

            static = await client.read_resource("resource://static/hello")
            templated = await client.read_resource("resource://greeting/bob")
            for res, expected in ((static, "hello world"), (templated, "Hello, bob!")):
                content = res.contents[0]
                assert isinstance(content, mcp_types.TextResourceContents)
                assert content.text == expected

            prompts = (await client.list_prompts()).prompts
            greet = next(p for p in prompts if p.name == "greet")
            assert [a.name for a in greet.arguments or []] == ["name"]
            got = await client.get_prompt("greet", {"name": "Ann"})
            message = got.messages[0].content
            assert isinstance(message, mcp_types.TextContent)
            assert "Ann" in message.text

            completion = await client.complete(
                mcp_types.PromptReference(name="greet"), {"name": "name", "value": "al"}
            )
            assert completion.completion.values == ["alice", "albert"]

    run(main)


def test_logging_set_level_and_messages(mcp_peer: McpPeer) -> None:
    logs: list[mcp_types.LoggingMessageNotificationParams] = []

    async def on_log(params: mcp_types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    async def main() -> None:
        async with Client(mcp_peer.url, mode="legacy", logging_callback=on_log) as client:
            assert text_of(await client.call_tool("log", {"message": "one"})) == "logged info"
            with pytest.warns(MCPDeprecationWarning):  # deprecated in 2026-07-28; fine here
                await client.set_logging_level("error")
            assert text_of(await client.call_tool("log", {"message": "two"})) == "filtered info"
            assert (
                text_of(await client.call_tool("log", {"message": "three", "level": "error"}))
                == "logged error"
            )

    run(main)
    assert [(entry.level, entry.data) for entry in logs] == [("info", "one"), ("error", "three")]


def _no_zombie(pid: int) -> None:
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_stop_reaps_the_process(mcp_peer_factory: Callable[..., McpPeer]) -> None:
    peer = mcp_peer_factory()
    pid = peer.pid
    assert pid is not None
    assert peer.is_running()
    peer.stop()
    assert not peer.is_running()
    assert peer.process is not None
    assert peer.process.returncode is not None
    _no_zombie(pid)
    peer.stop()  # idempotent


def test_child_exits_when_parent_goes_away(mcp_peer_factory: Callable[..., McpPeer]) -> None:
    peer = mcp_peer_factory()
    process = peer.process
    assert process is not None
    assert process.stdin is not None
    process.stdin.close()  # what the OS does when the parent dies
    assert process.wait(timeout=10) == 0


def test_restart_drops_sessions(mcp_peer_factory: Callable[..., McpPeer]) -> None:
    peer = mcp_peer_factory()
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "smoke", "version": "0"},
        },
    }
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    with httpx.Client(timeout=10) as http:
        response = http.post(peer.url, headers=HEADERS, json=init)
        assert response.status_code == 200
        session = {"Mcp-Session-Id": response.headers["mcp-session-id"]}
        port, pid = peer.port, peer.pid
        peer.restart()
        assert (peer.port, peer.is_running()) == (port, True)
        assert peer.pid != pid
        response = http.post(peer.url, headers={**HEADERS, **session}, json=ping)
        assert response.status_code == 404


def test_startup_failure_is_reported() -> None:
    from .launcher import PeerStartError, launch_mcp_peer

    with pytest.raises(PeerStartError, match="exited with code"):
        launch_mcp_peer(python="/bin/false")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_async_launcher(backend: str) -> None:
    async def main() -> int:
        with anyio.fail_after(30):
            async with async_mcp_peer(stateless=True) as peer:
                async with httpx.AsyncClient(timeout=10) as http:
                    response = await http.post(
                        peer.url,
                        headers=HEADERS,
                        json={
                            "jsonrpc": "2.0",
                            "id": 1,
                            "method": "initialize",
                            "params": {
                                "protocolVersion": LEGACY_VERSION,
                                "capabilities": {},
                                "clientInfo": {"name": "smoke", "version": "0"},
                            },
                        },
                    )
                    assert response.status_code == 200
                pid = peer.pid
            assert pid is not None
            assert not peer.is_running()
            return pid

    pid = anyio.run(main, backend=backend)
    _no_zombie(pid)


def test_runs_as_module() -> None:
    """``python -m tests.peers.mcp_server_app --help`` works from the repo root too."""
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-m", "tests.peers.mcp_server_app", "--help"],
        cwd=root,
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert b"--stateless" in out.stdout


def test_keep_alive_latency_has_no_nagle_stall(mcp_peer_stateless: McpPeer) -> None:
    """Regression: without TCP_NODELAY on the server's sockets, every response after the
    first on a keep-alive connection waited ~40 ms for a delayed ACK."""
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "x"}},
    }
    headers = {**HEADERS, "MCP-Protocol-Version": LEGACY_VERSION}
    samples = []
    with httpx.Client(timeout=10) as http:
        for _ in range(8):
            start = time.perf_counter()
            response = http.post(mcp_peer_stateless.url, headers=headers, json=call)
            samples.append(time.perf_counter() - start)
            assert response.status_code == 200
    assert statistics.median(samples[1:]) < 0.035, samples
