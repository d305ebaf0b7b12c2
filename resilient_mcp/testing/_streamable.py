"""The legacy Streamable HTTP front end: POST, GET and DELETE on `/mcp`.

It checks each HTTP request as the profile's real server does (sessions, headers,
versions), answers early requests, missing and gone sessions the profile's way, and
hands the JSON-RPC messages to the legacy session protocol (`_legacy`).
"""

from __future__ import annotations

import json
import secrets

import anyio
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from resilient_mcp.testing._asgi import (
    JSON_TYPE,
    Disconnect,
    HeaderList,
    accepts,
    end_stream,
    read_body,
    send_chunk,
)
from resilient_mcp.testing._catalog import JSON
from resilient_mcp.testing._chaos import Fate
from resilient_mcp.testing._envelope import is_modern_request
from resilient_mcp.testing._http import ServerParts
from resilient_mcp.testing._jsonrpc import INVALID_REQUEST, PARSE_ERROR, classify, error
from resilient_mcp.testing._legacy import (
    LATEST_PROTOCOL_VERSION,
    SUPPORTED_PROTOCOL_VERSIONS,
    LegacyProtocol,
)
from resilient_mcp.testing._profiles import HttpAnswer
from resilient_mcp.testing._responses import (
    SESSION_HEADER,
    Responder,
    event_chunk,
    send_json,
    session_headers,
    start_sse,
)
from resilient_mcp.testing._state import STREAM_BUFFER, Session

VERSION_HEADER = "mcp-protocol-version"


class StreamableHttp:
    """Serves the legacy era of `/mcp` for one server."""

    def __init__(self, parts: ServerParts, protocol: LegacyProtocol) -> None:
        self._parts = parts
        self._dialect = parts.config.dialect
        self._protocol = protocol
        self._responder = Responder(parts.config, parts.state)

    async def handle(self, scope: Scope, headers: Headers, receive: Receive, send: Send) -> None:
        """Serve one HTTP request (its `scope` is of type "http")."""
        method = scope["method"]
        if method == "POST":
            await self._post(headers, receive, send)
        elif method == "GET":
            await self._get(headers, receive, send)
        elif method == "DELETE":
            await self._delete(headers, send)
        else:
            await self._reject(
                send, 405, "Method Not Allowed", extra=[(b"allow", b"GET, POST, DELETE")]
            )

    # -- answers ---------------------------------------------------------------------

    async def _reject(
        self,
        send: Send,
        status: int,
        message: str,
        *,
        code: int = INVALID_REQUEST,
        session_id: str | None = None,
        extra: HeaderList = (),
    ) -> None:
        """An HTTP error whose body is a JSON-RPC error without id, as the Python SDK's."""
        answer = HttpAnswer.json(status, error(None, code, message))
        await self._parts.replies.answer(send, answer, [*session_headers(session_id), *extra])

    async def _answer_gone(self, send: Send) -> None:
        await self._parts.replies.answer(send, self._dialect.gone)

    async def _version_ok(self, headers: Headers, send: Send, session: Session) -> bool:
        version = headers.get(VERSION_HEADER)
        if version is not None and version not in SUPPORTED_PROTOCOL_VERSIONS:
            await self._reject(
                send, 400, "Bad Request: Unsupported protocol version", session_id=session.id
            )
            return False
        return True

    async def _dialect_version_ok(self, headers: Headers, send: Send) -> bool:
        """Servers that check `MCP-Protocol-Version` before looking at sessions (Go)."""
        dialect = self._dialect
        version = headers.get(VERSION_HEADER)
        if (
            dialect.header_versions is None
            or dialect.unsupported_version is None
            or version is None
            or version in dialect.header_versions
        ):
            return True
        await self._parts.replies.answer(send, dialect.unsupported_version)
        return False

    # -- POST ------------------------------------------------------------------------

    async def _post(self, headers: Headers, receive: Receive, send: Send) -> None:
        fate = await self._parts.gate.admit(receive, send)
        if fate is None:
            return
        # Like the SDK's session manager, an unknown session id is a 404 before anything
        # else is looked at, even for `initialize`.
        session_id = headers.get(SESSION_HEADER)
        session: Session | None = None
        if session_id is not None:
            session = self._parts.state.live(session_id)
            if session is None:
                await self._answer_gone(send)
                return
        has_json, has_sse = accepts(headers)
        if not (has_json and has_sse):
            await self._reject(
                send,
                406,
                "Not Acceptable: Client must accept both application/json and text/event-stream",
            )
            return
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != JSON_TYPE:
            await self._reject(
                send, 415, "Unsupported Media Type: Content-Type must be application/json"
            )
            return
        body = await read_body(receive)
        if body is None:
            return  # the client left before sending its whole body
        try:
            message = json.loads(body)
        except ValueError as exc:
            await self._reject(send, 400, f"Parse error: {exc}", code=PARSE_ERROR)
            return
        if isinstance(message, dict) and message.get("method") == "server/discover":
            # A modern probe (or a confused client): counted whatever the answer.
            self._parts.state.stats.discover_requests += 1
        if not await self._dialect_version_ok(headers, send):
            return
        if isinstance(message, list):
            await self._reject(send, 400, "Invalid Request: batches are not supported")
            return
        kind = classify(message)
        if kind is None:
            await self._reject(send, 400, "Invalid Request: not a JSON-RPC 2.0 message")
            return
        if kind == "request" and message["method"] == "initialize":
            await self._initialize(message, session, receive, send)
            return
        if session is None:
            await self._answer_missing(kind, message, receive, send)
            return
        if not await self._version_ok(headers, send, session):
            return
        if kind == "notification":
            await self._acknowledge_notification(session, message, send)
        elif kind == "response":
            self._protocol.on_client_response(session, message)
            await send_json(send, 202, None, session.id)
        else:
            await self._on_request(session, message, receive, send, fate)

    async def _acknowledge_notification(self, session: Session, message: JSON, send: Send) -> None:
        """Answer a POST of a client notification with 202, in the profile's order.

        `ack_first` (the Python SDK, go-sdk): the 202 goes out first and the
        notification is processed after it, as the real `_handle_post_request` writes
        the message to the session only after answering. So `handshake_delay` runs
        after the 202, and a request POSTed on seeing it can be processed before
        `initialized` is (it meets the gate open: those servers gate on `initialize`).
        Otherwise (TypeScript) it is processed first and the 202 follows.
        """
        if not self._dialect.ack_first:
            await self._protocol.on_notification(session, message)
            await send_json(send, 202, None, session.id)
            return
        await send_json(send, 202, None, session.id)
        background = self._parts.state.background
        if background is None:
            # No lifespan task group: process it here, after the complete response.
            await self._protocol.on_notification(session, message)
        else:
            # Like the SDK's session task: processing is not the HTTP request's.
            background.start_soon(self._protocol.on_notification, session, message)

    async def _initialize(
        self, message: JSON, existing: Session | None, receive: Receive, send: Send
    ) -> None:
        session, response = self._protocol.accept_initialize(message, existing)
        refused = "error" in response

        async def answer(_: object) -> JSON:
            if not refused:
                await self._protocol.initialize_work()
                assert session is not None  # an accepted initialize has a session
                session.accept()
            return response

        await self._responder.respond(receive, send, session, answer)

    async def _answer_missing(self, kind: str, message: JSON, receive: Receive, send: Send) -> None:
        """Answer a POST without a session id that is not `initialize`."""
        dialect = self._dialect
        if dialect.missing == "trap":
            # A fresh session that stays alive but is never initialized.
            trap = Session(
                id=secrets.token_hex(16),
                protocol_version=LATEST_PROTOCOL_VERSION,
                client_capabilities={},
            )
            self._parts.state.open(trap)
            await self._parts.replies.answer(send, dialect.missing_answer, session_headers(trap.id))
        elif dialect.missing == "discarded":
            # The id of a session that was opened for this request and discarded.
            discarded = session_headers(secrets.token_hex(16))
            await self._parts.replies.answer(send, dialect.missing_answer, discarded)
        elif dialect.missing == "temporary":
            if kind != "request":
                await send_json(send, 202, None, None)
                return
            temporary = Session(
                id="", protocol_version=LATEST_PROTOCOL_VERSION, client_capabilities={}
            )
            early = self._protocol.gated(message["method"])
            # A modern probe is on no session at all: never an early request.
            if early and not is_modern_request(message):
                self._parts.state.stats.early_requests += 1
            await self._responder.respond(
                receive,
                send,
                None,
                lambda emit: self._protocol.run_request(temporary, message, emit, early=early),
            )
        else:
            await self._parts.replies.answer(send, dialect.missing_answer)

    async def _on_request(
        self, session: Session, message: JSON, receive: Receive, send: Send, fate: Fate
    ) -> None:
        method: str = message["method"]
        if not self._parts.state.count_request(session):
            await self._answer_gone(send)
            return
        dialect = self._dialect
        early = self._protocol.is_early(session, method)
        if early:
            self._parts.state.stats.early_requests += 1
            if dialect.early in ("http", "kill"):
                self._parts.state.stats.requests[method] += 1
                if dialect.early == "kill":
                    self._parts.state.terminate(session)
                assert dialect.early_answer is not None
                await self._parts.replies.answer(send, dialect.early_answer)
                return
            if dialect.early == "serve":
                early = False
        await self._responder.respond(
            receive,
            send,
            session,
            lambda emit: self._protocol.run_request(session, message, emit, early=early),
            drop=fate.drop_number(method),
        )

    # -- GET and DELETE --------------------------------------------------------------

    async def _lookup(self, headers: Headers, send: Send) -> Session | None:
        """The session a GET or DELETE names; None after answering 400 or "gone"."""
        session_id = headers.get(SESSION_HEADER)
        if session_id is None:
            await self._reject(send, 400, "Bad Request: Missing session ID")
            return None
        session = self._parts.state.live(session_id)
        if session is None:
            await self._answer_gone(send)
            return None
        return session

    async def _get(self, headers: Headers, receive: Receive, send: Send) -> None:
        last_event_id = headers.get("last-event-id")
        if not self._parts.config.get_stream and last_event_id is None:
            await self._reject(
                send,
                405,
                "Method Not Allowed: no standalone SSE stream",
                extra=[(b"allow", b"POST, DELETE")],
            )
            return
        session = await self._lookup(headers, send)
        if session is None:
            return
        if not accepts(headers)[1]:
            await self._reject(
                send,
                406,
                "Not Acceptable: Client must accept text/event-stream",
                session_id=session.id,
            )
            return
        if not await self._version_ok(headers, send, session):
            return
        if last_event_id is not None:
            await self._resume(session, last_event_id, receive, send)
            return
        if session.get_stream is not None:
            await self._reject(
                send,
                409,
                "Conflict: Only one SSE stream is allowed per session",
                session_id=session.id,
            )
            return
        await self._standalone(session, receive, send)

    async def _standalone(self, session: Session, receive: Receive, send: Send) -> None:
        """The session's standalone SSE stream, until the client or the session ends."""
        sender, receiver = anyio.create_memory_object_stream[JSON](STREAM_BUFFER)
        session.get_stream = sender
        disconnect = Disconnect()
        try:
            async with receiver:
                await start_sse(send, session.id)
                await send_chunk(send, event_chunk(self._parts.state.next_event_id(), None))
                async with anyio.create_task_group() as tg:
                    tg.start_soon(disconnect.watch, receive, tg.cancel_scope)
                    async for message in receiver:
                        await send_chunk(
                            send, event_chunk(self._parts.state.next_event_id(), message)
                        )
                    # The session ended (DELETE, shutdown or restart): end the response.
                    tg.cancel_scope.cancel()
        finally:
            if session.get_stream is sender:
                session.get_stream = None
            sender.close()
        if not disconnect.gone and not session.dropped:
            await end_stream(send)

    async def _resume(
        self, session: Session, last_event_id: str, receive: Receive, send: Send
    ) -> None:
        """Replay a response stream after `last_event_id`, then follow it to its end."""
        found = session.find_event(int(last_event_id)) if last_event_id.isdigit() else None
        if found is None:
            # As the Go SDK: a stream that cannot be replayed is a 400.
            await self._reject(
                send, 400, "Bad Request: Unknown Last-Event-ID", session_id=session.id
            )
            return
        log, seq = found
        if log.reader_seq is not None:
            await self._reject(
                send, 409, "Conflict: the stream is being read", session_id=session.id
            )
            return
        await start_sse(send, session.id)
        disconnect = Disconnect()
        ended = False
        async with anyio.create_task_group() as tg:
            tg.start_soon(disconnect.watch, receive, tg.cancel_scope)
            ended = await self._responder.pump(log, send, seq + 1, None)
            tg.cancel_scope.cancel()
        if ended and not disconnect.gone:
            await end_stream(send)

    async def _delete(self, headers: Headers, send: Send) -> None:
        session = await self._lookup(headers, send)
        if session is None or not await self._version_ok(headers, send, session):
            return
        self._parts.state.terminate(session)
        await send_json(send, 200, None, session.id)
