"""Shared connection pools per origin, and the guard against a server's keep-alive close.

Connections are counted at a TCP relay in front of the server (``_Relay``), which can
also close every connection it holds, as a server closing idle keep-alive connections
does. Default settings everywhere but ``share_pool``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

import resilient_mcp
from resilient_mcp._transports import pool
from resilient_mcp.testing import StrictServer, serve

pytestmark = pytest.mark.anyio


class _Relay:
    """A TCP relay that counts the connections clients open and can close them all."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.accepted = 0
        self.port = 0
        self._clients: list[anyio.abc.SocketStream] = []

    async def _pump(self, src: anyio.abc.SocketStream, dst: anyio.abc.SocketStream) -> None:
        try:
            async for chunk in src:
                await dst.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            await dst.aclose()
            await src.aclose()

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        self.accepted += 1
        self._clients.append(client)
        upstream = await anyio.connect_tcp("127.0.0.1", self.upstream_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._pump, client, upstream)
            tg.start_soon(self._pump, upstream, client)

    async def close_all(self) -> None:
        """Close every client connection (a FIN to each, like a keep-alive timeout)."""
        clients, self._clients = self._clients, []
        for client in clients:
            await client.aclose()


@asynccontextmanager
async def _relayed(server: StrictServer) -> AsyncIterator[tuple[_Relay, str]]:
    with serve(server) as running:
        relay = _Relay(running.port)
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        relay.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        path = httpx.URL(running.url).path
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, relay._handle)
            try:
                yield relay, f"http://127.0.0.1:{relay.port}{path}"
            finally:
                tg.cancel_scope.cancel()


def _server() -> StrictServer:
    return StrictServer(get_stream=False)


def _stats(port: int) -> list[pool.PoolStats]:
    return [s for s in pool.pool_stats() if s.origin.endswith(f":{port}")]


async def test_two_clients_to_one_origin_share_one_connection(anyio_backend: str) -> None:
    async with _relayed(_server()) as (relay, url):
        target = resilient_mcp.HTTPServer(url, share_pool=True)
        async with resilient_mcp.connect(target) as first:
            await first.call_tool("echo", {"text": "a"})
            opened = relay.accepted
            async with resilient_mcp.connect(target) as second:
                await second.call_tool("echo", {"text": "b"})
                # The second client started on the first one's warm connections (it
                # opened fewer than the first; without sharing it opens as many).
                assert relay.accepted - opened < opened
                (stats,) = _stats(relay.port)
                assert stats.users == 2
        # Closed with its last user: nothing left in the registry.
        assert _stats(relay.port) == []


async def test_no_sharing_across_credentials_or_with_a_user_client(anyio_backend: str) -> None:
    async with _relayed(_server()) as (relay, url):
        alice = resilient_mcp.HTTPServer(url, headers={"Authorization": "a"}, share_pool=True)
        bob = resilient_mcp.HTTPServer(url, headers={"Authorization": "b"}, share_pool=True)
        async with httpx.AsyncClient() as mine:
            own = resilient_mcp.HTTPServer(url, http_client=mine, share_pool=True)
            async with (
                resilient_mcp.connect(alice) as a,
                resilient_mcp.connect(bob) as b,
                resilient_mcp.connect(own) as c,
            ):
                for client in (a, b, c):
                    await client.call_tool("echo", {"text": "x"})
                stats = _stats(relay.port)
                # One pool per credential; the user's client is in none of them.
                assert sorted(s.users for s in stats) == [1, 1]
                assert all(s.client is not mine for s in pool._entries_for_tests())
            assert not mine.is_closed  # never closed by us
        assert _stats(relay.port) == []


async def test_other_auth_objects_do_not_share(anyio_backend: str) -> None:
    async with _relayed(_server()) as (relay, url):
        one = resilient_mcp.HTTPServer(url, auth=httpx.BasicAuth("u", "1"), share_pool=True)
        two = resilient_mcp.HTTPServer(url, auth=httpx.BasicAuth("u", "2"), share_pool=True)
        async with resilient_mcp.connect(one) as a, resilient_mcp.connect(two) as b:
            await a.call_tool("echo", {"text": "x"})
            await b.call_tool("echo", {"text": "x"})
            assert len(_stats(relay.port)) == 2
        assert _stats(relay.port) == []


def test_pools_are_per_event_loop() -> None:
    with serve(_server()) as running:
        target = resilient_mcp.HTTPServer(running.url, share_pool=True)
        seen: list[object] = []

        async def one() -> None:
            async with resilient_mcp.connect(target) as client:
                await client.call_tool("echo", {"text": "x"})
                seen.extend(e.client for e in pool._entries_for_tests())

        anyio.run(one, backend="asyncio")
        anyio.run(one, backend="trio")
        # Two loops, two clients (one each, each closed with its loop's last user).
        assert len(seen) == 2
        assert seen[0] is not seen[1]
        assert pool.pool_stats() == []


def test_the_sync_client_shares_within_its_loop_thread() -> None:
    with serve(_server()) as running:
        target = resilient_mcp.HTTPServer(running.url, share_pool=True)
        with resilient_mcp.connect_sync(target) as client:
            assert client.call_tool("echo", {"text": "x"}).text == "x"
            assert [s.users for s in pool.pool_stats()] == [1]
        assert pool.pool_stats() == []


async def test_a_connection_the_server_closed_before_the_write_is_not_used(
    anyio_backend: str,
) -> None:
    """The race of issue 13: the server closes an idle keep-alive connection after the
    pool handed it to a request and before the request is written. The relay closes
    every connection at exactly that moment (httpcore's trace hook, awaited between the
    pool's check and the first write). The call must run once, on a new connection."""
    server = _server()
    async with _relayed(server) as (relay, url):
        target = resilient_mcp.HTTPServer(url, share_pool=True)
        armed = anyio.Event()
        closed = anyio.Event()

        async def trace(name: str, info: dict[str, Any]) -> None:
            started = name == "http11.send_request_headers.started"
            if started and armed.is_set() and not closed.is_set():
                await relay.close_all()
                closed.set()

        async def hook(request: httpx.Request) -> None:
            request.extensions["trace"] = trace

        async with resilient_mcp.connect(target) as client:
            await client.call_tool("echo", {"text": "warm"})
            (entry,) = pool._entries_for_tests()
            entry.client.event_hooks["request"].append(hook)
            before = relay.accepted
            armed.set()
            result = await client.call_tool("increment", {"key": "once"})
            assert closed.is_set()
            assert not result.isError
        assert server.stats.executions["once"] == 1
        assert relay.accepted == before + 1  # the request went out on a new connection


async def test_the_guard_raises_before_writing_a_byte(anyio_backend: str) -> None:
    """A stale reused connection: nothing reaches the socket, and httpcore's own
    "try another connection" signal is raised."""
    import httpcore

    class Inner:
        def __init__(self) -> None:
            self.written: list[bytes] = []
            self.readable = False

        async def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self.written.append(buffer)

        async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return b"HTTP/1.1 200 OK\r\n"

        def get_extra_info(self, info: str) -> Any:
            return self.readable if info == "is_readable" else None

    inner = Inner()
    stream = pool._GuardedStream(inner, httpcore)
    await stream.write(b"first request")  # a fresh connection is never checked
    await stream.read(100)
    inner.readable = True  # the server's FIN arrived
    with pytest.raises(httpcore.ConnectionNotAvailable):
        await stream.write(b"second request")
    assert inner.written == [b"first request"]


async def test_unshared_clients_are_guarded_too(anyio_backend: str) -> None:
    """The default (no sharing): the same race, the same outcome."""
    server = _server()
    async with _relayed(server) as (relay, url):
        async with resilient_mcp.connect(url) as client:
            await client.call_tool("echo", {"text": "warm"})
            await relay.close_all()
            result = await client.call_tool("increment", {"key": "k"})
            assert not result.isError
        assert server.stats.executions["k"] == 1
