#!/usr/bin/env python
"""What telemetry costs a call: off (the default) against main, and on.

One fault server (`resilient_mcp.testing.StrictServer`, default profile) in a child
process on 127.0.0.1, and three client processes, each with a warm client on its own
session, measured in interleaved rounds (the order shuffled every round) so that the
machine's load falls on all of them alike:

- ``baseline``: `resilient_mcp` as it is at REV (default ``main``), its package extracted
  with `git archive` into a temporary directory put first on the worker's `PYTHONPATH`
  (one process per side: `_baseline.py`'s in-process loader refuses a tree whose `cli/`
  imports `resilient_mcp` absolutely);
- ``off``: the working tree, no ``telemetry=``: the hot path that must cost nothing;
- ``on``: the working tree with ``telemetry=OpenTelemetry(...)`` and the SDK recording
  every span (an in-memory exporter behind a `SimpleSpanProcessor`) and the histogram.

Per round and contender: `CALLS` sequential ``call_tool("echo")`` calls: calls/s, and the
client's CPU per call (`time.process_time` of the worker alone). Printed: the medians,
the ratios off/baseline and on/off, and the noise verdict of `_baseline.judge`.

    .venv/bin/python benchmarks/bench_telemetry.py [--rounds N] [--calls N] [--baseline REV]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _baseline import judge  # noqa: E402

SERVER = """
import sys
from resilient_mcp.testing import StrictServer, serve
with serve(StrictServer()) as running:
    print(running.url, flush=True)
    sys.stdin.read()
"""

# A worker: one warm client; for every line N on stdin, N sequential calls, answered
# with one JSON line [calls/s, CPU ms per call].
WORKER = """
import json, sys, time, anyio, resilient_mcp
url, mode = sys.argv[1], sys.argv[2]
options = {}
if mode == "on":
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from resilient_mcp.otel import OpenTelemetry
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    options["telemetry"] = OpenTelemetry(
        tracer_provider=tracer_provider, meter_provider=meter_provider
    )

async def main():
    async with resilient_mcp.connect(url, **options) as client:
        await client.list_tools()
        for _ in range(20):
            await client.call_tool("echo", {"text": "hi"})
        print(json.dumps([resilient_mcp.__file__]), flush=True)
        while line := await anyio.to_thread.run_sync(sys.stdin.readline):
            calls = int(line)
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(calls):
                await client.call_tool("echo", {"text": "hi"})
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if mode == "on":
                spans.clear()  # the exporter keeps what it got: bounded memory
            print(json.dumps([calls / wall, cpu / calls * 1000]), flush=True)

anyio.run(main)
"""


def extract(rev: str, into: Path) -> str:
    """`rev`'s `resilient_mcp/` under `into`; returns the commit and its subject."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--end-of-options", rev, "resilient_mcp"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h: %s", rev],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


def worker(url: str, mode: str, pythonpath: Path | None) -> subprocess.Popen[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER, url, mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),  # not ROOT: `import resilient_mcp` must not find it there
    )
    assert process.stdout is not None
    (origin,) = json.loads(process.stdout.readline())
    print(f"{mode:9} imports {origin}")
    return process


def ask(process: subprocess.Popen[str], calls: int) -> tuple[float, float]:
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(f"{calls}\n")
    process.stdin.flush()
    rate, cpu = json.loads(process.stdout.readline())
    return float(rate), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--baseline", default="main")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-telemetry-"))
    processes: list[subprocess.Popen[str]] = []
    try:
        described = extract(args.baseline, tmp)
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        processes.append(server)
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        workers = {
            "baseline": worker(url, "baseline", tmp),
            "off": worker(url, "off", None),
            "on": worker(url, "on", None),
        }
        processes.extend(workers.values())
        results: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in workers}
        order = list(workers)
        for _ in range(args.rounds):
            random.shuffle(order)
            for name in order:
                rate, cpu = ask(workers[name], args.calls)
                results[name][0].append(rate)
                results[name][1].append(cpu)
    finally:
        for process in processes:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"baseline = {args.baseline} ({described}); {args.rounds} rounds x {args.calls} "
        f"sequential call_tool; load {os.getloadavg()[0]:.1f}; Python {sys.version.split()[0]}"
    )
    print(f"{'':10}{'calls/s (median)':>18}{'client CPU ms/call':>20}")
    for name, (rates, cpus) in results.items():
        print(f"{name:10}{statistics.median(rates):>18,.0f}{statistics.median(cpus):>20.3f}")
    for ours_name, base_name in (("off", "baseline"), ("on", "off")):
        rates, base_rates = results[ours_name][0], results[base_name][0]
        cpus, base_cpus = results[ours_name][1], results[base_name][1]
        rate_ratio = statistics.median(rates) / statistics.median(base_rates)
        cpu_ratio = statistics.median(cpus) / statistics.median(base_cpus)
        noise, verdict, _ = judge(rate_ratio, rates, base_rates, higher_is_better=True)
        cpu_noise, cpu_verdict, _ = judge(cpu_ratio, cpus, base_cpus, higher_is_better=False)
        print(
            f"{ours_name}/{base_name}: calls/s {rate_ratio:.3f} (noise ±{noise:.1%}: {verdict}); "
            f"CPU/call {cpu_ratio:.3f} (noise ±{cpu_noise:.1%}: {cpu_verdict})"
        )


if __name__ == "__main__":
    main()
