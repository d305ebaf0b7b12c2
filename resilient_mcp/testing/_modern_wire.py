"""The modern era's HTTP streams: how they look on the wire and how restart() cuts them.

The reference server's framing: `event: message` SSE frames with CRLF line ends and no
event ids, `: ping` comments while a stream is silent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from starlette.types import Send

from resilient_mcp.testing._asgi import SSE_TYPE, sse_event
from resilient_mcp.testing._catalog import JSON
from resilient_mcp.testing._envelope import status_of
from resilient_mcp.testing._http import HttpReplies
from resilient_mcp.testing._jsonrpc import dumps
from resilient_mcp.testing._profiles import HttpAnswer

SSE_HEADERS: Final = [
    (b"content-type", SSE_TYPE.encode()),
    (b"cache-control", b"no-cache, no-transform"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),
]
SSE_DEFER_SECONDS: Final = 15.0
"""Seconds a request may run silent before its answer commits to SSE, and between
keep-alive comments once it has (the reference server's 15 s)."""
PING: Final = b": ping\r\n\r\n"


def sse_frame(message: JSON) -> bytes:
    """One message as the reference server frames it: CRLF line ends, no event id."""
    return sse_event(dumps(message), eol=b"\r\n")


async def next_event(events: MemoryObjectReceiveStream[JSON]) -> JSON | None:
    """The next message, or None after `SSE_DEFER_SECONDS` of silence (time to ping).

    Raises `anyio.EndOfStream` once the stream is closed and drained.
    """
    with anyio.move_on_after(SSE_DEFER_SECONDS):
        return await events.receive()
    return None


async def send_message(replies: HttpReplies, send: Send, message: JSON) -> None:
    """A JSON-RPC response as a JSON answer, with the status of its error code."""
    await replies.answer(send, HttpAnswer.json(status_of(message), message))


@dataclass(eq=False)
class Exchange:
    """One modern request being answered: its cancel scope and how it ended."""

    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    dropped: bool = False
    """Cut by `restart()`: the connection ends without a proper end."""


class Exchanges:
    """The modern requests being answered, so that restart() can cut them all."""

    def __init__(self) -> None:
        self._open: set[Exchange] = set()

    @contextlib.contextmanager
    def track(self) -> Iterator[Exchange]:
        """A new exchange, tracked until the block ends."""
        exchange = Exchange()
        self._open.add(exchange)
        try:
            yield exchange
        finally:
            self._open.discard(exchange)

    def drop_all(self) -> None:
        """Cut every modern connection, as a restarted process would."""
        for exchange in list(self._open):
            exchange.dropped = True
            exchange.scope.cancel()
