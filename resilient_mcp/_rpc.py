"""JSON-RPC correlation: ids, pending requests, deadlines, and what comes back.

This layer knows JSON-RPC, not MCP: it numbers requests, sends them through a
transport, waits for the answer under the call's :class:`~._deadline.Deadline`, turns
error answers into typed errors, and routes everything the server sends: answers to
their pending requests, notifications to the layer above (``on_notification``), and
server→client requests to :mod:`._served`.
It never learns what a method means; the session tells it what it needs (how to tell
the server a request was abandoned, what to do with a request accepted without an
answer).

Book-keeping is synchronous code with no ``await`` inside, so it needs no lock on one
event loop; I/O happens outside it.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import anyio.abc

from ._classify import classify_rpc_error
from ._deadline import Deadline
from ._exceptions import (
    ConnectionLost,
    Execution,
    MalformedMessage,
    MCPError,
    RequestCancelled,
    RequestTimeout,
    SessionLost,
    TransportError,
)
from ._handlers import ProgressCallback
from ._log import Logger
from ._served import ServerRequests
from ._stats import SessionStats
from ._transports.base import Receipt, SendContext, Transport, encode
from .types import Progress

__all__ = ["Reply", "Rpc"]

Cancel = Callable[[int, str], None]


class Reply:
    """A request's ``result``, and the session id the exchange carried back (if any)."""

    __slots__ = ("result", "session_id")

    def __init__(self, result: Any, session_id: str | None) -> None:
        self.result = result
        self.session_id = session_id


class _Pending:
    """One request on the wire, waiting for its answer (and its progress, in order)."""

    __slots__ = (
        "ctx",
        "deadline",
        "done",
        "error",
        "event",
        "method",
        "progress",
        "result",
        "scope",
        "sent",
        "withdrawn",
    )

    def __init__(
        self, ctx: SendContext, deadline: Deadline, progress: ProgressCallback | None
    ) -> None:
        self.ctx = ctx
        self.method = ctx.method or ""
        self.deadline = deadline
        self.done = False
        self.result: Any = None
        self.error: Any = None  # the JSON-RPC error object, or an MCPError
        self.event: anyio.Event | None = None  # created only while someone waits
        self.sent = False  # handed to the network (so the server may have it)
        self.scope: anyio.CancelScope | None = None
        self.withdrawn = False  # its session was lost before it went out: see withdraw
        # Progress waiting for the caller's callback (None: the call gave none).
        self.progress: deque[Mapping[str, Any]] | None = deque() if progress else None

    def resolve(self, result: Any = None, error: Any = None) -> None:
        if self.done:
            return
        self.done = True
        self.result = result
        self.error = error
        self._wake()

    def _wake(self) -> None:
        if self.event is not None:
            self.event.set()

    async def changed(self) -> None:
        """Wait until the answer or more progress arrives."""
        self.event = anyio.Event()
        await self.event.wait()
        self.event = None

    def mark_sent(self) -> None:
        self.sent = True


class Rpc:
    """Correlates one client's requests and answers over whatever transport is current.

    Implements the transport's :class:`~._transports.base.Peer`.
    """

    def __init__(
        self,
        *,
        stats: SessionStats,
        logger: Logger,
        on_notification: Callable[[str, Mapping[str, Any]], None],
        on_lost: Callable[[str], None],
        server_requests: ServerRequests,
    ) -> None:
        self._stats = stats
        self._log = logger
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._on_notification = on_notification
        self._on_lost = on_lost
        self._server_requests = server_requests

    def __len__(self) -> int:
        return len(self._pending)

    def next_id(self) -> int:
        return next(self._ids)

    def bind(self, logger: Logger) -> None:
        self._log = logger

    # --- sending ----------------------------------------------------------------------

    async def send(
        self, transport: Transport, message: Mapping[str, Any], ctx: SendContext
    ) -> Receipt:
        """Send a notification or a response (nothing is awaited but its delivery).

        Raises:
            MCPError: it was not delivered.
        """
        return await transport.send(encode(message), ctx)

    async def request(
        self,
        transport: Transport,
        request_id: int,
        method: str,
        params: Mapping[str, Any] | None,
        ctx: SendContext,
        deadline: Deadline,
        *,
        progress: ProgressCallback | None = None,
        cancel: Cancel | None = None,
        on_accepted: Callable[[], Awaitable[None]] | None = None,
        attempt: int = 1,
    ) -> Reply:
        """Send one request and wait for its answer (running its progress callback).

        Args:
            cancel: tells the server the request was abandoned (a timeout or the
                caller's cancellation), for requests that went out; None: never.
            on_accepted: for a request the server accepted without answering, makes the
                answer reachable (None: such an answer is a protocol error).

        Raises:
            RequestTimeout: ``deadline`` passed first.
            MCPError: the request failed (the server's error answer, classified).
        """
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if progress is not None:
            params = dict(params or {})
            params["_meta"] = {**params.get("_meta", {}), "progressToken": request_id}
        if params is not None:
            message["params"] = params
        body = encode(message)
        pending = _Pending(ctx, deadline, progress)
        self._pending[request_id] = pending
        self._stats.requests += 1
        started = anyio.current_time()
        receipt: Receipt | None = None
        previous: anyio.CancelScope | None = None
        try:
            with anyio.CancelScope(deadline=deadline.at) as scope:
                pending.scope = scope
                previous = deadline.bind(scope)
                if progress is None:
                    receipt = await transport.send(body, ctx, on_sent=pending.mark_sent)
                    if receipt.answer != "delivered" or not pending.done:
                        await self._after_send(receipt, ctx, pending, on_accepted)
                    while not pending.done:
                        await pending.changed()
                else:
                    receipt = await self._send_reporting(
                        transport, body, ctx, pending, progress, on_accepted
                    )
        except MCPError as exc:
            self._log.debug(
                "request.failed", method=method, request_id=request_id, error=type(exc).__name__
            )
            if isinstance(pending.error, RequestCancelled):
                raise pending.error from exc  # closing the client is what ended it
            raise
        except anyio.get_cancelled_exc_class():
            # The caller gave up. Tell the server, without delaying the cancellation.
            # (Only for a request that went out: the spec forbids naming one that did not.)
            if cancel is not None and pending.sent:
                cancel(request_id, "cancelled by the client")
            raise
        finally:
            deadline.bind(previous)
            del self._pending[request_id]
        if pending.withdrawn and not pending.done:
            raise self._withdrawn(pending)
        if scope.cancelled_caught and not pending.done:
            if cancel is not None and pending.sent:
                cancel(request_id, "request timed out")
            self._log.debug("request.timeout", method=method, request_id=request_id)
            raise RequestTimeout(
                "no answer before the call's deadline",
                # Still waiting for a connection slot: it never left, so it cannot have run.
                execution=Execution.MAYBE if pending.sent else Execution.NOT_EXECUTED,
                **ctx.context(),
            )
        if pending.error is not None:
            error = pending.error
            if not isinstance(error, MCPError):
                error = (
                    classify_rpc_error(error, ctx)
                    if isinstance(error, Mapping)
                    else MalformedMessage(f"invalid error member: {error!r}"[:200], **ctx.context())
                )
            self._log.debug(
                "request.error", method=method, request_id=request_id, error=type(error).__name__
            )
            raise error
        self._log.debug(
            "request.ok",
            method=method,
            request_id=request_id,
            attempt=attempt,
            elapsed_ms=round((anyio.current_time() - started) * 1000, 3),
        )
        return Reply(pending.result, receipt.session_id if receipt is not None else None)

    async def _send(
        self,
        transport: Transport,
        body: bytes,
        ctx: SendContext,
        pending: _Pending,
        on_accepted: Callable[[], Awaitable[None]] | None,
    ) -> Receipt:
        receipt = await transport.send(body, ctx, on_sent=pending.mark_sent)
        await self._after_send(receipt, ctx, pending, on_accepted)
        return receipt

    async def _after_send(
        self,
        receipt: Receipt,
        ctx: SendContext,
        pending: _Pending,
        on_accepted: Callable[[], Awaitable[None]] | None,
    ) -> None:
        """What a receipt means for the request's answer."""
        if receipt.answer == "accepted":
            if on_accepted is None:
                raise MalformedMessage(
                    "the server accepted the request (202) without answering it",
                    execution=Execution.MAYBE,
                    **ctx.context(),
                )
            await on_accepted()
        elif receipt.answer == "delivered" and not pending.done:
            # A transport that closed the exchange without an answer and without
            # raising: still this request's failure alone.
            raise ConnectionLost(
                "the server closed the exchange without answering", **ctx.context()
            )

    async def _send_reporting(
        self,
        transport: Transport,
        body: bytes,
        ctx: SendContext,
        pending: _Pending,
        progress: ProgressCallback,
        on_accepted: Callable[[], Awaitable[None]] | None,
    ) -> Receipt | None:
        """Send, and meanwhile run the progress callback in this (the caller's) task.

        So a slow callback slows its own call only, within that call's deadline, and a
        call returns only after the progress that came before its answer was reported.
        """
        receipts: list[Receipt] = []

        async def send() -> None:
            try:
                receipts.append(await self._send(transport, body, ctx, pending, on_accepted))
            except MCPError as exc:
                pending.resolve(error=exc)
            except Exception as exc:  # never an ExceptionGroup out of this task group
                error = TransportError(f"unexpected failure: {exc!r}", **ctx.context())
                error.__cause__ = exc
                pending.resolve(error=error)

        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            queue = pending.progress
            assert queue is not None
            while queue or not pending.done:
                if not queue:
                    await pending.changed()
                    continue
                await self._report(progress, queue.popleft(), pending.method)
        return receipts[0] if receipts else None

    async def _report(
        self, callback: ProgressCallback, params: Mapping[str, Any], method: str
    ) -> None:
        try:
            await callback(Progress.model_validate(params))
        except Exception as exc:  # a user callback's bug (or bad params) must not fail the call
            self._log.error("handler.failed", method="notifications/progress", error=repr(exc))

    def progress(self, token: Any, params: Mapping[str, Any], *, limit: int) -> None:
        """Progress for one of our requests: restart its clock, queue it for its callback."""
        pending = self._pending.get(token) if isinstance(token, int) else None
        if pending is None or pending.done:
            return
        pending.deadline.extend()
        queue = pending.progress
        if queue is None:
            return
        if len(queue) >= limit:
            self._stats.dropped_notifications += 1
            self._log.warning(
                "notification.dropped", method="notifications/progress", reason="callback too slow"
            )
            return
        queue.append(params)
        pending._wake()

    def method_of(self, request_id: Any) -> str | None:
        """The method of one of our pending requests (None: no such request)."""
        pending = self._pending.get(request_id) if isinstance(request_id, int) else None
        return None if pending is None else pending.method

    def resolve(self, request_id: Any, result: Any) -> None:
        """Settle one of our requests as if the server had answered it with ``result``."""
        pending = self._pending.get(request_id) if isinstance(request_id, int) else None
        if pending is not None:
            pending.resolve(result=result)

    def cancel_all(self, make_error: Callable[[SendContext], MCPError]) -> None:
        """Fail every pending request, and stop its caller at once wherever it is (it may
        be inside the transport, reading its response)."""
        for pending in list(self._pending.values()):
            pending.resolve(error=make_error(pending.ctx))
            if pending.scope is not None:
                pending.scope.cancel()

    def withdraw(self) -> int:
        """The session is lost: stop every request that has not gone out yet (waiting
        for an admission slot), so that none is sent to a session known to be gone.

        Each raises a ``NOT_EXECUTED`` :class:`SessionLost` (see :meth:`_withdrawn`),
        which the recovery answers by parking it in the gate for the next session. A
        request that went out is left alone: its answer may still come. Returns how
        many were withdrawn.
        """
        withdrawn = 0
        for pending in self._pending.values():
            if not pending.sent and not pending.done and pending.scope is not None:
                pending.withdrawn = True
                pending.scope.cancel()
                withdrawn += 1
        return withdrawn

    def _withdrawn(self, pending: _Pending) -> MCPError:
        if pending.sent:
            # A transport that reports a message sent only once it was written (stdio)
            # may have written it while the withdrawal was on its way: it may have run.
            return ConnectionLost(
                "the session was lost while the request was being sent",
                execution=Execution.MAYBE,
                **pending.ctx.context(),
            )
        return SessionLost(
            "the session was lost before the request was sent; it waits for the next one",
            execution=Execution.NOT_EXECUTED,
            **pending.ctx.context(),
        )

    def fail_all(self, make_error: Callable[[SendContext], MCPError]) -> None:
        """Fail every pending request with the error ``make_error(its context)`` gives."""
        for pending in list(self._pending.values()):
            pending.resolve(error=make_error(pending.ctx))

    # --- what the transport delivers (the Peer protocol) --------------------------------

    def deliver(self, message: Any) -> None:
        """Route one message from the server. Never blocks, never raises."""
        if not isinstance(message, dict):
            self._log.warning("message.malformed", kind=type(message).__name__)
            return
        method = message.get("method")
        if isinstance(method, str):
            if "id" in message:
                self._server_requests.take(message["id"], method, message.get("params"))
                return
            params = message.get("params")
            if params is None:
                params = {}
            if not isinstance(params, Mapping):
                self._log.warning("notification.malformed", method=method)
                return
            self._on_notification(method, params)
            return
        request_id = message.get("id")
        pending = self._pending.get(request_id) if isinstance(request_id, int) else None
        if pending is None:
            self._stats.unknown_responses += 1
            self._log.warning("response.unknown_id", request_id=repr(request_id)[:80])
            return
        if "error" in message:
            pending.resolve(error=message["error"])
        elif "result" in message:
            pending.resolve(result=message["result"])
        else:
            pending.resolve(
                error=MalformedMessage(
                    "response has neither result nor error",
                    method=pending.method,
                    request_id=request_id,
                )
            )

    def lost(self, reason: str) -> None:
        """The shared channel ended: every pending request lost its answer."""
        self._on_lost(reason)  # first: the retries of what fails here wait for a new session
        self.fail_all(lambda ctx: ConnectionLost(reason, **ctx.context()))

    def undeliverable(self, request_id: Any, error: MCPError) -> None:
        """The answer to ``request_id`` arrived but cannot be read: it ran, and failed."""
        pending = self._pending.get(request_id) if isinstance(request_id, int) else None
        if pending is None:
            return
        error._with_context(**pending.ctx.context())
        error.execution = Execution.EXECUTED  # it was answered: it ran
        pending.resolve(error=error)

    # --- server -> client requests ------------------------------------------------------
