"""Few short exchanges at a time; a long one hands its slot on instead of blocking others."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest

import resilient_mcp
from resilient_mcp import Limits
from resilient_mcp._transports.admission import Admission
from resilient_mcp.testing import Chaos, StrictServer, serve

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

    async def test_slots_made_on_demand_hold_the_limit_under_concurrency(self) -> None:
        # The semaphore is dropped whenever every slot is back and made again by the next
        # exchange: a slot given back while another task is inside acquire (whose fast
        # path yields before it takes the slot) must not let a third slot appear.
        admission = Admission(2, long_after=3600)
        in_flight = peak = 0

        async def exchange() -> None:
            nonlocal in_flight, peak
            for _ in range(20):
                ticket = await admission.acquire()
                in_flight += 1
                peak = max(peak, in_flight)
                await anyio.lowlevel.checkpoint()
                in_flight -= 1
                admission.release(ticket)
                lane = await admission.acquire_priority()
                admission.release(lane)

        async with anyio.create_task_group() as host:
            admission.bind(host)  # the watcher's (it sleeps until the oldest deadline)
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(exchange)
            host.cancel_scope.cancel()
        assert peak == 2
        assert admission.in_flight == 0
        assert "free=2" in repr(admission)
        assert "lane=2" in repr(admission)
        # Idle again: nothing held for a session that sends nothing.
        assert admission._slots is None
        assert admission._lane is None
        assert admission._oldest is None, "released holders are not kept"

    async def test_priority_lane_skips_the_fifo_and_is_bounded(self) -> None:
        admission = Admission(1, long_after=3600, lane=2)
        held = await admission.acquire()
        queued: list[str] = []

        async def ordinary() -> None:
            admission.release(await admission.acquire())
            queued.append("ordinary")

        async def priority(name: str) -> None:
            ticket = await admission.acquire_priority()
            queued.append(name)
            await release.wait()
            admission.release(ticket)

        release = anyio.Event()
        async with anyio.create_task_group() as tg:
            admission.bind(tg)
            tg.start_soon(ordinary)
            await anyio.wait_all_tasks_blocked()
            for name in ("p1", "p2", "p3"):
                tg.start_soon(priority, name)
                await anyio.wait_all_tasks_blocked()
            # Two lane slots: two priority messages pass the queued call, the third waits
            # (a burst cannot take a connection each).
            assert queued == ["p1", "p2"]
            release.set()
            await anyio.wait_all_tasks_blocked()
            assert queued == ["p1", "p2", "p3"], "the ordinary call still waits"
            admission.release(held)
            await anyio.wait_all_tasks_blocked()
            assert queued[-1] == "ordinary"
            tg.cancel_scope.cancel()  # the watcher's timer for the held slot
        assert "free=1" in repr(admission)
        assert "lane=2" in repr(admission)

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


class Hold(httpx.AsyncBaseTransport):
    """Real HTTP to a StrictServer, except that ``echo`` calls whose text is "slow" are
    held after admission, before they reach the server, until ``release`` is set: each
    holds its admission slot as a slow tool call would."""

    def __init__(self) -> None:
        self._real = httpx.AsyncHTTPTransport()
        self.release = anyio.Event()
        self.held = 0
        self._arrived = anyio.Event()

    async def wait_held(self, count: int) -> None:
        while self.held < count:
            self._arrived = anyio.Event()
            await self._arrived.wait()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        message = json.loads(request.content) if request.method == "POST" else {}
        params = message.get("params") or {}
        if params.get("name") == "echo" and params.get("arguments", {}).get("text") == "slow":
            self.held += 1
            self._arrived.set()
            await self.release.wait()
        return await self._real.handle_async_request(request)

    async def aclose(self) -> None:
        await self._real.aclose()


class TestRecoveryFirst:
    """Issue 10: a lost session is replaced before anything else goes out."""

    async def test_rehandshake_does_not_wait_for_a_saturated_pool(self) -> None:
        """Both slots held by slow calls: the new handshake still goes out at once."""
        hold = Hold()
        server = StrictServer()
        async with (
            httpx.AsyncClient(transport=hold) as http,
        ):
            with serve(server) as running:
                async with (
                    resilient_mcp.connect(
                        resilient_mcp.HTTPServer(running.url, http_client=http),
                        limits=Limits(max_connections=2, long_request=3600),
                    ) as client,
                    anyio.create_task_group() as tg,
                ):
                    for _ in range(2):
                        tg.start_soon(client.call_tool, "echo", {"text": "slow"})
                    with anyio.fail_after(10):
                        await hold.wait_held(2)
                    session = client._session
                    session.recover(session.generation, "test")
                    with anyio.fail_after(10):
                        await session.wait_ready(anyio.current_time() + 10)
                    assert server.stats.initialize_requests == 2
                    # python-sdk-2 sends the 202 first and counts `initialized` after it.
                    processed = await anyio.to_thread.run_sync(server.wait_for_initialized, 2)
                    assert processed
                    assert server.stats.tool_calls["echo"] == 0, "the slow calls still hold"
                    hold.release.set()
            # The slow calls went to the lost session: each was refused and re-sent.
            assert server.stats.tool_calls["echo"] == 2

    async def test_queued_requests_are_not_sent_to_a_lost_session(self) -> None:
        """Side-effecting calls queued for a slot when the session is lost are held for
        the new one: never sent to the old one, and each runs exactly once."""
        hold = Hold()
        server = StrictServer()
        keys = [f"k{i}" for i in range(3)]
        async with httpx.AsyncClient(transport=hold) as http:
            with serve(server) as running:
                async with resilient_mcp.connect(
                    resilient_mcp.HTTPServer(running.url, http_client=http),
                    limits=Limits(max_connections=1, long_request=3600),
                ) as client:
                    with anyio.fail_after(30):
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(client.call_tool, "echo", {"text": "slow"})
                            await hold.wait_held(1)
                            for key in keys:
                                tg.start_soon(client.call_tool, "increment", {"key": key})
                            await anyio.wait_all_tasks_blocked()  # all three wait for the slot
                            assert len(client._session.rpc) == 4
                            server.restart()  # every session lost
                            hold.release.set()  # the slow call meets the loss (404)
                        # (every call ended: the task group waited for them)
                stats = server.stats
                assert stats.http_rejections[404] == 1, "only the slow call met the lost session"
                assert {key: stats.executions[key] for key in keys} == dict.fromkeys(keys, 1)
                assert stats.sessions_created == 2


def _admission(client: resilient_mcp.Client) -> Admission:
    admission = client._session.transport._admission  # type: ignore[attr-defined]
    assert isinstance(admission, Admission)
    return admission


async def _calls(client: resilient_mcp.Client, callers: int, each: int) -> int:
    """``callers`` concurrent callers, ``each`` echo calls apiece; how many failed."""
    failed = 0

    async def caller() -> None:
        nonlocal failed
        for _ in range(each):
            try:
                await client.call_tool("echo", {"text": "hi"})
            except resilient_mcp.MCPError:
                failed += 1

    async with anyio.create_task_group() as tg:
        for _ in range(callers):
            tg.start_soon(caller)
    return failed


ADAPTIVE = Limits(max_connections=64, min_connections=4)


class TestAdaptiveLimit:
    """Issue 13: the limit follows the server; asserted on the limiter's state only."""

    async def test_grows_above_eight_with_a_slow_server_and_32_callers(self) -> None:
        server = StrictServer(chaos=Chaos(latency=(0.02, 0.02)))
        with serve(server) as running:
            async with resilient_mcp.connect(running.url, limits=ADAPTIVE) as client:
                assert await _calls(client, 32, 4) == 0
                stats = _admission(client).stats
        assert stats.samples >= 100, "every answered call is a latency sample"
        assert stats.peak > 8, stats
        assert stats.increases >= 1
        assert stats.backoffs == 0

    async def test_a_burst_of_503s_shrinks_it(self) -> None:
        server = StrictServer(chaos=Chaos(seed=13, latency=(0.02, 0.02), reject_rate=0.2))
        with serve(server) as running:
            async with resilient_mcp.connect(running.url, limits=ADAPTIVE) as client:
                await _calls(client, 32, 2)  # a call refused three times fails: not asserted
                admission = _admission(client)
                stats = admission.stats
                assert admission.in_flight == 0
        assert running.stats.http_rejections[503] > 0
        # Each refusal of an ordinary exchange is a signal (the priority lane's are not).
        assert 1 <= stats.overloads <= running.stats.http_rejections[503]
        assert stats.backoffs >= 1
        assert stats.lowest < 8, stats

    async def test_fixed_when_not_adaptive(self) -> None:
        server = StrictServer(chaos=Chaos(latency=(0.02, 0.02)))
        with serve(server) as running:
            async with resilient_mcp.connect(running.url) as client:  # the default
                assert await _calls(client, 32, 2) == 0
                admission = _admission(client)
        assert admission.limit == 8
        assert admission.stats.peak == 8
        assert admission.stats.samples == 0
