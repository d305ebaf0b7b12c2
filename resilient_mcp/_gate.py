"""The gate: calls wait here, in a bounded FIFO, until the session is ready.

A call made while the session is not ready parks in the queue and is released only when
the handshake succeeded; if it failed, each parked call raises its own copy of the
error, marked ``NOT_EXECUTED`` (nothing was sent). The handshake is *single flight*:
whoever finds the session not ready and no handshake running starts one; everyone else
parks. When the client closes, every parked call raises ``ClientClosed``.

Book-keeping is synchronous code with no ``await`` inside; the handshake itself is the
session's, run here in a task of the session's task group.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

from ._exceptions import Execution, HandshakeError, MCPError, QueueFull, RequestTimeout
from ._stats import SessionStats

__all__ = ["Gate"]


class _Waiter:
    """One call parked in the gate."""

    __slots__ = ("error", "event")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.error: MCPError | None = None


class Gate:
    """The queue in front of a session, and the runner of the handshake that opens it.

    Args:
        handshake: establishes the session; raises the failure (never anything but an
            ``MCPError``, though a surprise is turned into a ``HandshakeError`` here).
        opened: runs after the waiters were released (opening streams and the like).
    """

    def __init__(
        self,
        *,
        max_queued: int,
        stats: SessionStats,
        handshake: Callable[[], Awaitable[None]],
        opened: Callable[[], Awaitable[None]],
    ) -> None:
        self._max_queued = max_queued
        self._stats = stats
        self._handshake = handshake
        self._opened = opened
        # Made by the first parked call, dropped once released: a ready session holds none.
        self._queue: deque[_Waiter] | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self.is_open = False
        self.running = False
        self._shut: MCPError | None = None

    def __len__(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    def bind(self, task_group: anyio.abc.TaskGroup) -> None:
        self._task_group = task_group

    async def wait(self, deadline: float) -> None:
        """Return once the session is ready, starting the handshake if none is running.

        Raises:
            ClientClosed: the client is closing or closed.
            QueueFull: too many calls are already waiting.
            RequestTimeout: ``deadline`` passed first (nothing was sent).
            MCPError: the handshake failed (a copy of its error).
        """
        if self.is_open:
            return
        if self._shut is not None:
            raise _own_copy(self._shut)
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        if len(queue) >= self._max_queued:
            raise QueueFull(
                f"{len(queue)} calls already wait for the session "
                f"(Limits.max_queued={self._max_queued})"
            )
        waiter = _Waiter()
        queue.append(waiter)
        self._stats.queued_peak = max(self._stats.queued_peak, len(queue))
        self.start()
        try:
            with anyio.move_on_after(deadline - anyio.current_time()) as scope:
                await waiter.event.wait()
        finally:
            if not waiter.event.is_set() and self._queue is not None:
                self._queue.remove(waiter)  # still parked (a released one is set)
        if scope.cancelled_caught and not waiter.event.is_set():
            raise RequestTimeout(
                "timed out waiting for the session to become ready",
                execution=Execution.NOT_EXECUTED,
            )
        if waiter.error is not None:
            raise waiter.error

    def start(self) -> None:
        """Start a handshake unless the session is ready or one is running."""
        if self.running or self.is_open or self._shut is not None:
            return
        if self._task_group is None:
            raise RuntimeError("the gate has no task group yet")  # a bug of ours
        self.running = True
        self._task_group.start_soon(self._run)

    def close(self) -> None:
        """The session was lost: calls park again until a new handshake succeeds."""
        self.is_open = False

    def shut(self, error: MCPError) -> None:
        """For good: every parked call, and every later one, raises a copy of ``error``."""
        self._shut = error
        self.is_open = False
        self._release(error)

    async def _run(self) -> None:
        error: MCPError | None = None
        try:
            await self._handshake()
        except MCPError as exc:
            error = exc
        except Exception as exc:
            # Never let a surprise kill the task group: the parked calls get a typed
            # error instead of a hang or a cancellation.
            error = HandshakeError(f"handshake failed unexpectedly: {exc!r}", method="initialize")
            error.__cause__ = exc
        finally:
            self.running = False
        if self._shut is not None:
            self._release(self._shut)
            return
        if error is not None:
            self._release(error)
            return
        self.is_open = True
        self._release(None)
        await self._opened()

    def _release(self, error: MCPError | None) -> None:
        """Wake every parked call, in arrival order."""
        queue, self._queue = self._queue, None
        while queue:
            waiter = queue.popleft()
            if error is not None:
                waiter.error = _own_copy(error)
            waiter.event.set()


def _own_copy(error: MCPError) -> MCPError:
    # Each waiter raises its own copy: one exception object raised in many tasks would
    # collect a mixed-up traceback.
    mine = copy.copy(error)
    mine.__cause__ = error.__cause__
    mine.execution = Execution.NOT_EXECUTED
    mine.request_id = None
    return mine
