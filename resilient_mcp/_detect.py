"""What we learned about a server's era and transport, remembered per endpoint.

Detection costs round trips (a ``server/discover`` probe, a refused Streamable HTTP
``initialize`` before a legacy SSE server is found), so its outcome is remembered
process-wide and the next client to the same endpoint skips the probes it no longer
needs. The spec asks for a cache "per origin"; we key by endpoint URL (origin and
path), because one origin commonly serves a Streamable HTTP endpoint at ``/mcp`` and a
legacy SSE one at ``/sse``. A stdio server's key names its process: a restarted
server is probed again.

An entry is only a hint. When it stops holding (the server was redeployed, the
transport refuses us), the session drops it and detects again from scratch. Entries
also age out after an hour, so a server upgraded in place (legacy to dual-era) is
eventually spoken to in its better era even though the old one kept working.
Outages (refused connections, 503s, timeouts) say nothing about the era and leave the
entry alone; a forced ``era=`` or ``transport=`` neither reads nor writes it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

__all__ = ["Detection", "cache", "clear_cache", "http_key"]

Era = Literal["modern", "legacy"]

# An agent platform talks to many servers; a process-wide cache must not grow without
# bound. Least recently used entries go first.
_MAX_ENTRIES = 512
_MAX_AGE_S = 3600.0


@dataclass(frozen=True, slots=True)
class Detection:
    """One endpoint's era, transport and protocol version, as last detected."""

    era: Era
    transport: str
    version: str
    discover: Mapping[str, Any] | None = None
    """A ``server/discover`` result that may be reused (public ``cacheScope`` only)."""
    discover_expires: float = 0.0
    """``time.monotonic()`` until which ``discover`` is fresh (its ``ttlMs``)."""
    found_at: float = field(default_factory=time.monotonic)

    def fresh_discover(self) -> Mapping[str, Any] | None:
        """The cached discover result, if it may still be used instead of asking again."""
        if self.discover is not None and time.monotonic() < self.discover_expires:
            return self.discover
        return None


class _Cache:
    """A small thread-safe LRU map (clients may live on several event loops)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Detection] = OrderedDict()

    def get(self, key: str | None) -> Detection | None:
        if key is None:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and time.monotonic() - entry.found_at > _MAX_AGE_S:
                del self._entries[key]
                return None
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: str | None, detection: Detection) -> None:
        if key is None:
            return
        with self._lock:
            self._entries[key] = detection
            self._entries.move_to_end(key)
            while len(self._entries) > _MAX_ENTRIES:
                self._entries.popitem(last=False)

    def forget(self, key: str | None) -> None:
        if key is None:
            return
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


cache = _Cache()


def http_key(url: httpx.URL) -> str:
    """The cache key of an HTTP endpoint: the URL without user info or fragment. (The
    query stays: it may select the server. The key lives in memory and is never logged.)"""
    return str(url.copy_with(username=None, password=None, fragment=None))


def clear_cache() -> None:
    """Forget every detection (used by the tests)."""
    cache.clear()
