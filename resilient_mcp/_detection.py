"""What we learned about a server's era and transport, remembered per server and identity.

Detection costs round trips (a ``server/discover`` probe, a refused Streamable HTTP
``initialize`` before a legacy SSE server is found), so its outcome is remembered and
the next client to the same server skips the probes it no longer needs. A
:class:`DetectionCache` is an ordinary object: every client uses the process-wide one
unless it is given its own (``connect(..., detection_cache=DetectionCache())``).

The spec asks for a cache "per origin"; we key by endpoint URL (origin and path),
because one origin commonly serves a Streamable HTTP endpoint at ``/mcp`` and a legacy
SSE one at ``/sse``, and add who is asking: a keyed digest of the request headers, the
URL's user info and the auth objects. Two credentials or two users never share an
entry, and the key holds no secret in the clear. A stdio server's key is its command
line (command, arguments, working directory and a digest of its environment): the next
start of the same command, in this client or another, skips the era probe.

An entry is only a hint. When it stops holding (the server was redeployed, the
transport refuses us), the session drops it and detects again from scratch. Entries
also age out (an hour by default), so a server upgraded in place (legacy to dual-era)
is eventually spoken to in its better era even though the old one kept working.
Outages say nothing about the era and leave the entry alone; a forced ``era=`` or
``transport=`` neither reads nor writes it.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx

from ._exceptions import UsageError

if TYPE_CHECKING:
    import httpx2

__all__ = ["Detection", "DetectionCache", "default_cache", "http_key", "process_key"]

# Per process: the digest of an identity means nothing outside it.
_KEY = os.urandom(32)


@dataclass(frozen=True, slots=True)
class Detection:
    """One server's era, transport and protocol version, as last detected (an entry of
    a :class:`DetectionCache`)."""

    era: Literal["modern", "legacy"]
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


class DetectionCache:
    """Remembers each server's detected era and transport; shared between clients.

    Thread-safe (clients may live on several event loops) and bounded: the least
    recently used entries go first.

    Args:
        max_entries: how many servers to remember.
        max_age: seconds after which an entry is detected again.

    Raises:
        UsageError: a bound that is not positive.
    """

    def __init__(self, *, max_entries: int = 512, max_age: float = 3600.0) -> None:
        if max_entries < 1 or max_age <= 0:
            raise UsageError("DetectionCache bounds must be positive")
        self._max_entries = max_entries
        self._max_age = max_age
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Detection] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        return f"<DetectionCache entries={len(self)} max_entries={self._max_entries}>"

    def get(self, key: str | None) -> Detection | None:
        """The entry for ``key``, if there is a fresh one."""
        if key is None:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and time.monotonic() - entry.found_at > self._max_age:
                del self._entries[key]
                return None
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: str | None, detection: Detection) -> None:
        """Remember ``detection`` for ``key``."""
        if key is None:
            return
        with self._lock:
            self._entries[key] = detection
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def forget(self, key: str | None) -> None:
        """Drop the entry for ``key`` (it stopped holding)."""
        if key is None:
            return
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()


default_cache = DetectionCache()
"""The process-wide cache every client uses unless given its own."""


def http_key(
    url: httpx.URL,
    *,
    headers: Mapping[str, str] | None = None,
    auth: httpx.Auth | httpx2.Auth | None = None,
    http_client: httpx.AsyncClient | httpx2.AsyncClient | None = None,
) -> str:
    """The cache key of an HTTP endpoint as seen with one set of credentials.

    The endpoint is the URL without user info or fragment (the query stays: it may
    select the server). Who asks is a keyed digest of everything that may identify
    them: the user info, every header we send (ours and the shared client's), and the
    auth objects (by identity: two objects may hold two users' tokens).
    """
    endpoint = str(url.copy_with(username=None, password=None, fragment=None))
    identity = hashlib.blake2b(key=_KEY, digest_size=16)
    identity.update(url.userinfo)
    sent = dict(http_client.headers) if http_client is not None else {}
    sent.update({name.lower(): value for name, value in (headers or {}).items()})
    for name, value in sorted(sent.items()):
        identity.update(b"\0" + name.lower().encode() + b"\0" + value.encode())
    for who in (auth, http_client.auth if http_client is not None else None):
        identity.update(b"\0" + (f"{type(who).__qualname__}:{id(who)}" if who else "-").encode())
    return f"{endpoint} #{identity.hexdigest()}"


def process_key(
    command: str,
    args: Sequence[str],
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None,
) -> str:
    """The cache key of a stdio server: its command line, as we start it.

    The same command, arguments, working directory and environment start the same
    server, so what one start found serves the next. Only the command is in the clear;
    the arguments (they may hold tokens), the directory and the environment (``None``:
    ours) go into a keyed digest, so a changed variable re-detects but no value can be
    read from the key.
    """
    digest = hashlib.blake2b(key=_KEY, digest_size=16)
    for arg in args:
        digest.update(b"\0a" + os.fsencode(arg))
    digest.update(b"\0c" + os.fsencode(os.path.abspath(cwd if cwd is not None else os.curdir)))
    for name, value in sorted((os.environ if env is None else env).items()):
        digest.update(b"\0e" + name.encode() + b"=" + value.encode("utf-8", "surrogateescape"))
    return f"stdio:{command} #{digest.hexdigest()}"
