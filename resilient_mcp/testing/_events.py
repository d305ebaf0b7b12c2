"""Replayable SSE streams: the events of one response, kept so a client can resume.

A request's work appends events to its `EventLog`; whoever holds the HTTP connection
(the POST that asked, or a later GET with `Last-Event-ID`) reads them in order. The
log outlives a dropped connection, so the work goes on and a client that resumes gets
every event after the last one it saw.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final, Literal

import anyio

# Events kept per stream for replay; also how far the work may run ahead of a reader
# that is attached before it has to wait.
REPLAY_EVENTS: Final = 256

EventKind = Literal["priming", "progress", "message"]


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    """Position in its stream, from 0."""
    event_id: int
    kind: EventKind
    chunk: bytes
    """The encoded SSE event."""


class EventLog:
    """The bounded, replayable event sequence of one SSE response stream."""

    def __init__(self) -> None:
        self._events: deque[Event] = deque()
        self._next_seq = 0
        self._changed = anyio.Event()
        self.reader_seq: int | None = None
        """Next position the attached reader will send; None when nobody reads."""
        self.done = False
        self.aborted = False
        """The stream ended without its final event (the server restarted)."""
        self.evicted: list[int] = []
        """Event ids dropped from the front since the owner last looked (for indexes)."""

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def first_seq(self) -> int:
        return self._events[0].seq if self._events else self._next_seq

    @property
    def changed(self) -> anyio.Event:
        """Set at the next append, finish or reader move; capture it before reading."""
        return self._changed

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def append(self, event_id: int, kind: EventKind, chunk: bytes) -> Event:
        # Backpressure: an attached reader may fall at most REPLAY_EVENTS behind.
        while self.reader_seq is not None and self._next_seq - self.reader_seq >= REPLAY_EVENTS:
            await self._changed.wait()
        event = Event(self._next_seq, event_id, kind, chunk)
        self._next_seq += 1
        self._events.append(event)
        if len(self._events) > REPLAY_EVENTS:
            self.evicted.append(self._events.popleft().event_id)
        self._notify()
        return event

    def get(self, seq: int) -> Event | None:
        first = self.first_seq
        if seq < first or seq >= self._next_seq:
            return None
        return self._events[seq - first]

    def find(self, event_id: int) -> int | None:
        """The position of the kept event `event_id`, or None."""
        for event in self._events:
            if event.event_id == event_id:
                return event.seq
        return None

    def finish(self, *, aborted: bool = False) -> None:
        if not self.done:
            self.done = True
            self.aborted = aborted
            self._notify()

    def attach(self, seq: int) -> None:
        self.reader_seq = seq
        self._notify()

    def advance(self, seq: int) -> None:
        self.reader_seq = seq
        self._notify()

    def detach(self) -> None:
        self.reader_seq = None
        self._notify()
