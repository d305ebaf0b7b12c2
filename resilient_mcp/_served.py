"""Server→client requests: answered by a bounded set of workers, in arrival order.

The server may ask the client things (``ping``, ``roots/list``, sampling, elicitation).
Each request is queued (up to a bound; past it, it is dropped with a warning and
counted) and answered by one of at most ``Limits.max_server_requests`` workers, which
exist only while there is work. The server may withdraw a request
(``notifications/cancelled``): its handler is stopped and it gets no answer. A request
whose id is already in use is refused, never put in place of the first (a cancellation
naming that id must still reach the request that holds it). Answers go out through
``respond``, which does not wait for an admission slot.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import anyio.abc
import pydantic

from ._handlers import INTERNAL_ERROR, INVALID_PARAMS, RPCFailure
from ._log import Logger
from ._stats import SessionStats

__all__ = ["Respond", "Serve", "ServerRequests"]

Serve = Callable[[str, Mapping[str, Any]], Awaitable[dict[str, Any]]]
Respond = Callable[[dict[str, Any], str], Awaitable[None]]

_INVALID_REQUEST = -32600


class _Job:
    """A server→client request, waiting for (or in) a worker."""

    __slots__ = ("method", "params", "refusal", "request_id", "scope")

    def __init__(self, request_id: Any, method: str, params: Any, refusal: str | None) -> None:
        self.request_id = request_id
        self.method = method
        self.params = params
        self.refusal = refusal  # answer with this error instead of serving it
        self.scope = anyio.CancelScope()  # the server may withdraw it


class ServerRequests:
    """The server→client requests of one client, queued and answered."""

    def __init__(
        self,
        *,
        stats: SessionStats,
        logger: Logger,
        max_queued: int,
        max_workers: int,
        serve: Serve,
        respond: Respond,
    ) -> None:
        self._stats = stats
        self._log = logger
        self._max_queued = max_queued
        self._max_workers = max_workers
        self._serve = serve
        self._respond = respond
        self._task_group: anyio.abc.TaskGroup | None = None
        # By (type, id) while queued or served, so that the server can withdraw them.
        self._serving: dict[tuple[str, str], _Job] = {}
        # Made by the first request from the server, dropped once drained.
        self._jobs: deque[_Job] | None = None
        self._workers = 0

    def start(self, task_group: anyio.abc.TaskGroup) -> None:
        self._task_group = task_group

    def withdraw(self, request_id: Any) -> None:
        """The server cancelled its request: stop its handler; it gets no answer."""
        job = self._serving.get(_key(request_id))
        if job is not None:
            job.scope.cancel()

    def take(self, request_id: Any, method: str, params: Any) -> None:
        """Queue one request from the server. Never blocks, never raises."""
        if not isinstance(request_id, int | str) or isinstance(request_id, bool):
            self._log.warning("server_request.malformed", method=method, reason="bad id")
            return
        key = _key(request_id)
        refusal = None
        if key in self._serving:
            # Never in place of the first: a cancellation naming the id must still reach
            # the request that holds it.
            refusal = "request id already in use"
        jobs = self._jobs
        if jobs is None:
            jobs = self._jobs = deque()
        if len(jobs) >= self._max_queued or self._task_group is None:
            # Bounded: a server that floods us loses requests (logged and counted),
            # never our memory or the calls waiting for their own answers.
            self._stats.dropped_server_requests += 1
            self._log.warning("server_request.dropped", method=method, reason="too many waiting")
            return
        job = _Job(request_id, method, params if params is not None else {}, refusal)
        if refusal is None:
            self._serving[key] = job
        jobs.append(job)
        if self._workers < self._max_workers:
            self._workers += 1
            self._task_group.start_soon(self._work)

    async def _work(self) -> None:
        # Workers exist only while there is work: an idle session runs none.
        try:
            while self._jobs:
                await self._answer(self._jobs.popleft())
        finally:
            self._workers -= 1
            if not self._workers and not self._jobs:
                self._jobs = None

    async def _answer(self, job: _Job) -> None:
        response: dict[str, Any] = {"jsonrpc": "2.0", "id": job.request_id}
        if job.refusal is not None:
            response["error"] = {"code": _INVALID_REQUEST, "message": job.refusal}
        elif not isinstance(job.params, Mapping):
            response["error"] = {"code": INVALID_PARAMS, "message": "params must be an object"}
            self._serving.pop(_key(job.request_id), None)
        else:
            try:
                with job.scope:
                    response["result"] = await self._serve(job.method, job.params)
                if job.scope.cancelled_caught:
                    # A cancelled request gets no answer (the spec: SHOULD NOT respond).
                    self._log.debug("server_request.cancelled", method=job.method)
                    return
            except RPCFailure as failure:
                response["error"] = {"code": failure.code, "message": failure.message}
            except pydantic.ValidationError as exc:
                response["error"] = {"code": INVALID_PARAMS, "message": f"invalid params: {exc}"}
            except Exception as exc:  # the handler's failure is the server's answer, not ours
                self._log.warning("handler.failed", method=job.method, error=repr(exc))
                response["error"] = {
                    "code": INTERNAL_ERROR,
                    "message": str(exc) or type(exc).__name__,
                }
            finally:
                self._serving.pop(_key(job.request_id), None)
        await self._respond(response, job.method)


def _key(request_id: Any) -> tuple[str, str]:
    # JSON-RPC ids are strings or numbers and 1 != "1": keep the type in the key.
    return (type(request_id).__name__, str(request_id))
