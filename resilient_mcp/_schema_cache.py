"""The process-wide cache of compiled ``outputSchema`` validators.

Every session that lists the same tools (a client group, a gateway with thousands of
sessions to one origin, a client that re-handshakes) sees the same schemas; compiling
each once per process instead of once per session is what keeps the first call cheap
at 5,000 tools. Keys are a digest of the schema's canonical JSON (sorted keys, no
whitespace), so equal schemas share one entry whatever their key order. Compiled
validators are immutable, so sharing them across sessions, event loops and threads is
safe; the lock only guards the LRU bookkeeping.

The cache is bounded in entries and in the canonical JSON bytes it holds, least
recently used first out: a hostile server that sends a new schema on every list cannot
grow it without limit.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["SchemaCache", "canonical_key"]

T = TypeVar("T")

MAX_ENTRIES = 4096
MAX_BYTES = 64 * 1024 * 1024


def canonical_key(schema: Any) -> tuple[bytes, int]:
    """A digest of ``schema``'s canonical JSON, and that JSON's length (its weight).

    Raises:
        TypeError, ValueError: ``schema`` is not JSON (it always is, from the wire).
    """
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    data = text.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=20).digest(), len(data)


class SchemaCache(Generic[T]):
    """An LRU map from canonical schema digests to compiled validators."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, tuple[T, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def weight(self) -> int:
        """The canonical JSON bytes of the schemas held."""
        return self._bytes

    def get_or_compile(self, schema: Any, compile_: Callable[[Any], T]) -> T:
        """The compiled form of ``schema``, compiled by ``compile_`` on a miss.

        Compiling happens outside the lock (two threads may compile the same schema
        once each; the first stored wins). A schema heavier than the whole budget is
        compiled but not kept.

        Raises:
            TypeError, ValueError: ``schema`` is not JSON; whatever ``compile_`` raises.
        """
        key, weight = canonical_key(schema)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return found[0]
            self.misses += 1
        compiled = compile_(schema)
        if weight > self.max_bytes:
            return compiled
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                return found[0]
            self._entries[key] = (compiled, weight)
            self._bytes += weight
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped
        return compiled

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
