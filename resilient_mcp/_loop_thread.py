"""A private event loop on a thread of its own, keeping one async context manager open
for sync code: what :class:`~resilient_mcp.SyncClient` (over a :class:`Client`) and
:class:`~resilient_mcp.SyncClientGroup` (over a :class:`ClientGroup`) are built on.

The loop is anyio's blocking portal. The resource's whole life (enter, wait, exit) is
one task in it, so it is entered and left in the same task, as :class:`Client`
requires; every call from a sync thread is a task of its own, cancelled if the calling
thread is interrupted. Plain sync callbacks run in worker threads (see ``_callbacks.py``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import TypeVar

import anyio
import anyio.to_thread
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._callbacks import in_callback
from ._exceptions import ClientClosed, RequestCancelled, UsageError

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """One event-loop thread that keeps one async context manager (a :class:`Client`,
    a :class:`ClientGroup`) open between :meth:`start` and :meth:`stop`, and runs calls
    on it for any thread.

    Args:
        resource: what is entered at :meth:`start` and left at :meth:`stop`.
        name: the thread's name.
        noun: what the errors call it (``"client"``, ``"group"``).
        sync_name: the sync class, for the error of a call from its own loop.
        async_name: the async class to use there instead.
    """

    def __init__(
        self,
        resource: AbstractAsyncContextManager[object],
        name: str,
        *,
        noun: str = "client",
        sync_name: str = "SyncClient",
        async_name: str = "Client",
    ) -> None:
        self._resource = resource
        self._name = name
        self._noun = noun
        self._sync_name, self._async_name = sync_name, async_name
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._lifetime: concurrent.futures.Future[None] | None = None
        self._stop: anyio.Event | None = None
        self._loop_thread: int | None = None
        # Held by whoever is stopping, so that every other stopper waits for the end.
        self._stopping = threading.Lock()
        self._stopped = False

    def start(self) -> None:
        """Start the thread and enter the resource in it; return once it is open.

        Raises:
            MCPError: what entering the resource raised (the thread is stopped again).
            BaseException: a KeyboardInterrupt (or other signal) in the calling thread
                cancels the opening, stops the thread and propagates.
        """
        portal_cm = start_blocking_portal(name=self._name)
        self._portal = portal_cm.__enter__()
        self._portal_cm = portal_cm
        opened: concurrent.futures.Future[None] = concurrent.futures.Future()
        try:
            self._lifetime = self._portal.start_task_soon(self._live, opened)
            opened.result()
        except BaseException:
            if self._lifetime is not None:
                self._lifetime.cancel()  # opening interrupted: stop entering the resource
            self.stop()
            raise

    async def _live(self, opened: concurrent.futures.Future[None]) -> None:
        """The resource's whole life, in one task of the loop."""
        self._loop_thread = threading.get_ident()
        self._stop = anyio.Event()
        try:
            async with self._resource:
                opened.set_result(None)
                await self._stop.wait()
        except Exception as exc:
            if opened.done():
                raise  # raised on the way out: stop() reports it
            opened.set_exception(exc)  # a failed opening, raised by start()
        except BaseException:
            if not opened.done():
                opened.cancel()  # cancelled while opening: start() was interrupted
            raise

    def run(self, function: Callable[[], Awaitable[T]]) -> T:
        """Run ``function()`` in the loop and return its result, from any other thread.

        Raises:
            ClientClosed: the loop is not running (any more).
            RequestCancelled: the loop stopped before the call ended.
            UsageError: called from the loop's own thread (an async handler).
            MCPError: whatever the call raised.
            BaseException: a KeyboardInterrupt (or other signal) in the calling thread
                cancels the call, which cannot outlive it, and propagates.
        """
        portal = self._portal
        if portal is None or self._stopped:
            raise ClientClosed(f"the {self._noun} is closed")
        if threading.get_ident() == self._loop_thread:
            raise UsageError(
                f"a {self._sync_name} cannot be called from its own event loop (an async "
                "handler or callback); give it a plain function, or use the async "
                f"{self._async_name} there"
            )
        try:
            future = portal.start_task_soon(function)
        except RuntimeError as exc:  # the portal stopped meanwhile
            raise ClientClosed(f"the {self._noun} is closed") from exc
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise RequestCancelled(f"the {self._noun} closed before the call ended") from None
        except BaseException:
            # KeyboardInterrupt, SystemExit from a signal handler, ...: the call must not
            # go on without anyone waiting for it. (A no-op if it had just ended.)
            future.cancel()
            raise

    def read(self, function: Callable[[], T]) -> T:
        """``function()``, a quick plain function that only reads state, run in the loop
        while it runs (so it sees the state between two of the loop's steps, never in the
        middle of one); run here when the loop does not run, or from the loop's thread.

        Raises:
            Exception: whatever ``function`` raised.
        """
        portal = self._portal
        if portal is not None and not self._stopped and threading.get_ident() != self._loop_thread:
            outcome: list[T] = []
            failure: list[Exception] = []

            def guarded() -> None:  # so that a RuntimeError below is the portal's own
                try:
                    outcome.append(function())
                except Exception as exc:
                    failure.append(exc)

            with contextlib.suppress(RuntimeError):  # the portal stopped meanwhile
                portal.call(guarded)
            if failure:
                raise failure[0]
            if outcome:
                return outcome[0]
        return function()

    def stop(self) -> None:
        """Leave the resource (ending a session, stopping a stdio server) and the loop,
        and join the thread. Idempotent, and safe from any thread; from the loop's own
        thread or a callback's, the end is only asked for (it cannot be waited for there:
        it waits for them), and a later ``stop()`` elsewhere waits for it.

        Raises:
            MCPError: what leaving the resource raised (a background task had failed).
        """
        with self._stopping:
            if self._stopped:
                return
            portal, portal_cm, lifetime = self._portal, self._portal_cm, self._lifetime
            if portal is None or portal_cm is None:
                return
            if threading.get_ident() == self._loop_thread:
                # Garbage collected inside the loop itself: ask for the end, cannot wait.
                if self._stop is not None:
                    self._stop.set()
                return
            if getattr(in_callback, "active", False):
                # The end waits for this callback to return: ask for it, do not wait.
                with contextlib.suppress(RuntimeError):
                    if self._stop is not None:
                        portal.call(self._stop.set)
                return
            try:
                if self._stop is not None:
                    portal.call(self._stop.set)
                if lifetime is not None and not lifetime.cancelled():
                    lifetime.exception()  # wait for the resource to be left
            except (RuntimeError, concurrent.futures.CancelledError):
                pass  # the portal already stopped; the opening was cancelled
            finally:
                # Joins the thread: once back, no task, no thread and no child is left.
                portal_cm.__exit__(None, None, None)
                self._stopped = True
            if lifetime is not None and not lifetime.cancelled():
                error = lifetime.exception()
                if error is not None:
                    raise error
