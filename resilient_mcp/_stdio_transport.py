"""The stdio transport (MCP ``basic/transports``), client side.

The client starts the server as a subprocess and speaks newline-delimited JSON-RPC on
its stdin/stdout; stderr is free-form logging (never an error signal). Like legacy SSE,
stdio is one shared channel: answers come later from a reader task through ``deliver``,
and when the channel ends (the server exited, closed its stdout, or stopped reading its
stdin) the session is told through the connection-lost handler, which fails every
pending request and starts a new handshake. That handshake first calls
:meth:`StdioTransport.reset_session`, which restarts a server that exited (MCP
2026-07-28: a client should restart a server that exits unexpectedly), up to
:attr:`StdioServer.max_restarts` times over the client's life.

Shutdown follows the spec: close stdin, wait; SIGTERM (to the server's process group),
wait; SIGKILL; the process is always reaped, also when the close is cancelled.

Every process has a :class:`_Proc` record; flags on it say how far it is from alive
(``gone`` → ``stopping`` → ``lost``/``finished``), so that the reader, a failed write,
a restart and a close can all try to end it and exactly one of them does.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import anyio
import anyio.abc

from ._classify import FailureContext
from ._config import Limits, Timeouts
from ._exceptions import (
    ClientClosed,
    ConnectError,
    ConnectionLost,
    Execution,
    MCPError,
    MessageTooLarge,
    ProtocolError,
)
from ._log import Logger
from ._transport import Deliver, Transport

__all__ = ["StdioServer", "StdioTransport"]

# What `inherit_env=False` passes on, as the MCP SDKs' get_default_environment(): enough
# to find executables, a home and a locale, nothing that usually holds a secret.
_SAFE_ENV_POSIX = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "LC_ALL", "TMPDIR")
_SAFE_ENV_WINDOWS = (
    "APPDATA",
    "HOMEDRIVE",
    "HOMEPATH",
    "LOCALAPPDATA",
    "PATH",
    "PATHEXT",
    "PROCESSOR_ARCHITECTURE",
    "SYSTEMDRIVE",
    "SYSTEMROOT",
    "TEMP",
    "USERNAME",
    "USERPROFILE",
)

_CHUNK = 64 * 1024
# A stderr line longer than this is not logged (its size is); shorter ones are truncated.
_STDERR_LINE_LIMIT = 64 * 1024
_STDERR_LOG_CHARS = 1000
# What a lost-connection reason quotes from stderr: the last lines, each shortened.
_STDERR_TAIL_LINES = 5
_STDERR_TAIL_CHARS = 200
# After the process exited, how long what it wrote last may take to be read (a
# grandchild that inherited its stdout or stderr may hold them open for ever).
_DRAIN_S = 1.0
_MALFORMED_PREVIEW = 80
# Names every process this module starts, for the era-detection cache: a pid can be
# reused, a serial cannot (within our process).
_serials = itertools.count(1)


@dataclass(frozen=True, slots=True)
class StdioServer:
    """How to start an MCP server that speaks stdio: ``StdioServer("python", args=[...])``.

    Attributes:
        command: the executable (looked up on ``PATH`` like :func:`subprocess.Popen`).
        args: its arguments.
        env: variables added on top of the inherited environment (or of the safe
            default set when ``inherit_env`` is false). Never logged nor shown in repr.
        cwd: the working directory (default: ours).
        inherit_env: pass our whole environment on; false passes only a small safe
            set (``PATH``, ``HOME``, ``LANG``, ``TERM``, ``SYSTEMROOT``...) plus ``env``.
        restart: restart a server that exits unexpectedly (a fresh handshake follows).
        max_restarts: restarts allowed over the client's life.

    Raises:
        ValueError: an empty command or a negative ``max_restarts``.
        TypeError: ``args`` given as one string.
    """

    command: str
    _: KW_ONLY
    args: Sequence[str] = ()
    env: Mapping[str, str] | None = field(default=None, repr=False, hash=False)
    cwd: str | os.PathLike[str] | None = None
    inherit_env: bool = True
    restart: bool = True
    max_restarts: int = 3

    def __post_init__(self) -> None:
        if not self.command:
            raise ValueError("StdioServer.command must not be empty")
        if isinstance(self.args, str | bytes):
            # A string is a sequence too: "-m server" would become nine arguments.
            raise TypeError("StdioServer.args must be a list of arguments, not one string")
        if self.max_restarts < 0:
            raise ValueError("StdioServer.max_restarts must not be negative")
        object.__setattr__(self, "args", tuple(self.args))

    def environment(self) -> dict[str, str] | None:
        """The environment the server gets (None: exactly ours)."""
        if self.inherit_env:
            return None if self.env is None else {**os.environ, **self.env}
        names = _SAFE_ENV_WINDOWS if sys.platform == "win32" else _SAFE_ENV_POSIX
        base = {
            name: value
            for name in names
            # A value starting with "()" is an exported shell function: code, not data.
            if (value := os.environ.get(name)) is not None and not value.startswith("()")
        }
        return {**base, **(self.env or {})}


class _Proc:
    """One server process and what is known about its end."""

    __slots__ = (
        "detection_key",
        "ended_by",
        "finished",
        "gone",
        "lock",
        "losing",
        "lost",
        "process",
        "reason",
        "retired",
        "scope",
        "stderr_closed",
        "stderr_tail",
        "stdout_closed",
        "stopped",
        "stopping",
    )

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        self.detection_key = f"stdio:{next(_serials)}"
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


class _Dropped(int):
    """The size of a dropped over-long line, with its first bytes (to find its id)."""

    head: bytes = b""

    @classmethod
    def of(cls, size: int, head: bytes) -> _Dropped:
        dropped = cls(size)
        dropped.head = head
        return dropped


# Enough of a line's start to read `{"jsonrpc":"2.0","id":...` however it is spaced.
_HEAD = 256
# A response's id near its start (SDKs write jsonrpc/id first); a message with a method
# is a request or notification, whose loss no pending request waits for.
_HEAD_ID = re.compile(rb'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")')


class _LineSplitter:
    """Split a byte stream on ``\\n``; a line longer than ``limit`` is dropped, not kept.

    :meth:`feed` returns complete lines (``bytes``, without ``\\n`` or ``\\r\\n``) and, for each
    dropped line, its size (``int``). Memory stays bounded by ``limit``.
    """

    __slots__ = ("_buffer", "_head", "_limit", "_skipped")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self._skipped = 0  # bytes of the over-long line being dropped (0: none)
        self._head = b""

    def feed(self, chunk: bytes) -> list[bytes | int]:
        out: list[bytes | int] = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            out.append(self._complete(chunk[start:end]))
            start = end + 1
        rest = chunk[start:]
        if self._skipped:
            self._skipped += len(rest)
        elif len(self._buffer) + len(rest) > self._limit:
            self._skipped = len(self._buffer) + len(rest)
            self._head = bytes(self._buffer[:_HEAD]) + rest[: max(0, _HEAD - len(self._buffer))]
            self._buffer.clear()
        else:
            self._buffer += rest
        return out

    def finish(self) -> list[bytes | int]:
        """What is left at end of stream (a last line without its newline)."""
        if self._skipped or self._buffer:
            return [self._complete(b"")]
        return []

    def _complete(self, piece: bytes) -> bytes | int:
        if self._skipped:
            size, self._skipped = self._skipped + len(piece), 0
            return _Dropped.of(size, self._head)
        if len(self._buffer) + len(piece) > self._limit:
            size = len(self._buffer) + len(piece)
            head = (bytes(self._buffer[:_HEAD]) + piece)[:_HEAD]
            self._buffer.clear()
            return _Dropped.of(size, head)
        if self._buffer:
            piece = bytes(self._buffer + piece)
            self._buffer.clear()
        # CRLF-ended lines (Windows servers) are tolerated.
        return piece[:-1] if piece.endswith(b"\r") else piece


class StdioTransport(Transport):
    """Talks to a server it starts as a subprocess (MCP stdio transport).

    Attributes:
        restarts: how many times the server was restarted after exiting unexpectedly.
        malformed_messages: stdout lines dropped because they were not JSON.
        oversized_messages: stdout lines dropped because they exceeded
            :attr:`Limits.max_message_size`.
    """

    name = "stdio"

    def __init__(
        self, server: StdioServer, *, timeouts: Timeouts, limits: Limits, logger: Logger
    ) -> None:
        self._server = server
        self._timeouts = timeouts
        self._max_size = limits.max_message_size
        # The command names the server in logs and errors; args and env may hold secrets.
        self._log = logger.bind(transport=self.name, command=server.command)
        self._deliver: Deliver | None = None
        self._on_lost: Callable[[str], None] = _ignore
        self._on_undeliverable: Callable[[Any, MCPError], None] = _ignore_undeliverable
        self._task_group: anyio.abc.TaskGroup | None = None
        self._proc: _Proc | None = None
        # Serialises starting and replacing processes (and closing, against both).
        self._lifecycle = anyio.Lock()
        # Set once the server is gone for good (no restart allowed or left): every send
        # fails with it instead of starting anything.
        self._terminal: str | None = None
        self._closed = False
        self._returncode: int | None = None
        self.restarts = 0
        self.malformed_messages = 0
        self.oversized_messages = 0
        self.session_id = None
        self.protocol_version = None

    # --- introspection -----------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The process id of the running server (None when none is running)."""
        proc = self._proc
        return None if proc is None or proc.gone else proc.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status of the last server process that ended (negative: a signal)."""
        return self._returncode

    def detection_key(self) -> str | None:
        """Names the running process: a restarted server is detected again."""
        proc = self._proc
        return None if proc is None else proc.detection_key

    def __repr__(self) -> str:
        return f"<StdioTransport {self._server.command!r} pid={self.pid} restarts={self.restarts}>"

    # --- lifecycle -----------------------------------------------------------------------

    def set_connection_lost_handler(self, handler: Callable[[str], None]) -> None:
        self._on_lost = handler

    def set_undeliverable_handler(self, handler: Callable[[Any, MCPError], None]) -> None:
        self._on_undeliverable = handler

    async def open(self, deliver: Deliver, task_group: anyio.abc.TaskGroup) -> None:
        """Start the server process and its readers.

        Raises:
            ConnectError: the command could not be started (not found, not executable,
                bad working directory...).
        """
        self._deliver = deliver
        self._task_group = task_group
        async with self._lifecycle:
            await self._start()

    async def _start(self) -> None:
        """Start a process and its supervisor (the caller holds the lifecycle lock)."""
        if self._closed:
            raise ClientClosed("the stdio transport is closed")
        if self._task_group is None:
            raise ProtocolError("transport is not open")
        server = self._server
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
        proc = _Proc(process)
        self._proc = proc
        self._task_group.start_soon(self._supervise, proc)
        self._log.info("server.started", pid=process.pid, restarts=self.restarts)

    async def reset_session(self) -> None:
        """Called before every handshake: restart the server if it exited.

        A running server is kept (the first handshake, or one that failed while the
        server lived). A server that exited is restarted if :attr:`StdioServer.restart`
        allows and restarts are left; otherwise nothing is started and every later send
        fails with :class:`ConnectError` naming the exit status. Never raises (the
        session also calls it after a failed handshake, where it must not fail).
        """
        self.protocol_version = None
        async with self._lifecycle:
            proc = self._proc
            if self._closed or proc is None or not proc.gone or self._terminal is not None:
                return
            await self._lose(proc)  # reaped, and the loss reported, before anything new
            server = self._server
            status = _describe_status(proc.process.returncode)
            if server.restart and self.restarts < server.max_restarts:
                self.restarts += 1
                self._log.warning(
                    "server.restart",
                    restart=self.restarts,
                    max_restarts=server.max_restarts,
                    returncode=proc.process.returncode,
                )
                try:
                    await self._start()
                except MCPError as exc:
                    self._terminal = exc.message
                    self._log.warning("server.gone", reason=exc.message)
                return
            if not server.restart:
                terminal = (
                    f"the stdio server {server.command!r} {status} and is not restarted "
                    "(StdioServer.restart=False)"
                )
            else:
                terminal = (
                    f"the stdio server {server.command!r} {status} and its restarts are "
                    f"used up ({self.restarts} of StdioServer.max_restarts="
                    f"{server.max_restarts})"
                )
            if proc.stderr_tail:
                terminal += "; last stderr: " + " | ".join(proc.stderr_tail)
            self._terminal = terminal
            self._log.warning("server.gone", reason=terminal)

    async def end_session(self) -> None:
        """Nothing to do: a stdio session ends with its process (see :meth:`aclose`)."""

    async def aclose(self) -> None:
        """Stop the server: close its stdin, wait; SIGTERM, wait; SIGKILL. Idempotent.

        Each wait lasts at most :attr:`Timeouts.close`; the process is always reaped.
        Runs to the end even when the caller is cancelled.
        """
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            # A restart under way completes first, so that its process is the one stopped.
            async with self._lifecycle:
                proc = self._proc
                if proc is None:
                    return
                proc.retired = True
                await self._stop(proc)
                # Its last stderr lines (why it exited, if it had to be killed) are
                # worth the log; then nothing more is read.
                with anyio.move_on_after(_DRAIN_S):
                    await proc.stderr_closed.wait()
                proc.scope.cancel()
                with anyio.move_on_after(self._timeouts.close):
                    await proc.finished.wait()

    # --- sending -------------------------------------------------------------------------

    async def send(
        self,
        message: Mapping[str, Any],
        ctx: FailureContext,
        *,
        on_sent: Callable[[], None] | None = None,
    ) -> bool:
        """Write one message as one line on the server's stdin.

        Returns:
            False for a request (its answer comes through ``deliver``), True otherwise.

        Raises:
            ConnectionLost: the server is gone (``NOT_EXECUTED``: nothing was written),
                or it did not take the line within :attr:`Timeouts.connect` (``MAYBE``).
            ConnectError: the server exited and is not restarted any more.
            ClientClosed: the transport is closed.
        """
        if self._closed:
            raise ClientClosed("the stdio transport is closed", **ctx.context())
        proc = self._proc
        if proc is None:
            raise ProtocolError("transport is not open", **ctx.context())
        # Compact JSON escapes control characters in strings: the line has no raw newline.
        line = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        if proc.gone:
            raise await self._gone_error(proc, ctx)
        async with proc.lock:
            if proc.gone:
                raise await self._gone_error(proc, ctx)
            stdin = proc.process.stdin
            assert stdin is not None
            try:
                # Shielded and bounded: a line cut by a cancellation would corrupt the
                # framing of every later message; a server that stops reading its stdin
                # must not hang us for ever.
                with anyio.CancelScope(shield=True), anyio.fail_after(self._timeouts.connect):
                    await stdin.send(line)
            except TimeoutError:
                self._abandon(
                    proc,
                    f"the stdio server {self._server.command!r} did not read its input for "
                    f"{self._timeouts.connect} s (Timeouts.connect) and was stopped",
                )
                raise ConnectionLost(
                    f"the stdio server {self._server.command!r} did not read the message "
                    f"within {self._timeouts.connect} s (Timeouts.connect); it is being stopped",
                    execution=Execution.MAYBE,
                    **ctx.context(),
                ) from None
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                # Its stdin is closed: it exited or is exiting; it cannot have read this.
                self._log.debug("stdin.write_failed", error=repr(exc))
                self._abandon(proc, None)
                raise await self._gone_error(proc, ctx) from exc
        if on_sent is not None:
            on_sent()
        return not ("method" in message and "id" in message)

    def _abandon(self, proc: _Proc, why: str | None) -> None:
        """Mark ``proc`` unusable and end it in the background (reported as a loss)."""
        proc.gone = True
        if self._task_group is not None:
            self._task_group.start_soon(self._lose, proc, why)

    async def _gone_error(self, proc: _Proc, ctx: FailureContext) -> MCPError:
        """The error for a send to a process that is gone (nothing was written)."""
        # Its end is usually being handled right now; waiting (briefly) for it gives the
        # caller the exit status, and the session its report first: the retry of this
        # call then waits for the new session instead of failing again at once.
        if proc.losing:
            with anyio.move_on_after(self._timeouts.close):
                await proc.lost.wait()
        if self._terminal is not None:
            return ConnectError(self._terminal, **ctx.context())
        reason = proc.reason or f"the stdio server {self._server.command!r} is not running"
        if proc.lost.is_set() and proc is self._proc and not self._closed:
            # Reported again: a report that came while a handshake was finishing may
            # have found no session to recover; this one does (repeats are harmless).
            self._on_lost(reason)
        return ConnectionLost(reason, execution=Execution.NOT_EXECUTED, **ctx.context())

    # --- reading ---------------------------------------------------------------------------

    async def _supervise(self, proc: _Proc) -> None:
        """Read the process's stdout and stderr; handle its end. One task per process."""
        try:
            with proc.scope:
                async with anyio.create_task_group() as readers:
                    readers.start_soon(self._read_stderr, proc)
                    try:
                        await self._read_stdout(proc)
                    finally:
                        proc.stdout_closed.set()
                    # End of stdout: the server exited (or will); it cannot answer any more.
                    proc.gone = True
                    if not proc.retired:
                        await self._lose(proc)
                    readers.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                # Normally stopped already; this catches a task group cancelled without
                # aclose(): the process must not outlive us.
                await self._stop(proc)
                await self._close_pipes(proc)
                proc.finished.set()

    async def _read_stdout(self, proc: _Proc) -> None:
        stdout = proc.process.stdout
        assert stdout is not None
        splitter = _LineSplitter(self._max_size)
        try:
            while True:
                try:
                    chunk = await stdout.receive(_CHUNK)
                except anyio.EndOfStream:
                    break
                for item in splitter.feed(chunk):
                    self._on_line(item, proc)
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            self._log.debug("stdout.failed", pid=proc.process.pid, error=repr(exc))
        for item in splitter.finish():
            self._on_line(item, proc)

    def _on_line(self, item: bytes | int, proc: _Proc) -> None:
        if isinstance(item, int):
            self.oversized_messages += 1
            self._log.warning(
                "message.too_large", size=item, limit=self._max_size, pid=proc.process.pid
            )
            request_id = _response_id(item.head if isinstance(item, _Dropped) else b"")
            if request_id is not None:
                # The answer is lost, but we know whose it was: that request fails now
                # (and alone) instead of waiting for its timeout.
                self._on_undeliverable(
                    request_id,
                    MessageTooLarge(
                        f"answer of {int(item)} bytes exceeds the {self._max_size}-byte limit"
                    ),
                )
            return
        if not item.strip():
            return  # blank lines (and a lone "\r") carry nothing
        try:
            message = json.loads(item)
        except ValueError:
            self.malformed_messages += 1
            self._log.warning(
                "message.malformed",
                line=item[:_MALFORMED_PREVIEW].decode("utf-8", "replace"),
                size=len(item),
                pid=proc.process.pid,
            )
            return
        if self._deliver is not None:
            try:
                self._deliver(message)
            except Exception as exc:  # the session's bug must not end our reader
                self._log.error("deliver.failed", error=repr(exc))

    async def _read_stderr(self, proc: _Proc) -> None:
        stderr = proc.process.stderr
        assert stderr is not None
        splitter = _LineSplitter(_STDERR_LINE_LIMIT)
        try:
            while True:
                try:
                    chunk = await stderr.receive(_CHUNK)
                except anyio.EndOfStream:
                    break
                for item in splitter.feed(chunk):
                    self._on_stderr(item, proc)
            for item in splitter.finish():
                self._on_stderr(item, proc)
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # only diagnostics are lost
        finally:
            proc.stderr_closed.set()

    def _on_stderr(self, item: bytes | int, proc: _Proc) -> None:
        if isinstance(item, int):
            text = f"[{item}-byte line not shown]"
        else:
            text = item.decode("utf-8", "replace").rstrip()
            if not text:
                return
        # Free-form logging of the server (the spec): information, never an error.
        self._log.info("server.stderr", line=text[:_STDERR_LOG_CHARS], pid=proc.process.pid)
        proc.stderr_tail.append(text[:_STDERR_TAIL_CHARS])

    # --- ending a process ----------------------------------------------------------------------

    async def _lose(self, proc: _Proc, why: str | None = None) -> None:
        """Handle the end of ``proc``: reap it, then report the loss to the session.

        Idempotent: later callers wait for the first one's (bounded) work.
        """
        if proc.losing:
            await proc.lost.wait()
            return
        proc.losing = True
        proc.gone = True
        try:
            with anyio.CancelScope(shield=True):
                await self._stop(proc)
                # What it wrote before it ended is read first: its answers are delivered
                # before the loss fails what is pending, and its last words (often why it
                # exited) go into the reason.
                with anyio.move_on_after(_DRAIN_S):
                    await proc.stdout_closed.wait()
                    await proc.stderr_closed.wait()
            returncode = proc.process.returncode
            command = self._server.command
            if why is not None:
                reason = why
            elif proc.ended_by != "exit":
                reason = f"the stdio server {command!r} closed its stdout and was stopped"
            else:
                reason = f"the stdio server {command!r} {_describe_status(returncode)}"
            if proc.stderr_tail:
                reason += "; last stderr: " + " | ".join(proc.stderr_tail)
            proc.reason = reason
        finally:
            proc.lost.set()
            if not proc.stdout_closed.is_set():
                proc.scope.cancel()  # a grandchild holds its stdout: stop reading it
        if proc.retired or self._closed or proc is not self._proc:
            return  # ended on purpose, or already replaced: nobody waits on it
        self._log.warning(
            "server.exited", pid=proc.process.pid, returncode=returncode, reason=reason
        )
        self._on_lost(reason)

    async def _stop(self, proc: _Proc) -> None:
        """Make sure ``proc`` is dead and reaped: stdin closed, SIGTERM, SIGKILL.

        Each stage waits at most :attr:`Timeouts.close`. Idempotent and shielded.
        """
        if proc.stopping:
            await proc.stopped.wait()
            return
        proc.stopping = True
        proc.gone = True
        process = proc.process
        try:
            with anyio.CancelScope(shield=True):
                ended_by = "exit"
                stdin = process.stdin
                if stdin is not None:
                    # The polite request to leave: a stdio server exits at end of input.
                    with contextlib.suppress(Exception):
                        await stdin.aclose()
                if not await self._wait_exit(process):
                    ended_by = "sigterm"
                    _signal(process, signal.SIGTERM)
                    if not await self._wait_exit(process):
                        ended_by = "sigkill"
                        _signal(process, _SIGKILL)
                        if not await self._wait_exit(process):
                            ended_by = "unknown"
                proc.ended_by = ended_by
                self._returncode = process.returncode
                log = self._log.info if ended_by == "exit" else self._log.warning
                log(
                    "server.stopped",
                    pid=process.pid,
                    returncode=process.returncode,
                    ended_by=ended_by,
                )
        finally:
            proc.stopped.set()

    async def _wait_exit(self, process: anyio.abc.Process) -> bool:
        """Wait (at most Timeouts.close) for the process to exit; True if it did."""
        if process.returncode is None:
            with anyio.move_on_after(self._timeouts.close):
                await process.wait()
        # (asyncio's wait() also waits for the pipes to close, which a grandchild may
        # hold open: the exit status, set at exit, is what counts.)
        return process.returncode is not None

    async def _close_pipes(self, proc: _Proc) -> None:
        process = proc.process
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.aclose()
        if process.returncode is not None:
            # Lets the event loop finish its book-keeping of the process (and its pipes).
            with anyio.move_on_after(self._timeouts.close):
                await process.wait()


_SIGKILL: signal.Signals = getattr(signal, "SIGKILL", signal.SIGTERM)


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


def _describe_status(returncode: int | None) -> str:
    if returncode is None:
        return "closed its stdout"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"was killed by signal {name}"
    return f"exited with code {returncode}"


def _response_id(head: bytes) -> int | str | None:
    """The id of the response a dropped line started, if its start shows one."""
    if b'"method"' in head:
        return None
    found = _HEAD_ID.search(head)
    if found is None:
        return None
    try:
        value = json.loads(found.group(1))
    except ValueError:
        return None
    return value if isinstance(value, int | str) and not isinstance(value, bool) else None


def _ignore_undeliverable(request_id: Any, error: MCPError) -> None:
    pass


def _ignore(reason: str) -> None:
    pass
