"""What a StrictServer remembers between requests: sessions, counters, event ids.

One `ServerState` per server, shared by every front end; the modern era keeps no
sessions, only the counters and the cancellation signal.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Final

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from resilient_mcp.testing._catalog import JSON
from resilient_mcp.testing._chaos import Chaos
from resilient_mcp.testing._events import EventLog
from resilient_mcp.testing._stats import ServerStats

STREAM_BUFFER: Final = 64
"""Buffer of a session's standalone stream: progress and server requests queue here
while the client is slow to read, instead of blocking the tool that produced them."""
# Finished response streams kept per session for resumption (GET + Last-Event-ID).
_REPLAY_STREAMS: Final = 16


@dataclass(eq=False)
class InFlight:
    """A request being processed on a session: the scope that cancels it."""

    scope: anyio.CancelScope
    reason: str | None = None
    """Why the scope was cancelled: "cancelled" (client notification) or "terminated"."""


@dataclass(eq=False)
class Pending:
    """A server→client request waiting for the client's response."""

    done: anyio.Event
    response: JSON | None = None


@dataclass(eq=False)
class Session:
    """A legacy-era session (Streamable HTTP or HTTP+SSE)."""

    id: str
    protocol_version: str
    client_capabilities: JSON
    initialized: bool = False
    accepted: bool = False
    """The `initialize` result was produced (the gate of most real servers)."""
    ready: anyio.Event = field(default_factory=anyio.Event)
    """Set once `initialized` is (or when the session ends)."""
    created: float = field(default_factory=time.monotonic)
    requests: int = 0
    """Requests (not `initialize`) that named this session, for expiry by count."""
    ended: bool = False
    dropped: bool = False
    """Ended by restart(): its open connections are cut, not finished."""
    legacy: bool = False
    """A legacy HTTP+SSE session (python-sdk-sse)."""
    inbound: MemoryObjectSendStream[JSON] | None = None
    """Legacy SSE: where POSTed messages queue for processing."""
    log_level: str = "info"
    subscriptions: set[str] = field(default_factory=set)
    """Resource URIs subscribed with `resources/subscribe` (legacy era)."""
    get_stream: MemoryObjectSendStream[JSON] | None = None
    in_flight: dict[str, InFlight] = field(default_factory=dict)
    pending: dict[int, Pending] = field(default_factory=dict)
    next_request_id: int = 0
    logs: list[EventLog] = field(default_factory=list)
    """Response streams kept for resumption, oldest first."""
    event_index: dict[int, EventLog] = field(default_factory=dict)

    def mark_initialized(self) -> None:
        """The handshake is complete: wake the requests held until it is."""
        self.initialized = True
        # A bare `initialized` opens the gate too (mcp 2.x `initialize_accepted`).
        self.accepted = True
        self.ready.set()

    def accept(self) -> None:
        """The `initialize` result was produced."""
        self.accepted = True

    def reset_handshake(self) -> None:
        """Re-initializing: the session is not ready again until `initialized`."""
        self.initialized = False
        # `accepted` stays: the real servers process a re-initialize inline, so no
        # request ever meets their `initialize` gate closed again.
        if self.ready.is_set():
            self.ready = anyio.Event()

    def add_log(self, log: EventLog) -> None:
        """Keep `log` for resumption, forgetting the oldest finished unread ones."""
        self.logs.append(log)
        while len(self.logs) > _REPLAY_STREAMS:
            old = next((lg for lg in self.logs if lg.done and lg.reader_seq is None), None)
            if old is None:
                return
            self.logs.remove(old)
            for event_id in [k for k, v in self.event_index.items() if v is old]:
                del self.event_index[event_id]

    def find_event(self, event_id: int) -> tuple[EventLog, int] | None:
        """The stream holding `event_id` and the event's position in it."""
        log = self.event_index.get(event_id)
        if log is None:
            return None
        seq = log.find(event_id)
        return None if seq is None else (log, seq)

    async def send_standalone(self, message: JSON) -> bool:
        """Queue `message` on the GET stream; False when no stream is open."""
        stream = self.get_stream
        if stream is None:
            return False
        try:
            await stream.send(message)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        return True


class ServerState:
    """The sessions, counters and event ids of one server, shared by its front ends."""

    def __init__(self, chaos: Chaos) -> None:
        self.stats = ServerStats()
        self.counter = 0
        """The value `increment`, `set_value` and `read_counter` work on."""
        self.sessions: dict[str, Session] = {}
        self.dead_legacy: set[str] = set()
        """Legacy SSE sessions whose GET stream ended: the Python SDK 1.x still accepts
        POSTs for them (202) and never answers."""
        self.background: TaskGroup | None = None
        """Where detached work (of streams cut by chaos) runs: the app's lifespan."""
        self._chaos = chaos
        # Event ids only need to be unique; one server-wide sequence is simplest.
        self._event_ids = itertools.count(1)
        # Lets a test (in another thread) wait for a cancellation instead of polling.
        # Wakes the blocking waits of tests (cancellations, processed `initialized`).
        self._cancellations = threading.Condition()

    def next_event_id(self) -> int:
        """A fresh SSE event id."""
        return next(self._event_ids)

    def open(self, session: Session) -> None:
        """Register a new session."""
        self.sessions[session.id] = session
        self.stats.sessions_created += 1

    def fault(self, kind: str, number: int | None = None) -> None:
        """Record an injected fault, on POST `number` (default: the latest POST)."""
        self.stats.faults.append((self.stats.posts if number is None else number, kind))

    def live(self, session_id: str) -> Session | None:
        """The session `session_id` names, or None if it is unknown or has expired."""
        session = self.sessions.get(session_id)
        if session is None:
            return None
        ttl = self._chaos.expire_after_seconds
        if ttl is not None and time.monotonic() - session.created >= ttl:
            self.terminate(session)
            self.fault("expired")
            return None
        return session

    def count_request(self, session: Session) -> bool:
        """Count a request naming `session`; False when chaos expired the session by count
        (it is terminated then, and the request is not counted)."""
        limit = self._chaos.expire_after_requests
        if limit is not None and session.requests >= limit:
            self.terminate(session)
            self.fault("expired")
            return False
        session.requests += 1
        return True

    def terminate(self, session: Session, *, dropped: bool = False) -> None:
        """End `session`: close its GET stream, cancel its work, wake what waits on it.

        `dropped` (restart): its connections are cut instead of finished.
        """
        if self.sessions.pop(session.id, None) is None:
            return
        self.stats.sessions_terminated += 1
        session.ended = True
        session.dropped = dropped
        if session.legacy and not dropped:
            # Same process, stream ended: the SDK 1.x keeps its writer. A restarted
            # process knows no session at all (404 "Could not find session").
            self.dead_legacy.add(session.id)
        if session.get_stream is not None:
            session.get_stream.close()
            session.get_stream = None
        for in_flight in session.in_flight.values():
            in_flight.reason = "terminated"
            in_flight.scope.cancel()
        for pending in session.pending.values():
            pending.done.set()
        session.ready.set()  # wakes requests held until initialized

    def terminate_all(self, *, dropped: bool = False) -> None:
        """End every session (see `terminate`)."""
        for session in list(self.sessions.values()):
            self.terminate(session, dropped=dropped)

    def count_modern_cancellation(self) -> None:
        """A modern client closed a response stream early; wakes `wait_for_cancellations`."""
        with self._cancellations:
            self.stats.modern_cancellations += 1
            self._cancellations.notify_all()

    def count_initialized(self) -> None:
        """`notifications/initialized` is being processed; wakes `wait_for_initialized`."""
        with self._cancellations:
            self.stats.initialized_notifications += 1
            self._cancellations.notify_all()

    def wait_for_initialized(self, count: int, timeout: float) -> bool:
        """Block until `stats.initialized_notifications` reaches `count`; False on timeout."""
        with self._cancellations:
            return self._cancellations.wait_for(
                lambda: self.stats.initialized_notifications >= count, timeout
            )

    def wait_for_cancellations(self, count: int, timeout: float) -> bool:
        """Block until `stats.modern_cancellations` reaches `count`; False on timeout."""
        with self._cancellations:
            return self._cancellations.wait_for(
                lambda: self.stats.modern_cancellations >= count, timeout
            )
