"""What a call costs in time, measured on a virtual clock.

These tests run on trio with ``MockClock(autojump_threshold=0)``: time passes only when
every task is blocked, and then jumps straight to the next deadline. So "the call
returned at t=0.0" means it never waited on a timer, and "it ended at t=1.0" means its
deadline ended it, on any machine however loaded (nothing here measures wall time).
The servers are in-process (``httpx.MockTransport``); their delays are virtual too.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
import trio.testing

import resilient_mcp
from resilient_mcp import Handlers, HTTPServer, Limits, RequestTimeout
from resilient_mcp.types import LoggingMessage, Progress

from .fake import FakeServer, json_response, result

pytestmark = pytest.mark.anyio

URL = "http://127.0.0.1:1/mcp"
MODERN = "2026-07-28"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


def event(message: dict[str, Any]) -> bytes:
    return f"event: message\ndata: {json.dumps(message)}\n\n".encode()


def text(message: dict[str, Any], value: str = "done") -> dict[str, Any]:
    return result(message, {"content": [{"type": "text", "text": value}]})


class TestAnsweredStreamsDoNotHoldTheCaller:
    """A server that keeps its SSE responses open after the answer costs one short grace,
    once per client (the old client waited up to 0.5 s on every call, slot held)."""

    async def test_the_grace_is_paid_once_per_client(self) -> None:
        held = anyio.Event()

        def open_ended(message: dict[str, Any]) -> httpx.Response:
            async def body() -> AsyncIterator[bytes]:
                yield event(text(message, message["params"]["name"]))
                await held.wait()  # the stream stays open after the answer

            return httpx.Response(
                200, content=body(), headers={"content-type": "text/event-stream"}
            )

        server = FakeServer(routes={"tools/call": open_ended})
        async with (
            server.client() as http,
            resilient_mcp.connect(
                HTTPServer(URL, http_client=http), era="legacy", limits=Limits(max_connections=1)
            ) as client,
        ):
            started = anyio.current_time()
            assert (await client.call_tool("first")).text == "first"
            grace = anyio.current_time() - started
            assert 0 < grace <= 0.25  # (the old client spent 0.5 s here, on every call)
            for name in ("second", "third"):
                assert (await client.call_tool(name)).text == name
            assert anyio.current_time() - started == grace  # nothing more after the first
            held.set()


class TestOneDeadlinePerCall:
    """Everything a call does runs under the deadline it started with."""

    async def test_input_required_rounds_share_the_call_deadline(self) -> None:
        rounds = 0

        async def modern(request: httpx.Request) -> httpx.Response:
            nonlocal rounds
            message = json.loads(request.content)
            if message["method"] == "server/discover":
                return json_response(
                    result(message, {"supportedVersions": [MODERN], "capabilities": {}})
                )
            # Each round takes 0.4 s; ten of them fit in ten fresh 1 s deadlines, but
            # not in one.
            await anyio.sleep(0.4)
            rounds += 1
            return json_response(
                result(message, {"resultType": "input_required", "requestState": str(rounds)})
            )

        async with (
            httpx.AsyncClient(transport=httpx.MockTransport(modern)) as http,
            resilient_mcp.connect(HTTPServer(URL, http_client=http)) as client,
        ):
            assert client.era == "modern"
            started = anyio.current_time()
            with pytest.raises(RequestTimeout):
                await client.call_tool("slow", timeout=1.0)
            assert anyio.current_time() - started == pytest.approx(1.0)
            assert rounds == 2  # the third round was still in flight at the deadline

    async def test_the_header_mismatch_relist_shares_the_call_deadline(self) -> None:
        calls = 0

        async def modern(request: httpx.Request) -> httpx.Response:
            nonlocal calls
            message = json.loads(request.content)
            method = message["method"]
            if method == "server/discover":
                return json_response(
                    result(message, {"supportedVersions": [MODERN], "capabilities": {}})
                )
            if method == "subscriptions/listen":
                await anyio.sleep_forever()  # the cached list's invalidation stream
            if method == "tools/list":
                await anyio.sleep(0.6)
                return json_response(
                    result(message, {"tools": [{"name": "t", "inputSchema": {"type": "object"}}]})
                )
            calls += 1
            if calls == 1:
                error = {"code": -32020, "message": "header mismatch"}
                return json_response(
                    {"jsonrpc": "2.0", "id": message["id"], "error": error}, status=400
                )
            await anyio.sleep(0.6)
            return json_response(text(message))

        async with (
            httpx.AsyncClient(transport=httpx.MockTransport(modern)) as http,
            resilient_mcp.connect(HTTPServer(URL, http_client=http)) as client,
        ):
            started = anyio.current_time()
            with pytest.raises(RequestTimeout):
                await client.call_tool("t", timeout=1.0)
            assert anyio.current_time() - started == pytest.approx(1.0)
            assert calls == 2  # re-listed, sent again, and cut at the call's deadline


class TestAnswersToTheServerJumpTheQueue:
    """The client's answers to server requests never wait for an admission slot."""

    async def test_a_call_waiting_for_our_answers_does_not_wait_for_its_own_slot(
        self,
    ) -> None:
        pings = 200
        answered = anyio.Event()
        got = 0

        class Server(FakeServer):
            async def handle(self, request: httpx.Request) -> httpx.Response:
                nonlocal got
                if request.method == "POST":
                    message = json.loads(request.content)
                    if "method" not in message:  # one of our answers
                        got += 1
                        if got == pings:
                            answered.set()
                        return httpx.Response(202)
                return await super().handle(request)

        def asks(message: dict[str, Any]) -> httpx.Response:
            async def body() -> AsyncIterator[bytes]:
                for i in range(pings):
                    yield event({"jsonrpc": "2.0", "id": f"p{i}", "method": "ping"})
                await answered.wait()  # the tool finishes once every ping was answered
                yield event(text(message))

            return httpx.Response(
                200, content=body(), headers={"content-type": "text/event-stream"}
            )

        server = Server(routes={"tools/call": asks})
        async with (
            server.client() as http,
            resilient_mcp.connect(
                HTTPServer(URL, http_client=http), era="legacy", limits=Limits(max_connections=1)
            ) as client,
        ):
            started = anyio.current_time()
            assert (await client.call_tool("busy")).text == "done"
            # Not a second of waiting for `long_request` to hand the only slot on.
            assert anyio.current_time() - started == 0.0
            assert (await client.call_tool("next")).text == "done"
            assert anyio.current_time() - started == 0.0


class TestProgressCallbacksRunInTheirCall:
    """A call's progress callback runs under that call's deadline, and only its call
    waits for it."""

    @staticmethod
    def progressing(message: dict[str, Any]) -> httpx.Response:
        token = message["params"].get("_meta", {}).get("progressToken")
        notes: list[dict[str, Any]] = []
        if token is not None:
            notes.append(
                {
                    "jsonrpc": "2.0",
                    "method": "notifications/progress",
                    "params": {"progressToken": token, "progress": 1},
                }
            )
        if message["params"]["name"] == "logs":
            log = {"level": "info", "logger": "srv", "data": "hello"}
            notes.append({"jsonrpc": "2.0", "method": "notifications/message", "params": log})
        body = b"".join(event(note) for note in [*notes, text(message)])
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    async def test_a_stuck_callback_cannot_hold_a_call_past_its_timeout(self) -> None:
        async def stuck(progress: Progress) -> None:
            await anyio.sleep_forever()

        server = FakeServer(routes={"tools/call": self.progressing})
        async with (
            server.client() as http,
            resilient_mcp.connect(HTTPServer(URL, http_client=http), era="legacy") as client,
        ):
            started = anyio.current_time()
            # The answer came in time: it is returned at the deadline, the callback cut.
            with anyio.fail_after(5):  # (only if the call ignored its own deadline)
                result = await client.call_tool("work", timeout=0.5, progress=stuck)
            assert result.text == "done"
            assert anyio.current_time() - started == pytest.approx(0.5)

    async def test_a_stuck_callback_stalls_no_other_notification(self) -> None:
        heard = anyio.Event()

        async def stuck(progress: Progress) -> None:
            await anyio.sleep_forever()

        async def on_log(message: LoggingMessage) -> None:
            heard.set()

        server = FakeServer(routes={"tools/call": self.progressing})
        async with (
            server.client() as http,
            resilient_mcp.connect(
                HTTPServer(URL, http_client=http), era="legacy", handlers=Handlers(log=on_log)
            ) as client,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(lambda: client.call_tool("work", timeout=None, progress=stuck))
            await anyio.wait_all_tasks_blocked()
            started = anyio.current_time()
            assert (await client.call_tool("logs")).text == "done"
            with anyio.fail_after(5):
                await heard.wait()
            assert anyio.current_time() - started == 0.0
            tg.cancel_scope.cancel()
