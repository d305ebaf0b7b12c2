"""The client's background task group, in a task of its own.

An anyio task group (like every cancel scope) must be left by the task that entered it,
so a task group entered by ``Client.__aenter__`` would tie the client to that task.
Frameworks enter long-lived clients in one task and leave them in another (a toolset
opened at start-up, closed at shutdown; the opening task may be long gone). The host
owns the task group instead: it runs as a task of the event loop itself, enters the
task group there and parks until :meth:`Host.close`, which any task of the same event
loop may call. anyio has no detached-task API, so the host is started natively:
``loop.create_task`` on asyncio (with the strong reference the loop does not keep),
``trio.lowlevel.spawn_system_task`` on trio.

If the event loop ends while the host still runs (a client entered and never left),
the loop cancels it (``asyncio.run`` cancels every task left; trio cancels its system
tasks when the main task returns): the background work is cancelled and its cleanup
runs (a stdio server is stopped and reaped, each stage bounded by ``Timeouts.close``),
but the session is not ended on the server.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import anyio.abc

from ._exceptions import ClientClosed
from ._log import Logger

__all__ = ["HOST_TASK_NAME", "Host", "first_failure", "interrupt_in"]

# The name of the host task (tests tell it from the work it hosts by this name).
HOST_TASK_NAME = "resilient_mcp.Client host"


class Host:
    """Runs one task group in a task of its own, for as long as the client is open."""

    def __init__(self, log: Logger) -> None:
        self._log = log
        # The entry and end events exist only while someone waits for them (each is
        # ~0.9 KB, and a process may hold thousands of open clients).
        self._stop = anyio.Event()  # (what the host parks on: cheaper than a sleep)
        self._entered: anyio.Event | None = None
        self._done: anyio.Event | None = None
        self._finished = False
        self._task_group: anyio.abc.TaskGroup | None = None
        self._failure: BaseException | None = None
        # asyncio keeps only a weak reference to a task: without this one, a host
        # nobody awaits could be collected while it runs.
        self._task: asyncio.Task[None] | None = None
        self._started = False

    async def open(self) -> anyio.abc.TaskGroup:
        """Start the host task; return its task group once it takes tasks.

        Raises:
            ClientClosed: the host was opened before, or its task group ended at once.
        """
        if self._started:
            raise ClientClosed("the client's background work was started before")
        self._started = True
        entered = self._entered = anyio.Event()
        self._task = _spawn(self._run)
        # One scheduling round (the host enters its task group at once). Shielded: a
        # cancelled caller still gets the task group, and the close that follows stops it.
        with anyio.CancelScope(shield=True):
            await entered.wait()
        self._entered = None
        if self._task_group is None or self._finished:
            raise ClientClosed("the client's background work could not start")
        return self._task_group

    async def close(self) -> BaseException | None:
        """Stop the background work and wait until it has ended (shielded). Any task.

        Returns what made it end early, if something did (logged already): a worker's
        failure (usually an ExceptionGroup). Never raises.
        """
        self._stop.set()
        if not self._started:
            return None
        if not self._finished:
            if self._done is None:
                self._done = anyio.Event()
            with anyio.CancelScope(shield=True):
                await self._done.wait()
        self._task = None
        return self._failure

    async def _run(self) -> None:
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                if self._entered is not None:
                    self._entered.set()
                await self._stop.wait()
                task_group.cancel_scope.cancel()
        except BaseException as exc:
            if _only_cancellation(exc):
                # The event loop is ending and cancels us (the stop above never raises):
                # the task ends cancelled, as the loop expects. Cleanup ran meanwhile.
                raise
            # Kept for the task that closes the client: raised in a host task it would
            # reach nobody (asyncio) or crash the run (trio's system tasks).
            self._failure = exc
            self._log.error("client.worker_failed", error=repr(first_failure(exc)))
        finally:
            self._finished = True
            if self._entered is not None:
                self._entered.set()
            if self._done is not None:
                self._done.set()


def _spawn(run: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None] | None:
    """Start ``run()`` as a task of the running event loop that no task owns."""
    if _library() == "trio":
        import trio

        # Its context is the caller's (as asyncio's create_task gives), not the root's.
        trio.lowlevel.spawn_system_task(
            run, name=HOST_TASK_NAME, context=contextvars.copy_context()
        )
        return None
    return asyncio.get_running_loop().create_task(run(), name=HOST_TASK_NAME)


def _library() -> str:
    """The running event loop's library, detected as anyio does (sniffio, if present)."""
    try:
        import sniffio
    except ImportError:  # trio needs sniffio: without it, anyio runs on asyncio
        return "asyncio"
    return sniffio.current_async_library()


def _only_cancellation(exc: BaseException) -> bool:
    cancelled = anyio.get_cancelled_exc_class()
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(cancelled)[1] is None
    return isinstance(exc, cancelled)


def first_failure(exc: BaseException) -> BaseException:
    """The exception that ended a task group (not a cancellation it caused)."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    cancelled = anyio.get_cancelled_exc_class()
    inners: tuple[BaseException, ...] = exc.exceptions
    for inner in inners:
        if isinstance(inner, BaseExceptionGroup):
            return first_failure(inner)
        if not isinstance(inner, cancelled):
            return inner
    return inners[0]


def interrupt_in(exc: BaseException) -> BaseException | None:
    """A KeyboardInterrupt or SystemExit in ``exc`` (to be re-raised as itself)."""
    if isinstance(exc, BaseExceptionGroup):
        found: BaseException | None = exc.split((KeyboardInterrupt, SystemExit))[0]
        while isinstance(found, BaseExceptionGroup):
            found = found.exceptions[0]
        return found
    return exc if isinstance(exc, (KeyboardInterrupt, SystemExit)) else None
