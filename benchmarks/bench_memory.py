#!/usr/bin/env python
"""Client memory per open idle session, and where it goes.

One real `mcp` 2.3 server (Streamable HTTP, uvicorn, `tests/peers/launcher.py`) on
127.0.0.1. For each N (`--sessions`) every measurement runs in a child process of its
own (so that its RSS is its own):

- `floor` (RSS): one shared `httpx.AsyncClient`, raw legacy-era POSTs
  (`bench_client.RawSession`), the sessions kept open;
- `resilient` (RSS): `resilient_mcp.connect(url)` with its defaults (a pool each);
- `resilient+pool` (RSS): `HTTPServer(url, share_pool=True)` (one pool per origin);
- `resilient` (tracemalloc): the same, with `tracemalloc` on, for the Python heap per
  session grouped by file:line (top `--top`) and by file.

Each child opens and closes one warm-up session first (imports, caches, the first
connection), runs `gc.collect()`, takes the "before" figure, opens N sessions (at most
`--concurrency` at a time) and keeps them open and idle, runs `gc.collect()` again and
takes the "after" figure; per session = (after - before) / N. Then it closes them all.
The RSS children do not run tracemalloc (it costs memory of its own).

    .venv/bin/python benchmarks/bench_memory.py --sessions 200 1000 [--top 25]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (str(ROOT), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

TIMEOUT = 120.0
FRAMES = 12  # enough to reach our own frame below anyio/httpx/asyncio internals


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _short(filename: str) -> str:
    for marker in ("site-packages/", "resilient_mcp/", "lib/python3"):
        at = filename.rfind(marker)
        if at >= 0:
            return filename[at:] if marker == "resilient_mcp/" else filename[at + len(marker) :]
    return filename


async def _factory(kind: str, url: str) -> tuple[Any, Any]:
    """(an async context manager factory for one idle session of `kind`, its cleanup)."""
    if kind == "floor":
        import httpx
        from bench_client import RawSession

        shared = httpx.AsyncClient(timeout=TIMEOUT)

        class Floor:
            async def __aenter__(self) -> Floor:
                self.session = RawSession(shared, url)
                await self.session.initialize()
                await self.session.initialized()
                return self

            async def __aexit__(self, *exc: object) -> None:
                await self.session.delete()

        return Floor, shared.aclose
    import resilient_mcp

    async def nothing() -> None:
        return None

    target = resilient_mcp.HTTPServer(url, share_pool=kind == "resilient+pool")
    return (lambda: resilient_mcp.connect(target)), nothing


async def run_child(kind: str, url: str, n: int, concurrency: int, top: int) -> dict[str, Any]:
    trace = kind.endswith(":trace")
    factory, cleanup = await _factory(kind.split(":")[0], url)
    async with factory():  # warm-up
        pass
    gate = asyncio.Semaphore(concurrency)
    opened = 0
    all_open, go_close = asyncio.Event(), asyncio.Event()
    errors: dict[str, int] = {}

    def tick() -> None:
        nonlocal opened
        opened += 1
        if opened == n:
            all_open.set()

    async def session() -> None:
        try:
            async with gate:
                cm = factory()
                async with asyncio.timeout(TIMEOUT):
                    await cm.__aenter__()
        except Exception as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            tick()
            return
        tick()
        try:
            await go_close.wait()
        finally:
            async with asyncio.timeout(TIMEOUT):
                await cm.__aexit__(None, None, None)

    if trace:
        tracemalloc.start(FRAMES)
    gc.collect()
    before = tracemalloc.take_snapshot() if trace else None
    rss0 = _rss()
    started = time.perf_counter()
    tasks = [asyncio.create_task(session()) for _ in range(n)]
    await all_open.wait()
    open_s = time.perf_counter() - started
    gc.collect()
    rss1 = _rss()
    result: dict[str, Any] = {"kind": kind, "n": n, "open_s": open_s, "errors": errors}
    result["rss_kb"] = (rss1 - rss0) / n / 1024
    if trace:
        after = tracemalloc.take_snapshot()
        assert before is not None
        tracemalloc.stop()
        lines = after.compare_to(before, "lineno")
        # Who asked for it: the innermost frame in resilient_mcp (else the innermost).
        ours: dict[str, list[float]] = {}
        for stat in after.compare_to(before, "traceback"):
            frames = list(reversed(stat.traceback))  # innermost first
            mine = next((f for f in frames if "/resilient_mcp/" in f.filename), frames[0])
            where = f"{_short(mine.filename)}:{mine.lineno}"
            entry = ours.setdefault(where, [0.0, 0.0])
            entry[0] += stat.size_diff / n
            entry[1] += stat.count_diff / n
        result["ours"] = sorted(ours.items(), key=lambda item: -item[1][0])[:top]
        result["heap_kb"] = sum(s.size_diff for s in lines) / n / 1024
        result["lines"] = [
            (
                f"{_short(s.traceback[0].filename)}:{s.traceback[0].lineno}",
                s.size_diff / n,
                s.count_diff / n,
            )
            for s in lines[:top]
        ]
        files: dict[str, list[float]] = {}
        for s in lines:
            name = _short(s.traceback[0].filename)
            entry = files.setdefault(name, [0.0, 0.0])
            entry[0] += s.size_diff / n
            entry[1] += s.count_diff / n
        result["files"] = sorted(files.items(), key=lambda item: -item[1][0])[:top]
    go_close.set()
    await asyncio.gather(*tasks)
    await cleanup()
    return result


def _child(args: argparse.Namespace) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.n + 1024)), hard))
    result = asyncio.run(run_child(args.kind, args.url, args.n, args.concurrency, args.top))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def _spawn(extra: list[str], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", *extra]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"failed": f"timed out after {timeout:.0f} s"}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[7:])
            return result
    return {"failed": (done.stderr.strip().splitlines() or ["no output"])[-1][:300]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=1, help="RSS runs per contender (median)")
    parser.add_argument("--no-trace", action="store_true", help="skip the tracemalloc child")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args)

    from tests.peers.launcher import launch_mcp_peer

    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    peer = launch_mcp_peer()
    try:
        for n in args.sessions:
            common = ["--url", peer.url, "--n", str(n), "--concurrency", str(args.concurrency)]
            common += ["--top", str(args.top)]
            rows: dict[str, list[dict[str, Any]]] = {}
            for _ in range(args.repeat):
                for kind in ("floor", "resilient", "resilient+pool"):
                    rows.setdefault(kind, []).append(
                        _spawn(["--kind", kind, *common], args.timeout)
                    )
            print(f"\n== {n} idle sessions, {args.concurrency} opened at a time ==")
            print(f"{'contender':14} {'RSS KB/session':>15} {'open s':>8}  errors")
            rss: dict[str, float] = {}
            for kind, runs in rows.items():
                ok = sorted((r for r in runs if "failed" not in r), key=lambda r: r["rss_kb"])
                if not ok:
                    print(f"{kind:14} failed: {runs[0]['failed']}")
                    continue
                mid = ok[len(ok) // 2]
                rss[kind] = mid["rss_kb"]
                each = " ".join(f"{r['rss_kb']:.1f}" for r in ok)
                print(
                    f"{kind:14} {mid['rss_kb']:>15.1f} {mid['open_s']:>8.2f}  "
                    f"{mid['errors'] or 'none'}  (runs: {each})"
                )
            for ours in ("resilient", "resilient+pool"):
                if "floor" in rss and ours in rss and rss["floor"] > 0:
                    print(f"  {ours} / floor: {rss[ours] / rss['floor']:.2f}x")
            if args.no_trace:
                continue
            traced = _spawn(["--kind", "resilient:trace", *common], args.timeout)
            if "failed" in traced:
                print(f"tracemalloc run failed: {traced['failed']}")
                continue
            print(f"\nPython heap per session (tracemalloc): {traced['heap_kb']:.2f} KB")
            print(f"{'bytes':>8} {'blocks':>7}  file:line (top {args.top})")
            for where, size, count in traced["lines"]:
                print(f"{size:>8.0f} {count:>7.2f}  {where}")
            print(f"\n{'bytes':>8} {'blocks':>7}  our line that allocated it (top {args.top})")
            for where, (size, count) in traced["ours"]:
                print(f"{size:>8.0f} {count:>7.2f}  {where}")
            print(f"\n{'bytes':>8} {'blocks':>7}  file")
            for where, (size, count) in traced["files"]:
                print(f"{size:>8.0f} {count:>7.2f}  {where}")
    finally:
        peer.stop()
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
