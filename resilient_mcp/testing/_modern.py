"""The modern (handshake-free, protocol 2026-07-28) front end of `StrictServer`.

Every request is a self-contained POST (see `_envelope`): there are no sessions, no
`initialize`, no `ping`, no GET stream and no resumption. Server→client requests become
`input_required` results (`_rounds`), change notifications flow on
`subscriptions/listen` streams (`_listen`), and closing a response stream cancels its
request. This module takes each POST in and checks it; `_modern_answer` runs and
answers the requests that pass.

The answers follow the 2026-07-28 specification and, where it leaves a choice, the
reference server (the `mcp` 2.3 Python SDK): its validation ladder and messages, its
error-code → HTTP-status table, JSON answers for errors raised before anything was
streamed, `event: message` SSE frames with CRLF line ends and no event ids.
"""

from __future__ import annotations

import json
from typing import Any, Final

from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from resilient_mcp.testing import _catalog
from resilient_mcp.testing._asgi import accepts, read_body
from resilient_mcp.testing._catalog import JSON
from resilient_mcp.testing._chaos import Fate
from resilient_mcp.testing._envelope import (
    UNSUPPORTED_PROTOCOL_VERSION,
    check_routing_duplicates,
    unsupported_version,
    validate_envelope,
    validate_param_headers,
)
from resilient_mcp.testing._features import Features, Handler
from resilient_mcp.testing._http import ServerParts
from resilient_mcp.testing._jsonrpc import INVALID_REQUEST, PARSE_ERROR, RpcError, error, is_request
from resilient_mcp.testing._listen import Listeners
from resilient_mcp.testing._modern_answer import ModernResponder
from resilient_mcp.testing._modern_wire import Exchanges, send_message
from resilient_mcp.testing._rounds import ModernContext, Rounds

_NOT_ONE_MESSAGE: Final = "Body must be a single JSON-RPC request or notification object"


class ModernEra:
    """Serves modern requests for one server."""

    def __init__(
        self,
        parts: ServerParts,
        features: Features[ModernContext],
        rounds: Rounds,
        exchanges: Exchanges,
        listeners: Listeners,
    ) -> None:
        self._parts = parts
        self._features = features
        self._rounds = rounds
        self._listeners = listeners
        handlers: dict[str, Handler[ModernContext]] = {
            **features.handlers(),
            "server/discover": self._discover,
            "tools/list": self._list_tools,
        }
        self._responder = ModernResponder(parts, exchanges, handlers)

    # -- HTTP ----------------------------------------------------------------------------

    async def handle(self, scope: Scope, headers: Headers, receive: Receive, send: Send) -> None:
        """Serve one HTTP request (its `scope` is of type "http")."""
        if scope["method"] != "POST":
            # No GET stream, no DELETE: 405 as the reference server answers.
            await self._parts.replies.bare(send, 405, [(b"allow", b"POST")])
            return
        fate = await self._parts.gate.admit(receive, send)
        if fate is not None:
            await self._post(headers, scope["headers"], receive, send, fate)

    async def _post(
        self,
        headers: Headers,
        raw: list[tuple[bytes, bytes]],
        receive: Receive,
        send: Send,
        fate: Fate,
    ) -> None:
        stats = self._parts.state.stats
        has_json, has_sse = accepts(headers)
        if not has_json or (not self._parts.config.json_response and not has_sse):
            await self._parts.replies.bare(send, 406)
            return
        body = await read_body(receive)
        if body is None:
            return
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            await self._answer(send, error(None, PARSE_ERROR, "Parse error"))
            return
        if isinstance(message, dict) and "id" not in message:
            await self._notification(headers, message, send)
            return
        if not is_request(message):
            await self._answer(send, error(None, INVALID_REQUEST, _NOT_ONE_MESSAGE))
            return
        method: str = message["method"]
        request_id = message["id"]
        if method == "subscriptions/listen" and not has_sse:
            await self._parts.replies.bare(send, 406)
            return
        stats.requests[method] += 1
        stats.modern_requests += 1
        if method == "server/discover":
            stats.discover_requests += 1
        elif method == "initialize":
            stats.initialize_requests += 1
        if method == "initialize" and self._parts.config.era == "modern":
            await self._answer(send, self._initialize_refusal(message))
            return
        try:
            check_routing_duplicates(raw)
            envelope = validate_envelope(message, headers, self._parts.config.modern_versions)
            if method == "tools/call":
                self._check_param_headers(message.get("params", {}), headers)
        except RpcError as exc:
            await self._answer(send, error(request_id, exc.code, exc.message, exc.data))
            return
        params = message.get("params")
        context = ModernContext(
            request_id,
            method,
            params if isinstance(params, dict) else {},
            envelope,
            headers,
            self._rounds,
        )
        if method == "subscriptions/listen":
            await self._listeners.listen(context, receive, send)
            return
        await self._responder.respond(context, receive, send, fate.drop_number(method))

    def _initialize_refusal(self, message: JSON) -> JSON:
        """A modern-only server names its versions to a legacy `initialize` (versioning.mdx
        §Backward Compatibility), with the -32022 mcp 2.3 uses on a modern connection."""
        params = message.get("params")
        requested = params.get("protocolVersion") if isinstance(params, dict) else None
        data: JSON = {"supported": list(self._parts.config.modern_versions)}
        if isinstance(requested, str):
            data["requested"] = requested
        return error(
            message["id"],
            UNSUPPORTED_PROTOCOL_VERSION,
            "This server speaks only protocol "
            + ", ".join(self._parts.config.modern_versions)
            + "; the initialize handshake is not accepted",
            data,
        )

    async def _answer(self, send: Send, message: JSON) -> None:
        await send_message(self._parts.replies, send, message)

    async def _notification(self, headers: Headers, message: JSON, send: Send) -> None:
        """202 and drop (no client notifications exist on this wire), or a rejection."""
        if message.get("jsonrpc") != "2.0" or not isinstance(message.get("method"), str):
            await self._answer(send, error(None, INVALID_REQUEST, _NOT_ONE_MESSAGE))
            return
        rejection = unsupported_version(
            headers.get("mcp-protocol-version", ""), self._parts.config.modern_versions
        )
        if rejection is not None:
            await self._answer(send, error(None, rejection.code, rejection.message, rejection.data))
            return
        self._parts.state.stats.notifications[message["method"]] += 1
        await self._parts.replies.bare(send, 202)

    def _check_param_headers(self, params: Any, headers: Headers) -> None:
        if not isinstance(params, dict):
            return
        name = params.get("name")
        arguments = params.get("arguments")
        if not isinstance(name, str) or (arguments is not None and not isinstance(arguments, dict)):
            return
        tool = self._features.tools.get(name)
        if tool is not None:
            validate_param_headers(tool.definition["inputSchema"], arguments or {}, headers)

    # -- methods only the modern era has -------------------------------------------------

    async def _discover(self, context: ModernContext) -> JSON:
        return {
            "supportedVersions": list(self._parts.config.modern_versions),
            "capabilities": _catalog.CAPABILITIES,
            "instructions": _catalog.MODERN_INSTRUCTIONS,
        }

    async def _list_tools(self, context: ModernContext) -> JSON:
        try:
            return await self._features.list_tools(context)
        except RpcError as exc:
            # Kept as it was before the server was split into layers: an invalid cursor
            # on the modern tools/list is not answered in-band (-32602, as every other
            # list is) but fails the request, which goes out as HTTP 500.
            raise RuntimeError(exc.message) from exc
