#!/usr/bin/env python
"""Sessions at scale: N sessions open at once to one server, side by side in one run.

One real `mcp` 2.3 server (Streamable HTTP, uvicorn, `tests/peers/launcher.py`) on
127.0.0.1; every contender runs in a child process of its own (so that its RSS is its
own), one after the other against that server:

- `floor`: one shared `httpx.AsyncClient`, raw POSTs (legacy handshake: initialize +
  notifications/initialized), `bench_client.RawSession`;
- `resilient`: `resilient_mcp.connect(url)` (defaults; a pool of its own per session);
- `resilient+pool`: `HTTPServer(url, share_pool=True)` (shared pools per origin);
- `mcp`, `fastmcp`: `mcp.Client(url)`, `fastmcp.Client(url)` (their defaults); their N is
  capped by `--sdk-max` (each SDK session costs ~1 MB and ~60 ms to open here).

For each: open N sessions at most `--concurrency` at a time and keep them open; client
RSS per open session (RSS with all open minus RSS before, over N); time to open all;
time for one `echo` call on every session (all at once); time to close all; errors by
class. Ratios against the floor and against the best SDK client.

`--fresh-clients`: issue 13's "connect -> first call -> close in the legacy era, the
second client onwards in a process": median of `--fresh-n` sequential rounds after one
warm-up, for the floor (3 POSTs on a warm client), `resilient` legacy (a client of its
own, shared pool off and on) and with a shared `http_client`.

    .venv/bin/python benchmarks/bench_scale.py --sessions 200 1000 5000 [--fresh-clients]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (str(ROOT), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

CONTENDERS = ("floor", "resilient", "resilient+pool", "mcp", "fastmcp")
SDKS = ("mcp", "fastmcp")
CALL_TIMEOUT = 60.0


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed), hard))


async def _opener(kind: str, url: str, shared: Any) -> Any:
    """An async context manager factory for one session of `kind`, and its call."""
    from bench_client import ARGS, TOOL, RawSession, _check_result

    if kind == "floor":

        class Floor:
            async def __aenter__(self) -> Any:
                self.session = RawSession(shared, url)
                await self.session.initialize()
                await self.session.initialized()
                return self

            async def call(self) -> None:
                await self.session.call()

            async def __aexit__(self, *exc: object) -> None:
                await self.session.delete()

        return Floor
    if kind.startswith("resilient"):
        import resilient_mcp

        target = resilient_mcp.HTTPServer(url, share_pool=kind == "resilient+pool")

        class Ours:
            async def __aenter__(self) -> Any:
                self.cm = resilient_mcp.connect(target)
                self.client = await self.cm.__aenter__()
                return self

            async def call(self) -> None:
                _check_result(await self.client.call_tool(TOOL, ARGS))

            async def __aexit__(self, *exc: object) -> None:
                await self.cm.__aexit__(None, None, None)

        return Ours
    factory: Any
    if kind == "mcp":
        from mcp import Client as factory
    else:
        from fastmcp import Client as factory

    class SDK:
        async def __aenter__(self) -> Any:
            self.cm = factory(url)
            self.client = await self.cm.__aenter__()
            return self

        async def call(self) -> None:
            _check_result(await self.client.call_tool(TOOL, ARGS))

        async def __aexit__(self, *exc: object) -> None:
            await self.cm.__aexit__(None, None, None)

    return SDK


def _error_name(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return type(exc).__name__


async def run_one(kind: str, url: str, n: int, concurrency: int) -> dict[str, Any]:
    """Open n sessions (concurrency at a time), one call on each, close; in this process."""
    import httpx

    shared = httpx.AsyncClient(timeout=CALL_TIMEOUT) if kind == "floor" else None
    factory = await _opener(kind, url, shared)
    errors: collections.Counter[str] = collections.Counter()
    gate = asyncio.Semaphore(concurrency)
    opened = 0
    all_open, go_call, go_close = asyncio.Event(), asyncio.Event(), asyncio.Event()
    called = 0
    all_called = asyncio.Event()

    def tick_open() -> None:
        nonlocal opened
        opened += 1
        if opened == n:
            all_open.set()

    def tick_call() -> None:
        nonlocal called
        called += 1
        if called == n:
            all_called.set()

    async def session() -> None:
        try:
            async with gate:
                cm = factory()
                async with asyncio.timeout(CALL_TIMEOUT):
                    await cm.__aenter__()
        except Exception as exc:
            errors[f"open {_error_name(exc)}"] += 1
            tick_open()
            tick_call()
            return
        tick_open()
        try:
            await go_call.wait()
            try:
                async with asyncio.timeout(CALL_TIMEOUT):
                    await cm.call()
            except Exception as exc:
                errors[f"call {_error_name(exc)}"] += 1
            tick_call()
            await go_close.wait()
        finally:
            try:
                async with asyncio.timeout(CALL_TIMEOUT):
                    await cm.__aexit__(None, None, None)
            except Exception as exc:
                errors[f"close {_error_name(exc)}"] += 1

    gc.collect()
    rss0 = _rss()
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(session()) for _ in range(n)]
    await all_open.wait()
    t1 = time.perf_counter()
    gc.collect()
    rss1 = _rss()
    go_call.set()
    await all_called.wait()
    t2 = time.perf_counter()
    go_close.set()
    await asyncio.gather(*tasks)
    t3 = time.perf_counter()
    if shared is not None:
        await shared.aclose()
    return {
        "kind": kind,
        "n": n,
        "kb_per_session": (rss1 - rss0) / n / 1024,
        "open_s": t1 - t0,
        "call_s": t2 - t1,
        "close_s": t3 - t2,
        "errors": dict(errors),
    }


async def run_fresh(url: str, rounds: int) -> dict[str, float]:
    """Median ms of connect -> call -> close, legacy era, after one warm-up round."""
    import httpx
    from bench_client import ARGS, TOOL, Floor, _check_result, tagged_url

    import resilient_mcp

    samples: dict[str, list[float]] = collections.defaultdict(list)
    async with httpx.AsyncClient(timeout=CALL_TIMEOUT) as shared:
        floor = Floor(shared, url)
        legacy_url = tagged_url(url, "scale-legacy")
        variants: dict[str, Any] = {
            "resilient legacy": resilient_mcp.HTTPServer(legacy_url),
            "resilient legacy+pool": resilient_mcp.HTTPServer(legacy_url, share_pool=True),
            "resilient legacy+shared httpx": resilient_mcp.HTTPServer(
                legacy_url, http_client=shared
            ),
        }
        # A long-lived session keeps the shared pool alive, as in a process that
        # already talks to the origin ("the second client onwards").
        async with resilient_mcp.connect(variants["resilient legacy+pool"], era="legacy"):
            for i in range(rounds + 1):
                start = time.perf_counter()
                await floor.once()
                took = time.perf_counter() - start
                await floor.after_once()
                if i:
                    samples["floor"].append(took * 1000)
                for name, target in variants.items():
                    start = time.perf_counter()
                    async with resilient_mcp.connect(target, era="legacy") as client:
                        _check_result(await client.call_tool(TOOL, ARGS))
                    if i:
                        samples[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def _child(args: argparse.Namespace) -> int:
    _raise_fd_limit(4 * (args.n or 0) + 1024)
    if args.fresh:
        result: Any = asyncio.run(run_fresh(args.url, args.fresh_n))
    else:
        result = asyncio.run(run_one(args.kind, args.url, args.n, args.concurrency))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def _spawn(extra: list[str], timeout: float) -> Any:
    cmd = [sys.executable, __file__, "--child", *extra]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"failed": f"timed out after {timeout:.0f} s"}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"failed": (done.stderr.strip().splitlines() or ["no output"])[-1][:200]}


def _print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'contender':16} {'N':>5} {'KB/session':>10} {'open s':>8} {'call s':>8}"
    print(head + f" {'close s':>8}  errors")
    for row in rows:
        if "failed" in row:
            print(f"{row['kind']:16} {row['n']:>5}  failed: {row['failed']}")
            continue
        print(
            f"{row['kind']:16} {row['n']:>5} {row['kb_per_session']:>10.1f} "
            f"{row['open_s']:>8.2f} {row['call_s']:>8.2f} {row['close_s']:>8.2f}  "
            f"{row['errors'] or 'none'}"
        )


def _ratios(rows: list[dict[str, Any]]) -> None:
    ok = {r["kind"]: r for r in rows if "failed" not in r}
    sdk = [ok[k] for k in SDKS if k in ok and ok[k]["n"] == rows[0]["n"]]
    for ours in ("resilient", "resilient+pool"):
        if ours not in ok:
            continue
        for figure in ("kb_per_session", "open_s", "call_s", "close_s"):
            parts = []
            if "floor" in ok and ok["floor"][figure] > 0:
                parts.append(f"{ok[ours][figure] / ok['floor'][figure]:.2f}x floor")
            if sdk:
                best = min(sdk, key=lambda r: r[figure])
                if best[figure] > 0:
                    parts.append(
                        f"{ok[ours][figure] / best[figure]:.2f}x best SDK ({best['kind']})"
                    )
            print(f"  {ours} {figure}: {', '.join(parts) or 'n/a'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--sdk-max", type=int, default=1000, help="cap on the SDKs' N")
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS))
    parser.add_argument("--fresh-clients", action="store_true")
    parser.add_argument("--fresh-n", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=900.0, help="per contender")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--fresh", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args)

    from tests.peers.launcher import launch_mcp_peer

    _raise_fd_limit(4 * max(args.sessions) + 1024)  # the server inherits it
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    peer = launch_mcp_peer()
    try:
        for n in args.sessions:
            rows = []
            for kind in args.contenders:
                count = min(n, args.sdk_max) if kind in SDKS else n
                extra = ["--kind", kind, "--url", peer.url, "--n", str(count)]
                extra += ["--concurrency", str(args.concurrency)]
                row = _spawn(extra, args.timeout)
                row.setdefault("kind", kind)
                row.setdefault("n", count)
                rows.append(row)
            print(f"\n== {n} sessions, {args.concurrency} opened at a time ==")
            _print_table(rows)
            _ratios(rows)
        if args.fresh_clients:
            fresh = _spawn(["--fresh", "--url", peer.url, "--fresh-n", str(args.fresh_n)], 600)
            print(f"\n== connect -> first call -> close, legacy era, median of {args.fresh_n} ==")
            floor = fresh.get("floor")
            for name, ms in fresh.items():
                ratio = f"  {ms / floor:.2f}x floor" if floor and name != "floor" else ""
                print(f"{name:32} {ms:8.2f} ms{ratio}" if isinstance(ms, float) else f"{name} {ms}")
    finally:
        peer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
