"""connect → first call → close over stdio, against server-everything, side by side.

Ours, mcp 2.3's ``Client`` (stdio) and fastmcp's ``Client`` (stdio, a fresh process per
session: ``keep_alive=False``) are measured in the same run, interleaved in a shuffled
order each round so that machine load falls on all alike. The first connect of each
client in this process is reported apart (ours then probes the era; later starts of the
same command line reuse the detection).

By default all three pass the server a small safe environment (ours since 2026-12-03:
``StdioServer.inherit_env=False``). Ours is also measured with ``inherit_env=True`` (our
whole environment): on a machine with ``NODE_EXTRA_CA_CERTS`` set, node then loads a CA
bundle at start-up, which shows what inheriting costs.

Warm rows: fastmcp's default ``keep_alive=True`` and ours with
``StdioServer(keep_alive=...)`` keep one server process for the next session; they do
not start a process, so they are not the same work and are reported apart (the first
session, which starts the process, is left out of their medians).

    .venv/bin/python benchmarks/bench_stdio.py [--rounds N]

Needs node and ``make peers`` (node_modules/@modelcontextprotocol/server-everything).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import resilient_mcp  # noqa: E402
from tests.peers.launcher import everything_stdio_command  # noqa: E402

Run = Callable[[], Awaitable[None]]


def clients(
    command: list[str],
) -> tuple[dict[str, Run], dict[str, Run], Callable[[], Awaitable[None]]]:
    """The cold clients, the warm ones, and what ends the warm ones' processes."""
    from fastmcp import Client as FastClient
    from fastmcp.client.transports import StdioTransport as FastStdio
    from mcp import Client as McpClient
    from mcp import StdioServerParameters

    exe, args = command[0], command[1:]

    def ours_with(server: resilient_mcp.StdioServer) -> Run:
        async def run() -> None:
            async with resilient_mcp.connect(server) as client:
                await client.call_tool("echo", {"message": "hi"})

        return run

    async def mcp23() -> None:
        async with McpClient(StdioServerParameters(command=exe, args=args)) as client:
            await client.call_tool("echo", {"message": "hi"})

    async def fastmcp() -> None:
        transport = FastStdio(exe, args, keep_alive=False)
        async with FastClient(transport) as client:
            await client.call_tool("echo", {"message": "hi"})

    warm_transport = FastStdio(exe, args, keep_alive=True)
    warm_client = FastClient(warm_transport)

    async def fastmcp_warm() -> None:
        async with warm_client:
            await warm_client.call_tool("echo", {"message": "hi"})

    async def close_warm() -> None:
        await warm_transport.close()  # type: ignore[no-untyped-call]  # the process it kept
        # Ours: the event loop's end stops the process kept warm (that is tested).

    cold = {
        "ours": ours_with(resilient_mcp.StdioServer(exe, args=args)),
        "ours, inherit_env=True": ours_with(
            resilient_mcp.StdioServer(exe, args=args, inherit_env=True)
        ),
        "mcp 2.3": mcp23,
        "fastmcp": fastmcp,
    }
    warm = {
        "ours, keep_alive=60": ours_with(resilient_mcp.StdioServer(exe, args=args, keep_alive=60)),
        "fastmcp, keep_alive=True": fastmcp_warm,
    }
    return cold, warm, close_warm


async def timed(run: Run) -> float:
    start = time.perf_counter()
    await run()
    return time.perf_counter() - start


async def main(rounds: int) -> None:
    command = everything_stdio_command()
    cold, warm, close_warm = clients(command)
    runs = {**cold, **warm}
    first: dict[str, float] = {}
    repeated: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    try:
        random.shuffle(order)
        for name in order:  # the first connect of each in this process
            first[name] = await timed(runs[name])
        for _ in range(rounds):
            random.shuffle(order)
            for name in order:
                repeated[name].append(await timed(runs[name]))
    finally:
        await close_warm()

    medians = {name: statistics.median(times) for name, times in repeated.items()}
    best_other = min(medians["mcp 2.3"], medians["fastmcp"])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    ca = "set" if "NODE_EXTRA_CA_CERTS" in os.environ else "unset"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(
        f"server-everything over stdio, {rounds} rounds, {when}, load {load:.1f}, "
        f"NODE_EXTRA_CA_CERTS {ca}"
    )
    print(f"{'client':<26} {'first (ms)':>11} {'repeated median (ms)':>21} {'ratio':>7}")
    for name in runs:
        ratio = f"{medians[name] / best_other:>7.2f}" if name in cold else " " * 7
        print(f"{name:<26} {first[name] * 1000:>11.0f} {medians[name] * 1000:>21.1f} {ratio}")
    print(
        f"ours / faster of mcp 2.3 and fastmcp (repeated): {medians['ours'] / best_other:.2f}x "
        f"(inherit_env=True: {medians['ours, inherit_env=True'] / best_other:.2f}x; "
        "target <= 1.05)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    anyio.run(main, parser.parse_args().rounds)
