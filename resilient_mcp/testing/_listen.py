"""`subscriptions/listen`: the modern era's change notifications.

A listen request opens an SSE stream: first its acknowledgement (the honored
notifications), then every change notification it asked for, each stamped with its
subscription id, until the client leaves or the server ends the stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from starlette.types import Receive, Send

from resilient_mcp.testing import _catalog
from resilient_mcp.testing._asgi import Disconnect, end_stream, send_chunk, start_stream
from resilient_mcp.testing._catalog import JSON
from resilient_mcp.testing._envelope import SERVER_INFO_KEY, SUBSCRIPTION_ID_KEY
from resilient_mcp.testing._http import ServerParts
from resilient_mcp.testing._jsonrpc import INVALID_PARAMS, error, notification, result
from resilient_mcp.testing._modern_wire import (
    PING,
    SSE_HEADERS,
    Exchange,
    Exchanges,
    next_event,
    send_message,
    sse_frame,
)
from resilient_mcp.testing._rounds import ModernContext

# Events a listen stream may fall behind before it is ended (the client re-listens).
_LISTEN_BUFFER: Final = 64


@dataclass(eq=False)
class Listener:
    """One open `subscriptions/listen` stream."""

    subscription_id: str | int
    honored: JSON
    uris: frozenset[str]
    events: MemoryObjectSendStream[JSON]
    exchange: Exchange
    graceful: bool = False
    """Ended by the server on purpose: send the listen result before closing."""

    def wants(self, event: JSON) -> bool:
        """Whether this stream asked for `event`."""
        method = event["method"]
        if method == "notifications/tools/list_changed":
            return bool(self.honored.get("toolsListChanged"))
        if method == "notifications/prompts/list_changed":
            return bool(self.honored.get("promptsListChanged"))
        if method == "notifications/resources/list_changed":
            return bool(self.honored.get("resourcesListChanged"))
        if method == "notifications/resources/updated":
            return event["params"]["uri"] in self.uris
        return False


def _honored(notifications: JSON) -> JSON:
    """The notifications of a listen request this server will send."""
    honored: JSON = {}
    for flag in ("toolsListChanged", "promptsListChanged", "resourcesListChanged"):
        if notifications.get(flag) is True:
            honored[flag] = True
    uris = notifications.get("resourceSubscriptions")
    if isinstance(uris, list) and uris and all(isinstance(uri, str) for uri in uris):
        honored["resourceSubscriptions"] = list(uris)
    return honored


class Listeners:
    """The open listen streams of one server."""

    def __init__(self, parts: ServerParts, exchanges: Exchanges) -> None:
        self._parts = parts
        self._exchanges = exchanges
        self._open: set[Listener] = set()

    async def listen(self, context: ModernContext, receive: Receive, send: Send) -> None:
        """Serve one `subscriptions/listen` request until its stream ends."""
        notifications = context.params.get("notifications")
        if not isinstance(notifications, dict):
            await send_message(
                self._parts.replies,
                send,
                error(
                    context.request_id,
                    INVALID_PARAMS,
                    "Invalid params: 'notifications' must be an object",
                ),
            )
            return
        honored = _honored(notifications)
        subscription_id = context.request_id
        meta = {SUBSCRIPTION_ID_KEY: subscription_id}
        sender, receiver = anyio.create_memory_object_stream[JSON](_LISTEN_BUFFER)
        watch = Disconnect()
        with self._exchanges.track() as exchange:
            listener = Listener(
                subscription_id,
                honored,
                frozenset(honored.get("resourceSubscriptions", ())),
                sender,
                exchange,
            )
            # Registered before the ack is written: nothing published meanwhile is lost,
            # and the ack still goes first because only this task writes the stream.
            self._open.add(listener)
            self._parts.state.stats.subscriptions_opened += 1
            try:
                async with receiver, anyio.create_task_group() as tg:
                    tg.start_soon(watch.watch, receive, tg.cancel_scope)
                    with exchange.scope:
                        await start_stream(send, SSE_HEADERS)
                        ack = notification(
                            "notifications/subscriptions/acknowledged",
                            {"_meta": meta, "notifications": honored},
                        )
                        await send_chunk(send, sse_frame(ack))
                        while True:
                            try:
                                event = await next_event(receiver)
                            except anyio.EndOfStream:
                                break
                            if event is None:
                                chunk = PING
                            else:
                                params = dict(event.get("params") or {})
                                params["_meta"] = meta
                                chunk = sse_frame({**event, "params": params})
                            await send_chunk(send, chunk)
                    tg.cancel_scope.cancel()
            finally:
                self._open.discard(listener)
                sender.close()
        if watch.gone:
            self._parts.state.count_modern_cancellation()
            return
        if exchange.dropped or not listener.graceful:
            return  # cut without the listen result
        info = _catalog.server_info(self._parts.config.version)
        final = {"resultType": "complete", "_meta": {**meta, SERVER_INFO_KEY: info}}
        await end_stream(send, sse_frame(result(subscription_id, final)))

    def publish(self, event: JSON) -> None:
        """Deliver a change notification to every listen stream that asked for it."""
        for listener in list(self._open):
            if not listener.wants(event):
                continue
            try:
                listener.events.send_nowait(event)
            except anyio.WouldBlock:
                # A client that stopped reading: end its stream (it re-listens).
                self._open.discard(listener)
                listener.events.close()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._open.discard(listener)

    def close(self) -> None:
        """End every listen stream gracefully: the listen result, then the end."""
        for listener in list(self._open):
            listener.graceful = True
            listener.events.close()
