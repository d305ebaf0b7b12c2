"""Few short exchanges at a time; a long one hands its slot on instead of blocking others."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

import resilient_mcp
from resilient_mcp import Limits
from resilient_mcp._transports.admission import Admission

from .fake import FakeServer, json_response, result

pytestmark = pytest.mark.anyio


class TestAdmission:
    """The admission queue itself."""

    async def test_limit_and_fifo_order(self) -> None:
        admission = Admission(2, long_after=60)
        order: list[int] = []
        first = await admission.acquire()
        second = await admission.acquire()

        async def wait(i: int) -> None:
            ticket = await admission.acquire()
            order.append(i)
            admission.release(ticket)

        async with anyio.create_task_group() as tg:
            admission.bind(tg)
            for i in range(3):
                # One at a time: trio does not start tasks in the order they were spawned.
                tg.start_soon(wait, i)
                await anyio.wait_all_tasks_blocked()
            assert order == [], "nobody gets in while both slots are held"
            # One slot back: the waiters take it in arrival order, each handing it on.
            admission.release(first)
            await anyio.wait_all_tasks_blocked()
            assert order == [0, 1, 2]
            admission.release(second)
            admission.release(second)  # releasing twice gives back one slot only
            tg.cancel_scope.cancel()
        assert "free=2" in repr(admission)

    async def test_long_exchange_hands_its_slot_on(self) -> None:
        admission = Admission(1, long_after=0.05)
        admitted = anyio.Event()

        async def second() -> None:
            ticket = await admission.acquire()
            admitted.set()
            admission.release(ticket)

        async with anyio.create_task_group() as tg:
            admission.bind(tg)  # the watcher runs there while someone waits
            long = await admission.acquire()
            tg.start_soon(second)
            with anyio.fail_after(5):
                await admitted.wait()  # while the long one is still in flight
            assert long.holds_slot is False
            admission.release(long)  # finishing late gives back nothing twice
            await anyio.wait_all_tasks_blocked()
            # Nobody waits any more: the watcher is gone (the task group would not end
            # on its own otherwise).
        assert "free=1" in repr(admission)


class TestSlowCallsDoNotStarveOthers:
    """Through the client: a slow tool call does not hold the only slot for ever."""

    async def test_short_call_passes_a_long_one(self) -> None:
        server = FakeServer()
        release = anyio.Event()

        async def route(message: dict[str, Any]) -> httpx.Response:
            if message["params"]["name"] == "slow":
                await release.wait()
            return json_response(result(message, {"content": [{"type": "text", "text": "ok"}]}))

        server.routes["tools/call"] = route
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer("http://127.0.0.1:1/mcp", http_client=http),
                limits=Limits(max_connections=1, long_request=0.05),
            ) as client,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(client.call_tool, "slow")
            with anyio.fail_after(5):
                assert (await client.call_tool("quick")).text == "ok"
            release.set()
