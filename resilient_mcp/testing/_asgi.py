"""ASGI plumbing every front end shares: request bodies, responses, SSE frames, disconnects.

Nothing here knows MCP: it turns bytes and headers into ASGI messages and back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import anyio
from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

JSON_TYPE: Final = "application/json"
SSE_TYPE: Final = "text/event-stream"

HeaderList = Sequence[tuple[bytes, bytes]]
"""Raw ASGI response headers: (lower-case name, value) pairs, in sending order."""


class Endpoint:
    """ASGI callable for one route; a class so Starlette routes it as raw ASGI."""

    def __init__(self, handler: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handler(scope, receive, send)


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body; None when the client disconnected before sending it."""
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_body(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: str | None,
    headers: HeaderList = (),
) -> None:
    """A complete response: its content type (if any) and length, then `headers`."""
    start: list[tuple[bytes, bytes]] = []
    if content_type is not None:
        start.append((b"content-type", content_type.encode()))
    start.append((b"content-length", str(len(body)).encode()))
    start.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


async def cut_json(send: Send, body: bytes, headers: HeaderList = ()) -> None:
    """Start a 200 JSON response and stop halfway through its body.

    Returning with the response incomplete makes the ASGI server drop the connection:
    how chaos and restart() cut a response on purpose.
    """
    start = [
        (b"content-type", JSON_TYPE.encode()),
        (b"content-length", str(max(len(body), 1)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": 200, "headers": start})
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})


async def start_stream(send: Send, headers: HeaderList) -> None:
    """Start a 200 response whose body follows in chunks (an SSE stream)."""
    await send({"type": "http.response.start", "status": 200, "headers": list(headers)})


async def send_chunk(send: Send, chunk: bytes) -> None:
    """Send one piece of a streamed body; more follows."""
    await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def end_stream(send: Send, chunk: bytes = b"") -> None:
    """End a streamed body properly, with `chunk` as its last piece."""
    await send({"type": "http.response.body", "body": chunk, "more_body": False})


def sse_event(
    data: bytes,
    *,
    event: str | None = "message",
    event_id: str | None = None,
    eol: bytes = b"\n",
) -> bytes:
    """One SSE event: its `event:` and `id:` lines (when given), then one `data:` line.

    Each front end frames its events as the real server it imitates does, hence the
    optional fields and line end.
    """
    lines = []
    if event is not None:
        lines.append(b"event: " + event.encode())
    if event_id is not None:
        lines.append(b"id: " + event_id.encode())
    lines.append(b"data: " + data)
    return eol.join(lines) + eol + eol


def accepts(headers: Headers) -> tuple[bool, bool]:
    """(accepts JSON, accepts SSE), with RFC 9110 wildcards as the Python SDK reads them."""
    types = {part.split(";")[0].strip().lower() for part in headers.get("accept", "").split(",")}
    wildcard = "*/*" in types
    return (
        wildcard or bool(types & {JSON_TYPE, "application/*"}),
        wildcard or bool(types & {SSE_TYPE, "text/*"}),
    )


class Disconnect:
    """Watches an HTTP request's receive channel and cancels work when the client leaves."""

    def __init__(self) -> None:
        self.gone = False
        """Whether the client disconnected."""

    async def watch(self, receive: Receive, scope: anyio.CancelScope) -> None:
        """Wait for the client's disconnect, then cancel `scope`."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                scope.cancel()
                return
