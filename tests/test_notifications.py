"""Server notifications reach their handlers, in order, and a broken handler breaks nothing.

Notifications arrive inside a request's SSE response or on the standalone GET stream;
:class:`StreamingServer` offers both, fed by the test.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from anyio.streams.memory import MemoryObjectSendStream

import resilient_mcp
from resilient_mcp import Handlers
from resilient_mcp.testing import StrictServer, serve
from resilient_mcp.types import LoggingMessage, Progress

from .fake import FakeServer, json_response, result

pytestmark = pytest.mark.anyio

URL = "http://127.0.0.1:1/mcp"
TOOL = {"name": "echo", "inputSchema": {"type": "object"}}


def note(method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def log(data: Any, level: str = "info") -> dict[str, Any]:
    return note("notifications/message", level=level, logger="srv", data=data)


def sse(messages: Iterable[dict[str, Any]]) -> httpx.Response:
    body = "".join(f"event: message\ndata: {json.dumps(m)}\n\n" for m in messages)
    return httpx.Response(200, content=body.encode(), headers={"content-type": "text/event-stream"})


def text_result(message: dict[str, Any], text: str = "done") -> dict[str, Any]:
    return result(message, {"content": [{"type": "text", "text": text}]})


@dataclass
class StreamingServer(FakeServer):
    """A FakeServer with a standalone GET stream carrying whatever the test ``push``\\ es.

    ``before_answer[tool]`` lists messages sent in the tool call's SSE response ahead of
    its result.
    """

    before_answer: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._push, self._pull = anyio.create_memory_object_stream[dict[str, Any]](1000)
        self.routes.setdefault("tools/call", self._call)
        self.routes.setdefault("tools/list", self._list)

    def push(self, *messages: dict[str, Any]) -> None:
        for message in messages:
            self._push.send_nowait(message)

    def _call(self, message: dict[str, Any]) -> httpx.Response:
        name = message["params"]["name"]
        return sse([*self.before_answer.get(name, []), text_result(message, name)])

    def _list(self, message: dict[str, Any]) -> httpx.Response:
        return json_response(result(message, {"tools": [TOOL]}))

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method != "GET":
            return await super().handle(request)
        self.requests.append(request)

        async def body() -> AsyncIterator[bytes]:
            yield b": primed\n\n"
            async for message in self._pull:
                yield f"data: {json.dumps(message)}\n\n".encode()

        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})


class Inbox:
    """Collects what handlers receive; ``take(n)`` waits (bounded) for n more items."""

    def __init__(self) -> None:
        self._send: MemoryObjectSendStream[Any]
        self._send, self._receive = anyio.create_memory_object_stream[Any](10_000)
        self.items: list[Any] = []

    def put(self, item: Any) -> None:
        self._send.send_nowait(item)

    async def take(self, n: int) -> list[Any]:
        with anyio.fail_after(5):
            got = [await self._receive.receive() for _ in range(n)]
        self.items.extend(got)
        return got


class TestLogMessages:
    async def test_set_logging_level_then_log_messages_reach_the_handler(self) -> None:
        inbox = Inbox()

        async def on_log(message: LoggingMessage) -> None:
            inbox.put(message)

        server = StreamingServer()
        server.before_answer["work"] = [log("in the response", "debug")]
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http), handlers=Handlers(log=on_log)
            ) as c,
        ):
            await c.set_logging_level("debug")
            assert server.received[-1]["method"] == "logging/setLevel"
            assert server.received[-1]["params"] == {"level": "debug"}
            await c.call_tool("work")
            server.push(log({"on": "the GET stream"}, "warning"))
            first, second = await inbox.take(2)
        assert first == LoggingMessage(level="debug", logger="srv", data="in the response")
        assert second == LoggingMessage(
            level="warning", logger="srv", data={"on": "the GET stream"}
        )

    async def test_slow_log_handler_blocks_no_call(self) -> None:
        """Handlers run off the receive path: calls complete while a handler waits."""
        release = anyio.Event()
        inbox = Inbox()

        async def slow_log(message: LoggingMessage) -> None:
            inbox.put(("started", message.data))
            await release.wait()
            inbox.put(("finished", message.data))

        server = StreamingServer()
        server.before_answer["work"] = [log(1), log(2)]
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http), handlers=Handlers(log=slow_log)
            ) as c,
        ):
            assert (await c.call_tool("work")).text == "work"
            assert await inbox.take(1) == [("started", 1)]
            # The handler is stuck, yet calls (and their own notifications) go through.
            for _ in range(3):
                assert (await c.call_tool("work")).text == "work"
            release.set()
            rest = await inbox.take(1 + 2 * 7)
        assert rest[0] == ("finished", 1)
        assert [item for item in rest if item[0] == "started"] == [
            ("started", n) for n in (2, 1, 2, 1, 2, 1, 2)
        ]


class TestProgress:
    async def test_progress_callback_gets_every_step_in_order(self) -> None:
        seen: list[Progress] = []

        async def on_progress(progress: Progress) -> None:
            seen.append(progress)
            await anyio.lowlevel.checkpoint()

        async with (
            serve(StrictServer(json_response=False)) as running,
            resilient_mcp.connect(running.url) as client,
        ):
            done = await client.call_tool("progress", {"steps": 5}, progress=on_progress)
            assert done.text == "completed 5 steps"
            # Every step that arrived before the result was handed over before returning.
            assert [p.progress for p in seen] == [1, 2, 3, 4, 5]
            assert (seen[0].progress, seen[0].total, seen[0].message) == (1, 5, "step 1 of 5")

    async def test_concurrent_calls_each_get_their_own_progress(self) -> None:
        seen: dict[int, list[float]] = {3: [], 7: []}

        async with (
            serve(StrictServer(json_response=False)) as running,
            resilient_mcp.connect(running.url) as client,
        ):

            async def call(steps: int) -> None:
                async def on_progress(progress: Progress) -> None:
                    assert progress.total == steps
                    seen[steps].append(progress.progress)

                await client.call_tool("progress", {"steps": steps}, progress=on_progress)

            async with anyio.create_task_group() as tg:
                tg.start_soon(call, 3)
                tg.start_soon(call, 7)
        assert seen == {3: [1, 2, 3], 7: [1, 2, 3, 4, 5, 6, 7]}

    async def test_progress_token_is_sent_only_with_a_callback(self) -> None:
        server = StreamingServer()

        async def ignore(progress: Progress) -> None:
            pass

        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            await client.call_tool("plain", {"a": 1})
            await client.call_tool("tracked", {"a": 1}, progress=ignore)
        plain, tracked = (m for m in server.received if m.get("method") == "tools/call")
        assert "_meta" not in plain["params"]
        assert tracked["params"]["_meta"] == {"progressToken": tracked["id"]}
        assert tracked["params"]["arguments"] == {"a": 1}

    async def test_progress_callback_may_call_tools_with_progress(self) -> None:
        """A callback runs on the notification worker; a call it makes must not wait for
        that (busy) worker to deliver its own progress."""
        inner: list[float] = []
        outer: list[float] = []
        inner_done = anyio.Event()

        async with (
            serve(StrictServer(json_response=False)) as running,
            resilient_mcp.connect(running.url) as client,
        ):

            async def on_inner(progress: Progress) -> None:
                inner.append(progress.progress)
                if progress.progress == 2:
                    inner_done.set()

            async def on_outer(progress: Progress) -> None:
                outer.append(progress.progress)
                if progress.progress == 1:
                    await client.call_tool("progress", {"steps": 2}, progress=on_inner)

            with anyio.fail_after(5):
                await client.call_tool("progress", {"steps": 2}, progress=on_outer)
                assert outer == [1, 2]
                # The nested call's progress is handled once the worker is free again.
                await inner_done.wait()
        assert inner == [1, 2]

    async def test_raising_progress_callback_does_not_fail_the_call(self) -> None:
        async def broken(progress: Progress) -> None:
            raise RuntimeError("callback bug")

        async with (
            serve(StrictServer(json_response=False)) as running,
            resilient_mcp.connect(running.url) as client,
        ):
            done = await client.call_tool("progress", {"steps": 3}, progress=broken)
            assert done.text == "completed 3 steps"
            assert (await client.call_tool("echo", {"text": "still fine"})).text == "still fine"


class TestToolsListChanged:
    def tools_lists(self, server: FakeServer) -> int:
        return server.methods().count("tools/list")

    async def test_list_changed_on_the_get_stream_drops_the_cache(self) -> None:
        changed = anyio.Event()

        async def on_any(method: str, params: Mapping[str, Any]) -> None:
            if method == "notifications/tools/list_changed":
                changed.set()

        server = StreamingServer()
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http),
                handlers=Handlers(notification=on_any),
            ) as client,
        ):
            assert [t.name for t in await client.list_tools()] == ["echo"]
            await client.list_tools()
            assert self.tools_lists(server) == 1, "the second listing came from the cache"
            server.push(note("notifications/tools/list_changed"))
            with anyio.fail_after(5):
                await changed.wait()
            await client.list_tools()
            assert self.tools_lists(server) == 2
            await client.list_tools()
            assert self.tools_lists(server) == 2

    async def test_list_changed_inside_a_call_response_drops_the_cache(self) -> None:
        server = StreamingServer()
        server.before_answer["mutate"] = [note("notifications/tools/list_changed")]
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            await client.list_tools()
            await client.call_tool("mutate")
            # Dropped synchronously on arrival: no handler has to run first.
            await client.list_tools()
            assert self.tools_lists(server) == 2

    async def test_list_changed_during_the_fetch_is_not_cached_over(self) -> None:
        server = StreamingServer()
        fetches = 0

        def changing_list(message: dict[str, Any]) -> httpx.Response:
            nonlocal fetches
            fetches += 1
            answer = result(message, {"tools": [{**TOOL, "name": f"v{fetches}"}]})
            if fetches == 1:
                return sse([note("notifications/tools/list_changed"), answer])
            return json_response(answer)

        server.routes["tools/list"] = changing_list
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            assert [t.name for t in await client.list_tools()] == ["v1"]
            assert [t.name for t in await client.list_tools()] == ["v2"]
            assert [t.name for t in await client.list_tools()] == ["v2"]
        assert fetches == 2


class TestGenericHandler:
    async def test_sees_every_notification_in_order_after_the_specific_ones(self) -> None:
        inbox = Inbox()

        async def on_log(message: LoggingMessage) -> None:
            inbox.put(("log", message.data))

        async def on_any(method: str, params: Mapping[str, Any]) -> None:
            inbox.put((method, dict(params)))

        sent = [
            log("a"),
            note("notifications/progress", progressToken=999, progress=1),
            note("notifications/tools/list_changed"),
            note("notifications/resources/updated", uri="memo://x"),
            note("notifications/prompts/list_changed"),
            note("notifications/vendor/custom", anything=[1, 2]),
        ]
        server = StreamingServer()
        server.before_answer["work"] = sent[:3]
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http),
                handlers=Handlers(log=on_log, notification=on_any),
            ) as c,
        ):
            await c.call_tool("work")
            server.push(*sent[3:])
            got = await inbox.take(len(sent) + 1)
        assert got == [
            ("log", "a"),
            *((m["method"], m["params"]) for m in sent),
        ]

    async def test_order_is_preserved_across_many_notifications(self) -> None:
        inbox = Inbox()

        async def on_log(message: LoggingMessage) -> None:
            await anyio.lowlevel.checkpoint()  # yield between messages: order must hold
            inbox.put(message.data)

        server = StreamingServer()
        server.before_answer["burst"] = [log(i) for i in range(100)]
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http), handlers=Handlers(log=on_log)
            ) as c,
        ):
            await c.call_tool("burst")
            server.push(*(log(i) for i in range(100, 200)))
            got = await inbox.take(200)
        assert got == list(range(200))


class TestBrokenHandlers:
    async def test_raising_handlers_do_not_break_the_session(self) -> None:
        inbox = Inbox()

        async def broken_log(message: LoggingMessage) -> None:
            raise RuntimeError(f"log handler bug on {message.data}")

        async def flaky_any(method: str, params: Mapping[str, Any]) -> None:
            inbox.put(method)
            if method == "notifications/tools/list_changed":
                raise ValueError("generic handler bug")

        server = StreamingServer()
        server.before_answer["work"] = [log(1), note("notifications/tools/list_changed")]
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http),
                handlers=Handlers(log=broken_log, notification=flaky_any),
            ) as c,
        ):
            await c.call_tool("work")
            # The log handler's failure does not hide the message from the generic
            # handler, and the generic handler's own failure is contained as well.
            assert await inbox.take(2) == [
                "notifications/message",
                "notifications/tools/list_changed",
            ]
            # Later notifications, from either channel, still get through; calls still work.
            server.push(note("notifications/resources/list_changed"))
            assert await inbox.take(1) == ["notifications/resources/list_changed"]
            assert (await c.call_tool("work")).text == "work"
            assert await inbox.take(2) == [
                "notifications/message",
                "notifications/tools/list_changed",
            ]
            assert c.state is resilient_mcp.SessionState.READY

    async def test_malformed_notification_params_are_contained(self) -> None:
        inbox = Inbox()

        async def on_log(message: LoggingMessage) -> None:
            inbox.put(message.data)

        server = StreamingServer()
        server.before_answer["work"] = [
            {"jsonrpc": "2.0", "method": "notifications/message", "params": "not an object"},
            note("notifications/message", data="no level"),
            log("good"),
        ]
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http), handlers=Handlers(log=on_log)
            ) as c,
        ):
            assert (await c.call_tool("work")).text == "work"
            assert await inbox.take(1) == ["good"]
