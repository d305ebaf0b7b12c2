"""How `serve()` hosts a StrictServer: one place at a time, on one event loop.

`serve()` claims the server, tells it which thread runs its event loop, and asks it to
end its streams on shutdown; the public methods that touch live connections
(`restart()`, `notify_*()`) run on that loop through `call`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

# How long a call from another thread waits for the server's event loop to run it.
_LOOP_CALL_TIMEOUT: Final = 10.0


class Host:
    """The hosting hooks of one server; `shutdown` ends every open stream."""

    def __init__(self, shutdown: Callable[[], None]) -> None:
        self.shutdown = shutdown
        """End every session and stream so the ASGI server can stop."""
        self._lock = threading.Lock()
        self._serving = False
        self._loop_thread: int | None = None
        self._loop_call: Callable[[Callable[[], None]], object] | None = None

    def claim(self) -> None:
        """Mark the server as served; RuntimeError if it already is."""
        with self._lock:
            if self._serving:
                raise RuntimeError("this StrictServer is already being served")
            self._serving = True

    def release(self) -> None:
        """The server is no longer served."""
        with self._lock:
            self._serving = False

    def attach_loop(
        self, thread: int | None, call: Callable[[Callable[[], None]], object] | None
    ) -> None:
        """Set (or, with None, clear) the loop's thread and how to run a callable on it."""
        self._loop_thread = thread
        self._loop_call = call

    def call(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the server's event loop and wait for it; at once when not served.

        Raises:
            RuntimeError: the loop did not run `fn` in time.
        """
        call = self._loop_call
        if call is None or threading.get_ident() == self._loop_thread:
            fn()
            return
        done = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)
            finally:
                done.set()

        call(run)
        if not done.wait(_LOOP_CALL_TIMEOUT):
            raise RuntimeError("the server's event loop did not respond")
        if errors:
            raise errors[0]
