"""The seed race: many sessions at once against one mcp 1.26 FastMCP server with 380 tools.

The setup of the bug report behind this library: clients of a FastMCP 1.x server with
hundreds of tools got ``-32602`` for requests that reached the server before their
session was initialized. mcp 1.26 answers such a request with ``-32602 Invalid request
parameters`` (``data: ""``; the words "Received request before initialization was
complete" appear only in the server's log) - the same answer it gives for an unknown
method or bad arguments, so a client cannot tell the race from its own mistake. Over
Streamable HTTP it also hands out a fresh ``Mcp-Session-Id`` on its 400 answer to any
session-less non-initialize POST (an uninitialized session: everything sent on it gets
that -32602).

Per transport (legacy HTTP+SSE, then Streamable HTTP), against one private server:

- 4 long-lived clients, each entered with ``wait_ready=False`` and at once listing all
  380 tools while calling tools concurrently;
- meanwhile a fresh-session driver: 200 sessions, each opened (``wait_ready=False``)
  for exactly one call made immediately, several in flight at a time.

Zero failures, every answer right, no recovery handshake, and the server never logged
a request that arrived before its session was initialized.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import anyio
import pytest

import resilient_mcp
from resilient_mcp import Client

from .launcher import HttpTransport, Mcp126Peer, PeerStartError

pytestmark = [pytest.mark.anyio, pytest.mark.peer]

TOOL_COUNT = 380
LONG_LIVED = 4
CALLS_PER_LONG_LIVED = 25
FRESH_SESSIONS = 200
FRESH_IN_FLIGHT = 4
# A healthy run takes a few seconds per transport on 2 cores; a hang must fail, not stall.
DEADLINE = 60.0
EARLY_REQUEST_LOG = "before initialization"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sse", "streamable-http"])
def race_peer(request: pytest.FixtureRequest) -> Iterator[Mcp126Peer]:
    """A private mcp 1.26 server (its log is checked, so it is shared with no one)."""
    transport: HttpTransport = request.param
    try:
        peer = Mcp126Peer(transport)
    except PeerStartError as exc:
        pytest.fail(f"mcp126/{transport}: {exc}", pytrace=False)
    try:
        yield peer
    finally:
        peer.stop()


@dataclass
class Tally:
    calls: int = 0
    sessions: int = 0
    failures: list[str] = field(default_factory=list)
    clients: list[Client] = field(default_factory=list)


def catalog_tool(i: int) -> str:
    """The name of a generated catalog tool of the mcp126 peer (see mcp126_server.py)."""
    domains = (
        "billing",
        "calendar",
        "crm",
        "docs",
        "files",
        "inventory",
        "issues",
        "mail",
        "metrics",
        "search",
        "shipping",
        "tickets",
        "users",
        "wiki",
    )
    verbs = ("get", "list", "create", "update", "delete", "search", "export")
    index = i % (TOOL_COUNT - 3)
    return (
        f"{domains[index % len(domains)]}_{verbs[(index // len(domains)) % len(verbs)]}_{index:03d}"
    )


async def call_and_check(client: Client, i: int, tally: Tally, who: str) -> None:
    try:
        if i % 2:
            result = await client.call_tool("echo", {"text": f"{who}-{i}"})
            expected = f"{who}-{i}"
            ok = not result.isError and result.text == expected
        else:
            name = catalog_tool(i)
            result = await client.call_tool(name, {"query": who, "limit": i})
            ok = not result.isError and result.text.startswith(f"{name}: ")
        if not ok:
            tally.failures.append(f"{who} call {i}: wrong answer {result!r}")
        tally.calls += 1
    except resilient_mcp.MCPError as exc:
        tally.failures.append(f"{who} call {i}: {type(exc).__name__}: {exc}")


async def long_lived(url: str, transport: HttpTransport, n: int, tally: Tally) -> None:
    who = f"long{n}"
    async with resilient_mcp.connect(
        resilient_mcp.HTTPServer(url, transport=transport), wait_ready=False
    ) as client:
        tally.clients.append(client)

        async def list_all() -> None:
            try:
                tools = await client.list_tools()
                if len(tools) != TOOL_COUNT:
                    tally.failures.append(f"{who}: listed {len(tools)} tools")
            except resilient_mcp.MCPError as exc:
                tally.failures.append(f"{who} tools/list: {type(exc).__name__}: {exc}")

        async with anyio.create_task_group() as tg:
            tg.start_soon(list_all)
            for i in range(CALLS_PER_LONG_LIVED):
                tg.start_soon(call_and_check, client, i, tally, who)


async def fresh_sessions(url: str, transport: HttpTransport, tally: Tally) -> None:
    limiter = anyio.CapacityLimiter(FRESH_IN_FLIGHT)

    async def one(i: int) -> None:
        async with limiter:
            try:
                async with resilient_mcp.connect(
                    resilient_mcp.HTTPServer(url, transport=transport), wait_ready=False
                ) as client:
                    await call_and_check(client, i, tally, f"fresh{i}")
                    if client.stats.recoveries:
                        tally.failures.append(f"fresh{i}: {client.stats.recoveries} recoveries")
                tally.sessions += 1
            except resilient_mcp.MCPError as exc:
                tally.failures.append(f"fresh{i} session: {type(exc).__name__}: {exc}")

    async with anyio.create_task_group() as tg:
        for i in range(FRESH_SESSIONS):
            tg.start_soon(one, i)


async def test_seed_race(race_peer: Mcp126Peer) -> None:
    url, transport = race_peer.url, race_peer.transport
    tally = Tally()
    started = time.perf_counter()
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            for n in range(LONG_LIVED):
                tg.start_soon(long_lived, url, transport, n, tally)
            tg.start_soon(fresh_sessions, url, transport, tally)
    elapsed = time.perf_counter() - started

    assert tally.failures == [], "\n".join(tally.failures[:20])
    assert tally.sessions == FRESH_SESSIONS
    assert tally.calls == FRESH_SESSIONS + LONG_LIVED * CALLS_PER_LONG_LIVED
    for client in tally.clients:
        assert client.era == "legacy"
        assert client.transport == transport
        assert client.stats.recoveries == 0
        assert client.stats.handshakes == 1
    log = race_peer.stderr_text(limit=1_000_000)
    assert EARLY_REQUEST_LOG not in log, log[-4000:]
    print(f"seed race over {transport}: {elapsed:.1f} s")  # shown with -s
