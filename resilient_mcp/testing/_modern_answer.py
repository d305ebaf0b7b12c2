"""How the modern front end answers a request: run it, then JSON or a deferred SSE stream.

As the reference server does, an answer is JSON when it is ready before anything was
streamed, else `text/event-stream`. Closing the response stream cancels the request
(`ServerStats.modern_cancellations`); chaos may cut the answer, restart() drops it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from starlette.types import Receive, Send

from resilient_mcp.testing import _catalog
from resilient_mcp.testing._asgi import Disconnect, cut_json, end_stream, send_chunk, start_stream
from resilient_mcp.testing._catalog import JSON
from resilient_mcp.testing._envelope import SERVER_INFO_KEY
from resilient_mcp.testing._features import Handler
from resilient_mcp.testing._http import ServerParts
from resilient_mcp.testing._jsonrpc import METHOD_NOT_FOUND, RpcError, dumps, error, result
from resilient_mcp.testing._modern_wire import (
    PING,
    SSE_HEADERS,
    Exchanges,
    next_event,
    send_message,
    sse_frame,
)
from resilient_mcp.testing._rounds import ModernContext

# Results that carry `ttlMs` / `cacheScope` (caching.mdx §Cacheable Results).
CACHEABLE: Final = frozenset(
    {
        "server/discover",
        "tools/list",
        "prompts/list",
        "resources/list",
        "resources/templates/list",
        "resources/read",
    }
)


@dataclass
class _SseAnswer:
    """How far an SSE-mode answer got; read after a disconnect cancelled it, too."""

    committed: bool = False
    """The response started as `text/event-stream`."""
    cut: bool = False
    """Chaos cut the stream."""


class ModernResponder:
    """Runs modern requests through the method table `handlers` and answers them."""

    def __init__(
        self,
        parts: ServerParts,
        exchanges: Exchanges,
        handlers: Mapping[str, Handler[ModernContext]],
    ) -> None:
        self._parts = parts
        self._exchanges = exchanges
        self._handlers = handlers

    async def _answer(self, send: Send, message: JSON) -> None:
        await send_message(self._parts.replies, send, message)

    async def _run(self, context: ModernContext) -> JSON:
        """The JSON-RPC response to `context`'s request."""
        handler = self._handlers.get(context.method)
        if handler is None:
            return error(context.request_id, METHOD_NOT_FOUND, "Method not found", context.method)
        try:
            answer = await handler(context)
        except RpcError as exc:
            return error(context.request_id, exc.code, exc.message, exc.data)
        return result(context.request_id, self._finish(context, answer))

    def _finish(self, context: ModernContext, answer: JSON) -> JSON:
        """Add `resultType`, caching hints and the serverInfo stamp."""
        answer = dict(answer)
        answer.setdefault("resultType", "complete")
        if context.method in CACHEABLE and answer["resultType"] == "complete":
            answer.setdefault("ttlMs", self._parts.config.ttl_ms)
            answer.setdefault("cacheScope", self._parts.config.cache_scope)
        meta = dict(answer.get("_meta") or {})
        meta.setdefault(SERVER_INFO_KEY, _catalog.server_info(self._parts.config.version))
        answer["_meta"] = meta
        return answer

    async def respond(
        self, context: ModernContext, receive: Receive, send: Send, drop: int | None
    ) -> None:
        """Run `context`'s request and answer it in the configured response mode.

        `drop` is the number of the POST whose answer chaos cuts, or None.
        """
        if self._parts.config.json_response:
            await self._respond_json(context, receive, send, drop)
        else:
            await self._respond_sse(context, receive, send, drop)

    async def _respond_json(
        self, context: ModernContext, receive: Receive, send: Send, drop: int | None
    ) -> None:
        watch = Disconnect()
        outcome: JSON | None = None
        with self._exchanges.track() as exchange:
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch.watch, receive, tg.cancel_scope)
                with exchange.scope:
                    outcome = await self._run(context)
                tg.cancel_scope.cancel()
        if outcome is None:
            if watch.gone:
                self._parts.state.count_modern_cancellation()
            elif exchange.dropped:
                await cut_json(send, b"")
            return
        if drop is not None:
            self._parts.state.fault("drop", drop)
            await cut_json(send, dumps(outcome))
            return
        await self._answer(send, outcome)

    async def _respond_sse(
        self, context: ModernContext, receive: Receive, send: Send, drop: int | None
    ) -> None:
        """As the reference server: JSON if the answer is ready before anything was
        streamed, else `text/event-stream` (committed on the first notification or after
        `SSE_DEFER_SECONDS` of silence, then kept alive with comments)."""
        sender, receiver = anyio.create_memory_object_stream[JSON](0)
        context.emit = sender.send
        watch = Disconnect()
        outcome: list[JSON] = []
        answer = _SseAnswer()
        with self._exchanges.track() as exchange:

            async def produce() -> None:
                async with sender:
                    with exchange.scope:
                        outcome.append(await self._run(context))

            async with receiver, anyio.create_task_group() as tg:
                tg.start_soon(produce)
                tg.start_soon(watch.watch, receive, tg.cancel_scope)
                await self._stream(receiver, send, drop, answer)
                tg.cancel_scope.cancel()
        if answer.cut:
            return  # returning mid-response makes the ASGI server drop the connection
        if not outcome:
            if watch.gone:
                self._parts.state.count_modern_cancellation()
            elif exchange.dropped and not answer.committed:
                await cut_json(send, b"")
            return
        if not answer.committed:
            await self._answer(send, outcome[0])
            return
        await end_stream(send, sse_frame(outcome[0]))

    async def _stream(
        self,
        events: MemoryObjectReceiveStream[JSON],
        send: Send,
        drop: int | None,
        answer: _SseAnswer,
    ) -> None:
        """Stream the request's messages once there is one (or a silence to fill), until
        the work ends; chaos may cut the stream. Nothing is sent if the work ends first."""
        drop_after = self._parts.config.chaos.drop_after if drop is not None else None
        if drop_after == "priming":
            # Nothing to stream before the cut: commit, then drop the connection.
            await start_stream(send, SSE_HEADERS)
            answer.committed = answer.cut = True
            self._parts.state.fault("drop", drop)
            return
        try:
            event = await next_event(events)
        except anyio.EndOfStream:
            return  # the answer is ready: it goes out as JSON
        answer.committed = True
        await start_stream(send, SSE_HEADERS)
        while True:
            await send_chunk(send, PING if event is None else sse_frame(event))
            if (
                event is not None
                and drop_after == "progress"
                and event.get("method") == "notifications/progress"
            ):
                answer.cut = True
                self._parts.state.fault("drop", drop)
                return
            try:
                event = await next_event(events)
            except anyio.EndOfStream:
                return
