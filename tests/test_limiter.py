"""The adaptive admission limit: its arithmetic on synthetic samples, and admission
driven by a fake clock (no sleeps, no timing: every latency here is made up)."""

from __future__ import annotations

import anyio
import pytest

from resilient_mcp import Limits, UsageError
from resilient_mcp._transports.admission import Admission, Ticket
from resilient_mcp._transports.limiter import (
    MIN_WINDOW,
    START_LIMIT,
    GradientLimit,
    limiter_for,
)


def feed(limiter: GradientLimit, latency: float, windows: int, *, used: int | None = None) -> None:
    """``windows`` full windows of samples of ``latency``, each using the whole limit
    (or ``used`` slots)."""
    for _ in range(windows):
        for _ in range(max(limiter.limit, MIN_WINDOW)):
            limiter.sample(latency, limiter.limit if used is None else used)


class TestGradientLimit:
    def test_grows_while_latency_holds_up_to_the_ceiling(self) -> None:
        limiter = GradientLimit(floor=2, ceiling=40)
        assert limiter.limit == START_LIMIT
        seen = [limiter.limit]
        for _ in range(20):
            feed(limiter, 0.020, 1)
            seen.append(limiter.limit)
        assert seen == sorted(seen), "steady latency never shrinks the limit"
        assert seen[3] > START_LIMIT
        assert limiter.limit == 40, "and the ceiling holds"
        assert limiter.stats.peak == 40
        assert limiter.stats.increases >= 4
        assert limiter.stats.decreases == 0

    def test_shrinks_when_latency_rises_down_to_the_floor(self) -> None:
        limiter = GradientLimit(floor=12, ceiling=64)
        feed(limiter, 0.020, 6)
        grown = limiter.limit
        assert grown > 16
        feed(limiter, 0.060, 1)  # three times slower than the baseline
        assert limiter.limit < grown
        assert limiter.stats.decreases == 1
        feed(limiter, 0.200, 40)
        assert limiter.limit == 12, "the floor holds"
        assert limiter.stats.lowest == 12

    def test_a_server_slower_for_good_is_not_held_to_its_best_day(self) -> None:
        """The baseline creeps up: after long enough at a new, steady latency the
        limit grows again instead of staying at its low."""
        limiter = GradientLimit(floor=1, ceiling=64)
        feed(limiter, 0.020, 6)
        feed(limiter, 0.200, 20)
        low = limiter.limit
        feed(limiter, 0.200, 1500)
        assert limiter.limit > low

    def test_settles_where_latency_grows_with_the_limit(self) -> None:
        """A server that is the bottleneck: latency proportional to the limit. The limit
        neither runs to the ceiling nor collapses to the floor."""
        limiter = GradientLimit(floor=1, ceiling=1000)
        for _ in range(100):
            feed(limiter, 0.001 * limiter.limit, 1)
        assert 8 <= limiter.limit <= 40
        assert limiter.stats.decreases > 0

    def test_an_idle_client_earns_no_headroom(self) -> None:
        limiter = GradientLimit(floor=1, ceiling=64)
        feed(limiter, 0.020, 20, used=2)  # two callers: a quarter of the limit
        assert limiter.limit == START_LIMIT

    def test_overload_halves_once_per_epoch(self) -> None:
        limiter = GradientLimit(floor=2, ceiling=64)
        feed(limiter, 0.020, 6)
        before, epoch = limiter.limit, limiter.epoch
        for _ in range(30):  # a burst of 503s, all sent under the old limit
            limiter.overload(epoch)
        assert limiter.limit == before // 2
        assert limiter.stats.overloads == 30
        assert limiter.stats.backoffs == 1
        # A refusal of an exchange sent after the backoff, in a new window, counts.
        feed(limiter, 0.020, 1)
        limiter.overload(limiter.epoch)
        assert limiter.stats.backoffs == 2
        assert limiter.limit < before // 2
        for _ in range(20):
            feed(limiter, 0.020, 1)
            limiter.overload(limiter.epoch)
        assert limiter.limit == 2, "the floor holds"

    def test_latency_recovers_the_limit_after_an_overload(self) -> None:
        limiter = GradientLimit(floor=2, ceiling=64)
        limiter.overload(limiter.epoch)
        assert limiter.limit == START_LIMIT // 2
        feed(limiter, 0.020, 10)
        assert limiter.limit > START_LIMIT

    def test_fixed_when_not_adaptive(self) -> None:
        limiter = GradientLimit(floor=1, ceiling=8, adaptive=False)
        feed(limiter, 0.020, 5)
        limiter.overload(limiter.epoch)
        feed(limiter, 2.0, 5)
        assert limiter.limit == 8
        assert limiter.stats.samples == 0

    def test_bounds_are_checked(self) -> None:
        with pytest.raises(ValueError):
            GradientLimit(floor=5, ceiling=4)
        with pytest.raises(ValueError):
            GradientLimit(floor=0, ceiling=4)


class TestLimits:
    def test_the_default_is_the_fixed_limit_of_earlier_releases(self) -> None:
        limiter = limiter_for(Limits())
        assert (limiter.floor, limiter.ceiling, limiter.adaptive) == (8, 8, False)

    def test_adapts_between_the_floor_and_the_ceiling(self) -> None:
        limiter = limiter_for(Limits(max_connections=64, min_connections=4))
        assert (limiter.floor, limiter.ceiling, limiter.adaptive) == (4, 64, True)
        assert limiter.limit == START_LIMIT

    def test_a_raised_ceiling_alone_adapts_from_eight(self) -> None:
        limiter = limiter_for(Limits(max_connections=32))
        assert (limiter.floor, limiter.ceiling, limiter.adaptive) == (8, 32, True)

    def test_a_small_ceiling_caps_the_floor_and_the_start(self) -> None:
        limiter = limiter_for(Limits(max_connections=2))
        assert (limiter.floor, limiter.ceiling, limiter.limit) == (2, 2, 2)

    def test_fixed(self) -> None:
        limiter = limiter_for(Limits(max_connections=8, min_connections=8))
        assert (limiter.limit, limiter.adaptive) == (8, False)

    def test_min_connections_is_validated(self) -> None:
        with pytest.raises(UsageError):
            Limits(min_connections=0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.anyio
class TestAdaptiveAdmission:
    """Admission resizing its slots as the limiter decides, driven by a fake clock."""

    async def _acquire(self, admission: Admission, n: int) -> list[Ticket]:
        return [await admission.acquire() for _ in range(n)]

    async def test_samples_grow_the_slots_and_waiters_go_in_fifo_order(self) -> None:
        clock = FakeClock()
        admission = Admission(GradientLimit(floor=1, ceiling=32), long_after=3600, clock=clock)
        held = await self._acquire(admission, START_LIMIT)
        assert admission.in_flight == START_LIMIT
        order: list[int] = []
        tickets: list[Ticket] = []

        async def wait(i: int) -> None:
            ticket = await admission.acquire()
            order.append(i)
            tickets.append(ticket)

        async with anyio.create_task_group() as tg:
            admission.bind(tg)
            for i in range(6):
                tg.start_soon(wait, i)
                await anyio.wait_all_tasks_blocked()
            assert order == []
            # A window of answers as fast as ever, from a full limit: the limit grows
            # and the new slots go to the waiters, first come first served.
            clock.now += 0.020
            for ticket in held:
                admission.completed(ticket)
            await anyio.wait_all_tasks_blocked()
            assert admission.limit > START_LIMIT
            grown = admission.limit - START_LIMIT
            # The first to come got the new slots (trio runs woken tasks in any order).
            assert sorted(order) == list(range(min(6, grown)))
            assert admission.in_flight == min(admission.limit, START_LIMIT + 6)
            for ticket in held + tickets:
                admission.release(ticket)
            await anyio.wait_all_tasks_blocked()
            assert sorted(order) == list(range(6)), "nobody starves"
            for ticket in tickets[len(tickets) :]:
                admission.release(ticket)
            tg.cancel_scope.cancel()
        for ticket in tickets:
            admission.release(ticket)
        assert admission.in_flight == 0
        assert f"free={admission.limit}" in repr(admission)

    async def test_a_shrinking_limit_drains_the_exchanges_in_flight(self) -> None:
        clock = FakeClock()
        admission = Admission(GradientLimit(floor=1, ceiling=32), long_after=3600, clock=clock)
        held = await self._acquire(admission, START_LIMIT)
        admitted: list[int] = []

        async def wait(i: int) -> None:
            ticket = await admission.acquire()
            admitted.append(i)
            await anyio.sleep_forever()
            admission.release(ticket)  # pragma: no cover - cancelled

        async with anyio.create_task_group() as tg:
            admission.bind(tg)
            for i in range(3):
                tg.start_soon(wait, i)
                await anyio.wait_all_tasks_blocked()
            # A 503: half the limit, while all eight slots are held. Nothing is taken
            # from a holder; the next four slots given back go away.
            admission.answered(held[0], 503)
            assert admission.limit == START_LIMIT // 2
            assert admission.stats.backoffs == 1
            # The other refusals of that burst were sent under the old limit.
            for ticket in held[1:]:
                admission.answered(ticket, 503)
            assert admission.limit == START_LIMIT // 2
            for ticket in held[:4]:
                admission.release(ticket)
            await anyio.wait_all_tasks_blocked()
            assert admitted == [], "four in flight: the new limit"
            assert admission.in_flight == 4
            admission.release(held[4])
            await anyio.wait_all_tasks_blocked()
            assert admitted == [0], "one slot back, one waiter in (FIFO)"
            assert admission.in_flight == 4
            tg.cancel_scope.cancel()

    async def test_free_slots_are_withdrawn_at_once(self) -> None:
        admission = Admission(GradientLimit(floor=1, ceiling=32), long_after=3600)
        ticket = await admission.acquire()
        admission.refused(ticket)  # a refused connection
        admission.release(ticket)
        assert admission.limit == START_LIMIT // 2
        assert f"free={START_LIMIT // 2}" in repr(admission)
        tickets = await self._acquire(admission, START_LIMIT // 2)
        assert admission._slots is not None  # made on demand, held while slots are
        with pytest.raises(anyio.WouldBlock):
            admission._slots.acquire_nowait()
        for ticket in tickets:
            admission.release(ticket)

    async def test_the_priority_lane_does_not_adapt(self) -> None:
        admission = Admission(GradientLimit(floor=1, ceiling=32), long_after=3600, lane=2)
        held = await self._acquire(admission, START_LIMIT)
        admission.answered(held[0], 429)
        assert admission.limit == START_LIMIT // 2
        # Every ordinary slot held, more than the limit: the lane still lets two in.
        with anyio.fail_after(5):
            first = await admission.acquire_priority()
            second = await admission.acquire_priority()
        admission.answered(first, 503)  # a lane message's refusal is no signal
        admission.completed(second)
        assert admission.stats.overloads == 1
        admission.release(first)
        admission.release(second)
        for ticket in held:
            admission.release(ticket)

    async def test_long_hand_off_still_works_after_the_limit_shrank(self) -> None:
        # Real time here: the watcher's timer is anyio's (long_after is short).
        admission = Admission(GradientLimit(floor=1, ceiling=3), long_after=0.05)
        assert admission.limit == 3
        admitted = anyio.Event()

        async def waiter() -> None:
            ticket = await admission.acquire()
            admitted.set()
            admission.release(ticket)

        async with anyio.create_task_group() as tg:
            admission.bind(tg)
            long, first, second = await self._acquire(admission, 3)
            admission.refused(first)  # the limit falls to 1, all three slots held
            assert admission.limit == 1
            tg.start_soon(waiter)
            admission.release(first)
            admission.release(second)  # both withdrawn: the long one holds the limit
            with anyio.fail_after(5):
                await admitted.wait()  # the long one was handed on
            assert long.holds_slot is False
            admission.completed(long)  # a handed-on (long) exchange is no sample
            assert admission.stats.samples == 0
            admission.release(long)
        assert admission.in_flight == 0
        assert "free=1" in repr(admission)

    async def test_long_hand_off_still_works_while_the_limit_grows(self) -> None:
        admission = Admission(GradientLimit(floor=1, ceiling=32), long_after=0.05)
        first_in, second_in = anyio.Event(), anyio.Event()

        async def waiter(event: anyio.Event) -> None:
            ticket = await admission.acquire()
            event.set()
            await anyio.sleep_forever()
            admission.release(ticket)  # pragma: no cover - cancelled

        async with anyio.create_task_group() as tg:
            admission.bind(tg)
            held = await self._acquire(admission, START_LIMIT)
            tg.start_soon(waiter, first_in)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(waiter, second_in)
            await anyio.wait_all_tasks_blocked()
            feed(admission._limiter, 0.010, 1)
            admission._resize()
            grown = admission.limit - START_LIMIT
            assert grown >= 2
            await anyio.wait_all_tasks_blocked()
            assert first_in.is_set()
            assert second_in.is_set()
            third_in = anyio.Event()
            for _ in range(grown - 2):
                tg.start_soon(waiter, anyio.Event())
                await anyio.wait_all_tasks_blocked()
            tg.start_soon(waiter, third_in)  # every slot of the grown limit is held
            with anyio.fail_after(5):
                await third_in.wait()  # the oldest holder ran long: its slot went on
            assert held[0].holds_slot is False
            tg.cancel_scope.cancel()
