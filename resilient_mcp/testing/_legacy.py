"""The legacy (handshake) session protocol both legacy transports speak.

`initialize` and the handshake, client notifications and responses, and the dispatch
of requests, past the profile's early-request gate, to the shared features through a
`LegacyContext`. The transports (`_streamable`, `_legacy_sse`) decide only how
messages travel.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio

from resilient_mcp.testing import _catalog
from resilient_mcp.testing._catalog import JSON
from resilient_mcp.testing._config import ServerConfig
from resilient_mcp.testing._context import ToolCall, ToolReturn, text_result
from resilient_mcp.testing._features import Features, Handler
from resilient_mcp.testing._jsonrpc import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    RpcError,
    error,
    is_id,
    notification,
    result,
    string_param,
)
from resilient_mcp.testing._state import InFlight, Pending, ServerState, Session

LATEST_PROTOCOL_VERSION: Final = "2025-11-25"
SUPPORTED_PROTOCOL_VERSIONS: Final = ("2025-11-25", "2025-06-18", "2025-03-26")

Emit = Callable[[JSON], Awaitable[None]]
"""Sends a server→client message on the request's own response stream."""


class _NoChannel(Exception):
    """There is no stream on which a server→client message could travel."""


class LegacyContext:
    """`Context` of a legacy request: its session, and where its messages go.

    With `emit` (an SSE response) that is the request's own response stream; without
    it, the session's standalone GET stream if one is open, else nowhere.
    """

    def __init__(self, session: Session, params: JSON, emit: Emit | None) -> None:
        self.session = session
        self._params = params
        self._emit = emit

    @property
    def params(self) -> JSON:
        """The request's params."""
        return self._params

    @property
    def progress_token(self) -> str | int | None:
        """`params._meta.progressToken`, if any."""
        meta = self._params.get("_meta")
        if isinstance(meta, dict):
            token = meta.get("progressToken")
            if is_id(token):
                return token
        return None

    async def notify(self, method: str, params: JSON) -> None:
        """Send a notification on the request's stream, else on the GET stream."""
        message = notification(method, params)
        if self._emit is not None:
            await self._emit(message)
        else:
            # Dropped when no GET stream is open, as a real JSON-mode server does.
            await self.session.send_standalone(message)

    def require(self, capability: str, tool: str) -> None:
        """Nothing: a legacy tool runs and fails when it asks (see `ask`)."""

    async def ask(
        self, call: ToolCall, capability: str, method: str, params: JSON, *, key: str
    ) -> JSON:
        """Send a server→client request and wait for the client's result.

        Raises `ToolReturn` with an isError tool result when the client did not declare
        `capability`, nothing can carry the request, or the client answered an error.
        """
        if capability not in self.session.client_capabilities:
            raise ToolReturn(
                text_result(
                    f"The client did not declare the {capability} capability", is_error=True
                )
            )
        try:
            response = await self._request(method, params)
        except _NoChannel:
            raise ToolReturn(
                text_result(
                    f"No stream to send {method} on: use json_response=False or open the "
                    "GET stream",
                    is_error=True,
                )
            ) from None
        failure = response.get("error")
        if isinstance(failure, dict):
            raise ToolReturn(
                text_result(
                    f"The client answered {method} with error {failure.get('code')}: "
                    f"{failure.get('message')}",
                    is_error=True,
                )
            )
        answer = response.get("result")
        if not isinstance(answer, dict):
            raise ToolReturn(
                text_result(f"The client's {method} result is not an object", is_error=True)
            )
        return answer

    async def _request(self, method: str, params: JSON) -> JSON:
        """Send a server→client request and return the client's response message."""
        session = self.session
        request_id = session.next_request_id
        session.next_request_id += 1
        pending = Pending(anyio.Event())
        session.pending[request_id] = pending
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        try:
            if self._emit is not None:
                await self._emit(message)
            elif not await session.send_standalone(message):
                raise _NoChannel
            await pending.done.wait()
        finally:
            session.pending.pop(request_id, None)
        if pending.response is None:
            # The session ended while waiting.
            raise _NoChannel
        return pending.response


def _initialize_problem(params: Any) -> str | None:
    if not isinstance(params, dict):
        return "initialize needs params"
    if not isinstance(params.get("protocolVersion"), str):
        return "protocolVersion must be a string"
    if not isinstance(params.get("capabilities"), dict):
        return "capabilities must be an object"
    info = params.get("clientInfo")
    if not isinstance(info, dict) or not isinstance(info.get("name"), str):
        return "clientInfo.name must be a string"
    if not isinstance(info.get("version"), str):
        return "clientInfo.version must be a string"
    return None


class LegacyProtocol:
    """The session protocol of one server's legacy era, for both legacy transports."""

    def __init__(
        self, config: ServerConfig, state: ServerState, features: Features[LegacyContext]
    ) -> None:
        self._config = config
        self._state = state
        self._dialect = config.dialect
        self._handlers: dict[str, Handler[LegacyContext]] = {
            **features.handlers(),
            "resources/subscribe": self._subscribe,
            "resources/unsubscribe": self._unsubscribe,
            "logging/setLevel": self._set_level,
        }

    def gated(self, method: str) -> bool:
        """Whether `method` is held to the handshake by this profile."""
        if method == "ping":
            return self._dialect.gate_ping
        if method not in self._handlers:
            return self._dialect.gate_unknown
        return True

    def is_early(self, session: Session, method: str) -> bool:
        """Whether `method`, processed now on `session`, meets the profile's gate closed."""
        dialect = self._dialect
        opened = session.initialized if dialect.gate_on == "initialized" else session.accepted
        return not opened and self.gated(method)

    def accept_initialize(
        self, message: JSON, existing: Session | None
    ) -> tuple[Session | None, JSON]:
        """Check `initialize`, open (or restart) the session; (session, response)."""
        stats = self._state.stats
        stats.requests["initialize"] += 1
        stats.initialize_requests += 1
        request_id = message["id"]
        params = message.get("params")
        problem = _initialize_problem(params)
        if problem is not None:
            refusal = error(request_id, INVALID_PARAMS, "Invalid request parameters", problem)
            return existing, refusal
        assert isinstance(params, dict)  # checked by _initialize_problem
        requested = params["protocolVersion"]
        version = requested if requested in SUPPORTED_PROTOCOL_VERSIONS else LATEST_PROTOCOL_VERSION
        if existing is not None:
            # Re-initializing a live session restarts its handshake.
            session = existing
            session.reset_handshake()
            session.protocol_version = version
            session.client_capabilities = params["capabilities"]
        else:
            session = Session(
                id=secrets.token_hex(16),
                protocol_version=version,
                client_capabilities=params["capabilities"],
            )
            self._state.open(session)
        answer: JSON = {
            "protocolVersion": version,
            "capabilities": _catalog.CAPABILITIES,
            "serverInfo": _catalog.server_info(self._config.version),
            "instructions": _catalog.INSTRUCTIONS,
        }
        return session, result(request_id, answer)

    async def initialize_work(self) -> None:
        """The simulated work of answering `initialize` (`initialize_delay`)."""
        if self._config.initialize_delay > 0:
            await anyio.sleep(self._config.initialize_delay)  # simulated server work

    async def on_notification(self, session: Session, message: JSON) -> None:
        """Process a client notification (`initialized` takes `handshake_delay`)."""
        method = message["method"]
        stats = self._state.stats
        stats.notifications[method] += 1
        params = message.get("params")
        if method == "notifications/initialized":
            self._state.count_initialized()
            if self._config.handshake_delay > 0:
                await anyio.sleep(self._config.handshake_delay)  # simulated server work
            session.mark_initialized()
        elif method == "notifications/cancelled" and isinstance(params, dict):
            request_id = params.get("requestId")
            if is_id(request_id):
                in_flight = session.in_flight.get(json.dumps(request_id))
                if in_flight is not None:
                    in_flight.reason = "cancelled"
                    in_flight.scope.cancel()

    def on_client_response(self, session: Session, message: JSON) -> None:
        """Hand a client's response to the server→client request waiting for it."""
        request_id = message["id"]
        if isinstance(request_id, int) and not isinstance(request_id, bool):
            pending = session.pending.get(request_id)
            if pending is not None:
                pending.response = message
                pending.done.set()

    async def run_request(
        self, session: Session, message: JSON, emit: Emit | None, *, early: bool = False
    ) -> JSON | None:
        """The response to a request, None when its session was terminated under it.

        `early`: processed before the handshake, answered with the profile's early error.
        """
        request_id = message["id"]
        key = json.dumps(request_id)
        in_flight = InFlight(anyio.CancelScope())
        session.in_flight[key] = in_flight
        try:
            with in_flight.scope:
                return await self._dispatch(session, message, emit, early=early)
        finally:
            if session.in_flight.get(key) is in_flight:
                del session.in_flight[key]
        # Reached only when the scope was cancelled by us, not by a disconnect.
        if in_flight.reason == "cancelled":
            # What the profile's server answers a request the client cancelled.
            return error(request_id, self._dialect.cancelled_code, "Request cancelled")
        return None

    async def _dispatch(
        self, session: Session, message: JSON, emit: Emit | None, *, early: bool
    ) -> JSON:
        method: str = message["method"]
        request_id = message["id"]
        self._state.stats.requests[method] += 1
        params = message.get("params", {})
        if early:
            code, text, data = self._dialect.early_error(method)
            return error(request_id, code, text, data)
        if method == "ping":
            return result(request_id, {})
        handler = self._handlers.get(method)
        if handler is None:
            if self._dialect.unknown_as_invalid_params:
                # The Python SDK 1.x fails to validate an unknown request type.
                return error(request_id, INVALID_PARAMS, "Invalid request parameters", "")
            # As in the Python SDK 2.x: unserved methods are -32601 whatever the state.
            return error(request_id, METHOD_NOT_FOUND, "Method not found", method)
        if not isinstance(params, dict):
            return error(request_id, INVALID_PARAMS, "Invalid params: params must be an object")
        try:
            answer = await handler(LegacyContext(session, params, emit))
        except RpcError as exc:
            return error(request_id, exc.code, exc.message, exc.data)
        return result(request_id, answer)

    def publish(self, event: JSON) -> None:
        """Put a change notification on the GET stream of every initialized session
        (`notifications/resources/updated`: of those subscribed to its URI)."""
        params = event.get("params")
        uri = params.get("uri") if params is not None else None
        for session in list(self._state.sessions.values()):
            stream = session.get_stream
            if stream is None or not session.initialized:
                continue
            if uri is not None and uri not in session.subscriptions:
                continue
            # Dropped when the client is not reading, as a full GET stream does.
            with contextlib.suppress(
                anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError
            ):
                stream.send_nowait(dict(event))

    # -- methods only the legacy era has: they live on the session ---------------------

    async def _subscribe(self, ctx: LegacyContext) -> JSON:
        ctx.session.subscriptions.add(string_param(ctx.params, "uri"))
        return {}

    async def _unsubscribe(self, ctx: LegacyContext) -> JSON:
        ctx.session.subscriptions.discard(string_param(ctx.params, "uri"))
        return {}

    async def _set_level(self, ctx: LegacyContext) -> JSON:
        level = ctx.params.get("level")
        if level not in _catalog.LOG_LEVELS:
            raise RpcError(INVALID_PARAMS, f"Invalid params: unknown log level {level!r}")
        ctx.session.log_level = level
        return {}
