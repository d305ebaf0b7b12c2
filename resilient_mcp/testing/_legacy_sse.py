"""The legacy HTTP+SSE front end (protocol 2024-11-05, the python-sdk-sse profile).

`GET /sse` opens a session and its event stream, whose first event names the
`/messages/?session_id=...` URL; the client POSTs its messages there, each one answered
202 before it is processed, and the answers travel on the event stream.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any, Final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from resilient_mcp.testing._asgi import (
    Disconnect,
    end_stream,
    read_body,
    send_chunk,
    sse_event,
    start_stream,
)
from resilient_mcp.testing._catalog import JSON
from resilient_mcp.testing._http import ServerParts
from resilient_mcp.testing._jsonrpc import classify, dumps
from resilient_mcp.testing._legacy import LATEST_PROTOCOL_VERSION, LegacyProtocol
from resilient_mcp.testing._profiles import HttpAnswer
from resilient_mcp.testing._state import STREAM_BUFFER, Session
from resilient_mcp.testing._stats import ServerStats

SSE_PATH: Final = "/sse"
MESSAGES_PATH: Final = "/messages/"


def _parse(body: bytes) -> Any:
    """The JSON value of a POST body; None (which `classify` rejects) if it is not JSON."""
    try:
        return json.loads(body)
    except ValueError:
        return None


class SsePostCounter:
    """ASGI middleware of the legacy SSE profile: counts POSTs to `/sse` (a modern or
    Streamable HTTP probe) in `ServerStats`, then lets the app answer them unchanged."""

    def __init__(self, app: ASGIApp, stats: ServerStats) -> None:
        self._app = app
        self._stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == SSE_PATH
        ):
            await self._app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return
        with contextlib.suppress(ValueError):
            message = json.loads(body)
            if isinstance(message, dict) and message.get("method") == "server/discover":
                self._stats.discover_requests += 1
        self._stats.http_rejections[405] += 1
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self._app(scope, replay, send)


class LegacySse:
    """Serves `GET /sse` and `POST /messages/` for one server."""

    def __init__(self, parts: ServerParts, protocol: LegacyProtocol) -> None:
        self._parts = parts
        self._dialect = parts.config.dialect
        self._protocol = protocol

    async def handle_get(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`GET /sse`: a new session and its event stream."""
        if scope["type"] != "http":
            return
        # Every GET is a new, uninitialized session with its own endpoint URL.
        session = Session(
            id=uuid.uuid4().hex,
            protocol_version=LATEST_PROTOCOL_VERSION,
            client_capabilities={},
            legacy=True,
        )
        self._parts.state.open(session)
        outgoing, to_client = anyio.create_memory_object_stream[JSON](STREAM_BUFFER)
        session.get_stream = outgoing
        inbound, from_client = anyio.create_memory_object_stream[JSON](STREAM_BUFFER)
        session.inbound = inbound
        disconnect = Disconnect()
        try:
            async with to_client, from_client:
                headers = [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                ]
                await start_stream(send, headers)
                endpoint = f"{MESSAGES_PATH}?session_id={session.id}"
                await send_chunk(send, sse_event(endpoint.encode(), event="endpoint"))
                async with anyio.create_task_group() as tg:
                    tg.start_soon(disconnect.watch, receive, tg.cancel_scope)
                    tg.start_soon(self._process, session, from_client)
                    async for message in to_client:
                        await send_chunk(send, sse_event(dumps(message)))
                    tg.cancel_scope.cancel()
        finally:
            session.inbound = None
            inbound.close()
            self._parts.state.terminate(session, dropped=session.dropped)
        if not disconnect.gone and not session.dropped:
            await end_stream(send)

    async def _process(
        self, session: Session, from_client: MemoryObjectReceiveStream[JSON]
    ) -> None:
        async with anyio.create_task_group() as tg:
            async for message in from_client:
                tg.start_soon(self._handle, session, message)

    async def _handle(self, session: Session, message: JSON) -> None:
        protocol = self._protocol
        kind = classify(message)
        if kind == "notification":
            await protocol.on_notification(session, message)
            return
        if kind == "response":
            protocol.on_client_response(session, message)
            return
        if kind != "request":
            return
        if message["method"] == "initialize":
            _, response = protocol.accept_initialize(message, session)
            # Unlike Streamable HTTP, a refused initialize takes the delay too.
            await protocol.initialize_work()
            if "error" not in response:
                session.accept()
            await session.send_standalone(response)
            return
        early = protocol.is_early(session, message["method"])
        if early:
            self._parts.state.stats.early_requests += 1
        outcome = await protocol.run_request(session, message, None, early=early)
        if outcome is not None:
            await session.send_standalone(outcome)

    async def handle_post(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`POST /messages/?session_id=...`: 202, then the message is queued."""
        if scope["type"] != "http":
            return
        fate = await self._parts.gate.admit(receive, send)
        if fate is None:
            return
        session_id = QueryParams(scope["query_string"]).get("session_id")
        if session_id is None:
            await self._parts.replies.answer(send, self._dialect.missing_answer)
            return
        try:
            uuid.UUID(hex=session_id)
        except ValueError:
            await self._parts.replies.answer(send, HttpAnswer.text(400, "Invalid session ID"))
            return
        session = self._parts.state.live(session_id)
        if session is None and session_id not in self._parts.state.dead_legacy:
            await self._parts.replies.answer(send, self._dialect.gone)
            return
        body = await read_body(receive)
        if body is None:
            return
        message = _parse(body)
        kind = classify(message)
        if kind is None:
            await self._parts.replies.answer(send, HttpAnswer.text(400, "Could not parse message"))
            return
        assert isinstance(message, dict)  # checked by classify
        if (
            session is not None
            and kind == "request"
            and message["method"] != "initialize"
            and not self._parts.state.count_request(session)
        ):
            session = None  # now dead: accepted, never answered
        # As the Python SDK 1.x: 202 first, then the message is queued, so two POSTs
        # in flight can be processed in either order.
        await self._parts.replies.answer(send, HttpAnswer.text(202, "Accepted"))
        if session is None:
            return  # a dead session: accepted, never answered
        await anyio.sleep(fate.jitter)  # simulated queueing delay (see Fate.jitter)
        inbound = session.inbound
        if inbound is None:
            return  # the session died meanwhile
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await inbound.send(message)
