"""``load``: many concurrent copies of one read-only call, with latency percentiles."""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from typing import Any

import anyio
import click
from rich.progress import Progress

import resilient_mcp
from resilient_mcp import Client, MCPError

from . import _render as render
from ._args import parse_pairs
from ._common import json_flag, make_target, split_url, target_options
from ._exit import Exit, error_class, exit_code
from ._target import Target


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


async def _check_tool(client: Client, name: str, allow: bool) -> None:
    tools = {t.name: t for t in await client.list_tools()}
    if name not in tools:
        raise click.UsageError(f"the server has no tool {name!r}")
    notes = tools[name].annotations
    safe = notes is not None and bool(notes.readOnlyHint or notes.idempotentHint)
    if not safe and not allow:
        raise click.UsageError(
            f"tool {name!r} is not annotated readOnlyHint or idempotentHint: calling it "
            "many times may do something many times; pass --allow-side-effects to insist"
        )


async def _load(
    target: Target,
    op: str,
    arguments: dict[str, Any],
    *,
    concurrency: int,
    count: int | None,
    duration: float | None,
    allow: bool,
    show: bool,
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    async with resilient_mcp.connect(target.server, **target.options()) as client:
        if op not in ("ping", "tools/list"):
            await _check_tool(client, op, allow)

        async def one() -> None:
            started = time.perf_counter()
            try:
                if op == "ping":
                    await client.ping()
                elif op == "tools/list":
                    await client.request("tools/list", None)
                else:
                    result = await client.call_tool(op, arguments)
                    if result.isError:
                        errors["ToolError"] += 1
                        outcomes["tool_error"] += 1
                        return
                latencies.append(time.perf_counter() - started)
                outcomes["ok"] += 1
            except MCPError as exc:
                errors[error_class(exc)] += 1
                outcomes["error"] += 1

        started = time.perf_counter()
        end = None if duration is None else anyio.current_time() + duration
        issued = 0
        with Progress(disable=not show, transient=True, console=render.err) as bar:
            task = bar.add_task(op, total=count)
            limiter = anyio.Semaphore(concurrency)

            async def worker() -> None:
                try:
                    await one()
                finally:
                    limiter.release()
                    bar.advance(task)

            async with anyio.create_task_group() as tg:
                while (count is None or issued < count) and (
                    end is None or anyio.current_time() < end
                ):
                    await limiter.acquire()
                    issued += 1
                    tg.start_soon(worker)
        elapsed = time.perf_counter() - started
        stats = client.stats
        recoveries = {
            "retries": stats.retries,
            "recoveries": stats.recoveries,
            "handshakes": stats.handshakes,
            "session_changes": stats.session_changes,
            "requests_sent": stats.requests,
        }
    ordered = sorted(latencies)
    ms = {
        f"p{q}": None if (v := percentile(ordered, q)) is None else round(v * 1000, 3)
        for q in (50, 90, 99)
    }
    ms["max"] = round(ordered[-1] * 1000, 3) if ordered else None
    return {
        "operation": op,
        "requests": issued,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "ok": outcomes["ok"],
        "failed": issued - outcomes["ok"],
        "latency_ms": ms,
        "errors": dict(errors),
        "client": recoveries,
    }


@click.command()
@click.argument("words", nargs=-1, metavar="[URL] [ping|tools/list|TOOL] [K=V]...")
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("-n", "--count", type=click.IntRange(min=1), help="Requests in all (default 100).")
@click.option(
    "-d",
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to keep going instead of --count.",
)
@click.option(
    "--allow-side-effects",
    is_flag=True,
    help="Allow a tool that is not annotated read-only or idempotent.",
)
@json_flag
@target_options
def load(
    words: tuple[str, ...],
    concurrency: int,
    count: int | None,
    duration: float | None,
    allow_side_effects: bool,
    as_json: bool,
    **params: Any,
) -> int:
    """Send one read-only call many times, CONCURRENCY at once (default: tools/list)."""
    url, rest = split_url(words)
    op = rest[0] if rest else "tools/list"
    if count is not None and duration is not None:
        raise click.UsageError("give --count or --duration, not both")
    if count is None and duration is None:
        count = 100
    arguments = parse_pairs(rest[1:])
    show = not as_json and sys.stderr.isatty()
    target = make_target(params, url)
    try:
        report = anyio.run(
            lambda: _load(
                target,
                op,
                arguments,
                concurrency=concurrency,
                count=count,
                duration=duration,
                allow=allow_side_effects,
                show=show,
            )
        )
    except MCPError as exc:
        render.report_error(exc, as_json=as_json)
        return int(exit_code(exc))
    if as_json:
        render.emit_json({"ok": report["failed"] == 0, **report})
    else:
        lat = report["latency_ms"]
        render.out.print(
            f"{report['operation']}: {report['requests']} requests, "
            f"{report['concurrency']} at once, {report['seconds']} s; "
            f"{report['ok']} ok, {report['failed']} failed"
        )
        render.table(
            "Latency (ms)",
            ["p50", "p90", "p99", "max"],
            [[lat["p50"], lat["p90"], lat["p99"], lat["max"]]],
        )
        render.table("Errors", ["class", "count"], sorted(report["errors"].items()))
        render.table("Client", list(report["client"]), [list(report["client"].values())])
    return Exit.OK if report["failed"] == 0 else Exit.LOAD_FAILURES
