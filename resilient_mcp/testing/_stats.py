"""ServerStats: what a StrictServer counts, for tests to assert on."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ServerStats:
    """Counters a test can assert on; mutated only by the server.

    Counters are `collections.Counter`, so a method or tool never seen reads as 0.
    Values are plain ints, so reading them from another thread while the server runs
    is safe (a read may simply be a moment out of date).
    """

    requests: Counter[str] = field(default_factory=Counter)
    """JSON-RPC requests that reached the protocol layer, by method (including
    `initialize`, early-rejected and unknown methods)."""
    notifications: Counter[str] = field(default_factory=Counter)
    """JSON-RPC notifications received from clients, by method."""
    initialize_requests: int = 0
    """`initialize` requests received."""
    initialized_notifications: int = 0
    """`notifications/initialized` received."""
    early_requests: int = 0
    """Requests processed before their session's gate opened (the `initialize` result
    or `notifications/initialized`, by profile), whatever the profile did with them
    (an in-band error, an HTTP error, killing the session, holding the request, or,
    with `lenient`, serving it). A correct client keeps this at 0 under every profile."""
    tool_calls: Counter[str] = field(default_factory=Counter)
    """Tool executions by tool name: only calls that passed the handshake gate and
    argument validation, i.e. the tool really ran. A call is counted once, when it
    starts, even if its response is later lost (cut stream, restart, disconnect);
    a call refused by any profile or by chaos is never counted."""
    executions: Counter[str] = field(default_factory=Counter)
    """Executions of ``increment`` by its ``key`` argument: a test gives every call its own
    key and proves at-most-once by finding no key above 1."""
    sessions_created: int = 0
    """Sessions opened by `initialize`."""
    sessions_terminated: int = 0
    """Sessions ended by DELETE or by the server shutting down."""
    http_rejections: Counter[int] = field(default_factory=Counter)
    """HTTP-level rejections by status code (400, 404, 405, 406, 409, 415, 422, 429,
    500, 503)."""
    posts: int = 0
    """HTTP POSTs received (each one draws its fate from the chaos dice)."""
    faults: list[tuple[int, str]] = field(default_factory=list)
    """Injected faults in order, as (POST number, kind) with kind one of "429",
    "503", "drop" and "expired"; the POST number is the one the fault hit (for an
    expiry noticed on GET or DELETE: the number of POSTs so far)."""
    restarts: int = 0
    """Calls of `StrictServer.restart()`."""
    discover_requests: int = 0
    """`server/discover` requests received, in any era: the modern answers and a legacy
    profile's rejections of a modern probe alike (a POST refused by chaos before it is
    read is not counted). A client that caches the server's era sends one per server."""
    modern_requests: int = 0
    """Requests handled by the modern (2026-07-28) era, whatever the answer: results,
    validation errors (-32602, -32020, -32022) and unknown methods (-32601)."""
    modern_cancellations: int = 0
    """Modern requests (listen streams included) whose client closed the response stream
    before the end: the 2026-07-28 cancellation signal."""
    input_required_results: int = 0
    """`input_required` results sent (each round of a multi round-trip request)."""
    subscriptions_opened: int = 0
    """`subscriptions/listen` streams opened (acknowledged)."""

    @property
    def total_requests(self) -> int:
        """All JSON-RPC requests counted in `requests`."""
        return sum(self.requests.values())
