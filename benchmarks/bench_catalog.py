#!/usr/bin/env python
"""Catalog growth: ``list_tools`` and the first call at 100, 380, 1,000 and 5,000 tools.

One child process per catalog size serves ``resilient_mcp.testing.StrictServer``
(``extra_tools=N``, legacy era, JSON answers) on 127.0.0.1; it exits when this process
closes its stdin, and is killed if it does not within 10 s. For each size, each client
(resilient-mcp ``connect(era="legacy")``, ``mcp.Client(mode="legacy")`` 2.3,
``fastmcp.Client(mode="legacy")``), interleaved, ``--reps`` times: connect (untimed),
``list_tools`` (timed), the first ``call_tool("add")`` (timed; ``add`` declares an
``outputSchema``, so the result is validated), close. Medians, per-tool cost and ratios
are printed. Then, in this process, resilient-mcp's validation per call
(``Catalog.check_output`` of the ``add`` result) at each size, and ``list_tools`` of
1,000 tools in pages of 100 (``page_size=100``) against one page.

    .venv/bin/python benchmarks/bench_catalog.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
SIZES = (100, 380, 1000, 5000)
SERVER = """
import sys
from resilient_mcp.testing import StrictServer, serve
with serve(StrictServer(extra_tools=int(sys.argv[1]), page_size=(int(sys.argv[2]) or None))) as s:
    print(s.url, flush=True)
    sys.stdin.read()
"""


class Server:
    """A StrictServer in a child process, stopped on exit whatever happens."""

    def __init__(self, tools: int, page_size: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(tools), str(page_size)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"the server did not start: {self.url!r}")

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


Open = Callable[[str], AbstractAsyncContextManager[Any]]


def contenders() -> dict[str, Open]:
    import resilient_mcp

    out: dict[str, Open] = {"resilient": lambda url: resilient_mcp.connect(url, era="legacy")}
    try:
        from mcp import Client as McpClient
    except ImportError:
        pass
    else:
        out["mcp 2.3"] = lambda url: McpClient(url, mode="legacy")
    try:
        import fastmcp
    except ImportError:
        pass
    else:
        out["fastmcp"] = lambda url: fastmcp.Client(url, mode="legacy")
    return out


async def timed(step: Awaitable[Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = await step
    return (time.perf_counter() - started) * 1e3, value


async def one_round(open_: Open, url: str) -> tuple[float, float, int]:
    with anyio.fail_after(120):
        async with open_(url) as client:
            list_ms, tools = await timed(client.list_tools())
            call_ms, _ = await timed(client.call_tool("add", {"a": 1, "b": 2}))
    count = len(tools.tools) if hasattr(tools, "tools") else len(tools)
    return list_ms, call_ms, count


def validation_us(url: str) -> float:
    """Median µs of resilient-mcp's check_output for the ``add`` result, in a loop."""
    import resilient_mcp

    async def run() -> float:
        async with resilient_mcp.connect(url, era="legacy") as client:
            await client.list_tools()
            result = await client.call_tool("add", {"a": 1, "b": 2})
            catalog = client._catalog
            samples = []
            for _ in range(5):
                started = time.perf_counter()
                for _ in range(2000):
                    catalog.check_output("add", result, None)
                samples.append((time.perf_counter() - started) / 2000 * 1e6)
            return statistics.median(samples)

    return anyio.run(run)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer reps, sizes up to 1,000")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    reps = 2 if args.quick else args.reps
    sizes = SIZES[:3] if args.quick else SIZES
    load = os.getloadavg()[0]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {load:.2f}")
    if load > (os.cpu_count() or 1) / 2:
        print("WARNING: the machine is busy; compare the ratios of this run, not absolutes")
    clients = contenders()
    figures: dict[str, dict[str, dict[str, float]]] = {}
    for size in sizes:
        with Server(size) as server:
            samples: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
            for _ in range(reps):
                for name, open_ in clients.items():
                    try:
                        list_ms, call_ms, count = anyio.run(one_round, open_, server.url)
                    except Exception as exc:  # a contender's failure is a row, not a crash
                        print(f"{name} at {size}: {type(exc).__name__}: {exc}")
                        continue
                    if count < size:
                        print(f"NOTE: {name} listed {count} tools at {size}")
                    samples[name].append((list_ms, call_ms))
            valid_us = validation_us(server.url)
        row: dict[str, dict[str, float]] = {}
        for name, got in samples.items():
            if not got:
                continue
            list_ms = statistics.median(s[0] for s in got)
            call_ms = statistics.median(s[1] for s in got)
            row[name] = {"list_ms": list_ms, "first_call_ms": call_ms}
        row["resilient"]["validation_us"] = valid_us
        figures[str(size)] = row

    print("\nmedian ms; per tool = (list_tools + first call) / tools, µs")
    print(f"{'tools':>6} {'client':10} {'list_tools':>11} {'1st call':>9} {'per tool':>9}")
    for key, row in figures.items():
        for name, cell in row.items():
            total = cell["list_ms"] + cell["first_call_ms"]
            print(
                f"{key:>6} {name:10} {cell['list_ms']:>11.1f} {cell['first_call_ms']:>9.2f}"
                f" {total / int(key) * 1e3:>9.1f}"
            )
    print("\nratios, resilient / best SDK (list_tools + first call; <1: ours faster)")
    for key, row in figures.items():
        ours = row["resilient"]["list_ms"] + row["resilient"]["first_call_ms"]
        others = {n: c["list_ms"] + c["first_call_ms"] for n, c in row.items() if n != "resilient"}
        if others:
            best = min(others, key=lambda n: others[n])
            print(f"{key:>6}: {ours / others[best]:.2f}x (best: {best})")
    first, last = sizes[0], sizes[-1]
    for name in clients:
        if name in figures[str(first)] and name in figures[str(last)]:
            a, b = figures[str(first)][name], figures[str(last)][name]
            growth = (b["list_ms"] + b["first_call_ms"]) / (a["list_ms"] + a["first_call_ms"])
            print(
                f"growth {first}->{last} tools, {name}: {growth:.1f}x for {last / first:.0f}x tools"
            )
    print("\nresilient validation per call (check_output of `add`), µs:")
    for key, row in figures.items():
        print(f"{key:>6}: {row['resilient']['validation_us']:.2f}")

    # Pagination: 1,000 tools in pages of 100 against one page, ours only.
    import resilient_mcp

    async def list_once(url: str) -> float:
        async with resilient_mcp.connect(url, era="legacy") as client:
            ms, _ = await timed(client.list_tools())
            return ms

    paged: dict[str, float] = {}
    for page_size in (0, 100):
        with Server(1000, page_size) as server:
            paged[str(page_size or "one page")] = statistics.median(
                anyio.run(list_once, server.url) for _ in range(reps)
            )
    print(
        f"\npagination, resilient list_tools of 1,000 tools: one page {paged['one page']:.1f} ms,"
        f" 10 pages of 100 {paged['100']:.1f} ms ({paged['100'] / paged['one page']:.2f}x)"
    )
    if args.json:
        args.json.write_text(json.dumps({"load": load, "sizes": figures, "paged": paged}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
