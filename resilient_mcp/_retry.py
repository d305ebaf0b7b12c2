"""The retry policy: one vocabulary for attempts, deadline and backoff (as in stamina).

Which failures are retried is not decided here but by the decision table in
:mod:`._recovery`, from the error's class and its :class:`~resilient_mcp.Execution`
verdict: a request is re-sent only if it certainly did not run, or if running it twice
is harmless. This module says how often and how long to wait; tenacity computes the
waits and drives the retry loop, and stays an implementation detail.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import anyio
import tenacity

from ._exceptions import UsageError

__all__ = ["RetryPolicy", "backoff_disabled", "backoff_sleep", "disable_backoff"]

Sleep = Callable[[float], Awaitable[None]]

_no_backoff: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "resilient_mcp_no_backoff", default=False
)


@contextlib.contextmanager
def disable_backoff() -> Iterator[None]:
    """Within this block (and tasks started in it), retries do not wait between attempts.

    For tests: retry behaviour stays the same, only the delays go (also the
    server-requested ``retry:`` delay before an SSE stream is resumed). State is
    restored on exit.
    """
    token = _no_backoff.set(True)
    try:
        yield
    finally:
        _no_backoff.reset(token)


def backoff_disabled() -> bool:
    """True inside :func:`disable_backoff`."""
    return _no_backoff.get()


async def backoff_sleep(delay: float) -> None:
    """Wait out a server-requested reconnection delay (SSE ``retry:``), unless disabled."""
    await anyio.sleep(0 if _no_backoff.get() else delay)


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """How a failed request is retried (only when that is safe; see docs/recovery.md).

    Attributes:
        attempts: sends in all, the first included, of a request that *may* have run
            and is harmless to repeat (a read, an idempotent tool; 1 = never re-send
            such a one). Failures that certainly did not run (429/503, a refused
            connection, a lost or uninitialized session, a failed handshake) do not use
            it up: they are retried with backoff until the call's deadline.
        timeout: an overall deadline in seconds for all attempts and waits together, on
            top of the call's own timeout (``None``: the call's timeout alone).
        wait_initial: first backoff delay; it doubles with every retry...
        wait_max: ...up to this.
        wait_jitter: plus a random delay up to this, so that clients do not retry in step.
        sleep: how to wait (injectable for tests; ``anyio.sleep`` by default).

    Raises:
        UsageError: ``attempts`` below one, a negative wait, a non-positive ``timeout``.
    """

    attempts: int = 3
    timeout: float | None = None
    wait_initial: float = 0.05
    wait_max: float = 2.0
    wait_jitter: float = 0.05
    sleep: Sleep = field(default=anyio.sleep, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise UsageError("RetryPolicy.attempts must be at least 1")
        for name in ("wait_initial", "wait_max", "wait_jitter"):
            if getattr(self, name) < 0:
                raise UsageError(f"RetryPolicy.{name} must not be negative")
        if self.timeout is not None and self.timeout <= 0:
            raise UsageError("RetryPolicy.timeout must be positive")

    def backoff(self, retry_number: int, retry_after: float | None = None) -> float:
        """The delay before retry number ``retry_number`` (1-based).

        A server's ``Retry-After`` is honoured: the delay is at least that long.
        """
        if _no_backoff.get():
            return 0.0
        state = tenacity.RetryCallState(_RETRYING, None, (), {})
        state.attempt_number = retry_number
        delay = float(_wait(self.wait_initial, self.wait_max, self.wait_jitter)(state))
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    async def pause(self, delay: float) -> None:
        """Wait ``delay`` seconds with :attr:`sleep` (nothing at all for no delay)."""
        if delay > 0:
            await self.sleep(delay)  # backoff: the only kind of sleep we do


@functools.cache
def _wait(initial: float, maximum: float, jitter: float) -> tenacity.wait.wait_base:
    return tenacity.wait_exponential(multiplier=initial, max=maximum) + tenacity.wait_random(
        0, jitter
    )


# tenacity computes waits from a call state that names its Retrying object.
_RETRYING = tenacity.AsyncRetrying()
