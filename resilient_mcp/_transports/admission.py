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
"""

from __future__ import annotations

from collections import deque

import anyio
import anyio.abc

__all__ = ["PRIORITY_LANE", "Admission", "Ticket"]

# Priority lane slots: the handshake is one message at a time, so two let a cancellation
# go out beside it; more would only let a burst of cancellations take more connections.
PRIORITY_LANE = 2


class Ticket:
    """One admitted exchange. Give it back with :meth:`Admission.release`."""

    __slots__ = ("deadline", "holds_slot", "lane")

    def __init__(self, deadline: float, *, lane: bool = False) -> None:
        self.deadline = deadline
        self.holds_slot = True
        self.lane = lane  # a priority lane slot (never handed on: its messages are short)


class Admission:
    """A FIFO semaphore whose holders lose their slot once they have held it too long."""

    def __init__(self, limit: int, *, long_after: float, lane: int = PRIORITY_LANE) -> None:
        self._slots = anyio.Semaphore(limit)
        self._lane = anyio.Semaphore(lane)
        self._long_after = long_after
        # Holders in admission order; with one fixed delay their deadlines are sorted too.
        self._holders: deque[Ticket] = deque()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._watching = False
        # Set when the queue or the holders change, for a watcher that found no holder.
        self._changed: anyio.Event | None = None

    def __repr__(self) -> str:
        waiting = self._slots.statistics().tasks_waiting
        return f"<Admission free={self._slots.value} waiting={waiting} lane={self._lane.value}>"

    def bind(self, task_group: anyio.abc.TaskGroup) -> None:
        """Where the watcher runs when callers have to wait (without one, nothing is
        ever handed on: every slot waits for its holder)."""
        self._task_group = task_group

    async def acquire(self) -> Ticket:
        """Wait for a slot (FIFO)."""
        if self._slots.value == 0 and not self._watching and self._task_group is not None:
            self._watching = True
            self._task_group.start_soon(self._watch)
        try:
            await self._slots.acquire()
        except BaseException:
            self._signal()  # one waiter fewer: the watcher may have nothing left to do
            raise
        ticket = Ticket(anyio.current_time() + self._long_after)
        self._holders.append(ticket)
        self._signal()
        return ticket

    async def acquire_priority(self) -> Ticket:
        """Wait for a slot of the priority lane (FIFO among priority messages only)."""
        await self._lane.acquire()
        return Ticket(anyio.current_time(), lane=True)

    def _signal(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def release(self, ticket: Ticket) -> None:
        """Give the slot back, unless it was already handed on for taking too long."""
        if ticket.holds_slot:
            ticket.holds_slot = False
            (self._lane if ticket.lane else self._slots).release()

    async def _watch(self) -> None:
        """Hand on the slots of exchanges that run long, while anyone waits for one."""
        try:
            while self._slots.statistics().tasks_waiting:
                while self._holders and not self._holders[0].holds_slot:
                    self._holders.popleft()  # finished in time: nothing to do
                if not self._holders:
                    # A slot is on its way to a waiter (released, not yet taken up):
                    # wait for the queue or the holders to change.
                    self._changed = anyio.Event()
                    await self._changed.wait()
                    self._changed = None
                    continue
                oldest = self._holders[0]
                # A timer, not a poll. Deadlines only grow, so waking for one that
                # was superseded is early, never late.
                await anyio.sleep_until(oldest.deadline)
                if oldest.holds_slot and oldest.deadline <= anyio.current_time():
                    self._holders.popleft()
                    self.release(oldest)
        finally:
            self._watching = False
