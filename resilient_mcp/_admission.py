"""Admission control for HTTP exchanges: few short ones at a time, long ones never block.

Why: httpcore's connection pool does work proportional to its connections (and to its
queue) on every request; on a 2-core machine 32 callers on 32 connections reach about
half the throughput of 32 callers taking turns on 8, at twice the CPU per call. So we
admit a small number of exchanges at once and queue the rest here, in FIFO order, at
O(1) cost.

But a small limit must not let a few slow tool calls (minutes of work, a stream of
progress) starve everything else. An exchange still in flight ``long_after`` seconds
after it was admitted stops counting: its slot goes to the next waiter, and the pool
opens another connection if it has to.
"""

from __future__ import annotations

from collections import deque

import anyio

__all__ = ["Admission", "Ticket"]


class Ticket:
    """One admitted exchange. Give it back with :meth:`Admission.release`."""

    __slots__ = ("deadline", "holds_slot")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.holds_slot = True


class Admission:
    """A FIFO semaphore whose holders lose their slot once they have held it too long."""

    def __init__(self, limit: int, *, long_after: float) -> None:
        self._slots = anyio.Semaphore(limit)
        self._long_after = long_after
        # Tickets in admission order; with one fixed delay their deadlines are sorted too.
        self._watch: deque[Ticket] = deque()
        self._wake: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"<Admission free={self._slots.value} watched={len(self._watch)}>"

    async def acquire(self) -> Ticket:
        """Wait for a slot (FIFO)."""
        await self._slots.acquire()
        ticket = Ticket(anyio.current_time() + self._long_after)
        self._watch.append(ticket)
        if self._wake is not None:
            self._wake.set()
        return ticket

    def release(self, ticket: Ticket) -> None:
        """Give the slot back, unless it was already handed on for taking too long."""
        if ticket.holds_slot:
            ticket.holds_slot = False
            self._slots.release()

    async def run(self) -> None:
        """Hand on the slots of exchanges that run long. Runs until cancelled."""
        while True:
            while self._watch and not self._watch[0].holds_slot:
                self._watch.popleft()  # finished in time: nothing to do
            if not self._watch:
                self._wake = anyio.Event()
                await self._wake.wait()
                self._wake = None
                continue
            first = self._watch[0]
            # A timer, not a poll: wake exactly when the oldest exchange turns long.
            await anyio.sleep_until(first.deadline)
            if first.holds_slot and first.deadline <= anyio.current_time():
                self._watch.popleft()
                self.release(first)
