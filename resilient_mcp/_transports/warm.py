"""Stdio server processes kept warm for the next client (``StdioServer(keep_alive=...)``).

Starting a server is nearly all of a stdio connect (an interpreter or node loading), so
a client that closes may hand its process, still running, to this pool; the next client
of the same command line takes it instead of starting one, and does its own handshake
on it. The rules:

- The key is the detection key (:func:`.._detection.process_key`: command, arguments,
  working directory, a keyed digest of the environment): never shared between
  different commands or environments. One idle process per key; a second one handed in
  meanwhile is stopped instead.
- A process is taken out of the pool by one client (``take`` removes it before the
  first ``await``): never used by two clients at once. Only a process with no request
  left unanswered is handed in (the transport checks): a late answer can never reach
  the next client's request of the same id.
- Idle, it is read (stdout lines are dropped and logged, stderr is logged as always) so
  that it cannot block on a full pipe, and it is stopped (stdin closed, SIGTERM,
  SIGKILL, reaped) after ``keep_alive`` seconds, when it exits, or when the event loop
  ends.

Structured concurrency: each idle process is watched by one task of the pool's task
group, which runs in a host task of the event loop (:class:`.._host.Host`, one per
event loop, as a client's background work does). When the loop ends it cancels that
task; each watcher's cleanup then stops its process, shielded. A process handed in on
a loop that is never ended properly (no task cancellation) is killed at interpreter
exit (:func:`_kill_leftovers`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import threading
import weakref

import anyio
import anyio.abc

from .._config import Timeouts
from .._host import Host, _library
from .._log import Logger, default_logger
from .base import SendContext
from .lines import LineSplitter
from .process import Proc

__all__ = ["Ledger", "hand_in", "park", "take"]

_SIGKILL: signal.Signals = getattr(signal, "SIGKILL", signal.SIGTERM)
_CHUNK = 64 * 1024
_IDLE_LINE_LIMIT = 64 * 1024 * 1024
# JSON-RPC "method not found": a legacy server's normal answer to the era probe, not a
# refusal of a new session.
_METHOD_NOT_FOUND = -32601


class Ledger:
    """The ids of one stdio transport's requests: what may still be answered.

    Attributes:
        unanswered: ids sent to the current process and not answered yet; it is kept
            only without any (a late answer would reach the next client's request of
            the same id).
        warm: the process came warm from an earlier client, and the first request of
            this client's handshake has not been answered yet.
        watched: ids sent while an era probe runs (None: none runs).
        abandoned: ids sent during a probe given up on: their late answers are
            consumed by the transport, not reported unknown.
    """

    def __init__(self) -> None:
        self.unanswered: set[object] = set()
        self.warm = False
        self._first: tuple[object, bytes, SendContext] | None = None
        self.watched: set[int] | None = None
        self.abandoned: set[int] = set()

    def new_process(self) -> None:
        """A new process started: nothing sent to it yet, and it is not warm."""
        self.unanswered.clear()
        self.warm = False
        self._first = None

    def quiet(self) -> bool:
        """Nothing more can be answered: the process may serve another client."""
        return not self.unanswered and not self.abandoned and self.watched is None

    def end_watch(self, *, abandoned: bool) -> None:
        """The probe is over; ``abandoned``: late answers to what it watched may come."""
        if abandoned and self.watched is not None:
            self.abandoned |= self.watched
        self.watched = None

    def late(self, request_id: object) -> bool:
        """Whether ``request_id`` was sent during a probe given up on (once each)."""
        if not isinstance(request_id, int) or request_id not in self.abandoned:
            return False
        self.abandoned.discard(request_id)
        return True

    def sent(self, request_id: object, line: bytes, ctx: SendContext) -> None:
        """A request is being written (before the write: its answer may come first)."""
        self.unanswered.add(request_id)
        if self.watched is not None and isinstance(request_id, int):
            self.watched.add(request_id)
        if self.warm and self._first is None and not ctx.session_ready:
            self._first = (request_id, line, ctx)  # the handshake's first request

    def answered(self, message: dict[str, object]) -> tuple[bytes, SendContext, str] | None:
        """Note an answer. If it is a warm process's error to the first request of a new
        session (it refuses a second ``initialize``): that request's line and context,
        to send to a new process instead, and the error (shortened) for the log."""
        request_id = message.get("id")
        self.unanswered.discard(request_id)
        first = self._first
        if not self.warm or first is None or request_id != first[0]:
            return None
        self._first = None
        error = message.get("error")
        if isinstance(error, dict) and error.get("code") == _METHOD_NOT_FOUND:
            return None  # a legacy server's answer to the probe: watch the next request
        self.warm = False
        if not isinstance(error, dict):
            return None  # it took the new session: an ordinary process from now on
        return first[1], first[2], str(error)[:200]


async def hand_in(key: str, proc: Proc, *, idle: float, timeouts: Timeouts, log: Logger) -> bool:
    """Stop ``proc``'s readers and keep it, running, for the next client of ``key``.

    Returns False if it could not be kept (the caller stops it as usual); True if it
    was kept, or ended meanwhile and was stopped by its reader (nothing left to do).
    """
    proc.keeping = True
    async with proc.lock:  # no line half-written
        proc.gone = True
    proc.scope.cancel()  # its readers stop where they are; the process runs on
    with anyio.move_on_after(timeouts.close):
        await proc.finished.wait()
    if proc.stopping or not proc.finished.is_set():
        return proc.stopping  # it ended meanwhile (its supervisor stopped it)
    if not await park(key, proc.successor(), idle=idle, timeouts=timeouts, log=log):
        await proc.stop(timeouts, log)
        await proc.close_pipes(timeouts)
    return True


class _Entry:
    __slots__ = ("key", "proc", "released", "scope", "taken")

    def __init__(self, key: str, proc: Proc) -> None:
        self.key = key
        self.proc = proc
        self.scope = anyio.CancelScope()  # its watcher: cancelled by take()
        self.released = anyio.Event()  # the watcher returned
        self.taken = False


class _Pool:
    """The idle processes of one event loop, by key."""

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}
        self.task_group: anyio.abc.TaskGroup | None = None
        self.opening: anyio.Event | None = None

    async def tasks(self) -> anyio.abc.TaskGroup:
        """The pool's task group, in a host task of this event loop (started once)."""
        if self.task_group is not None:
            return self.task_group
        if self.opening is not None:
            await self.opening.wait()
            assert self.task_group is not None
            return self.task_group
        self.opening = anyio.Event()
        try:
            # Never closed: it lives as long as the event loop, which cancels it.
            self.task_group = await Host(default_logger()).open()
        finally:
            self.opening.set()
        return self.task_group


_lock = threading.Lock()  # clients may live on several event loops (threads)
# By event loop (asyncio's loop, trio's token); weak: an ended loop's pool goes with it.
_pools: weakref.WeakKeyDictionary[object, _Pool] = weakref.WeakKeyDictionary()
_live: set[anyio.abc.Process] = set()  # every idle process, for _kill_leftovers


def _pool() -> _Pool:
    token: object
    if _library() == "trio":
        import trio

        token = trio.lowlevel.current_trio_token()
    else:
        token = asyncio.get_running_loop()
    with _lock:
        pool = _pools.get(token)
        if pool is None:
            pool = _pools[token] = _Pool()
        return pool


async def take(key: str) -> Proc | None:
    """The idle process kept for ``key``, now the caller's (None if there is none)."""
    pool = _pool()
    entry = pool.entries.pop(key, None)
    if entry is None:
        return None
    entry.taken = True  # before any await: no other client can get it
    entry.scope.cancel()
    with anyio.CancelScope(shield=True):
        await entry.released.wait()
    proc = entry.proc
    if proc.stopping:
        return None  # it exited (or its pipes broke) just before: its watcher stopped it
    return proc.successor()


async def park(key: str, proc: Proc, *, idle: float, timeouts: Timeouts, log: Logger) -> bool:
    """Keep ``proc`` (running, its readers stopped) for the next client of ``key``.

    Returns False (the caller stops it) if a process is kept for ``key`` already.
    """
    pool = _pool()
    if key in pool.entries:
        return False
    entry = _Entry(key, proc)
    pool.entries[key] = entry
    with _lock:
        _live.add(proc.process)
    with anyio.CancelScope(shield=True):
        task_group = await pool.tasks()
    task_group.start_soon(_watch, pool, entry, idle, timeouts, log)
    log.info("server.kept", pid=proc.pid, idle_s=idle)
    return True


async def _watch(pool: _Pool, entry: _Entry, idle: float, timeouts: Timeouts, log: Logger) -> None:
    """Read the idle process until it is taken, exits, or has been idle ``idle`` s."""
    proc = entry.proc
    why = "event loop ended"
    try:
        with entry.scope, anyio.move_on_after(idle) as timer:
            async with anyio.create_task_group() as readers:
                readers.start_soon(proc.read_stderr, log)
                await _drain_stdout(proc, log)
                why = "exited"
                readers.cancel_scope.cancel()
        if timer.cancelled_caught:
            why = "idle"
    finally:
        if pool.entries.get(entry.key) is entry:
            del pool.entries[entry.key]
        with _lock:
            _live.discard(proc.process)
        try:
            alive = not proc.stdout_closed.is_set() and proc.process.returncode is None
            if not (entry.taken and alive):
                with anyio.CancelScope(shield=True):
                    await proc.stop(timeouts, log)
                    await proc.close_pipes(timeouts)
                    proc.finished.set()
                log.info("server.kept_end", pid=proc.pid, reason=why)  # (stopped, reaped)
        finally:
            entry.released.set()


async def _drain_stdout(proc: Proc, log: Logger) -> None:
    """Read stdout while nobody listens: what the server sends then is dropped."""
    stdout = proc.process.stdout
    assert stdout is not None
    if proc.stdout_splitter is None:
        proc.stdout_splitter = LineSplitter(_IDLE_LINE_LIMIT)
    splitter = proc.stdout_splitter
    try:
        while True:
            try:
                chunk = await stdout.receive(_CHUNK)
            except anyio.EndOfStream:
                break
            for item in splitter.feed(chunk):
                if isinstance(item, bytes) and not item.strip():
                    continue
                size = item if isinstance(item, int) else len(item)
                log.debug("server.idle_message_dropped", pid=proc.pid, size=int(size))
    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass
    proc.stdout_closed.set()


@atexit.register
def _kill_leftovers() -> None:
    """Kill what an event loop left running without ending it (no cleanup ran)."""
    with _lock:
        left = list(_live)
        _live.clear()
    killpg = getattr(os, "killpg", None)
    for process in left:
        if process.returncode is None:  # not reaped: its pid is still its own
            with contextlib.suppress(OSError):
                if killpg is not None:
                    killpg(process.pid, _SIGKILL)  # its group: started in a session of its own
                else:
                    process.kill()
