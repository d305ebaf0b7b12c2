"""One stdio server process: starting it, listening to its stderr, and ending it for sure.

Shutdown follows the spec: close stdin, wait; SIGTERM (to the server's process group),
wait; SIGKILL; the process is always reaped, also when the close is cancelled.

Every process has a :class:`Proc` record; flags on it say how far it is from alive
(``gone`` → ``stopping`` → ``lost``/``finished``), so that the reader, a failed write,
a restart and a close can all try to end it and exactly one of them does. A process
kept warm for the next client (:mod:`.warm`) gets a new record for each owner
(:meth:`Proc.successor`); the half-read lines travel with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections import deque

import anyio
import anyio.abc

from .._config import Timeouts
from .._exceptions import ConnectError, Execution
from .._log import Logger
from .._targets import StdioServer
from .lines import LineSplitter

__all__ = ["Proc", "describe_status", "spawn"]

_CHUNK = 64 * 1024
# A stderr line longer than this is not logged (its size is); shorter ones are truncated.
_STDERR_LINE_LIMIT = 64 * 1024
_STDERR_LOG_CHARS = 1000
# What a lost-connection reason quotes from stderr: the last lines, each shortened.
_STDERR_TAIL_LINES = 5
_STDERR_TAIL_CHARS = 200
_SIGKILL: signal.Signals = getattr(signal, "SIGKILL", signal.SIGTERM)


class Proc:
    """One server process and what is known about its end."""

    __slots__ = (
        "alive",
        "ended_by",
        "finished",
        "gone",
        "keeping",
        "lock",
        "losing",
        "lost",
        "process",
        "reason",
        "retired",
        "scope",
        "stderr_closed",
        "stderr_splitter",
        "stderr_tail",
        "stdout_closed",
        "stdout_splitter",
        "stopped",
        "stopping",
    )

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        # Its first byte on stdout or stderr: a server still loading (an interpreter
        # importing, npx installing) is silent; era-probe patience counts from here.
        self.alive = anyio.Event()
        self.scope = anyio.CancelScope()  # its reader tasks
        self.lock = anyio.Lock()  # one line at a time on its stdin
        self.gone = False  # can no longer take messages (sends fail fast)
        self.retired = False  # ended by us (close or replaced): its end is not a loss
        self.stopping = False
        self.stopped = anyio.Event()  # dead and reaped (or given up on)
        self.losing = False
        self.lost = anyio.Event()  # its end was handled (and reported, if a loss)
        self.finished = anyio.Event()  # its supervisor returned; its pipes are closed
        self.stdout_closed = anyio.Event()
        self.stderr_closed = anyio.Event()
        self.ended_by = "exit"  # or the signal our shutdown sequence needed
        self.stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        self.reason: str | None = None  # why it is gone, once known
        # Being handed on alive (kept warm): its readers stop, the process does not.
        self.keeping = False
        # What was read of a line not complete yet: it belongs to the process, not to
        # the reader task, so that a new owner's reader goes on where the last stopped.
        self.stdout_splitter: LineSplitter | None = None
        self.stderr_splitter = LineSplitter(_STDERR_LINE_LIMIT)

    def successor(self) -> Proc:
        """A fresh record of the same (running) process for its next owner."""
        proc = Proc(self.process)
        if self.alive.is_set():
            proc.alive.set()
        proc.stdout_splitter = self.stdout_splitter
        proc.stderr_splitter = self.stderr_splitter
        proc.stderr_tail = self.stderr_tail
        return proc

    @property
    def pid(self) -> int:
        return self.process.pid

    async def stop(self, timeouts: Timeouts, log: Logger) -> int | None:
        """Make sure the process is dead and reaped: stdin closed, SIGTERM, SIGKILL.

        Each stage waits at most :attr:`Timeouts.close`. Idempotent and shielded.
        Returns the exit status.
        """
        if self.stopping:
            await self.stopped.wait()
            return self.process.returncode
        self.stopping = True
        self.gone = True
        process = self.process
        try:
            with anyio.CancelScope(shield=True):
                ended_by = "exit"
                stdin = process.stdin
                if stdin is not None:
                    # The polite request to leave: a stdio server exits at end of input.
                    with contextlib.suppress(Exception):
                        await stdin.aclose()
                if not await self._wait_exit(timeouts):
                    ended_by = "sigterm"
                    _signal(process, signal.SIGTERM)
                    if not await self._wait_exit(timeouts):
                        ended_by = "sigkill"
                        _signal(process, _SIGKILL)
                        if not await self._wait_exit(timeouts):
                            ended_by = "unknown"
                self.ended_by = ended_by
                emit = log.info if ended_by == "exit" else log.warning
                emit(
                    "server.stopped",
                    pid=process.pid,
                    returncode=process.returncode,
                    ended_by=ended_by,
                )
        finally:
            self.stopped.set()
        return process.returncode

    async def _wait_exit(self, timeouts: Timeouts) -> bool:
        """Wait (at most Timeouts.close) for the process to exit; True if it did."""
        process = self.process
        if process.returncode is None:
            with anyio.move_on_after(timeouts.close):
                await process.wait()
        # (asyncio's wait() also waits for the pipes to close, which a grandchild may
        # hold open: the exit status, set at exit, is what counts.)
        return process.returncode is not None

    async def close_pipes(self, timeouts: Timeouts) -> None:
        process = self.process
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.aclose()
        if process.returncode is not None:
            # Lets the event loop finish its book-keeping of the process (and its pipes).
            with anyio.move_on_after(timeouts.close):
                await process.wait()

    async def read_stderr(self, log: Logger) -> None:
        """Log what the server writes on stderr (free-form logging, never an error)."""
        stderr = self.process.stderr
        assert stderr is not None
        splitter = self.stderr_splitter
        try:
            while True:
                try:
                    chunk = await stderr.receive(_CHUNK)
                except anyio.EndOfStream:
                    break
                self.alive.set()
                for item in splitter.feed(chunk):
                    self._on_stderr(item, log)
            for item in splitter.finish():
                self._on_stderr(item, log)
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # only diagnostics are lost
        finally:
            self.stderr_closed.set()

    def _on_stderr(self, item: bytes | int, log: Logger) -> None:
        if isinstance(item, int):
            text = f"[{item}-byte line not shown]"
        else:
            text = item.decode("utf-8", "replace").rstrip()
            if not text:
                return
        log.info("server.stderr", line=text[:_STDERR_LOG_CHARS], pid=self.process.pid)
        self.stderr_tail.append(text[:_STDERR_TAIL_CHARS])

    def end_reason(self, command: str, why: str | None) -> str:
        """Why it is gone, for the loss it causes (``why``: a reason known already)."""
        if why is not None:
            reason = why
        elif self.ended_by != "exit":
            reason = f"the stdio server {command!r} closed its stdout and was stopped"
        else:
            reason = f"the stdio server {command!r} {describe_status(self.process.returncode)}"
        return reason + self.last_words()

    def gone_for_good(self, server: StdioServer, restarts: int) -> str:
        """Why it is not restarted (``restarts``: how many were used)."""
        status = describe_status(self.process.returncode)
        if not server.restart:
            terminal = (
                f"the stdio server {server.command!r} {status} and is not restarted "
                "(StdioServer.restart=False)"
            )
        else:
            terminal = (
                f"the stdio server {server.command!r} {status} and its restarts are "
                f"used up ({restarts} of StdioServer.max_restarts={server.max_restarts})"
            )
        return terminal + self.last_words()

    def last_words(self) -> str:
        """The end of its stderr, for an error message ("" if it wrote nothing)."""
        return "; last stderr: " + " | ".join(self.stderr_tail) if self.stderr_tail else ""


async def spawn(server: StdioServer) -> Proc:
    """Start the server's process, in a process group of its own.

    Raises:
        ConnectError: the command could not be started (not found, not executable, bad
            working directory...).
    """
    try:
        # Shielded: a process that was started must be recorded (and so stopped one
        # day), whatever cancellation arrives meanwhile.
        with anyio.CancelScope(shield=True):
            process = await anyio.open_process(
                [server.command, *server.args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=server.cwd,
                env=server.environment(),
                # Its own process group: the shutdown signals reach its children too.
                start_new_session=True,
            )
    except OSError as exc:
        what = exc.strerror or type(exc).__name__
        if exc.filename is not None and os.fspath(exc.filename) != server.command:
            what = f"{what}: {os.fspath(exc.filename)!r}"
        raise ConnectError(
            f"could not start the stdio server {server.command!r}: {what}",
            execution=Execution.NOT_EXECUTED,
        ) from exc
    return Proc(process)


def _signal(process: anyio.abc.Process, sig: signal.Signals) -> None:
    """Send ``sig`` to the server's process group (its children too), else to it alone."""
    if process.returncode is not None:
        return  # reaped: its pid (and group id) may belong to someone else by now
    killpg = getattr(os, "killpg", None)
    if killpg is not None:
        try:
            killpg(process.pid, sig)
            return
        except (ProcessLookupError, PermissionError):
            pass  # it left its group (setpgid): signal it alone
    with contextlib.suppress(ProcessLookupError, PermissionError):
        process.send_signal(sig)


def describe_status(returncode: int | None) -> str:
    """How a process ended, in words."""
    if returncode is None:
        return "closed its stdout"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"was killed by signal {name}"
    return f"exited with code {returncode}"
