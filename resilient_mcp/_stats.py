"""Counters a caller can read (``client.stats``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SessionStats"]


@dataclass
class SessionStats:
    """What one client did, counted since it was created.

    Attributes:
        requests: requests sent (every send counts, retries and re-sends included).
        handshakes: handshakes started (era detection included).
        queued_peak: the most calls that waited in the gate at once.
        unknown_responses: answers whose id matched no pending request (dropped).
        dropped_notifications: notifications dropped because a handler fell too far
            behind (``Limits.max_pending_notifications``), or progress for a call whose
            callback fell that far behind.
        dropped_server_requests: server→client requests dropped unanswered because too
            many were already waiting (``Limits.max_pending_notifications``).
        time_to_ready: seconds from the start of the last successful handshake to the
            gate opening.
        retries: requests sent again after a failure (each re-send counts once).
        recoveries: new handshakes started because the server lost or never finished
            the session.
        session_changes: times the server-assigned session id changed to a new one.
    """

    requests: int = 0
    handshakes: int = 0
    queued_peak: int = 0
    unknown_responses: int = 0
    dropped_notifications: int = 0
    dropped_server_requests: int = 0
    time_to_ready: float | None = None
    retries: int = 0
    recoveries: int = 0
    session_changes: int = 0
