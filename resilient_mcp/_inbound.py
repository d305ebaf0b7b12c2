"""What the server sends on its own, routed by meaning (the MCP layer above :mod:`._rpc`).

- ``notifications/progress`` goes to the call it belongs to (restarting that call's
  clock); the call itself runs its callback, so a slow one slows only that call.
- ``notifications/cancelled`` withdraws the server→client request it names.
- Every notification reaches the synchronous listeners at once (the tool cache drops
  itself on ``tools/list_changed`` before anything else can read it), then the user's
  handlers: ``Handlers.log`` and ``Handlers.notification``, run by one worker so that
  they see notifications in the order the server sent them (the specific handler before
  the generic one), off the receive path. The worker runs only while there is work.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import anyio.abc

from ._handlers import Handlers, MaybeAwaitable, settle
from ._log import Logger
from ._rpc import Rpc
from ._served import ServerRequests
from ._stats import SessionStats
from .types import LoggingMessage

__all__ = ["Inbound"]

Listener = Callable[[str, Mapping[str, Any]], None]
_M = TypeVar("_M")


class Inbound:
    """Routes one client's incoming notifications."""

    def __init__(
        self,
        *,
        handlers: Handlers,
        rpc: Rpc,
        server_requests: ServerRequests,
        stats: SessionStats,
        logger: Logger,
        max_pending: int,
    ) -> None:
        self._handlers = handlers
        self._rpc = rpc
        self._server_requests = server_requests
        self._stats = stats
        self._log = logger
        self._max_pending = max_pending
        self._listeners: list[Listener] = []
        # Made by the first notification a handler is to see, dropped once drained.
        self._queue: deque[tuple[str, Mapping[str, Any]]] | None = None
        self._working = False
        self._task_group: anyio.abc.TaskGroup | None = None
        self._closed = False

    def start(self, task_group: anyio.abc.TaskGroup) -> None:
        self._task_group = task_group

    def close(self) -> None:
        """Nothing more reaches the handlers (the client is closing)."""
        self._closed = True
        self._queue = None

    def add_listener(self, listener: Listener) -> None:
        """Register a synchronous, non-blocking observer of every server notification."""
        self._listeners.append(listener)

    def route(self, method: str, params: Mapping[str, Any]) -> None:
        """Route one notification. Never blocks, never raises."""
        if method == "notifications/progress":
            self._rpc.progress(params.get("progressToken"), params, limit=self._max_pending)
        elif method == "notifications/cancelled":
            request_id = params.get("requestId")
            self._server_requests.withdraw(request_id)
            if self._rpc.method_of(request_id) == "subscriptions/listen":
                # A modern server ends a listen stream this way on stdio: the stream is
                # over (it will be opened again), as if the server had answered it.
                self._rpc.resolve(request_id, {})
        for listener in self._listeners:
            listener(method, params)
        handlers = self._handlers
        if self._closed or not (
            handlers.notification is not None
            or (method == "notifications/message" and handlers.log is not None)
        ):
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        if len(queue) >= self._max_pending or self._task_group is None:
            self._stats.dropped_notifications += 1
            self._log.warning("notification.dropped", method=method, reason="handlers too slow")
            return
        queue.append((method, params))
        if not self._working:
            self._working = True
            self._task_group.start_soon(self._work)

    async def _work(self) -> None:
        try:
            while self._queue:
                method, params = self._queue.popleft()
                await self._handle(method, params)
        finally:
            self._working = False
            if not self._queue:
                self._queue = None

    async def _handle(self, method: str, params: Mapping[str, Any]) -> None:
        handlers = self._handlers
        # Each handler is isolated: one's bug neither kills the session nor hides the
        # notification from the others (the generic handler sees *every* notification).
        if method == "notifications/message" and handlers.log is not None:
            await self._run(method, handlers.log, lambda: LoggingMessage.model_validate(params))
        if handlers.notification is not None:
            try:
                await settle(handlers.notification(method, params))
            except Exception as exc:
                self._log.error("handler.failed", method=method, error=repr(exc))

    async def _run(
        self, method: str, handler: Callable[[_M], MaybeAwaitable[None]], parse: Callable[[], _M]
    ) -> None:
        try:
            await settle(handler(parse()))
        except Exception as exc:  # a user handler's bug (or bad params) must not kill us
            self._log.error("handler.failed", method=method, error=repr(exc))
