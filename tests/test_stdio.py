"""The stdio transport against a real subprocess (tests/stdio_servers/legacy_server.py).

Covers the round trip, stderr as logging, garbage on stdout, crashes (restart, retries,
at-most-once side effects), a server that dies at start or never answers, and the
shutdown sequence (stdin close, SIGTERM, SIGKILL, no zombie). Nothing here sleeps to
wait for something: tests wait on the event itself (a log record, the process's exit).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import resilient_mcp
from resilient_mcp import (
    Client,
    ConnectError,
    DetectionCache,
    FateUnknown,
    Handlers,
    Limits,
    MCPError,
    RequestTimeout,
    SessionState,
    StdioServer,
    Timeouts,
    TransportError,
)
from resilient_mcp._session import Session
from resilient_mcp._transports.lines import LineSplitter
from resilient_mcp._transports.stdio import StdioTransport
from resilient_mcp.types import Implementation

pytestmark = pytest.mark.anyio

SERVER = str(Path(__file__).parent / "stdio_servers" / "legacy_server.py")
# Every test is bounded: a hang fails it instead of stalling the suite.
LIMIT_S = 20
# Shutdown stages are quick here; the servers exit at once on end of input anyway.
FAST = Timeouts(close=0.5)


def server(*flags: str, **options: Any) -> StdioServer:
    return StdioServer(sys.executable, args=[SERVER, *flags], **options)


class Events:
    """A structlog-style logger that records every event; tests can wait for one."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._waiters: list[tuple[Callable[[dict[str, Any]], bool], anyio.Event]] = []

    def bind(self, **context: Any) -> _Bound:
        return _Bound(self, context)

    def emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        record = {**fields, "event": event, "level": level}
        self.records.append(record)
        for match, flag in self._waiters:
            if match(record):
                flag.set()

    def debug(self, event: str, **fields: Any) -> None:
        self.emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self.emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self.emit("error", event, fields)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["event"] == event]

    async def wait_for(self, event: str, **fields: Any) -> dict[str, Any]:
        """The first record of ``event`` with ``fields``, waiting for it if need be."""

        def match(record: dict[str, Any]) -> bool:
            return record["event"] == event and all(record.get(k) == v for k, v in fields.items())

        flag = anyio.Event()
        self._waiters.append((match, flag))
        try:
            if not any(match(r) for r in self.records):
                await flag.wait()
        finally:
            self._waiters.remove((match, flag))
        return next(r for r in self.records if match(r))


class _Bound:
    def __init__(self, events: Events, context: dict[str, Any]) -> None:
        self._events = events
        self._context = context

    def bind(self, **context: Any) -> _Bound:
        return _Bound(self._events, {**self._context, **context})

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        self._events.emit(level, event, {**self._context, **fields})

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)


def stdio(client: Client) -> StdioTransport:
    transport = client._session.transport
    assert isinstance(transport, StdioTransport)
    return transport


def reaped(pid: int) -> bool:
    """True if ``pid`` is gone entirely: neither running nor a zombie left to reap."""
    try:
        os.kill(pid, 0)  # succeeds for a zombie too
    except ProcessLookupError:
        return True
    return False


def record_of(path: Path) -> list[tuple[int, str, str]]:
    """The server's own record of what it received: (pid, method, tool name)."""
    rows = []
    for line in path.read_text().splitlines():
        pid, method, *name = line.split(" ")
        rows.append((int(pid), method, name[0] if name else ""))
    return rows


# --- the happy path ------------------------------------------------------------------


async def test_round_trip_through_connect() -> None:
    events = Events()
    with anyio.fail_after(LIMIT_S):
        client = resilient_mcp.connect(server(), timeouts=FAST, logger=events)
        async with client:
            assert client.transport == "stdio"
            assert client.era == "legacy"
            assert client.server_info is not None
            assert client.server_info.name == "stdio-test"
            tools = await client.list_tools()
            assert {t.name for t in tools} == {"echo", "increment", "crash"}
            assert (await client.call_tool("echo", {"text": "héllo\nworld"})).text == (
                "héllo\nworld"
            )
            assert (await client.call_tool("increment")).text == "1"
            transport = stdio(client)
            pid = transport.pid
            assert pid is not None
        assert client.stats.handshakes == 1
    assert transport.pid is None
    assert transport.returncode == 0
    assert transport.restarts == 0
    assert reaped(pid)


async def test_command_list_target() -> None:
    with anyio.fail_after(LIMIT_S):
        async with resilient_mcp.connect([sys.executable, SERVER], timeouts=FAST) as client:
            assert client.transport == "stdio"
            assert (await client.call_tool("echo", {"text": "x"})).text == "x"


async def test_session_over_stdio_transport_directly(tmp_path: Path) -> None:
    """The transport drives a bare Session the way the client does (here with a
    minimal environment and another working directory)."""
    events = Events()
    spec = server(inherit_env=False, env={"STDIO_TEST": "1"}, cwd=tmp_path)
    transport = StdioTransport(spec, timeouts=FAST, limits=Limits(), logger=events)
    session = Session(
        transport,
        timeouts=FAST,
        limits=Limits(),
        handlers=Handlers(),
        client_info=Implementation(name="t", version="0"),
        logger=events,
        cache=DetectionCache(),
    )
    with anyio.fail_after(LIMIT_S):
        async with anyio.create_task_group() as tg:
            await session.start(tg)
            try:
                await session.calls.establish()
                assert session.state is SessionState.READY
                result = await session.calls.request(
                    "tools/call", {"name": "echo", "arguments": {"text": "direct"}}
                )
                assert result["content"][0]["text"] == "direct"
            finally:
                with anyio.CancelScope(shield=True):
                    await session.aclose()
                tg.cancel_scope.cancel()
    assert transport.returncode == 0


# --- stderr and stdout noise ------------------------------------------------------------


async def test_stderr_goes_to_the_log_not_to_errors() -> None:
    events = Events()
    with anyio.fail_after(LIMIT_S):
        async with resilient_mcp.connect(server(), timeouts=FAST, logger=events) as client:
            line = await events.wait_for("server.stderr", line="handling initialize")
            assert line["level"] == "info"
            assert line["pid"] == stdio(client).pid
            assert (await client.call_tool("echo", {"text": "ok"})).text == "ok"
    lines = [r["line"] for r in events.named("server.stderr")]
    assert lines[0].startswith("stdio test server starting")
    assert "end of input, bye" in lines  # read to the end before the close returned
    assert not [r for r in events.records if r["level"] == "error"]


async def test_stderr_reaches_the_stdlib_logger_at_info(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="resilient_mcp"), anyio.fail_after(LIMIT_S):
        async with resilient_mcp.connect(server(), timeouts=FAST) as client:
            await client.call_tool("echo", {"text": "ok"})
    stderr = [r for r in caplog.records if "server.stderr" in r.getMessage()]
    assert any("end of input, bye" in r.getMessage() for r in stderr)
    assert {r.levelno for r in stderr} == {logging.INFO}


async def test_garbage_and_oversized_lines_do_not_break_later_requests() -> None:
    events = Events()
    limits = Limits(max_message_size=100_000)  # the server's long line has 300 kB
    with anyio.fail_after(LIMIT_S):
        async with resilient_mcp.connect(
            server("--garbage"), timeouts=FAST, limits=limits, logger=events
        ) as client:
            for i in range(3):
                assert (await client.call_tool("echo", {"text": str(i)})).text == str(i)
            transport = stdio(client)
            # One non-JSON and one over-long line before every answer.
            assert transport.malformed_messages >= 3
            assert transport.oversized_messages == transport.malformed_messages
    malformed = events.named("message.malformed")
    assert malformed[0]["line"] == "this is not JSON"
    assert malformed[0]["level"] == "warning"
    too_large = events.named("message.too_large")
    assert too_large[0]["size"] > limits.max_message_size
    assert client.stats.handshakes == 1


async def test_an_oversized_answer_fails_its_own_request_at_once() -> None:
    limits = Limits(max_message_size=100_000)
    # A long request timeout: the failure must come from the dropped line, not a timer.
    slow = Timeouts(initialize=10, request=60, close=2)
    with anyio.fail_after(LIMIT_S):
        async with resilient_mcp.connect(server(), timeouts=slow, limits=limits) as client:
            with pytest.raises(resilient_mcp.MessageTooLarge) as caught:
                await client.call_tool("echo", {"size": 200_000})
            assert caught.value.method == "tools/call"
            assert caught.value.execution is resilient_mcp.Execution.EXECUTED
            assert (await client.call_tool("echo", {"text": "after"})).text == "after"


# --- crashes ------------------------------------------------------------------------------


async def test_crash_mid_run_restarts_once_and_reads_survive(tmp_path: Path) -> None:
    record = tmp_path / "record"
    spec = server(
        "--crash-after", "5", "--crash-marker", str(tmp_path / "crashed"), "--record", str(record)
    )
    events = Events()
    with anyio.fail_after(LIMIT_S):
        async with resilient_mcp.connect(spec, timeouts=FAST, logger=events) as client:
            await client.list_tools()  # echo is annotated read-only: safe to repeat
            transport = stdio(client)
            first_pid = transport.pid
            texts: list[str] = []

            async def read(i: int) -> None:
                texts.append((await client.call_tool("echo", {"text": str(i)})).text)

            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(read, i)
            assert sorted(texts, key=int) == [str(i) for i in range(20)]
            assert transport.restarts == 1
            assert transport.pid is not None
            assert transport.pid != first_pid
            assert client.stats.handshakes == 2
            assert client.stats.retries >= 1
    exited = events.named("server.exited")
    assert [r["returncode"] for r in exited] == [3]
    assert "crashing on tools/call #5" in exited[0]["reason"]
    rows = record_of(record)
    second = [(method, name) for pid, method, name in rows if pid != first_pid]
    # The new process got a fresh handshake before any call.
    first_call = second.index(("tools/call", "echo"))
    assert ("initialize", "") in second[:first_call]
    assert len({pid for pid, _, _ in rows}) == 2


async def test_side_effecting_call_in_flight_raises_fate_unknown(tmp_path: Path) -> None:
    record = tmp_path / "record"
    spec = server(
        "--crash-after", "1", "--crash-marker", str(tmp_path / "crashed"), "--record", str(record)
    )
    with anyio.fail_after(LIMIT_S):
        async with resilient_mcp.connect(spec, timeouts=FAST) as client:
            with pytest.raises(FateUnknown) as caught:
                await client.call_tool("increment")
            assert "exited with code 3" in str(caught.value)
            # The server was restarted; the next call works on the new process.
            assert (await client.call_tool("echo", {"text": "after"})).text == "after"
            assert stdio(client).restarts == 1
    increments = [row for row in record_of(record) if row[2] == "increment"]
    assert len(increments) == 1  # never run twice


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_killed_while_idle_is_restarted_without_a_call() -> None:
    """Nothing pending: the loss is noticed by the reader and a new process is started
    and initialized before anyone asks."""
    events = Events()
    with anyio.fail_after(LIMIT_S):
        async with resilient_mcp.connect(server(), timeouts=FAST, logger=events) as client:
            transport = stdio(client)
            old = transport.pid
            assert old is not None
            os.kill(old, signal.SIGKILL)
            restart = await events.wait_for("server.restart")
            assert restart["returncode"] == -signal.SIGKILL
            await events.wait_for("server.started", restarts=1)
            await client.wait_ready()
            assert client.state is SessionState.READY
            assert transport.pid not in (None, old)
            assert reaped(old)
            assert (await client.call_tool("increment")).text == "1"  # a fresh process
    assert "killed by signal SIGKILL" in events.named("server.exited")[0]["reason"]


async def test_restart_disabled_gives_a_typed_error() -> None:
    spec = server("--crash-after", "2", restart=False)
    with anyio.fail_after(LIMIT_S):
        async with resilient_mcp.connect(spec, timeouts=FAST) as client:
            assert (await client.call_tool("echo", {"text": "1"}, idempotent=True)).text == "1"
            with pytest.raises(ConnectError) as caught:
                await client.call_tool("echo", {"text": "2"}, idempotent=True)
            assert "exited with code 3" in caught.value.message
            assert "restart=False" in caught.value.message
            with pytest.raises(ConnectError):
                await client.call_tool("echo", {"text": "3"}, idempotent=True)
            assert stdio(client).restarts == 0


async def test_restarts_are_bounded() -> None:
    spec = server("--crash-after", "1", max_restarts=2)
    with anyio.fail_after(LIMIT_S):
        async with resilient_mcp.connect(spec, timeouts=FAST) as client:
            for _ in range(3):
                with pytest.raises(FateUnknown):
                    await client.call_tool("increment")
            with pytest.raises(ConnectError) as caught:
                await client.call_tool("increment")
            assert "restarts are used up (2 of StdioServer.max_restarts=2)" in str(caught.value)
            assert stdio(client).restarts == 2


# --- servers that never get going -------------------------------------------------------------


async def test_server_exiting_at_start_fails_fast_after_bounded_restarts() -> None:
    timeouts = Timeouts(initialize=30, close=0.5)
    client = resilient_mcp.connect(server("--exit-at-start"), timeouts=timeouts)
    started = anyio.current_time()
    with anyio.fail_after(LIMIT_S), pytest.raises(MCPError) as caught:
        async with client:
            pass
    elapsed = anyio.current_time() - started
    assert elapsed < 10, elapsed  # well within Timeouts.initialize
    error = caught.value
    assert isinstance(error, TransportError), repr(error)
    assert "exited with code 2" in error.message
    assert "missing configuration" in error.message  # the stderr tail
    transport = stdio(client)
    assert transport.restarts == 3  # StdioServer.max_restarts
    assert transport.returncode == 2


async def test_command_that_cannot_start_is_a_connect_error() -> None:
    spec = StdioServer("/nonexistent/mcp-server", env={"API_TOKEN": "sk-secret-value"})
    assert "sk-secret-value" not in repr(spec)
    with anyio.fail_after(LIMIT_S), pytest.raises(ConnectError) as caught:
        async with resilient_mcp.connect(spec):
            pass
    assert "/nonexistent/mcp-server" in caught.value.message
    assert "sk-secret-value" not in str(caught.value)


async def test_hanging_server_gives_request_timeout() -> None:
    events = Events()
    timeouts = Timeouts(initialize=0.5, close=0.5)
    client = resilient_mcp.connect(server("--hang"), timeouts=timeouts, logger=events)
    started = anyio.current_time()
    with anyio.fail_after(LIMIT_S), pytest.raises(RequestTimeout):
        async with client:
            pass
    assert anyio.current_time() - started < 5
    transport = stdio(client)
    assert transport.restarts == 0  # alive, only silent: not restarted
    assert transport.returncode == 0  # it left at end of input
    assert events.named("server.stopped")[0]["ended_by"] == "exit"


async def test_server_that_stops_reading_stdin_cannot_hang_a_call() -> None:
    timeouts = Timeouts(connect=0.3, close=0.3)
    with anyio.fail_after(LIMIT_S):
        async with resilient_mcp.connect(server("--deaf"), timeouts=timeouts) as client:
            transport = stdio(client)
            deaf = transport.pid
            assert deaf is not None
            # Far more than a pipe buffer: the write blocks until Timeouts.connect.
            with pytest.raises(FateUnknown) as caught:
                await client.call_tool("increment", {"blob": "x" * 2_000_000})
            assert "did not read" in str(caught.value)
            assert transport.restarts <= 1
    assert reaped(deaf)


# --- shutdown ------------------------------------------------------------------------------


async def test_close_closes_stdin_and_the_server_exits_by_itself() -> None:
    events = Events()
    with anyio.fail_after(LIMIT_S):
        async with resilient_mcp.connect(server(), logger=events) as client:
            transport = stdio(client)
            pid = transport.pid
            assert pid is not None
    stopped = events.named("server.stopped")
    assert [(r["ended_by"], r["returncode"]) for r in stopped] == [("exit", 0)]
    assert reaped(pid)
    await transport.aclose()  # idempotent


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_close_escalates_to_sigkill_and_leaves_no_zombie() -> None:
    events = Events()
    timeouts = Timeouts(close=0.3)
    with anyio.fail_after(LIMIT_S):
        async with resilient_mcp.connect(
            server("--ignore-sigterm"), timeouts=timeouts, logger=events
        ) as client:
            transport = stdio(client)
            pid = transport.pid
            assert pid is not None
            started = anyio.current_time()
        elapsed = anyio.current_time() - started
    assert transport.returncode == -signal.SIGKILL
    assert events.named("server.stopped")[0]["ended_by"] == "sigkill"
    assert elapsed >= 2 * timeouts.close  # waited after closing stdin, and after SIGTERM
    assert reaped(pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 - WNOHANG: never blocks


async def test_close_while_cancelled_still_stops_the_server() -> None:
    pid: int | None = None
    with anyio.fail_after(LIMIT_S):
        client = resilient_mcp.connect(server(), timeouts=FAST)
        with anyio.CancelScope() as scope:
            async with client:
                pid = stdio(client).pid
                assert pid is not None
                scope.cancel()
                await anyio.sleep_forever()
    assert stdio(client).returncode == 0
    assert pid is not None
    assert reaped(pid)


# --- configuration and framing -----------------------------------------------------------------


def test_stdio_server_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = StdioServer("python", args=["-m", "x"])
    assert spec.args == ("-m", "x")
    with pytest.raises(resilient_mcp.UsageError):
        StdioServer("python", args="-m x")
    with pytest.raises(ValueError, match="max_restarts"):
        StdioServer("python", max_restarts=-1)
    monkeypatch.setenv("RESILIENT_MCP_TEST_SECRET", "hidden")
    monkeypatch.setenv("PATH", "/usr/bin")
    # The default, as in the MCP SDKs: a small safe set, never the secrets we hold.
    safe = StdioServer("x", env={"EXTRA": "1"}).environment()
    assert safe is not None
    assert safe["EXTRA"] == "1"
    assert safe["PATH"] == "/usr/bin"
    assert "RESILIENT_MCP_TEST_SECRET" not in safe
    assert StdioServer("x").environment() == {k: v for k, v in safe.items() if k != "EXTRA"}
    # inherit_env=True: ours, untouched (None), or ours plus env.
    assert StdioServer("x", inherit_env=True).environment() is None
    inherited = StdioServer("x", env={"EXTRA": "1"}, inherit_env=True).environment()
    assert inherited is not None
    assert inherited["EXTRA"] == "1"
    assert inherited["RESILIENT_MCP_TEST_SECRET"] == "hidden"


def test_line_splitter() -> None:
    splitter = LineSplitter(10)
    assert splitter.feed(b'{"a":1}\r\n{"b"') == [b'{"a":1}']
    assert splitter.feed(b":2}\n\n") == [b'{"b":2}', b""]
    # An over-long line is dropped whole (its size reported), across chunks.
    assert splitter.feed(b"x" * 8) == []
    assert splitter.feed(b"y" * 8) == []
    assert splitter.feed(b"zz\nok\n") == [18, b"ok"]
    assert splitter.feed(b"0123456789\n") == [b"0123456789"]  # exactly the limit
    assert splitter.feed(b"01234567890\n") == [11]
    assert splitter.feed(b"tail") == []
    assert splitter.finish() == [b"tail"]


# --- era detection over stdio ---------------------------------------------------------------


async def test_a_server_silent_at_start_is_still_detected_modern(tmp_path: Path) -> None:
    # Its silence lasts three probe timeouts, on any machine: it ends when we write to
    # the pipe. Before, the probe's patience counted from spawn and it was taken for legacy.
    go = tmp_path / "go"
    os.mkfifo(go)
    probe = 0.3
    timeouts = Timeouts(close=0.5, probe=probe)
    events = Events()
    eras: list[str | None] = []
    with anyio.fail_after(LIMIT_S):
        client = resilient_mcp.connect(
            server("--modern", "--silent-until", str(go)),
            timeouts=timeouts,
            logger=events,
            detection_cache=DetectionCache(),
        )

        async def use() -> None:
            async with client:
                eras.append(client.era)
                assert (await client.call_tool("echo", {"text": "hi"})).text == "hi"

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(use)
            await anyio.sleep(3 * probe)  # the silence itself (not a wait for an event)

            def release() -> None:
                with open(go, "w") as fifo:  # blocks until the server opened its end
                    fifo.write("go")

            await anyio.to_thread.run_sync(release)
    assert eras == ["modern"]
    assert not [r for r in events.records if r["event"] == "response.unknown_id"]


def discovers(record: Path) -> int:
    return sum(" server/discover" in line for line in record.read_text().splitlines())


async def test_the_next_start_of_the_same_command_skips_the_probe(tmp_path: Path) -> None:
    record = tmp_path / "record"
    cache = DetectionCache()
    events = Events()

    async def start(**options: Any) -> str | None:
        client = resilient_mcp.connect(
            server("--record", str(record), **options),
            timeouts=FAST,
            logger=events,
            detection_cache=cache,
        )
        async with client:
            assert (await client.call_tool("increment")).text == "1"
            return client.era

    with anyio.fail_after(LIMIT_S):
        assert await start() == "legacy"
        assert discovers(record) == 1
        assert await start() == "legacy"  # another process, the same command line
        assert discovers(record) == 1
        assert await start(env={"MCP_TOKEN": "s3cret-value"}) == "legacy"
        assert discovers(record) == 2  # its environment changed: detected again
        assert await start(env={"MCP_TOKEN": "s3cret-value"}) == "legacy"
        assert discovers(record) == 2
        assert await start(env={"MCP_TOKEN": "other-value"}) == "legacy"
        assert discovers(record) == 3
    keys = list(cache._entries)
    assert len(keys) == 3
    assert all(sys.executable in key and SERVER not in key for key in keys)
    assert "s3cret-value" not in repr(keys) + repr(events.records)


async def test_a_cached_legacy_command_that_turned_modern_is_detected_again(
    tmp_path: Path,
) -> None:
    upgraded = tmp_path / "upgraded"
    cache = DetectionCache()
    with anyio.fail_after(LIMIT_S):
        async with resilient_mcp.connect(
            server("--modern-if", str(upgraded)), timeouts=FAST, detection_cache=cache
        ) as client:
            assert client.era == "legacy"
        (key,) = cache._entries
        upgraded.touch()  # the same command line now starts a modern-only server
        async with resilient_mcp.connect(
            server("--modern-if", str(upgraded)), timeouts=FAST, detection_cache=cache
        ) as client:
            assert client.era == "modern"
        assert cache._entries[key].era == "modern"


async def test_a_probe_answered_after_it_was_given_up_on_is_expected() -> None:
    # The server answers the probe only after `initialize`: always late, on any machine.
    events = Events()
    with anyio.fail_after(LIMIT_S):
        async with resilient_mcp.connect(
            server("--late-probe"),
            timeouts=Timeouts(close=0.5, probe=0.3),
            logger=events,
            detection_cache=DetectionCache(),
        ) as client:
            assert client.era == "legacy"
            assert (await client.call_tool("increment")).text == "1"
            transport = stdio(client)
    assert transport.late_probe_answers == 1
    assert [r for r in events.records if r["event"] == "era.probe_late"]
    assert not [r for r in events.records if r["event"] == "response.unknown_id"]
