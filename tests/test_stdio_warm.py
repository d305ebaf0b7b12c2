"""A stdio server process kept warm for the next client (``StdioServer(keep_alive=...)``).

Pins: the next client of the same command line gets the same process (by PID) and does
its own handshake on it; a different environment or argument never shares it; two
clients never share one at once; an idle, exited or refused process is not reused; and
no process outlives its event loop or the interpreter. Real servers (mcp 2.3, mcp 1.26,
server-everything) take a second ``initialize`` on the same process. Nothing here
sleeps: tests wait for the log record or the process's exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

import resilient_mcp
from resilient_mcp import Client, DetectionCache, StdioServer, UsageError
from tests.peers.launcher import PeerUnavailable, stdio_command
from tests.test_stdio import FAST, SERVER, Events, reaped, record_of, stdio

pytestmark = pytest.mark.anyio

LIMIT_S = 30
# Long enough never to expire during a test (expiry has its own test).
KEEP = 120.0


def warm(*flags: str, keep_alive: float = KEEP, **options: Any) -> StdioServer:
    return StdioServer(sys.executable, args=[SERVER, *flags], keep_alive=keep_alive, **options)


def gone(pid: int) -> bool:
    """Not running: reaped, or (an orphan whose parent exited) a zombie for init to reap."""
    if reaped(pid):
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return reaped(pid)
    return state == "Z"


async def pid_of_a_session(server: StdioServer, events: Events | None = None) -> int:
    """Connect, call, close; the server's PID."""
    options: dict[str, Any] = {"timeouts": FAST}
    if events is not None:
        options["logger"] = events
    async with Client(server, **options) as client:
        await client.call_tool("echo", {"text": "hi"})
        pid = stdio(client).pid
        assert pid is not None
        return pid


async def stop_kept(server: StdioServer) -> None:
    """End what a test kept warm: take it with a client that does not keep it."""
    from resilient_mcp._detection import process_key
    from resilient_mcp._transports import warm as pool

    key = process_key(server.command, server.args, server.cwd, server.environment())
    proc = await pool.take(key)
    if proc is not None:
        await proc.stop(FAST, Events())
        await proc.close_pipes(FAST)


async def test_the_next_client_reuses_the_process_and_handshakes_again(tmp_path: Path) -> None:
    record = tmp_path / "record"
    server = warm("--record", str(record))
    with anyio.fail_after(LIMIT_S):
        try:
            first = await pid_of_a_session(server)
            async with Client(server, timeouts=FAST) as client:
                assert stdio(client).pid == first
                assert stdio(client).reused == 1
                assert (await client.call_tool("echo", {"text": "again"})).text == "again"
        finally:
            await stop_kept(server)
    methods = [method for pid, method, _ in record_of(record) if pid == first]
    assert methods.count("initialize") == 2  # a fresh handshake for each session
    assert methods.count("notifications/initialized") == 2
    assert gone(first)


async def test_a_different_environment_or_argument_never_shares_a_process() -> None:
    base = warm()
    other_env = warm(env={"RESILIENT_MCP_TEST": "other"})
    other_args = warm("--record", os.devnull)
    with anyio.fail_after(LIMIT_S):
        try:
            first = await pid_of_a_session(base)
            assert await pid_of_a_session(other_env) != first
            assert await pid_of_a_session(other_args) != first
            assert await pid_of_a_session(base) == first  # kept meanwhile
        finally:
            for server in (base, other_env, other_args):
                await stop_kept(server)


async def test_two_clients_at_once_never_share_a_process() -> None:
    server = warm()
    with anyio.fail_after(LIMIT_S):
        try:
            first = await pid_of_a_session(server)
            async with Client(server, timeouts=FAST) as a, Client(server, timeouts=FAST) as b:
                await a.call_tool("echo", {"text": "a"})
                await b.call_tool("echo", {"text": "b"})
                pids = {stdio(a).pid, stdio(b).pid}
            assert len(pids) == 2
            assert first in pids
        finally:
            await stop_kept(server)
    # One was kept (one per command line), the other stopped at its close.
    assert sum(not gone(pid) for pid in pids if pid is not None) <= 1


async def test_an_idle_process_is_stopped_after_keep_alive() -> None:
    events = Events()
    server = warm(keep_alive=0.2)
    with anyio.fail_after(LIMIT_S):
        pid = await pid_of_a_session(server, events)
        record = await events.wait_for("server.kept_end", pid=pid)
        assert record["reason"] == "idle"
        assert await pid_of_a_session(server) != pid
        await stop_kept(server)
    assert reaped(pid)


async def test_a_process_that_exits_while_idle_is_not_reused() -> None:
    events = Events()
    server = warm()
    with anyio.fail_after(LIMIT_S):
        pid = await pid_of_a_session(server, events)
        await events.wait_for("server.kept", pid=pid)
        os.kill(pid, signal.SIGKILL)
        record = await events.wait_for("server.kept_end", pid=pid)
        assert record["reason"] == "exited"
        assert reaped(pid)
        try:
            assert await pid_of_a_session(server) != pid
        finally:
            await stop_kept(server)


# Refuses a second initialize; never answers the tool "hang".
REFUSES_SECOND_INITIALIZE = textwrap.dedent(
    """
    import json, sys
    initialized = False
    for line in sys.stdin:
        message = json.loads(line)
        method = message.get("method")
        if "id" not in message:
            continue
        if method == "initialize" and initialized:
            reply = {"error": {"code": -32600, "message": "already initialized"}}
        elif method == "initialize":
            initialized = True
            version = message["params"]["protocolVersion"]
            reply = {"result": {"protocolVersion": version, "capabilities": {"tools": {}},
                                "serverInfo": {"name": "once", "version": "1"}}}
        elif method == "tools/call" and message["params"]["name"] == "hang":
            continue  # never answered
        elif method == "tools/call":
            text = message["params"]["arguments"]["text"]
            reply = {"result": {"content": [{"type": "text", "text": text}]}}
        else:
            reply = {"error": {"code": -32601, "message": "Method not found"}}
        reply.update(jsonrpc="2.0", id=message["id"])
        print(json.dumps(reply), flush=True)
    """
)


@pytest.mark.parametrize("probed", [False, True], ids=["legacy", "auto-probed-first"])
async def test_a_process_that_refuses_a_second_initialize_is_replaced(
    tmp_path: Path, probed: bool
) -> None:
    script = tmp_path / "once.py"
    script.write_text(REFUSES_SECOND_INITIALIZE)
    server = StdioServer(sys.executable, args=[str(script)], keep_alive=KEEP)
    events = Events()
    with anyio.fail_after(LIMIT_S):
        try:
            first = await pid_of_a_session(server)
            # Probed first (a cache of its own): the probe's "method not found" is not the
            # refusal; the initialize after it is.
            options: dict[str, Any] = (
                {"era": "auto", "detection_cache": DetectionCache()}
                if probed
                else {"era": "legacy"}
            )
            async with Client(server, timeouts=FAST, logger=events, **options) as client:
                assert (await client.call_tool("echo", {"text": "fresh"})).text == "fresh"
                second = stdio(client).pid
            assert second not in (None, first)
            assert events.named("server.reuse_refused")[0]["pid"] == first
            assert not events.named("server.exited")  # replaced on purpose: no loss
        finally:
            await stop_kept(server)
    assert reaped(first)


async def test_a_process_with_a_request_unanswered_is_not_kept(tmp_path: Path) -> None:
    script = tmp_path / "once.py"
    script.write_text(REFUSES_SECOND_INITIALIZE)
    server = StdioServer(sys.executable, args=[str(script)], keep_alive=KEEP)
    events = Events()
    with anyio.fail_after(LIMIT_S):
        async with Client(server, timeouts=FAST, logger=events) as client:
            pid = stdio(client).pid
            assert pid is not None
            with pytest.raises(resilient_mcp.RequestTimeout):
                await client.call_tool("hang", {}, timeout=0.5)
    # Its answer may still come: it would reach the next client's request of that id.
    assert not events.named("server.kept")
    assert reaped(pid)


@pytest.mark.parametrize(
    ("kind", "era"), [("mcp", "legacy"), ("mcp126", "auto"), ("everything", "auto")]
)
async def test_real_servers_take_a_second_initialize_on_the_same_process(
    kind: Any, era: Any
) -> None:
    try:
        command = stdio_command(kind)
    except PeerUnavailable as exc:
        pytest.fail(f"{kind}/stdio: {exc}", pytrace=False)
    server = StdioServer(command[0], args=command[1:], keep_alive=KEEP)
    events = Events()
    pids = []
    with anyio.fail_after(60):
        try:
            for _ in range(2):
                async with Client(server, logger=events, era=era) as client:
                    assert client.era == "legacy"
                    assert await client.list_tools()
                    pids.append(stdio(client).pid)
        finally:
            await stop_kept(server)
    assert pids[0] == pids[1]
    assert not events.named("server.reuse_refused")


def test_keep_alive_must_be_positive_seconds() -> None:
    for bad in (0, -1.0, True, "30"):
        with pytest.raises(UsageError, match="keep_alive"):
            StdioServer("server", keep_alive=bad)  # type: ignore[arg-type]
    assert StdioServer("server", keep_alive=1.5).keep_alive == 1.5


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_kept_process_is_stopped_when_the_event_loop_ends(backend: str) -> None:
    async def main() -> int:
        with anyio.fail_after(LIMIT_S):
            return await pid_of_a_session(warm())

    pid = anyio.run(main, backend=backend)
    assert reaped(pid)  # stopped and reaped by the loop's own cleanup


LEFT_RUNNING = textwrap.dedent(
    """
    import asyncio, sys
    import resilient_mcp

    async def main():
        server = resilient_mcp.StdioServer(sys.executable, args=[sys.argv[1]], keep_alive=600)
        async with resilient_mcp.Client(server) as client:
            await client.call_tool("echo", {"text": "hi"})
            print(client._session.transport.pid, flush=True)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())
    # The loop is neither closed nor are its tasks cancelled: the pool's host task is
    # still pending at interpreter exit.
    """
)


def test_a_kept_process_does_not_outlive_the_interpreter(tmp_path: Path) -> None:
    script = tmp_path / "left_running.py"
    script.write_text(LEFT_RUNNING)
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, str(script), SERVER],
        capture_output=True,
        text=True,
        timeout=LIMIT_S,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=True,
    )
    pid = int(done.stdout.split()[0])
    assert gone(pid)
