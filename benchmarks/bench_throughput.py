#!/usr/bin/env python
"""Throughput of one session: 1, 8, 32 and 128 callers, with 0 and 20 ms of server latency.

One real `mcp` 2.3 Streamable HTTP server (stateful, SSE responses; the one
`bench_client.py` uses, started in a child process on 127.0.0.1 by
`tests/peers/launcher.py`). The 20 ms is server behaviour: the peer's `sleep` tool
awaits `anyio.sleep(0.02)`; the 0 ms rows call `echo`. Each row: every contender opens
one session, warms it, then `callers` concurrent callers share it for a fixed number of
calls; calls/s (wall clock) and client CPU per call (`time.process_time` of this process
only: the server is another process). Contenders are interleaved row by row in a new
order every run.

Contenders: `mcp.Client` and `fastmcp.Client` (their default mode="auto", the modern era
with this server), `resilient_mcp.connect` with the adaptive limit (`Limits(max_connections=64,
min_connections=4)`; the ratios and the limit columns are this one's) and, for reference,
`resilient default` (default `Limits`: the fixed limit of 8). Per row: adaptive / the best
SDK client in throughput (target >= 1.2) and in CPU per call (target <= 0.7), and the limit
the adaptive admission ended the row at (its peak in brackets).

    .venv/bin/python benchmarks/bench_throughput.py [--runs 3] [--quick] [--json PATH]

The targets must hold in every run of ``--runs``. Ratios compare contenders measured
side by side in the same run; absolute figures depend on the machine (and on its
neighbours: say so when the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_client import (  # noqa: E402
    CALL_TIMEOUT,
    _check_result,
    _hard_stop,
    _loadavg,
    _versions,
)

import resilient_mcp  # noqa: E402
from tests.peers.launcher import McpPeer, launch_mcp_peer  # noqa: E402

CALLERS = (1, 8, 32, 128)
LATENCIES = (0.0, 0.02)
MCP, FASTMCP, OURS, FIXED = "mcp", "fastmcp", "resilient adaptive", "resilient default"
CONTENDERS = (MCP, FASTMCP, OURS, FIXED)
SDKS = (MCP, FASTMCP)
TPUT_TARGET = 1.2
CPU_TARGET = 0.7

CallFn = Callable[[], Awaitable[None]]


def calls_for(callers: int, latency: float, quick: bool) -> int:
    """Calls per measurement: enough for ~1 s at the slowest contender."""
    if latency > 0:
        base = {1: 60, 8: 300, 32: 800, 128: 1500}[callers]
    else:
        base = {1: 300, 8: 500, 32: 800, 128: 1200}[callers]
    return max(callers * 2, base // 4) if quick else base


def _client(key: str, url: str) -> AbstractAsyncContextManager[Any]:
    if key == MCP:
        from mcp import Client

        return Client(url)
    if key == FASTMCP:
        import fastmcp

        return fastmcp.Client(url)
    # The default is the fixed limit of 8; the adaptive one is opt-in (see Limits).
    limits = resilient_mcp.Limits(max_connections=64, min_connections=4) if key == OURS else None
    return resilient_mcp.connect(url, limits=limits)


def _admission(client: Any) -> Any:
    """Our client's admission (None for the SDK clients): for its limit."""
    session = getattr(client, "_session", None)
    transport = getattr(session, "transport", None)
    return getattr(transport, "_admission", None)


async def _burst(call: CallFn, total: int, callers: int) -> None:
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    async with asyncio.timeout(CALL_TIMEOUT + total * 0.1):
        await asyncio.gather(*(worker() for _ in range(callers)))


@dataclass
class Row:
    tput: dict[str, float] = field(default_factory=dict)  # calls/s
    cpu: dict[str, float] = field(default_factory=dict)  # ms per call
    limit: tuple[int, int] | None = None  # ours: (limit at the end, peak)
    errors: dict[str, str] = field(default_factory=dict)


async def measure_row(url: str, callers: int, latency: float, quick: bool, seed: int) -> Row:
    row = Row()
    tool, args = ("sleep", {"seconds": latency}) if latency > 0 else ("echo", {"text": "hi"})
    total = calls_for(callers, latency, quick)
    order = list(CONTENDERS)
    random.Random(seed).shuffle(order)
    for key in order:
        try:
            async with AsyncExitStack() as stack:
                async with asyncio.timeout(CALL_TIMEOUT):
                    client = await stack.enter_async_context(_client(key, url))

                async def call(client: Any = client) -> None:
                    _check_result(await client.call_tool(tool, args))

                # Warm: the connections, and our limit (it adapts during the warm-up).
                await _burst(call, max(callers * 4, total // 4), callers)
                gc.collect()
                wall0, cpu0 = time.perf_counter(), time.process_time()
                await _burst(call, total, callers)
                wall = time.perf_counter() - wall0
                used = time.process_time() - cpu0
                row.tput[key] = total / wall
                row.cpu[key] = used * 1000.0 / total
                admission = _admission(client)
                if key == OURS and admission is not None:
                    row.limit = (admission.limit, admission.stats.peak)
        except Exception as exc:
            row.errors[key] = f"{type(exc).__name__}: {exc}"[:200]
    return row


def _best_sdk(values: dict[str, float], *, high: bool) -> float | None:
    found = [values[k] for k in SDKS if k in values]
    if not found:
        return None
    return max(found) if high else min(found)


def verdict(row: Row) -> tuple[float | None, float | None, bool]:
    """(ours / best SDK throughput, ours / best SDK CPU, both targets held)."""
    best_t = _best_sdk(row.tput, high=True)
    best_c = _best_sdk(row.cpu, high=False)
    ours_t, ours_c = row.tput.get(OURS), row.cpu.get(OURS)
    rt = ours_t / best_t if ours_t is not None and best_t else None
    rc = ours_c / best_c if ours_c is not None and best_c else None
    held = rt is not None and rc is not None and rt >= TPUT_TARGET and rc <= CPU_TARGET
    return rt, rc, held


def render(rows: dict[tuple[float, int], Row]) -> tuple[list[str], bool]:
    head = (
        f"{'latency':>7} {'callers':>7} | "
        + " ".join(f"{k:>16}" for k in CONTENDERS)
        + " | tput x  cpu x  limit(peak) ok"
    )
    lines = [head, "-" * len(head)]
    all_held = True
    for (latency, callers), row in rows.items():
        cells = []
        for key in CONTENDERS:
            if key in row.tput:
                cells.append(f"{row.tput[key]:>7.0f}/s {row.cpu[key]:>5.2f}ms")
            else:
                cells.append(f"{'n/a':>16}")
        rt, rc, held = verdict(row)
        all_held = all_held and held
        limit = f"{row.limit[0]}({row.limit[1]})" if row.limit else "n/a"
        lines.append(
            f"{latency * 1000:>5.0f}ms {callers:>7} | "
            + " ".join(f"{c:>16}" for c in cells)
            + f" | {rt or 0:>5.2f} {rc or 0:>6.2f}  {limit:>10} {'yes' if held else 'NO'}"
        )
        for key, error in row.errors.items():
            lines.append(f"    n/a {key}: {error}")
    return lines, all_held


async def one_run(url: str, quick: bool, run: int) -> dict[tuple[float, int], Row]:
    rows: dict[tuple[float, int], Row] = {}
    for latency in LATENCIES:
        for callers in CALLERS:
            print(f"run {run}: {latency * 1000:.0f} ms, {callers} callers ...", file=sys.stderr)
            seed = run * 1000 + callers + int(latency * 1000)
            rows[(latency, callers)] = await measure_row(url, callers, latency, quick, seed)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1, help="runs in a row (targets: all)")
    parser.add_argument("--quick", action="store_true", help="a quarter of the calls")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    load_before = _loadavg()
    peer: McpPeer = launch_mcp_peer(stateless=False, json_response=False)
    watchdog = _hard_stop([peer], 900.0 * args.runs)
    results: list[dict[tuple[float, int], Row]] = []
    verdicts: list[bool] = []
    started = time.perf_counter()
    try:
        for run in range(1, args.runs + 1):
            rows = asyncio.run(one_run(peer.url, args.quick, run))
            results.append(rows)
            lines, held = render(rows)
            verdicts.append(held)
            print(f"\nrun {run} of {args.runs} (calls/s and client CPU ms per call):")
            print("\n".join(lines))
            print(f"targets (tput >= {TPUT_TARGET}x, CPU <= {CPU_TARGET}x) held: {held}")
    finally:
        watchdog.cancel()
        peer.stop()
    versions = _versions()
    print(
        f"\nmcp {versions['mcp']} server (stateful, SSE responses), 127.0.0.1; python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, 1-min load before "
        f"{load_before:.1f}; fastmcp {versions['fastmcp']}; "
        f"{time.perf_counter() - started:.0f} s"
    )
    print(
        f"targets held in all {args.runs} run(s): {all(verdicts)} ({sum(verdicts)}/{len(verdicts)})"
    )
    if args.json:
        payload = [
            {
                f"{lat * 1000:.0f}ms/{callers}": {
                    "tput": row.tput,
                    "cpu_ms": row.cpu,
                    "limit": row.limit,
                    "errors": row.errors,
                }
                for (lat, callers), row in rows.items()
            }
            for rows in results
        ]
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
