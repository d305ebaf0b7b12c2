"""Admission control for HTTP exchanges: few short ones at a time, long ones never block.

Why: httpcore's connection pool does work proportional to its connections (and to its
queue) on every request; on a 2-core machine 32 callers on 32 connections reach about
half the throughput of 32 callers taking turns on 8, at twice the CPU per call. So we
admit a small number of exchanges at once and queue the rest here, in FIFO order, at
O(1) cost.

But a small limit must not let a few slow tool calls (minutes of work, a stream of
progress) starve everything else. An exchange still in flight ``long_after`` seconds
after it was admitted stops counting: its slot goes to the next waiter (and the pool
opens another connection if it has to).

Handing slots on takes a timer, run by a watcher task that exists only while callers
wait for a slot: an idle client runs none, and a closed one leaves nothing behind.
(Waiters that watched the clock themselves were tried: every slot handed on then woke a
second task to re-arm a timer, which cost ~5 % CPU per call under contention.)

Messages the caller marks as priority (the handshake, cancellations, the tool list a call
whose fate is unknown needs to learn whether it may be re-sent) never wait in that
FIFO: behind eight slow calls a re-handshake would wait for one of them to finish, and
every call parked for the new session with it. They take a slot of a small lane of their
own instead (``lane`` slots, FIFO among themselves). The lane is bounded because what
bypasses admission goes straight to httpx's pool: a burst of cancellations would open a
connection each, up to the pool's own limit, and from then on every exchange (the
handshake too) would queue in httpcore's quadratic queue, which admission exists to
avoid. Separate slots also mean neither kind can starve the other.

How many short exchanges go through at once is not fixed: with a fixed limit, a server
that takes longer per answer caps throughput at ``limit / latency`` however much more it
could take. :class:`~.limiter.GradientLimit` grows the limit while latency holds and
shrinks it when latency rises or the server refuses (429, 503, a refused connection);
the transport reports each exchange's outcome: :meth:`Admission.completed` (the answer
is in), :meth:`Admission.answered` (the status, for 429/503) or
:meth:`Admission.refused`. A shrinking limit never takes a slot from its holder: it
takes free slots first, and the rest as holders give theirs back (``_debt``), so the
exchanges in flight drain down to the new limit. The priority lane
does not adapt: its messages are few, and recovery must not wait for a limit that a
failing server just halved.

An idle admission holds no semaphore and no queue: each ``anyio.Semaphore`` costs ~0.8
KB (its waiter deque), and a process holding thousands of idle sessions holds thousands
of admissions. A semaphore is made by the first exchange and dropped once every slot is
back; the holders are a linked list threaded through the tickets.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import anyio.abc

from .limiter import GradientLimit, LimiterStats

__all__ = ["OVERLOAD_STATUSES", "PRIORITY_LANE", "Admission", "Ticket"]

# Priority lane slots: the handshake is one message at a time, so two let a cancellation
# go out beside it; more would only let a burst of cancellations take more connections.
PRIORITY_LANE = 2
# Answers that say "too much": the server refused before doing anything.
OVERLOAD_STATUSES = frozenset({429, 503})


class Ticket:
    """One admitted exchange. Give it back with :meth:`Admission.release`."""

    __slots__ = ("admitted", "deadline", "epoch", "holds_slot", "in_flight", "lane", "next")

    def __init__(
        self,
        deadline: float,
        *,
        lane: bool = False,
        admitted: float = 0.0,
        epoch: int = 0,
        in_flight: int = 0,
    ) -> None:
        self.deadline = deadline
        self.holds_slot = True
        self.lane = lane  # a priority lane slot (never handed on: its messages are short)
        self.admitted = admitted  # on the admission's clock, for the latency sample
        self.epoch = epoch  # the limiter's, when admitted
        self.in_flight = in_flight  # slots held once this one was taken (itself included)
        self.next: Ticket | None = None  # the next holder admitted after this one


class Admission:
    """A FIFO semaphore whose holders lose their slot once they have held it too long,
    and whose size adapts (see :mod:`.limiter`) when given a :class:`GradientLimit`.

    Args:
        limit: a fixed number of slots, or the limiter that decides it.
        long_after: seconds after which a holder's slot is handed on.
        lane: slots of the priority lane.
        clock: what latency samples are measured with (tests pass a fake one).
    """

    def __init__(
        self,
        limit: int | GradientLimit,
        *,
        long_after: float,
        lane: int = PRIORITY_LANE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(limit, int):
            limit = GradientLimit(floor=limit, ceiling=limit, adaptive=False)
        self._limiter = limit
        self._limit = limit.limit  # the size the slots were last given
        # Made on demand, dropped when full (see the module docstring); None = all free.
        self._slots: anyio.Semaphore | None = None
        # Slots to withdraw as their holders give them back (the limit shrank below the
        # number in flight).
        self._debt = 0
        self._held = 0  # ordinary slots held (handed-on ones no longer count)
        self._lane_size = lane
        self._lane: anyio.Semaphore | None = None  # as _slots
        # Tasks inside each semaphore's acquire (its fast path yields before it takes
        # the slot): while any is, that semaphore is not dropped, full or not.
        self._entering = 0
        self._entering_lane = 0
        self._long_after = long_after
        self._clock = clock
        # Holders in admission order (a list linked through Ticket.next, oldest first);
        # with one fixed delay their deadlines are sorted too.
        self._oldest: Ticket | None = None
        self._newest: Ticket | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._watching = False
        # Set when the queue or the holders change, for a watcher that found no holder.
        self._changed: anyio.Event | None = None

    def __repr__(self) -> str:
        free = self._slots.value if self._slots is not None else self._limit
        lane = self._lane.value if self._lane is not None else self._lane_size
        return (
            f"<Admission limit={self._limit} held={self._held} free={free} "
            f"waiting={self._waiting()} lane={lane}>"
        )

    def _waiting(self) -> int:
        slots = self._slots
        return slots.statistics().tasks_waiting if slots is not None else 0

    @property
    def limit(self) -> int:
        """Ordinary exchanges that may be in flight now."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """Ordinary exchanges holding a slot now (handed-on long ones not counted)."""
        return self._held

    @property
    def stats(self) -> LimiterStats:
        """What the limiter did (its current limit, peak, samples, backoffs...)."""
        return self._limiter.stats

    def bind(self, task_group: anyio.abc.TaskGroup) -> None:
        """Where the watcher runs when callers have to wait (without one, nothing is
        ever handed on: every slot waits for its holder)."""
        self._task_group = task_group

    async def acquire(self) -> Ticket:
        """Wait for a slot (FIFO)."""
        slots = self._slots
        if slots is None:
            slots = self._slots = anyio.Semaphore(self._limit)
        if slots.value == 0 and not self._watching and self._task_group is not None:
            self._watching = True
            self._task_group.start_soon(self._watch)
        self._entering += 1
        try:
            await slots.acquire()
        except BaseException:
            self._entering -= 1
            self._signal()  # one waiter fewer: the watcher may have nothing left to do
            self._drop_if_free()
            raise
        self._entering -= 1
        self._held += 1
        ticket = Ticket(
            anyio.current_time() + self._long_after,
            admitted=self._clock() if self._limiter.adaptive else 0.0,
            epoch=self._limiter.epoch,
            in_flight=self._held,
        )
        if self._newest is None:
            self._oldest = ticket
        else:
            self._newest.next = ticket
        self._newest = ticket
        self._signal()
        return ticket

    async def acquire_priority(self) -> Ticket:
        """Wait for a slot of the priority lane (FIFO among priority messages only)."""
        lane = self._lane
        if lane is None:
            lane = self._lane = anyio.Semaphore(self._lane_size)
        self._entering_lane += 1
        try:
            await lane.acquire()
        except BaseException:
            self._entering_lane -= 1
            self._drop_if_free()
            raise
        self._entering_lane -= 1
        return Ticket(anyio.current_time(), lane=True)

    def _signal(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def answered(self, ticket: Ticket, status: int) -> None:
        """The response headers of ``ticket``'s exchange arrived with ``status``: a 429
        or 503 is an overload signal for the limiter."""
        if status in OVERLOAD_STATUSES:
            self.refused(ticket)

    def completed(self, ticket: Ticket) -> None:
        """``ticket``'s request got its answer: a latency sample for the limiter.

        Only short exchanges are samples: one whose slot was handed on is a long one (a
        tool at work for more than ``long_after``), and priority messages do not adapt.
        The sample runs to the answer, not to the response headers: an SSE response's
        headers come at once, and their delay only measures how busy the server's
        event loop is, which rose long before its throughput did (measured with 20 ms
        of server latency and 32 callers: the limit fell to its floor).
        """
        # A fixed limit (the default) learns nothing: no clock read, no resize, per request.
        if ticket.holds_slot and not ticket.lane and self._limiter.adaptive:
            self._limiter.sample(self._clock() - ticket.admitted, ticket.in_flight)
            self._resize()

    def refused(self, ticket: Ticket) -> None:
        """The server refused ``ticket``'s exchange (429, 503, or the connection)."""
        if ticket.lane or not self._limiter.adaptive:
            return
        self._limiter.overload(ticket.epoch)
        self._resize()

    def _resize(self) -> None:
        """Give the slots the limiter's size."""
        target = self._limiter.limit
        change = target - self._limit
        if change == 0:
            return
        self._limit = target
        if self._slots is None:
            return  # all free (no debt): the next semaphore is made with the new size
        if change > 0:
            paid = min(self._debt, change)
            self._debt -= paid
            for _ in range(change - paid):
                self._slots.release()  # hands the slot to the first waiter, if any
            return
        change = -change
        while change and self._slots.value:
            self._slots.acquire_nowait()  # a free slot: withdrawn at once
            change -= 1
        self._debt += change  # the rest as their holders give them back

    def release(self, ticket: Ticket) -> None:
        """Give the slot back, unless it was already handed on for taking too long."""
        if ticket.holds_slot:
            ticket.holds_slot = False
            if ticket.lane:
                lane = self._lane
                assert lane is not None  # held by the ticket
                lane.release()
                self._drop_if_free()
                return
            self._held -= 1
            self._prune()
            if self._debt:
                self._debt -= 1  # the limit shrank: this slot goes away
                return
            slots = self._slots
            assert slots is not None  # held by the ticket
            slots.release()  # hands the slot to the first waiter, if any
            self._drop_if_free()

    def _drop_if_free(self) -> None:
        """Drop a semaphore whose every slot is back (a slot handed to a waiter keeps
        the value below the size; a full one has no holder and no debt) while nobody is
        inside its acquire."""
        slots, lane = self._slots, self._lane
        if slots is not None and slots.value == self._limit and not self._entering:
            self._slots = None
        if lane is not None and lane.value == self._lane_size and not self._entering_lane:
            self._lane = None

    def _prune(self) -> None:
        """Forget the oldest holders that gave their slot back (kept in order for the
        watcher, they would otherwise pile up while nobody waits)."""
        oldest = self._oldest
        while oldest is not None and not oldest.holds_slot:
            oldest.next, oldest = None, oldest.next
        self._oldest = oldest
        if oldest is None:
            self._newest = None

    async def _watch(self) -> None:
        """Hand on the slots of exchanges that run long, while anyone waits for one."""
        try:
            while self._waiting():
                self._prune()  # finished in time: nothing to do
                if self._oldest is None:
                    # A slot is on its way to a waiter (released, not yet taken up), or
                    # the limit shrank below the slots held: wait for the queue, the
                    # holders or the limit to change.
                    self._changed = anyio.Event()
                    await self._changed.wait()
                    self._changed = None
                    continue
                oldest = self._oldest
                # A timer, not a poll. Deadlines only grow, so waking for one that
                # was superseded is early, never late.
                await anyio.sleep_until(oldest.deadline)
                if oldest.holds_slot and oldest.deadline <= anyio.current_time():
                    self.release(oldest)  # (and forgets it: it is the oldest)
        finally:
            self._watching = False
