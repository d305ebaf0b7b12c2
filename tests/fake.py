"""A scripted MCP server living inside ``httpx.MockTransport``, for transport-level tests.

It speaks just enough Streamable HTTP for the client's handshake to succeed, and lets a
test replace the answer to any method with raw bytes, statuses and headers, so that each
kind of bad input can be aimed at exactly one request.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

Responder = Callable[[dict[str, Any]], Awaitable[httpx.Response] | httpx.Response]


def json_response(
    message: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(message).encode(),
        headers={"content-type": "application/json", **(headers or {})},
    )


def sse_response(*events: str, status: int = 200) -> httpx.Response:
    """An SSE response whose body is the given raw event texts, each ended by a blank line."""
    body = "".join(event if event.endswith("\n\n") else event + "\n\n" for event in events)
    return httpx.Response(
        status, content=body.encode(), headers={"content-type": "text/event-stream"}
    )


def result(message: dict[str, Any], value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": message["id"], "result": value}


@dataclass
class FakeServer:
    """Answers the handshake; ``routes[method]`` overrides any answer."""

    protocol_version: str = "2025-11-25"
    session_id: str | None = "fake-session"
    routes: dict[str, Responder] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    get_stream: Callable[[httpx.Request], httpx.Response] | None = None
    """Answers the standalone GET stream (default: 405, no stream)."""
    probes: list[dict[str, Any]] = field(default_factory=list)
    """``server/discover`` era probes, answered as a legacy Python SDK server does (400
    "Missing session ID") and kept out of ``received``/``requests`` unless routed."""

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    def methods(self) -> list[str]:
        return [str(m.get("method")) for m in self.received if "method" in m]

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "GET":
            return self.get_stream(request) if self.get_stream else httpx.Response(405)
        if request.method == "DELETE":
            return httpx.Response(200)
        message = json.loads(request.content)
        method = message.get("method")
        if method == "server/discover" and method not in self.routes:
            self.requests.pop()
            self.probes.append(message)
            return json_response(
                {
                    "jsonrpc": "2.0",
                    "id": "server-error",
                    "error": {"code": -32600, "message": "Bad Request: Missing session ID"},
                },
                status=400,
            )
        self.received.append(message)
        if method in self.routes:
            answer = self.routes[method](message)
            return answer if isinstance(answer, httpx.Response) else await answer
        if "id" not in message or method is None:
            return httpx.Response(202)
        if method == "initialize":
            headers = {"mcp-session-id": self.session_id} if self.session_id else {}
            return json_response(
                result(
                    message,
                    {
                        "protocolVersion": self.protocol_version,
                        "capabilities": {"tools": {}},
                        "serverInfo": {"name": "fake", "version": "1"},
                    },
                ),
                headers=headers,
            )
        if method == "tools/call":
            text = json.dumps(message["params"].get("arguments", {}))
            return json_response(result(message, {"content": [{"type": "text", "text": text}]}))
        if method == "tools/list":
            return json_response(result(message, {"tools": []}))
        return json_response(result(message, {}))
