"""What to do about a failure: the one decision table, and the retry loop it drives.

Every failed attempt of a call is looked up in :data:`DECISIONS`, by the error's class,
its :class:`~resilient_mcp.Execution` verdict, whether repeating the request is harmless
(``safe``) and the state of the call (did it fail in the gate, in which era, what was
tried already). The answer is one :class:`Action`:

- ``RETRY``: send it again on this session, after a backoff (``RetryPolicy``);
- ``RENEW``: the session is lost or not initialized: one new handshake (shared by every
  caller that finds the same), then send it again;
- ``FAIL``: raise, with the verdict the error carries (a side-effecting tool call whose
  fate is unknown becomes :class:`~resilient_mcp.FateUnknown`).

Two budgets bound the retries, because the failures differ in what a retry risks. A
failure that certainly did not run (``NOT_EXECUTED``, or the call never left the gate)
costs nothing to repeat: it is retried with backoff until the call's deadline (and at
most :data:`MAX_NOT_RUN_RETRIES` times, for calls without one). A failure that *may*
have run is re-sent only if that is harmless, and at most ``RetryPolicy.attempts``
sends in all. Lost sessions are followed (:data:`MAX_SESSION_FOLLOWS`), the first one
at once, the next ones after a backoff, so that a server losing every session is not
hammered with handshakes.

This module is also the one place that says what an *outage* is (:func:`is_outage`):
a failure that tells nothing about the server's era or transport.

tenacity drives the loop (retry predicate, stop, wait, before-sleep hook), hidden behind
:class:`~resilient_mcp.RetryPolicy`. The first attempt runs before any of it: the common
call, which succeeds, pays nothing for the machinery.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import tenacity

from ._deadline import Deadline
from ._exceptions import (
    ClientClosed,
    ConnectError,
    ConnectionLost,
    Execution,
    FateUnknown,
    HandshakeError,
    HTTPStatusError,
    InvalidParams,
    MCPError,
    RequestTimeout,
    ServerUnavailable,
    SessionError,
    TransportError,
    UnsupportedProtocolVersion,
)
from ._log import Logger
from ._retry import RetryPolicy
from ._stats import SessionStats
from ._telemetry import CallObserver

__all__ = ["DECISIONS", "SAFE_METHODS", "Action", "GateFailure", "Recovery", "decide", "is_outage"]

_T = TypeVar("_T")

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

# How many lost sessions one call follows to the next before giving up (each new session
# is one handshake shared by every caller). Only a server that never keeps a session
# reaches it; the call's deadline usually ends things first.
MAX_SESSION_FOLLOWS = 32

# Retries of failures that certainly did not run, per call. The deadline ends them
# first with a finite timeout (60 s by default); this bounds a call made with
# ``timeout=None``: with the default waits (doubling from 0.05 s up to 2 s), about 50 s
# of a server refusing every attempt.
MAX_NOT_RUN_RETRIES = 30

# The Python SDK's ambiguous -32602 right after a handshake usually means our
# ``notifications/initialized`` is still queued on the server: retry on the same session
# this often (with the policy's first, short backoffs) before one new handshake; if that
# does not settle it, it is a real bad argument. About 0.15 s of waiting in all.
AMBIGUOUS_SAME_SESSION = 2


class Action(enum.Enum):
    """What to do about one failed attempt."""

    RETRY = "retry"
    RENEW = "renew"
    FAIL = "fail"


def is_outage(error: BaseException | None) -> bool:
    """A failure that says nothing about the server's era or transport: it is down,
    slow, overloaded, or we stopped."""
    return isinstance(
        error, ConnectError | ConnectionLost | ServerUnavailable | RequestTimeout | ClientClosed
    )


def is_transient(error: BaseException | None) -> bool:
    """A failure a later attempt may not meet (the network, the server's load, a session)."""
    return isinstance(error, TransportError | SessionError) or (
        isinstance(error, HTTPStatusError) and error.status_code >= 500
    )


@dataclass(frozen=True, slots=True)
class Situation:
    """What a decision depends on besides the error."""

    safe: bool
    """Running the request twice is harmless (a read, an idempotent tool, the caller
    said so, or it never went out: it failed in the gate)."""
    in_gate: bool = False
    """It never went out: the handshake it waited for failed."""
    modern: bool = False
    """The session speaks the modern era."""
    tried: tuple[str, ...] = ()
    """Remedies already used by this call, once per use (``"ambiguous"``, ``"version"``,
    ``"ambiguous-wait"``)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One row of the table: errors of ``kind`` for which ``when`` holds get ``action``."""

    kind: type[MCPError] | tuple[type[MCPError], ...]
    when: Callable[[Any, Situation], bool]
    action: Action
    why: str
    remedy: str | None = None
    """A remedy this row uses up (its name goes into ``Situation.tried``)."""
    renews: bool = False
    """A ``FAIL`` that still starts a new handshake: the session is gone either way."""


def _not_executed_or_safe(error: MCPError, situation: Situation) -> bool:
    return error.execution is Execution.NOT_EXECUTED or situation.safe


DECISIONS: tuple[Decision, ...] = (
    Decision(
        SessionError,
        _not_executed_or_safe,
        Action.RENEW,
        "not initialized, or session lost: it did not run (or is harmless to repeat); "
        "a new session fixes it",
    ),
    Decision(
        SessionError,
        lambda error, s: True,
        Action.FAIL,
        "the session ended while the request ran (mcp 2.3's 500 -32603): it may have run, "
        "so it is not repeated; the session is renewed for the next call all the same",
        renews=True,
    ),
    Decision(
        InvalidParams,
        lambda error, s: (
            error.may_be_not_initialized
            and s.tried.count("ambiguous-wait") < AMBIGUOUS_SAME_SESSION
        ),
        Action.RETRY,
        "the Python SDK's ambiguous -32602: our `initialized` is probably still queued on "
        "the server; the same session again, after a short backoff",
        remedy="ambiguous-wait",
    ),
    Decision(
        InvalidParams,
        lambda error, s: error.may_be_not_initialized and "ambiguous" not in s.tried,
        Action.RENEW,
        "the ambiguous -32602 persists: one new handshake settles it, then it is real",
        remedy="ambiguous",
    ),
    Decision(
        UnsupportedProtocolVersion,
        lambda error, s: s.modern and "version" not in s.tried,
        Action.RENEW,
        "-32022 in the modern era: the server changed its versions; detect again, once "
        "(it refused the request before running it)",
        remedy="version",
    ),
    Decision(
        HandshakeError,
        lambda error, s: is_transient(error.__cause__),
        Action.RETRY,
        "the handshake failed on its way (its `initialized` hit a 503, a dropped "
        "connection): the call never went out, and a new handshake may work",
    ),
    Decision(
        ConnectError,
        lambda error, s: error.permanent,
        Action.FAIL,
        "the transport knows nothing can reach the server (a stdio server not restarted)",
    ),
    Decision(
        (ConnectError, ConnectionLost, ServerUnavailable),
        _not_executed_or_safe,
        Action.RETRY,
        "the network or the server's load: again, if it did not run or is harmless",
    ),
    Decision(
        HTTPStatusError,
        lambda error, s: error.status_code >= 500 and _not_executed_or_safe(error, s),
        Action.RETRY,
        "a 5xx: again, if it did not run or is harmless",
    ),
)
"""The decision table; the first row that matches wins, and no row means ``FAIL``."""


def decide(error: MCPError, situation: Situation) -> Decision | None:
    """The row of :data:`DECISIONS` for this failure (None: fail)."""
    for row in DECISIONS:
        if isinstance(error, row.kind) and row.when(error, situation):
            return row
    return None


class GateFailure(Exception):
    """Internal: the call never went out, because the handshake it waited for failed."""

    def __init__(self, error: MCPError) -> None:
        super().__init__(error.message)
        self.error = error


class Recovery:
    """One call's way through its failures: counts, waits, and the error it ends with.

    Args:
        policy: attempts and backoff.
        deadline: the call's deadline; a wait that would end after it is not started.
        method, params: the request (for the log, and for ``FateUnknown``).
        safe: repeating it is harmless.
        renew: starts one new handshake for the session of a given generation (single
            flight: only the first report about a generation acts).
        generation: the current session's generation.
        modern: whether the session speaks the modern era now.
        handshake: every failure is the handshake's own (``connect()`` waiting for it).
        observer: the call's telemetry (told of every retry and renewed session), if any.
    """

    def __init__(
        self,
        *,
        policy: RetryPolicy,
        deadline: Deadline,
        method: str,
        params: Mapping[str, Any] | None,
        safe: bool,
        stats: SessionStats,
        log: Logger,
        renew: Callable[[int, str], None],
        generation: Callable[[], int],
        modern: Callable[[], bool],
        handshake: bool = False,
        observer: CallObserver | None = None,
    ) -> None:
        self._policy = policy
        self._deadline = deadline
        self._method = method
        self._params = params
        self._safe = safe
        self._stats = stats
        self._log = log
        self._renew = renew
        self._generation = generation
        self._modern = modern
        self._handshake = handshake
        self._observer = observer
        self._tried: tuple[str, ...] = ()
        self._failures = 0  # failures that may have run: they use up attempts
        self._not_run = 0  # retries of failures that certainly did not run
        self._follows = 0  # lost sessions followed to the next
        self._past_deadline: float | None = None  # a Retry-After that outlasts the deadline
        self._sends = 1  # sends so far
        self._at_generation = 0
        self._delay = 0.0
        self._give_up = False
        self._in_gate = False
        self._last: MCPError | None = None

    async def run(self, attempt: Callable[[int], Awaitable[_T]]) -> _T:
        """Run ``attempt(send_number)`` until it succeeds or the table says fail.

        Raises:
            MCPError: the final failure (``FateUnknown`` for a side-effecting tool call
                that may have run).
        """
        generation = self._generation()
        try:
            return await attempt(1)
        except (GateFailure, MCPError) as caught:
            return await self.after(caught, generation, attempt)

    async def after(
        self,
        first: GateFailure | MCPError,
        generation: int,
        attempt: Callable[[int], Awaitable[_T]],
    ) -> _T:
        """Go on from a first attempt that failed with ``first`` on session
        ``generation``: the caller made that attempt itself, so that a call that succeeds
        at once never builds any of this.

        Raises:
            MCPError: the final failure, as :meth:`run`.
        """
        self._at_generation = generation
        replay: list[BaseException] = [first]

        async def again() -> _T:
            if replay:
                raise replay.pop()  # the failure of the first attempt, judged by tenacity
            self._at_generation = self._generation()
            return await attempt(self._sends)

        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(self._judge),
            stop=self._stop,
            wait=self._wait,
            before_sleep=self._before_sleep,
            sleep=self._policy.pause,
            reraise=True,
        )
        try:
            async for trial in retrying:
                with trial:
                    return await again()
        except (GateFailure, MCPError) as caught:
            error = caught.error if isinstance(caught, GateFailure) else caught
            if self._past_deadline is not None and error is self._last:
                error.message = (
                    f"{error.message}; the server asked to wait {self._past_deadline:g} s "
                    "(Retry-After), beyond the call's deadline"
                )
                error.args = (error.message,)
            final = error if self._in_gate else self._final(error)
            raise final from (error.__cause__ if final is error else error)
        raise AssertionError("unreachable: tenacity ends with a result or an exception")

    def _judge(self, caught: BaseException) -> bool:
        """tenacity's retry predicate: decide, and book what the decision costs."""
        if not isinstance(caught, GateFailure | MCPError):
            return False  # a cancellation, or a bug: not ours to retry
        self._in_gate = in_gate = self._handshake or isinstance(caught, GateFailure)
        error = caught.error if isinstance(caught, GateFailure) else caught
        assert isinstance(error, MCPError)
        row = decide(
            error,
            Situation(
                safe=self._safe or in_gate,
                in_gate=in_gate,
                modern=self._modern(),
                tried=self._tried,
            ),
        )
        if row is not None and row.remedy is not None:
            self._tried += (row.remedy,)
        action = row.action if row is not None else Action.FAIL
        if action is Action.RENEW and in_gate:
            # The handshake itself failed: the next one is a retry like any other.
            action = Action.RETRY
        # Certainly not run (or never sent: parked in the gate): repeating costs nothing,
        # so only the deadline bounds it. connect()'s own handshake keeps its attempts
        # for a refused connection: at start-up that is a wrong URL or a server not yet
        # started, which its caller, right there, should hear about soon.
        not_run = (in_gate or error.execution is Execution.NOT_EXECUTED) and not (
            self._handshake and isinstance(error, ConnectError)
        )
        retry_after: float | None = getattr(error, "retry_after", None)
        exhausted = False
        if action is Action.RENEW:
            # The session was lost, not the request: follow it to the next one. The shared
            # handshake is the wait the first time; a server that loses session after
            # session gets backoff too, not a hot loop of handshakes.
            self._renew(self._at_generation, type(error).__name__)
            if self._observer is not None:
                self._observer.renew(error)
            self._follows += 1
            exhausted = self._follows > MAX_SESSION_FOLLOWS
            self._delay = 0.0 if self._follows == 1 else self._policy.backoff(self._follows - 1)
            if not not_run:  # it may have run (a safe request): a send of the budget
                self._failures += 1
                exhausted = exhausted or self._failures >= self._policy.attempts
        elif action is Action.RETRY and row is not None and row.remedy == "ambiguous-wait":
            # Bounded by AMBIGUOUS_SAME_SESSION (the row): short waits, no budget used.
            self._delay = self._policy.backoff(self._tried.count("ambiguous-wait"))
        elif action is Action.RETRY and not_run:
            self._not_run += 1
            exhausted = self._not_run > MAX_NOT_RUN_RETRIES
            self._delay = self._policy.backoff(self._not_run, retry_after)
        elif action is Action.RETRY:
            self._failures += 1
            exhausted = self._failures >= self._policy.attempts
            self._delay = self._policy.backoff(self._failures, retry_after)
        else:
            exhausted = True
            if row is not None and row.renews and not in_gate:
                self._renew(self._at_generation, type(error).__name__)
                if self._observer is not None:
                    self._observer.renew(error)
        now = anyio.current_time()
        self._give_up = exhausted or now + self._delay >= self._deadline.at
        # The server's own wait outlasts the call: it fails now, and says so.
        self._past_deadline = None
        if not exhausted and retry_after is not None and now + retry_after >= self._deadline.at:
            self._past_deadline = retry_after
        self._last = error
        return not self._give_up

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        return self._give_up

    def _wait(self, state: tenacity.RetryCallState) -> float:
        return self._delay

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        self._log.info(
            "request.retry",
            method=self._method,
            attempt=self._sends,
            error=type(self._last).__name__,
            delay_ms=round(self._delay * 1000, 1),
        )
        if self._observer is not None and self._last is not None:
            self._observer.retry(self._sends, self._last, self._delay, sent=not self._in_gate)
        if not self._in_gate:  # a call parked in the gate was not re-sent
            self._stats.retries += 1
            self._sends += 1

    def _final(self, error: MCPError) -> MCPError:
        """The error to raise when no retry follows."""
        if (
            self._method == "tools/call"
            and not self._safe
            and error.execution is Execution.MAYBE
            and isinstance(
                error, ConnectionLost | ServerUnavailable | HTTPStatusError | SessionError
            )
        ):
            # At most once: it may have run, so it is not repeated; say so distinctly.
            return FateUnknown(
                f"the tool call may or may not have run ({error.message}); "
                "it was not retried because it is not marked idempotent",
                params=dict(self._params or {}),
                method=self._method,
                request_id=error.request_id,
                session_id=error.session_id,
            )
        return error
