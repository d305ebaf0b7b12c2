"""One call's way: the gate, the era's mapping, the wire, and the recovery around it.

:meth:`Calls.call` is what every request of the public API goes through: it waits in
the gate (starting the handshake if needed), lets the era map the call (ping as a
discover round trip, a subscription as a listen filter, ``_meta`` and routing headers),
sends it through :mod:`._rpc`, and hands every failure to :mod:`._recovery`; a modern
``input_required`` result is driven to its end by :mod:`._eras.input_required`. All of
it under the call's one :class:`~._deadline.Deadline`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Protocol

import anyio

from ._config import USE_CLIENT_DEFAULT, Limits, Timeouts, UseClientDefault
from ._deadline import Deadline
from ._eras.base import SERVERS_ANSWER, EraStrategy, Wishes
from ._eras.input_required import finish
from ._exceptions import MCPError, RequestTimeout
from ._gate import Gate
from ._handlers import Handlers, ProgressCallback
from ._log import Logger
from ._recovery import SAFE_METHODS, GateFailure, Recovery
from ._retry import RetryPolicy
from ._rpc import Rpc
from ._stats import SessionStats
from ._telemetry import CallObserver, Observer
from .types import Era

__all__ = ["Calls", "Host", "urgent"]

# Set by `urgent()`: this task's requests take admission's priority lane.
_URGENT: ContextVar[bool] = ContextVar("resilient_mcp_urgent", default=False)


@contextlib.contextmanager
def urgent() -> Iterator[None]:
    """Within this block, the requests this task makes skip admission's FIFO (they take
    the priority lane, as the handshake does). For the few requests that recovery itself
    needs, such as the tool list a call whose fate is unknown reads its annotations
    from: behind a burst of hundreds of queued calls it would otherwise wait its whole
    bound out, and the call would end ``FateUnknown`` although it was safe to re-send."""
    token = _URGENT.set(True)
    try:
        yield
    finally:
        _URGENT.reset(token)


class Host(Protocol):
    """What calls need of the session they go through."""

    gate: Gate
    rpc: Rpc
    stats: SessionStats
    wishes: Wishes

    @property
    def log(self) -> Logger: ...

    @property
    def strategy(self) -> EraStrategy | None: ...

    @property
    def era(self) -> Era | None: ...

    @property
    def generation(self) -> int: ...

    @property
    def session_id(self) -> str | None: ...

    def recover(self, generation: int, reason: str) -> None: ...


class Calls:
    """Makes calls through one session."""

    def __init__(
        self,
        host: Host,
        *,
        timeouts: Timeouts,
        limits: Limits,
        handlers: Handlers,
        retry: RetryPolicy,
    ) -> None:
        self._host = host
        self._timeouts = timeouts
        self._limits = limits
        self._handlers = handlers
        self._retry = retry
        self._last_activity = 0.0
        # Set by the client when it was made with telemetry=; None costs one test a call.
        self.telemetry: Observer | None = None

    @property
    def policy(self) -> RetryPolicy:
        """The client's retry policy (a call's own replaces it)."""
        return self._retry

    @property
    def timeouts(self) -> Timeouts:
        """The client's timeouts."""
        return self._timeouts

    async def establish(self) -> None:
        """Wait for a ready session, retrying a handshake that failed on a transient error
        (a refused connection ``attempts`` times; what certainly did not run, such as a
        503, for up to ``Timeouts.initialize``).

        Raises:
            MCPError: the handshake failed for good (or the retry policy gave up).
        """
        # No call's deadline here: the not-run retries (503s, sessions lost at once) of
        # the first handshake are bounded by Timeouts.initialize instead.
        deadline = Deadline.after(self._timeouts.initialize)
        recovery = self._recovery(
            "initialize", None, deadline, safe=True, policy=None, handshake=True
        )
        await recovery.run(lambda attempt: self._host.gate.wait(math.inf))

    def deadline(
        self, timeout: float | UseClientDefault | None, retry: RetryPolicy | None = None
    ) -> Deadline:
        """The deadline of a call made now, with ``timeout`` (the client's by default)."""
        value = self._timeouts.request if isinstance(timeout, UseClientDefault) else timeout
        policy = retry or self._retry
        return Deadline(
            value,
            reset_on_progress=self._timeouts.reset_on_progress,
            max_total=self._timeouts.max_total,
            cap=policy.timeout,
        )

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
        progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        idempotent: bool = False,
    ) -> Any:
        """Make one call with a deadline of its own (see :meth:`call`)."""
        deadline = self.deadline(timeout, retry)
        return await self.call(
            method, params, deadline, progress=progress, retry=retry, idempotent=idempotent
        )

    async def call(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        deadline: Deadline,
        *,
        progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        idempotent: bool = False,
        observer: CallObserver | None = None,
    ) -> Any:
        """Make one call once the session is ready; return its JSON ``result``.

        Failures are retried only when that is safe (see :mod:`._recovery`). A modern
        ``input_required`` result is answered through the handlers and the request sent
        again with the answers (the protocol's own re-send, not a retry), up to
        ``Limits.max_input_rounds`` times. All of it within ``deadline``.

        With telemetry, the call is observed from here to its end, unless the caller
        observes it already (``observer``: ``call_tool``, whose re-sends are one call).

        Raises:
            FateUnknown: a side-effecting ``tools/call`` may have run; not retried.
            InputRequiredError: the server asked for input no handler can give.
            MCPError: any other failure, typed (see :mod:`._exceptions`).
        """
        if observer is None and self.telemetry is not None:
            return await self._observed(method, params, deadline, progress, retry, idempotent)
        if method == "logging/setLevel" and params is not None:
            # Kept: the modern era sends the level with every request instead.
            level = params.get("level")
            self._host.wishes.log_level = level if isinstance(level, str) else None
        policy = retry or self._retry
        # The first send written out: the common call succeeds at once, and builds no
        # recovery (nor closure, nor coroutine frame) for it.
        generation = self._host.generation
        try:
            result = await self._attempt(method, params, deadline, progress, 1, observer)
        except (GateFailure, MCPError) as caught:
            result = await self._recover(
                caught,
                generation,
                method,
                params,
                deadline,
                progress,
                idempotent,
                policy,
                observer,
            )
        uri = (params or {}).get("uri")
        if method == "resources/subscribe" and isinstance(uri, str):
            self._host.wishes.subscriptions.add(uri)  # renewed on every new session (legacy era)
        elif method == "resources/unsubscribe" and isinstance(uri, str):
            self._host.wishes.subscriptions.discard(uri)
        if not isinstance(result, Mapping) or "resultType" not in result:
            return result  # complete (the legacy era's results never say otherwise)

        async def resend(params: Mapping[str, Any] | None) -> Any:
            generation = self._host.generation
            try:
                return await self._attempt(method, params, deadline, progress, 1, observer)
            except (GateFailure, MCPError) as caught:
                return await self._recover(
                    caught,
                    generation,
                    method,
                    params,
                    deadline,
                    progress,
                    idempotent,
                    policy,
                    observer,
                )

        return await finish(
            result,
            method=method,
            params=params,
            resend=resend,
            deadline=deadline,
            handlers=self._handlers,
            max_rounds=self._limits.max_input_rounds,
            policy=policy,
            log=self._host.log,
        )

    def observe(self, method: str, params: Mapping[str, Any] | None) -> CallObserver | None:
        """Start observing a call that makes several requests of ``method`` (None:
        no telemetry); the caller ends it."""
        return None if self.telemetry is None else self.telemetry.start(method, params)

    async def _observed(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        deadline: Deadline,
        progress: ProgressCallback | None,
        retry: RetryPolicy | None,
        idempotent: bool,
    ) -> Any:
        """:meth:`call`, observed by the client's telemetry from start to end."""
        assert self.telemetry is not None
        observer = self.telemetry.start(method, params)
        try:
            result = await self.call(
                method,
                observer.params,
                deadline,
                progress=progress,
                retry=retry,
                idempotent=idempotent,
                observer=observer,
            )
        except BaseException as exc:
            observer.fail(exc)
            raise
        observer.end(result)
        return result

    async def _recover(
        self,
        caught: GateFailure | MCPError,
        generation: int,
        method: str,
        params: Mapping[str, Any] | None,
        deadline: Deadline,
        progress: ProgressCallback | None,
        idempotent: bool,
        policy: RetryPolicy,
        observer: CallObserver | None = None,
    ) -> Any:
        """Go on from a first attempt that failed (see :class:`~._recovery.Recovery`)."""
        safe = idempotent or method in SAFE_METHODS
        recovery = self._recovery(
            method, params, deadline, safe=safe, policy=policy, observer=observer
        )
        return await recovery.after(
            caught,
            generation,
            lambda attempt: self._attempt(method, params, deadline, progress, attempt, observer),
        )

    def _recovery(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        deadline: Deadline,
        *,
        safe: bool,
        policy: RetryPolicy | None,
        handshake: bool = False,
        observer: CallObserver | None = None,
    ) -> Recovery:
        return Recovery(
            policy=policy or self._retry,
            deadline=deadline,
            method=method,
            params=params,
            safe=safe,
            stats=self._host.stats,
            log=self._host.log,
            renew=self._host.recover,
            generation=lambda: self._host.generation,
            modern=lambda: self._host.era == "modern",
            handshake=handshake,
            observer=observer,
        )

    async def _attempt(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        deadline: Deadline,
        progress: ProgressCallback | None,
        attempt: int,
        observer: CallObserver | None = None,
    ) -> Any:
        if not self._host.gate.is_open:
            try:
                await self._host.gate.wait(deadline.at)
            except RequestTimeout as exc:
                # The call's own deadline passed in the gate: final, and never sent.
                exc.method = method
                raise
            except MCPError as exc:
                # The error is this call's now: it was never sent.
                exc.method = method
                exc._with_context(method=method, request_id=None, session_id=self._host.session_id)
                raise GateFailure(exc) from exc
        era = self._host.strategy
        assert era is not None
        out = era.outgoing(method, params)
        if out.method is None:
            return out.answer  # the era answers it itself (no request in this era)
        rpc = self._host.rpc
        request_id = rpc.next_id()
        if observer is not None:
            observer.sent(request_id)
        reply = await rpc.request(
            era.transport,
            request_id,
            out.method,
            out.params,
            era.context(
                "request", out.method, request_id, headers=out.headers, priority=_URGENT.get()
            ),
            deadline,
            progress=progress,
            cancel=era.cancel_hook(),
            on_accepted=era.on_accepted(),
            attempt=attempt,
        )
        self._last_activity = anyio.current_time()
        return reply.result if out.answer is SERVERS_ANSWER else out.answer

    async def keep_alive(self, interval: float) -> None:
        """Ping after ``interval`` idle seconds; a lost session is recovered by the ping."""
        while True:
            # A timer, not a poll: wake when the session will have been idle long enough.
            await anyio.sleep_until(self._last_activity + interval)
            era = self._host.strategy
            if not self._host.gate.is_open or era is None or not era.keeps_alive:
                # (The modern era has no session to keep alive.)
                self._last_activity = anyio.current_time()
                continue
            if anyio.current_time() - self._last_activity < interval:
                continue  # something else talked to the server meanwhile
            try:
                await self.request("ping", timeout=min(interval, self._timeouts.initialize))
            except MCPError as exc:
                self._host.log.info("keepalive.failed", error=repr(exc))
                self._last_activity = anyio.current_time()
