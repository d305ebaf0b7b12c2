#!/usr/bin/env python
"""Client-side benchmark: resilient-mcp against the raw httpx floor, mcp and fastmcp.

One process, one real `mcp` 2.3.0 Streamable HTTP server (stateful, SSE responses)
started in a child process on 127.0.0.1 by `tests/peers/launcher.py`. Figures:

(a) connect -> first `tools/call` result -> close, fresh client each time (median ms)
(b) sequential `tools/call` latency on a warm session (median ms)
(c) throughput of one session with 32 concurrent callers (calls/s)
(d) client CPU per call at 32 concurrent callers (ms; `time.process_time`, which
    only sees this process: the server is a separate one)

Contenders: the raw httpx floor, the "seed workaround" (floor + fixed sleeps, (a) only),
`mcp.Client` and `fastmcp.Client` each twice (default `mode="auto"`, which negotiates the
handshake-free modern era 2026-07-28 with this server, and `mode="legacy"`, which does the
2025-11-25 initialize handshake like the floor and resilient-mcp), and `resilient_mcp`
(n/a until it imports). Every contender's negotiated protocol version is printed. The
SDK-relative targets are reported like-for-like (vs the better legacy-era SDK client) and
vs the better of all SDK variants. See benchmarks/README.md for the definitions.

    .venv/bin/python benchmarks/bench_client.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import itertools
import json
import os
import platform
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.peers.launcher import McpPeer, launch_mcp_peer  # noqa: E402

LEGACY_VERSION = "2025-11-25"
TOOL = "echo"
ARGS: dict[str, Any] = {"text": "hi"}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
CALL_TIMEOUT = 30.0  # any single operation
SEED_SLEEP_AFTER_INITIALIZE = 0.15
SEED_SLEEP_AFTER_INITIALIZED = 0.10

FLOOR = "floor"
SEED = "seed"
MCP = "mcp"  # mode="auto" (the default)
MCP_LEGACY = "mcp-legacy"
FASTMCP = "fastmcp"  # mode="auto" (the default)
FASTMCP_LEGACY = "fastmcp-legacy"
RESILIENT = "resilient"
RESILIENT_SHARED = "resilient+shared"

# Display names; the versions of mcp and fastmcp are in the header line.
COLUMNS: dict[str, str] = {
    FLOOR: "httpx floor",
    SEED: "seed wkrnd",
    MCP: "mcp auto",
    MCP_LEGACY: "mcp legacy",
    FASTMCP: "fastmcp auto",
    FASTMCP_LEGACY: "fastmcp legacy",
    RESILIENT: "resilient",
    RESILIENT_SHARED: "resil+shared",
}
ALL_KEYS: list[str] = list(COLUMNS)
ONLY_A: tuple[str, ...] = (SEED, RESILIENT_SHARED)  # measured for figure (a) only

# The SDK variants: all of them, and the like-for-like ones (forced legacy handshake, the
# same era, 2025-11-25, and the same round trips as the floor and resilient-mcp).
SDK_ALL: tuple[str, ...] = (MCP, MCP_LEGACY, FASTMCP, FASTMCP_LEGACY)
SDK_LEGACY: tuple[str, ...] = (MCP_LEGACY, FASTMCP_LEGACY)

FIGURES: dict[str, str] = {
    "a": "(a) ms",
    "b": "(b) ms",
    "c": "(c) calls/s",
    "d": "(d) CPU ms",
}
LEGEND = (
    "(a) connect->first call->close, fresh client; (b) warm sequential call latency;\n"
    "(c) throughput, one session, 32 concurrent callers; (d) client CPU per call in (c)"
)


class BenchError(RuntimeError):
    """A contender returned something other than a successful tool result."""


# --------------------------------------------------------------------------------------
# Settings and results
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    connect_warmup: int
    connect_n: int
    latency_warmup: int
    latency_n: int
    latency_rounds: int
    concurrency: int
    throughput_warm: int
    throughput_calls: int
    throughput_reps: int
    overall_timeout: float

    @classmethod
    def full(cls) -> Settings:
        return cls(
            connect_warmup=3,
            connect_n=30,
            latency_warmup=20,
            latency_n=300,
            latency_rounds=3,
            concurrency=32,
            throughput_warm=64,
            throughput_calls=400,
            throughput_reps=3,
            overall_timeout=600.0,
        )

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            connect_warmup=1,
            connect_n=5,
            latency_warmup=5,
            latency_n=30,
            latency_rounds=2,
            concurrency=32,
            throughput_warm=32,
            throughput_calls=96,
            throughput_reps=1,
            overall_timeout=60.0,
        )


@dataclass
class Results:
    # figure -> contender -> median value
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    # figure -> contender -> raw samples
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    # contender -> negotiated protocol version
    protocols: dict[str, str] = field(default_factory=dict)

    def put(self, figure: str, contender: str, samples: Sequence[float]) -> None:
        self.samples.setdefault(figure, {})[contender] = list(samples)
        self.values.setdefault(figure, {})[contender] = statistics.median(samples)

    def get(self, figure: str, contender: str) -> float | None:
        return self.values.get(figure, {}).get(contender)

    def fail(self, contender: str, where: str, exc: BaseException) -> None:
        if contender not in self.errors:
            self.errors[contender] = f"{where}: {type(exc).__name__}: {exc}"[:300]


# --------------------------------------------------------------------------------------
# Contenders. Each yields an async "call" on a warm session, and a one-shot
# connect -> call -> close.
# --------------------------------------------------------------------------------------

CallFn = Callable[[], Awaitable[None]]


class Contender:
    key: str = ""
    # The protocol version the last session negotiated (recorded in (a) and (b)/(c)).
    protocol_version: str | None = None

    def _record(self, version: object) -> None:
        if isinstance(version, str):
            self.protocol_version = version

    async def once(self) -> None:
        """Figure (a): connect, first tools/call result, close."""
        raise NotImplementedError

    async def after_once(self) -> None:
        """Untimed cleanup after each (a) sample."""

    async def open(self, stack: AsyncExitStack) -> CallFn:
        """Open one warm session on `stack`; return a coroutine function doing one call."""
        raise NotImplementedError

    def note(self) -> str | None:
        return _negotiated(self.protocol_version)


def _handshake_versions() -> tuple[str, ...]:
    """The handshake-era (legacy) protocol versions, from the SDK when it says."""
    try:
        module: Any = importlib.import_module("mcp_types.version")
        return tuple(module.HANDSHAKE_PROTOCOL_VERSIONS)
    except (ImportError, AttributeError):
        return ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")


HANDSHAKE_VERSIONS = _handshake_versions()


def era(version: str | None) -> str | None:
    """The era of `version`: legacy (initialize handshake), modern, or None if unknown."""
    if version is None:
        return None
    return "legacy" if version in HANDSHAKE_VERSIONS else "modern"


def _negotiated(version: str | None, how: str = "") -> str | None:
    if version is None:
        return None
    suffix = f", {how}" if how else ""
    return f"negotiated {version} ({era(version)} era{suffix})"


def _parse_body(response: httpx.Response, request_id: int) -> dict[str, Any]:
    """The JSON-RPC response with `request_id` from a JSON or SSE body."""
    if response.status_code != 200:
        raise BenchError(f"HTTP {response.status_code}: {response.text[:200]}")
    ctype = response.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        message: dict[str, Any] = response.json()
        if message.get("id") == request_id:
            return message
        raise BenchError(f"unexpected JSON body: {response.text[:200]}")
    for line in response.text.splitlines():
        if line.startswith("data:"):
            data = line[5:].strip()
            if not data:
                continue
            message = json.loads(data)
            if message.get("id") == request_id:
                return message
    raise BenchError(f"no response for id {request_id} in: {response.text[:200]}")


class RawSession:
    """The floor: hand-written JSON-RPC over a warm, shared httpx.AsyncClient."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url
        self.headers = dict(HEADERS)
        self.protocol_version: str | None = None
        self._ids = itertools.count(1)

    async def initialize(self) -> None:
        request_id = next(self._ids)
        response = await self.http.post(
            self.url,
            headers=self.headers,
            json={
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "initialize",
                "params": {
                    "protocolVersion": LEGACY_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "bench-floor", "version": "0"},
                },
            },
        )
        message = _parse_body(response, request_id)
        if "result" not in message:
            raise BenchError(f"initialize failed: {message}")
        session_id = response.headers.get("mcp-session-id")
        if session_id:
            self.headers["Mcp-Session-Id"] = session_id
        self.protocol_version = message["result"]["protocolVersion"]
        self.headers["MCP-Protocol-Version"] = message["result"]["protocolVersion"]

    async def initialized(self) -> None:
        response = await self.http.post(
            self.url,
            headers=self.headers,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        )
        if response.status_code != 202:
            raise BenchError(f"notifications/initialized: HTTP {response.status_code}")

    async def delete(self) -> None:
        """End the session (DELETE); any answer is fine."""
        if "Mcp-Session-Id" in self.headers:
            await self.http.delete(self.url, headers=self.headers)

    async def call(self) -> None:
        request_id = next(self._ids)
        response = await self.http.post(
            self.url,
            headers=self.headers,
            json={
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "tools/call",
                "params": {"name": TOOL, "arguments": ARGS},
            },
        )
        message = _parse_body(response, request_id)
        result = message.get("result")
        if not isinstance(result, dict) or result.get("isError"):
            raise BenchError(f"tools/call failed: {message}")


class Floor(Contender):
    """3 sequential POSTs (initialize, notifications/initialized, tools/call) on a warm client.

    The floor is the three POSTs the handshake and the call need; the DELETE that ends
    the session is sent after the clock stops (`after_once`), so sessions do not pile
    up on the server.
    """

    key = FLOOR

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url
        self._last: RawSession | None = None

    async def once(self) -> None:
        session = self._last = RawSession(self.http, self.url)
        await session.initialize()
        self._record(session.protocol_version)
        await session.initialized()
        await session.call()

    async def after_once(self) -> None:
        session, self._last = self._last, None
        if session is not None:
            await session.delete()

    async def open(self, stack: AsyncExitStack) -> CallFn:
        session = RawSession(self.http, self.url)
        await session.initialize()
        self._record(session.protocol_version)
        await session.initialized()
        return session.call

    def note(self) -> str | None:
        return _negotiated(self.protocol_version, f"asked for {LEGACY_VERSION}")


class SeedWorkaround(Floor):
    """The floor plus the fixed sleeps the seed project used to dodge handshake races."""

    key = SEED

    async def once(self) -> None:
        session = self._last = RawSession(self.http, self.url)
        await session.initialize()
        self._record(session.protocol_version)
        await asyncio.sleep(SEED_SLEEP_AFTER_INITIALIZE)
        await session.initialized()
        await asyncio.sleep(SEED_SLEEP_AFTER_INITIALIZED)
        await session.call()


def _check_result(result: Any) -> None:
    flag = getattr(result, "is_error", None)
    if flag is None:
        flag = getattr(result, "isError", False)
    if flag:
        raise BenchError(f"tool error: {result!r}"[:300])


class ClientContender(Contender):
    """A contender that is an MCP client object: `async with` it, then `call_tool`."""

    def _client(self) -> AbstractAsyncContextManager[Any]:
        raise NotImplementedError

    async def once(self) -> None:
        async with self._client() as client:
            self._record(getattr(client, "protocol_version", None))
            _check_result(await client.call_tool(TOOL, ARGS))

    async def open(self, stack: AsyncExitStack) -> CallFn:
        client = await stack.enter_async_context(self._client())
        self._record(getattr(client, "protocol_version", None))

        async def call() -> None:
            _check_result(await client.call_tool(TOOL, ARGS))

        return call


class OfficialClient(ClientContender):
    """`mcp.Client(url, mode=mode)`: "auto" (the default: probe `server/discover`, adopt
    the modern era if the server offers it, else fall back) or "legacy" (force the
    initialize handshake)."""

    def __init__(self, url: str, mode: str) -> None:
        from mcp import Client

        self.url = url
        self.mode = mode
        self.client_cls = Client
        self.key = MCP if mode == "auto" else MCP_LEGACY

    def _client(self) -> AbstractAsyncContextManager[Any]:
        client: AbstractAsyncContextManager[Any] = self.client_cls(self.url, mode=self.mode)
        return client

    def note(self) -> str | None:
        return _negotiated(self.protocol_version, f"mode={self.mode!r}")


class FastMCPClient(ClientContender):
    """`fastmcp.Client(url, mode=mode)` ("auto" is its default, "legacy" forces the
    initialize handshake); `call_tool` (the usual user path)."""

    def __init__(self, url: str, mode: str) -> None:
        import fastmcp

        self.url = url
        self.mode = mode
        self.fastmcp = fastmcp
        self.key = FASTMCP if mode == "auto" else FASTMCP_LEGACY

    def _client(self) -> AbstractAsyncContextManager[Any]:
        client: AbstractAsyncContextManager[Any] = self.fastmcp.Client(self.url, mode=self.mode)
        return client

    def note(self) -> str | None:
        return _negotiated(self.protocol_version, f"mode={self.mode!r}")


class ResilientClient(ClientContender):
    """`resilient_mcp.connect(url)`; with `shared`, `connect(url, http_client=shared)`."""

    def __init__(self, url: str, http: httpx.AsyncClient | None) -> None:
        module: Any = importlib.import_module("resilient_mcp")
        self.connect: Callable[..., AbstractAsyncContextManager[Any]] = module.connect
        self.url = url
        self.http = http
        self.key = RESILIENT if http is None else RESILIENT_SHARED

    def _client(self) -> AbstractAsyncContextManager[Any]:
        if self.http is None:
            return self.connect(self.url)
        return self.connect(self.url, http_client=self.http)


# --------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------


async def _bounded(awaitable: Awaitable[None]) -> None:
    async with asyncio.timeout(CALL_TIMEOUT):
        await awaitable


async def measure_connect(
    contenders: Sequence[Contender], settings: Settings, results: Results
) -> None:
    """(a): round-robin over contenders so drift hits everyone alike."""
    samples: dict[str, list[float]] = {c.key: [] for c in contenders}
    alive = list(contenders)
    for i in range(settings.connect_warmup + settings.connect_n):
        # Rotate the order every round: a contender that leaves work behind on the
        # server (sessions torn down asynchronously, streams closing) must not always
        # slow down the same neighbour.
        shift = i % max(1, len(alive))
        for contender in alive[shift:] + alive[:shift]:
            if contender not in alive:
                continue
            start = time.perf_counter()
            try:
                await _bounded(contender.once())
            except Exception as exc:
                results.fail(contender.key, "(a)", exc)
                alive.remove(contender)
                continue
            elapsed = time.perf_counter() - start
            if i >= settings.connect_warmup:
                samples[contender.key].append(elapsed * 1000.0)
            try:
                await _bounded(contender.after_once())
            except Exception as exc:
                results.fail(contender.key, "(a) cleanup", exc)
                alive.remove(contender)
    for key, values in samples.items():
        if values:
            results.put("a", key, values)


async def measure_latency(
    contenders: Sequence[Contender], settings: Settings, results: Results
) -> None:
    """(b): all sessions open at once; calls in interleaved rounds."""
    samples: dict[str, list[float]] = {c.key: [] for c in contenders}
    per_round = max(1, settings.latency_n // settings.latency_rounds)
    async with AsyncExitStack() as stack:
        calls: dict[str, CallFn] = {}
        for contender in contenders:
            try:
                async with asyncio.timeout(CALL_TIMEOUT):
                    call = await contender.open(stack)
                    for _ in range(settings.latency_warmup):
                        await call()
                calls[contender.key] = call
            except Exception as exc:
                results.fail(contender.key, "(b) open", exc)
        for _ in range(settings.latency_rounds):
            for key, call in list(calls.items()):
                try:
                    for _ in range(per_round):
                        start = time.perf_counter()
                        await _bounded(call())
                        samples[key].append((time.perf_counter() - start) * 1000.0)
                except Exception as exc:
                    results.fail(key, "(b)", exc)
                    del calls[key]
    for key, values in samples.items():
        if values:
            results.put("b", key, values)


async def _burst(call: CallFn, total: int, concurrency: int) -> None:
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    async with asyncio.timeout(CALL_TIMEOUT + total * 0.05):
        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def measure_throughput(
    contenders: Sequence[Contender], settings: Settings, results: Results
) -> None:
    """(c) and (d): one session per contender, `concurrency` callers sharing it."""
    tput: dict[str, list[float]] = {c.key: [] for c in contenders}
    cpu: dict[str, list[float]] = {c.key: [] for c in contenders}
    async with AsyncExitStack() as stack:
        calls: dict[str, CallFn] = {}
        for contender in contenders:
            try:
                async with asyncio.timeout(CALL_TIMEOUT):
                    call = await contender.open(stack)
                # Warm: open the connections the concurrent callers will use.
                await _burst(call, settings.throughput_warm, settings.concurrency)
                calls[contender.key] = call
            except Exception as exc:
                results.fail(contender.key, "(c) open", exc)
        for _ in range(settings.throughput_reps):
            for key, call in list(calls.items()):
                gc.collect()
                wall0, cpu0 = time.perf_counter(), time.process_time()
                try:
                    await _burst(call, settings.throughput_calls, settings.concurrency)
                except Exception as exc:
                    results.fail(key, "(c)", exc)
                    del calls[key]
                    continue
                wall = time.perf_counter() - wall0
                used = time.process_time() - cpu0
                tput[key].append(settings.throughput_calls / wall)
                cpu[key].append(used * 1000.0 / settings.throughput_calls)
    for key in tput:
        if tput[key]:
            results.put("c", key, tput[key])
            results.put("d", key, cpu[key])


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den == 0:
        return None
    return num / den


def _best(
    results: Results, fig: str, keys: Sequence[str], higher_is_better: bool
) -> tuple[float | None, str | None]:
    """The best median of `fig` among `keys`, and whose it is."""
    present = [(v, k) for k in keys if (v := results.get(fig, k)) is not None]
    if not present:
        return None, None
    pick = max if higher_is_better else min
    value, key = pick(present, key=lambda item: item[0])
    return value, key


def _row(
    ratio: float | None, label: str, limit: float, at_most: bool, vs: str | None = None
) -> dict[str, Any]:
    return {
        "ratio": ratio,
        "label": label,
        "target": f"{'<=' if at_most else '>='} {limit}",
        "met": None if ratio is None else (ratio <= limit if at_most else ratio >= limit),
        "vs": vs,
    }


def ratios(results: Results) -> dict[str, dict[str, Any]]:
    """Ratio lines and whether each target is met (None = cannot tell).

    (a) and (b) are against the floor. (c) and (d) are against the SDK clients twice:
    like-for-like (`*_legacy`: the better of mcp and fastmcp forced to the legacy
    initialize handshake, the era resilient-mcp and the floor speak) and against the
    better of all four variants (`*_all`, which includes the modern-era "auto" ones).
    """
    out: dict[str, dict[str, Any]] = {}
    floor_a, floor_b = results.get("a", FLOOR), results.get("b", FLOOR)
    out["a"] = _row(_ratio(results.get("a", RESILIENT), floor_a), "resilient / floor", 1.3, True)
    out["a_shared"] = _row(
        _ratio(results.get("a", RESILIENT_SHARED), floor_a),
        "resilient (shared httpx) / floor",
        1.3,
        True,
    )
    out["b"] = _row(_ratio(results.get("b", RESILIENT), floor_b), "resilient / floor", 1.1, True)
    for fig, higher in (("c", True), ("d", False)):
        for suffix, keys, label in (
            ("legacy", SDK_LEGACY, "resilient / best legacy SDK (like-for-like)"),
            ("all", SDK_ALL, "resilient / best SDK, any era"),
        ):
            best, vs = _best(results, fig, keys, higher_is_better=higher)
            out[f"{fig}_{suffix}"] = _row(
                _ratio(results.get(fig, RESILIENT), best), label, 1.0, not higher, vs
            )
    return out


def era_warnings(results: Results) -> list[str]:
    """Say so when the like-for-like premise (all legacy era) does not hold in this run."""
    lines = []
    for key in (FLOOR, RESILIENT, *SDK_LEGACY):
        version = results.protocols.get(key)
        if version is not None and era(version) != "legacy":
            lines.append(
                f"WARNING: {COLUMNS[key]} negotiated {version} ({era(version)} era); the "
                "like-for-like ratios assume the legacy era"
            )
    return lines


def render(results: Results, keys: Sequence[str]) -> str:
    name_w = max(len(COLUMNS[k]) for k in keys)
    head = f"{'contender':<{name_w}}  {'protocol':<10} " + " ".join(
        f"{label:>11}" for label in FIGURES.values()
    )
    lines = [head, "-" * len(head)]
    for key in keys:
        cells = []
        for fig in FIGURES:
            value = results.get(fig, key)
            if value is None and fig != "a" and key in ONLY_A:
                cells.append(f"{'-':>11}")  # measured for (a) only
            else:
                cells.append(f"{_fmt(value):>11}")
        version = results.protocols.get(key) or "?"
        lines.append(f"{COLUMNS[key]:<{name_w}}  {version:<10} " + " ".join(cells))
    lines.append("")
    lines.append(LEGEND)
    lines.append("")
    for fig, row in ratios(results).items():
        name = fig.split("_")[0]
        ratio = row["ratio"]
        shown = "n/a" if ratio is None else f"{ratio:.2f}x"
        verdict = {True: "met", False: "NOT met", None: "-"}[row["met"]]
        vs = f"  [vs {COLUMNS[row['vs']]}]" if row["vs"] else ""
        lines.append(
            f"({name}) {row['label']:<43} {shown:>7}   target {row['target']:<6} "
            f"{verdict:<7}{vs}".rstrip()
        )
    warnings = era_warnings(results)
    if warnings:
        lines.append("")
        lines.extend(warnings)
    return "\n".join(lines)


def _loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available on this platform
        return 0.0


def _versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for dist in ("mcp", "fastmcp", "httpx", "httpx2", "anyio", "uvicorn", "resilient-mcp"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


async def run(url: str, settings: Settings, results: Results) -> list[str]:
    limits = httpx.Limits(
        max_connections=max(100, settings.concurrency * 2),
        max_keepalive_connections=max(20, settings.concurrency * 2),
    )
    async with (
        httpx.AsyncClient(limits=limits, timeout=CALL_TIMEOUT) as floor_http,
        httpx.AsyncClient(limits=limits, timeout=CALL_TIMEOUT) as shared_http,
    ):
        contenders: list[Contender] = [Floor(floor_http, url), SeedWorkaround(floor_http, url)]
        contenders.append(OfficialClient(url, "auto"))
        contenders.append(OfficialClient(url, "legacy"))
        for mode, key in (("auto", FASTMCP), ("legacy", FASTMCP_LEGACY)):
            try:
                contenders.append(FastMCPClient(url, mode))
            except ImportError as exc:
                results.fail(key, "import", exc)
        try:
            contenders.append(ResilientClient(url, None))
            contenders.append(ResilientClient(url, shared_http))
        except (ImportError, AttributeError) as exc:
            results.fail(RESILIENT, "import", exc)
            results.fail(RESILIENT_SHARED, "import", exc)
        keys = [c.key for c in contenders]
        # Warm the shared clients' connection pools before anything is timed.
        for http in (floor_http, shared_http):
            warm = RawSession(http, url)
            await _bounded(warm.initialize())
            await _bounded(warm.initialized())
            await _bounded(warm.delete())

        print(f"(a) connect->call->close x{settings.connect_n} ...", file=sys.stderr)
        await measure_connect(contenders, settings, results)
        session_contenders = [c for c in contenders if c.key not in (SEED, RESILIENT_SHARED)]
        print(f"(b) warm latency x{settings.latency_n} ...", file=sys.stderr)
        await measure_latency(session_contenders, settings, results)
        print(
            f"(c,d) {settings.concurrency} callers x{settings.throughput_calls} calls"
            f" x{settings.throughput_reps} ...",
            file=sys.stderr,
        )
        await measure_throughput(session_contenders, settings, results)
        for contender in contenders:
            note = contender.note()
            if note:
                results.notes[contender.key] = note
            if contender.protocol_version is not None:
                results.protocols[contender.key] = contender.protocol_version
    return keys


def _hard_stop(peer_box: list[McpPeer], seconds: float) -> threading.Timer:
    """A watchdog outside the event loop: if everything wedges, stop the server and exit."""

    def fire() -> None:
        print(f"bench: hard timeout after {seconds:.0f} s; aborting", file=sys.stderr)
        for peer in peer_box:
            peer.stop(timeout=2.0)
        os._exit(3)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short run for CI smoke (~20 s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--timeout", type=float, help="overall timeout in seconds")
    args = parser.parse_args(argv)
    settings = Settings.quick() if args.quick else Settings.full()
    overall = args.timeout or settings.overall_timeout

    results = Results()
    load_before = _loadavg()
    peer_box: list[McpPeer] = []
    watchdog = _hard_stop(peer_box, overall + 15.0)
    started = time.perf_counter()
    keys: list[str] = list(ALL_KEYS)
    status = 0
    try:
        peer = launch_mcp_peer(stateless=False, json_response=False)
        peer_box.append(peer)
        try:

            async def bounded_run() -> list[str]:
                async with asyncio.timeout(overall):
                    return await run(peer.url, settings, results)

            keys = asyncio.run(bounded_run())
        except TimeoutError:
            print(f"bench: overall timeout ({overall:.0f} s) hit", file=sys.stderr)
            status = 2
        except Exception:
            traceback.print_exc()
            status = 1
        finally:
            peer.stop()
    finally:
        watchdog.cancel()

    elapsed = time.perf_counter() - started
    versions = _versions()
    print()
    print(
        f"resilient-mcp client benchmark ({'quick' if args.quick else 'full'} run, "
        f"{elapsed:.1f} s): one mcp {versions['mcp']} server, Streamable HTTP, stateful, "
        f"SSE responses, 127.0.0.1"
    )
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, asyncio; medians; "
        f"(a) n={settings.connect_n}, (b) n={settings.latency_n}, (c,d) "
        f"{settings.concurrency} callers x {settings.throughput_calls} calls "
        f"x {settings.throughput_reps}; fastmcp {versions['fastmcp']}"
    )
    load_after = _loadavg()
    cpus = os.cpu_count() or 1
    # Only the load before counts: the run itself keeps ~2 processes busy.
    if load_before > 0.5 * cpus:
        print(
            f"WARNING: the machine was busy before the run (1-min load {load_before:.1f}, "
            f"{cpus} CPUs); figures are noisy"
        )
    print()
    print(render(results, keys))
    if results.notes:
        print()
        for key, note in results.notes.items():
            print(f"note {COLUMNS.get(key, key)}: {note}")
    if results.errors:
        print()
        for key, error in results.errors.items():
            print(f"n/a {COLUMNS.get(key, key)}: {error}")

    if args.json:
        payload = {
            "mode": "quick" if args.quick else "full",
            "settings": settings.__dict__,
            "elapsed_s": elapsed,
            "environment": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "loadavg_1min_before_after": [load_before, load_after],
                "versions": versions,
            },
            "units": {"a": "ms", "b": "ms", "c": "calls/s", "d": "ms CPU/call"},
            "medians": results.values,
            "samples": results.samples,
            "ratios": ratios(results),
            "errors": results.errors,
            "notes": results.notes,
            "protocols": results.protocols,
            "eras": {key: era(version) for key, version in results.protocols.items()},
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
