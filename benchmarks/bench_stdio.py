"""connect → first call → close over stdio, against server-everything, side by side.

Ours, mcp 2.3's ``Client`` (stdio) and fastmcp's ``Client`` (stdio, a fresh process per
session: ``keep_alive=False``) are measured in the same run, interleaved in a shuffled
order each round so that machine load falls on all alike. The first connect of each
client in this process is reported apart (ours then probes the era; later starts of the
same command line reuse the detection). fastmcp's default ``keep_alive=True`` (one server
process kept for the next session) is measured too, and reported separately: it does
not start a process, so it is not the same work.

    .venv/bin/python benchmarks/bench_stdio.py [--rounds N]

Needs node and ``make peers`` (node_modules/@modelcontextprotocol/server-everything).
"""

from __future__ import annotations

import argparse
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


def clients(command: list[str]) -> dict[str, Run]:
    from fastmcp import Client as FastClient
    from fastmcp.client.transports import StdioTransport as FastStdio
    from mcp import Client as McpClient
    from mcp import StdioServerParameters

    exe, args = command[0], command[1:]

    async def ours() -> None:
        async with resilient_mcp.connect(resilient_mcp.StdioServer(exe, args=args)) as client:
            await client.call_tool("echo", {"message": "hi"})

    async def mcp23() -> None:
        async with McpClient(StdioServerParameters(command=exe, args=args)) as client:
            await client.call_tool("echo", {"message": "hi"})

    async def fastmcp() -> None:
        transport = FastStdio(exe, args, keep_alive=False)
        async with FastClient(transport) as client:
            await client.call_tool("echo", {"message": "hi"})

    return {"ours": ours, "mcp 2.3": mcp23, "fastmcp": fastmcp}


async def timed(run: Run) -> float:
    start = time.perf_counter()
    await run()
    return time.perf_counter() - start


async def keep_alive_figure(command: list[str], rounds: int) -> list[float]:
    """fastmcp with its default keep_alive: one process serves every session."""
    from fastmcp import Client as FastClient
    from fastmcp.client.transports import StdioTransport as FastStdio

    transport = FastStdio(command[0], command[1:], keep_alive=True)
    client = FastClient(transport)
    times = []
    try:
        for _ in range(rounds + 1):
            start = time.perf_counter()
            async with client:
                await client.call_tool("echo", {"message": "hi"})
            times.append(time.perf_counter() - start)
    finally:
        await transport.close()  # type: ignore[no-untyped-call]  # the process it kept warm
    return times[1:]  # the first one started the process


async def main(rounds: int) -> None:
    command = everything_stdio_command()
    runs = clients(command)
    first: dict[str, float] = {}
    repeated: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    random.shuffle(order)
    for name in order:  # the first connect of each in this process
        first[name] = await timed(runs[name])
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            repeated[name].append(await timed(runs[name]))
    warm = await keep_alive_figure(command, rounds)

    medians = {name: statistics.median(times) for name, times in repeated.items()}
    best_other = min(medians["mcp 2.3"], medians["fastmcp"])
    print(f"server-everything over stdio, {rounds} rounds, {time.strftime('%Y-%m-%d')}")
    print(f"{'client':<10} {'first (ms)':>11} {'repeated median (ms)':>21} {'ratio':>7}")
    for name in runs:
        print(
            f"{name:<10} {first[name] * 1000:>11.0f} {medians[name] * 1000:>21.0f} "
            f"{medians[name] / best_other:>7.2f}"
        )
    print(
        f"ours / faster of mcp 2.3 and fastmcp (repeated): {medians['ours'] / best_other:.2f}x "
        "(target <= 1.05)"
    )
    print(
        f"fastmcp keep_alive=True (no process start): median "
        f"{statistics.median(warm) * 1000:.0f} ms; ours / it: "
        f"{medians['ours'] / statistics.median(warm):.1f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    anyio.run(main, parser.parse_args().rounds)
