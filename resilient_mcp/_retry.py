"""Retry policy: one vocabulary for attempts, deadline and backoff; tenacity stays inside.

Which failures may be retried is not decided here but by :func:`retry_decision`, from the
error's class and its :class:`~resilient_mcp.Execution` verdict: a request is re-sent only
if it certainly did not run, or if running it twice is harmless.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import anyio
import tenacity

from ._exceptions import (
    ConnectError,
    ConnectionLost,
    Execution,
    HandshakeError,
    HTTPStatusError,
    InvalidParams,
    MCPError,
    ServerUnavailable,
    SessionError,
    TransportError,
)

__all__ = ["RetryPolicy", "backoff_sleep", "disable_backoff", "retry_decision"]

Sleep = Callable[[float], Awaitable[None]]

# Methods whose repetition is harmless: reads, and requests that set a state to a value.
SAFE_METHODS = frozenset(
    {
        "ping",
        "tools/list",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
    }
)

_no_backoff: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "resilient_mcp_no_backoff", default=False
)


@contextlib.contextmanager
def disable_backoff() -> Iterator[None]:
    """Within this block (and tasks started in it), retries do not wait between attempts.

    For tests: retry behaviour stays the same, only the delays go. State is restored on
    exit.
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
    """How a failed request is retried (only when that is safe; see the docs).

    Attributes:
        attempts: tries in all, the first included (1 = never retry).
        timeout: an overall deadline in seconds for all attempts and waits together, on
            top of the call's own timeout (``None``: the call's timeout alone).
        wait_initial: first backoff delay; it doubles with every retry...
        wait_max: ...up to this.
        wait_jitter: plus a random delay up to this, so that clients do not retry in step.
        sleep: how to wait (injectable for tests; ``anyio.sleep`` by default).
    """

    attempts: int = 3
    timeout: float | None = None
    wait_initial: float = 0.05
    wait_max: float = 2.0
    wait_jitter: float = 0.05
    sleep: Sleep = field(default=anyio.sleep, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        for name in ("wait_initial", "wait_max", "wait_jitter"):
            if getattr(self, name) < 0:
                raise ValueError(f"RetryPolicy.{name} must not be negative")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("RetryPolicy.timeout must be positive")

    def backoff(self, retry_number: int, retry_after: float | None = None) -> float:
        """The delay before retry number ``retry_number`` (1-based).

        A server's ``Retry-After`` is honoured: the delay is at least that long.
        """
        if _no_backoff.get():
            return 0.0
        strategy = tenacity.wait_exponential(
            multiplier=self.wait_initial, max=self.wait_max
        ) + tenacity.wait_random(0, self.wait_jitter)
        state = tenacity.RetryCallState(_RETRYING, None, (), {})
        state.attempt_number = retry_number
        delay = float(strategy(state))
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay


# tenacity computes waits from a call state that names its Retrying object; ours never runs.
_RETRYING = tenacity.AsyncRetrying()


def _transient(error: MCPError) -> bool:
    return isinstance(error, TransportError | SessionError) or (
        isinstance(error, HTTPStatusError) and error.status_code >= 500
    )


def retry_decision(error: MCPError, *, safe: bool) -> tuple[bool, bool]:
    """Decide about one failure: ``(retry, rehandshake_first)``.

    Args:
        error: the failure of one attempt.
        safe: running the request twice is harmless (a read, an idempotent tool, or the
            caller said so).
    """
    if isinstance(error, SessionError):
        # Not initialized / session lost: certainly not executed; a new session fixes it.
        return True, True
    if isinstance(error, InvalidParams) and error.may_be_not_initialized:
        # The Python SDK's ambiguous -32602: worth exactly one new handshake (the caller
        # makes sure it is only one).
        return True, True
    if isinstance(error, HandshakeError):
        # The handshake failed on its way (its `initialized` hit a 503, a dropped
        # connection...): the call itself never went out, and a new handshake may work.
        cause = error.__cause__
        return isinstance(cause, MCPError) and _transient(cause), False
    if isinstance(error, ConnectError | ConnectionLost | ServerUnavailable):
        return error.execution is Execution.NOT_EXECUTED or safe, False
    if isinstance(error, HTTPStatusError) and error.status_code >= 500:
        return error.execution is Execution.NOT_EXECUTED or safe, False
    return False, False
