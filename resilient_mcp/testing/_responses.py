"""How the legacy Streamable HTTP front end answers one request.

In JSON mode, one `application/json` body; in SSE mode, a `text/event-stream` whose
events are kept in an `EventLog`, so the work outlives a cut connection and a client can
resume the stream with GET + `Last-Event-ID` (`pump` serves both readers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import anyio
from starlette.types import Receive, Send

from resilient_mcp.testing._asgi import (
    JSON_TYPE,
    SSE_TYPE,
    Disconnect,
    HeaderList,
    cut_json,
    end_stream,
    send_body,
    send_chunk,
    sse_event,
    start_stream,
)
from resilient_mcp.testing._catalog import JSON
from resilient_mcp.testing._config import ServerConfig
from resilient_mcp.testing._events import EventKind, EventLog
from resilient_mcp.testing._jsonrpc import dumps
from resilient_mcp.testing._legacy import Emit
from resilient_mcp.testing._state import ServerState, Session

SESSION_HEADER: Final = "mcp-session-id"

Work = Callable[[Emit | None], Awaitable[JSON | None]]
"""A request's processing: given where its messages go (None: not on the response),
its response, or None when the session was terminated under it."""


def session_headers(session_id: str | None) -> list[tuple[bytes, bytes]]:
    """The `Mcp-Session-Id` response header, when there is a session."""
    return [] if session_id is None else [(SESSION_HEADER.encode(), session_id.encode())]


async def send_json(
    send: Send,
    status: int,
    payload: JSON | None,
    session_id: str | None,
    extra: HeaderList = (),
) -> None:
    """A JSON response; like the Python SDK, even an empty 202/200 says application/json."""
    body = b"" if payload is None else dumps(payload)
    headers = [*session_headers(session_id), *extra]
    await send_body(send, status, body, content_type=JSON_TYPE, headers=headers)


async def start_sse(send: Send, session_id: str | None) -> None:
    """Start an SSE response."""
    headers = [
        (b"content-type", SSE_TYPE.encode()),
        (b"cache-control", b"no-cache, no-transform"),
        *session_headers(session_id),
    ]
    await start_stream(send, headers)


def event_chunk(event_id: int, message: JSON | None) -> bytes:
    """An SSE `message` event with its id; None: the priming event (an id, empty data)."""
    if message is None:
        # Priming event: an id the client can resume from, and empty data.
        return sse_event(b"", event=None, event_id=str(event_id))
    return sse_event(dumps(message), event_id=str(event_id))


async def _wait_done(log: EventLog) -> None:
    while not log.done:
        await log.changed.wait()


@dataclass(frozen=True)
class _Reply:
    """Where one POSTed request is answered."""

    receive: Receive
    send: Send
    session: Session | None
    """The request's session, which keeps its SSE stream for resumption (None: none,
    or a temporary one)."""

    @property
    def session_id(self) -> str | None:
        """The `Mcp-Session-Id` the answer carries."""
        return None if self.session is None else self.session.id


class Responder:
    """Answers requests in the configured response mode (`json_response`)."""

    def __init__(self, config: ServerConfig, state: ServerState) -> None:
        self._config = config
        self._state = state

    async def respond(
        self,
        receive: Receive,
        send: Send,
        session: Session | None,
        work: Work,
        *,
        drop: int | None = None,
    ) -> None:
        """Run `work` for one POSTed request and answer in the configured response mode.

        A client disconnect cancels the work. `drop` is the number of the POST whose
        response chaos cuts, or None.
        """
        reply = _Reply(receive, send, session)
        if self._config.json_response:
            await self._respond_json(reply, work, drop)
        else:
            await self._respond_sse(reply, work, drop)

    async def _respond_json(self, reply: _Reply, work: Work, drop: int | None) -> None:
        send, session, session_id = reply.send, reply.session, reply.session_id
        disconnect = Disconnect()
        outcome: JSON | None = None
        finished = False
        async with anyio.create_task_group() as tg:
            tg.start_soon(disconnect.watch, reply.receive, tg.cancel_scope)
            outcome = await work(None)
            finished = True
            tg.cancel_scope.cancel()
        if not finished:
            return
        if outcome is None:
            if session is not None and session.dropped:
                await cut_json(send, b"", session_headers(session_id))
                return
            # The session ended with the request in flight (it may have run): mcp 2.3
            # answers 500 -32603 "Session terminated before the request completed".
            answer = self._config.dialect.terminated_answer
            await send_body(
                send,
                answer.status,
                answer.body,
                content_type=answer.content_type,
                headers=session_headers(session_id),
            )
        elif drop is not None:
            # The work is done; the client never gets to know.
            self._state.fault("drop", drop)
            await cut_json(send, dumps(outcome), session_headers(session_id))
        else:
            await send_json(send, 200, outcome, session_id)

    async def _respond_sse(self, reply: _Reply, work: Work, drop: int | None) -> None:
        send, session = reply.send, reply.session
        log = EventLog()
        if session is not None:
            session.add_log(log)

        async def emit(message: JSON) -> None:
            progress = message.get("method") == "notifications/progress"
            await self._append(session, log, "progress" if progress else "message", message)

        async def produce() -> None:
            outcome: JSON | None = None
            try:
                outcome = await work(emit)
                if outcome is not None:
                    await emit(outcome)
            finally:
                log.finish(aborted=outcome is None and session is not None and session.dropped)

        await start_sse(send, reply.session_id)
        await self._append(session, log, "priming", None)
        # Work whose stream chaos will cut goes on after the connection is gone.
        detached = self._state.background if drop is not None else None
        disconnect = Disconnect()
        ended = False
        async with anyio.create_task_group() as tg:
            if detached is not None:
                detached.start_soon(produce)
            else:
                tg.start_soon(produce)
            tg.start_soon(disconnect.watch, reply.receive, tg.cancel_scope)
            drop_after = self._config.chaos.drop_after if drop is not None else None
            ended = await self.pump(log, send, 0, drop_after, drop)
            if not ended and detached is None and not log.done:
                # No lifespan task group: finish the work here, then cut.
                await _wait_done(log)
            tg.cancel_scope.cancel()
        if ended and not disconnect.gone:
            await end_stream(send)

    async def _append(
        self, session: Session | None, log: EventLog, kind: EventKind, message: JSON | None
    ) -> None:
        event_id = self._state.next_event_id()
        await log.append(event_id, kind, event_chunk(event_id, message))
        if session is not None:
            session.event_index[event_id] = log
            for evicted in log.evicted:
                session.event_index.pop(evicted, None)
        log.evicted.clear()

    async def pump(
        self,
        log: EventLog,
        send: Send,
        seq: int,
        drop_after: EventKind | None,
        drop: int | None = None,
    ) -> bool:
        """Send the events of `log` from position `seq` on.

        Returns True when the stream ended with its last event, False when it was cut
        (by chaos after an event of kind `drop_after`, or by a restart).
        """
        log.attach(seq)
        try:
            while True:
                changed = log.changed
                while seq < log.next_seq:
                    event = log.get(seq)
                    if event is None:  # fell out of the replay window
                        seq = log.first_seq
                        continue
                    await send_chunk(send, event.chunk)
                    seq += 1
                    log.advance(seq)
                    if drop_after is not None and event.kind == drop_after:
                        self._state.fault("drop", drop)
                        return False
                if log.done:
                    return not log.aborted
                await changed.wait()
        finally:
            log.detach()
