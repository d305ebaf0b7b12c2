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

No background task: the first waiter in line is the one who watches the clock. It waits
for a slot until the oldest exchange in flight turns long, and then takes that slot
itself. So an idle client costs nothing, and a closed one leaves nothing running.
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


class _Waiter:
    __slots__ = ("event", "ticket")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.ticket: Ticket | None = None


class Admission:
    """A FIFO semaphore whose holders lose their slot once they have held it too long."""

    def __init__(self, limit: int, *, long_after: float) -> None:
        self._free = limit
        self._long_after = long_after
        # Holders in admission order; with one fixed delay their deadlines are sorted too.
        self._holders: deque[Ticket] = deque()
        self._waiters: deque[_Waiter] = deque()

    def __repr__(self) -> str:
        return f"<Admission free={self._free} held={self._held()} waiting={len(self._waiters)}>"

    def _held(self) -> int:
        return sum(1 for ticket in self._holders if ticket.holds_slot)

    def _admit(self) -> Ticket:
        ticket = Ticket(anyio.current_time() + self._long_after)
        self._holders.append(ticket)
        return ticket

    def _oldest(self) -> Ticket | None:
        """The oldest exchange that still holds a slot (finished ones are forgotten)."""
        while self._holders and not self._holders[0].holds_slot:
            self._holders.popleft()
        return self._holders[0] if self._holders else None

    def _hand_on(self) -> None:
        """A slot became free: the first waiter gets it, or it goes back to the pool."""
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.ticket = self._admit()
            waiter.event.set()
            if self._waiters:
                self._waiters[0].event.set()  # the new head watches the clock now
        else:
            self._free += 1

    async def acquire(self) -> Ticket:
        """Wait for a slot, in FIFO order."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return self._admit()
        waiter = _Waiter()
        self._waiters.append(waiter)
        try:
            while waiter.ticket is None:
                oldest = self._oldest() if waiter is self._waiters[0] else None
                if oldest is None:
                    await waiter.event.wait()
                else:
                    # The head of the line: wait for a slot, but no longer than until the
                    # oldest exchange turns long (a timer, not a poll).
                    with anyio.move_on_after(oldest.deadline - anyio.current_time()):
                        await waiter.event.wait()
                    turned_long = oldest.deadline <= anyio.current_time()
                    if waiter.ticket is None and oldest.holds_slot and turned_long:
                        self.release(oldest)  # it turned long: hand its slot on
                if waiter.ticket is None:
                    waiter.event = anyio.Event()
        except BaseException:
            if waiter.ticket is not None:
                self.release(waiter.ticket)  # granted as we were cancelled: pass it on
            else:
                head = self._waiters and self._waiters[0] is waiter
                self._waiters.remove(waiter)
                if head and self._waiters:
                    self._waiters[0].event.set()  # someone else watches the clock now
            raise
        return waiter.ticket

    def release(self, ticket: Ticket) -> None:
        """Give the slot back, unless it was already handed on for taking too long."""
        if ticket.holds_slot:
            ticket.holds_slot = False
            self._hand_on()
