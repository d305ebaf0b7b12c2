"""One HTTP connection pool per origin, shared by every session to it, and the guard that
keeps a pooled connection from carrying a request its server is already closing.

**Sharing.** :func:`lease` hands out the process's client for a key and counts its users;
:meth:`Lease.release` closes the client with its last user. The key holds everything that
changes the connection or who it speaks for, so a pool is only shared where one
connection could serve every user the same:

- the running event loop (an httpx client cannot cross loops: the sync client runs its
  sessions on a loop thread of its own, and two ``anyio.run`` calls are two loops);
- the HTTP stack (httpx or httpx2: each library's client takes only its own objects);
- the origin (scheme, host, port);
- the credentials: a keyed digest of the extra headers (they may carry a token; the
  digest, not the value, is kept) and the auth object by identity (two objects may
  hold two users' secrets) — requests carry headers and auth themselves, but a server
  may bind state to a connection (NTLM, a proxy's session), so no connection goes from
  one credential to another;
- the TLS settings and proxies: the CA bundle and proxy variables of the environment,
  which httpx reads when it builds a client (``SSL_CERT_FILE``, ``HTTPS_PROXY``, ...).

A user's own ``http_client`` is never in the registry: it is used as is, never closed
by us, and never lent to anyone else. Sharing is opt-in: ``HTTPServer(..., share_pool=True)``.

The pool does not bound connections per origin: each session's admission
(``Limits.max_connections``) bounds its own exchanges, and a session's long-lived GET
stream needs a connection of its own, so a shared cap would make the thousand-and-first
session's stream wait for another session's to end. It keeps at most
``SHARED_KEEPALIVE`` idle connections.

**The guard** (the root cause of issue 13's 1,000-session failure). uvicorn closes a
keep-alive connection after 5 s idle, and httpx kept idle connections up to 5 s too: the
server's clock starts when it wrote the response, ours after we read it, and httpcore
checks a connection when it assigns it, then writes the request after a few awaits (on a
loaded loop, hundreds of milliseconds later). So a connection the server had just closed
got a request written into it: the server's kernel answered with a reset, the write
failed with EPIPE, and httpcore, which swallows ``WriteError`` to read a response the
server might have sent, raised ``ReadError`` instead. Nothing reached the server's app
(it logged nothing), but the client could only call the fate of the call unknown.

:class:`_GuardedStream` wraps every connection's network stream. At the first write of a
request on a connection that carried one before, it checks the socket again, right there:
readable (the server's FIN or reset is in, or bytes nobody asked for) or idle longer than
``KEEPALIVE_EXPIRY``, and it raises httpcore's ``ConnectionNotAvailable`` *before any byte
of the request was written*. httpcore's pool answers that by closing the connection and
sending the request on another one (a new connection if none is idle). Nothing of the
request left the process, so it cannot have run: re-sending it is safe whatever it does
(Go's ``net/http`` retries a "nothing written" request for the same reason). The expiry,
below the 5 s of uvicorn, hypercorn, Node and Apache, keeps us from writing into a
connection in the instant its server closes it (that failure, a request written and reset
unread, could not be told from one that ran).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import httpx

from .._http_stack import HTTPStack

__all__ = [
    "KEEPALIVE_EXPIRY",
    "SHARED_KEEPALIVE",
    "Lease",
    "PoolStats",
    "guard_client",
    "lease",
    "pool_stats",
]

KEEPALIVE_EXPIRY = 4.0
"""Seconds an idle connection is reused for: below the 5 s after which uvicorn, hypercorn,
Node's http server and Apache close one, with a margin for our clock starting later than
theirs (as undici, Node's HTTP client, does with its 4 s)."""
SHARED_KEEPALIVE = 20
"""Idle connections a shared pool keeps (more open during a burst; closed once idle)."""
SESSIONS_PER_POOL = 16
"""Users of one shared client at most; the next one to the same key starts another.
httpcore's bookkeeping is quadratic in a pool's idle connections (its keep-alive check
counts them once per connection, on every request): one client for 200 busy sessions
measured 1.5-3x slower to open and call than a client each; 16 keep that cost small and
still share warm connections and one client's memory among them."""
# What httpx reads from the environment when it builds a client: proxies and TLS.
_ENV = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
_DIGEST_KEY = secrets.token_bytes(16)  # the header digest means nothing outside this process


class _GuardedStream:
    """A connection's network stream that refuses to start a request on a stale connection.

    Delegates everything to the stream it wraps; see the module docstring for why.
    """

    __slots__ = ("_core", "_inner", "_last_io", "_new_request", "_reused")

    def __init__(self, inner: Any, core: Any) -> None:
        self._inner = inner
        self._core = core
        self._new_request = True  # the next write starts a request
        self._reused = False  # a request went out on it before
        self._last_io = time.monotonic()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data: bytes = await self._inner.read(max_bytes, timeout)
        # HTTP/1.1 without pipelining: a write after a read starts the next request.
        self._new_request = True
        self._last_io = time.monotonic()
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self._new_request:
            self._new_request = False
            if self._reused and self._stale():
                # Before the first byte: the request provably never reached the server,
                # and the pool sends it on another connection.
                raise self._core.ConnectionNotAvailable()
            self._reused = True
        await self._inner.write(buffer, timeout)

    def _stale(self) -> bool:
        if time.monotonic() - self._last_io > KEEPALIVE_EXPIRY:
            return True
        return bool(self._inner.get_extra_info("is_readable"))

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, *args: Any, **kwargs: Any) -> Any:
        # (A proxy tunnel's TLS: the new stream is guarded in its turn.)
        return _GuardedStream(await self._inner.start_tls(*args, **kwargs), self._core)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend:
    """httpcore's network backend, with every stream it opens guarded."""

    __slots__ = ("_core", "_inner")

    def __init__(self, inner: Any, core: Any) -> None:
        self._inner = inner
        self._core = core

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> _GuardedStream:
        return _GuardedStream(await self._inner.connect_tcp(*args, **kwargs), self._core)

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> _GuardedStream:
        return _GuardedStream(await self._inner.connect_unix_socket(*args, **kwargs), self._core)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guard_client(client: httpx.AsyncClient, stack: HTTPStack) -> bool:
    """Guard the connections of a client *we* built (never a user's). False if this
    version of the library is laid out otherwise (then it runs unguarded, as before)."""
    core = stack.core
    pools = [getattr(client._transport, "_pool", None)]
    pools += [getattr(t, "_pool", None) for t in client._mounts.values() if t is not None]
    guarded = False
    for pool in pools:
        backend = getattr(pool, "_network_backend", None)
        if core is None or backend is None or isinstance(backend, _GuardedBackend):
            continue
        pool._network_backend = _GuardedBackend(backend, core)  # type: ignore[union-attr]
        guarded = True
    return guarded


# --- the registry ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolStats:
    """One shared pool, as :func:`pool_stats` sees it.

    Attributes:
        origin: ``scheme://host:port``.
        stack: ``"httpx"`` or ``"httpx2"``.
        users: the transports holding a lease on it.
        connections: the connections it holds (idle or in use).
        idle: of those, the idle ones.
    """

    origin: str
    stack: str
    users: int
    connections: int
    idle: int


class _Entry:
    __slots__ = ("auth", "client", "key", "origin", "stack", "users")

    def __init__(
        self, key: tuple[Any, ...], client: httpx.AsyncClient, stack: HTTPStack, origin: str
    ) -> None:
        self.key = key
        self.client = client
        self.stack = stack
        self.origin = origin
        self.users = 0
        self.auth: object = None  # kept alive: its id() is in the key


_lock = threading.Lock()  # sessions on several loops (threads) share the registry
_entries: dict[tuple[Any, ...], list[_Entry]] = {}


class Lease:
    """A transport's use of a shared client; :meth:`release` once, at close."""

    __slots__ = ("_entry", "client")

    def __init__(self, entry: _Entry) -> None:
        self._entry: _Entry | None = entry
        self.client = entry.client

    async def release(self) -> None:
        """Stop using the client; the last user closes it. Idempotent, and completes
        even when cancelled."""
        entry, self._entry = self._entry, None
        if entry is None:
            return
        with _lock:
            entry.users -= 1
            last = entry.users == 0
            shards = _entries.get(entry.key, [])
            if last and entry in shards:
                shards.remove(entry)
                if not shards:
                    del _entries[entry.key]
        if last:
            with anyio.CancelScope(shield=True):
                await entry.client.aclose()


def _credentials(headers: Mapping[str, str], url: httpx.URL) -> str:
    digest = hashlib.blake2b(key=_DIGEST_KEY, digest_size=16)
    digest.update(url.userinfo)
    for name, value in sorted((n.lower(), v) for n, v in headers.items()):
        digest.update(b"\0" + name.encode() + b"\0" + value.encode())
    return digest.hexdigest()


def _environment() -> tuple[str | None, ...]:
    return tuple(os.environ.get(name, os.environ.get(name.lower())) for name in _ENV)


def lease(
    stack: HTTPStack,
    url: httpx.URL,
    *,
    headers: Mapping[str, str],
    auth: object,
    build: Any,
) -> Lease:
    """The shared client for this loop, stack, origin, credentials, TLS and proxies;
    ``build()`` makes it when nobody holds one. Call from the event loop the client will
    run on.

    Raises:
        RuntimeError: not called from an event loop (anyio's, of the running backend).
    """
    origin = f"{url.scheme}://{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"
    key = (
        anyio.lowlevel.current_token(),
        stack.name,
        origin,
        _credentials(headers, url),
        id(auth) if auth is not None else None,
        _environment(),
    )
    with _lock:
        shards = _entries.setdefault(key, [])
        entry = next((e for e in shards if e.users < SESSIONS_PER_POOL), None)
        if entry is None:
            client = build()
            guard_client(client, stack)
            entry = _Entry(key, client, stack, origin)
            entry.auth = auth
            shards.append(entry)
        entry.users += 1
        return Lease(entry)


def _count(pool: Any) -> tuple[int, int]:
    connections: Iterable[Any] = getattr(pool, "connections", ()) or ()
    items = list(connections)
    return len(items), sum(1 for c in items if c.is_idle())


def pool_stats() -> list[PoolStats]:
    """Every shared pool of the process (every loop), for tests and diagnostics."""
    with _lock:
        entries = [entry for shards in _entries.values() for entry in shards]
    found = []
    for entry in entries:
        connections, idle = _count(getattr(entry.client._transport, "_pool", None))
        found.append(PoolStats(entry.origin, entry.stack.name, entry.users, connections, idle))
    return found


def _entries_for_tests() -> list[_Entry]:
    with _lock:
        return [entry for shards in _entries.values() for entry in shards]
