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
and three MCP clients in both protocol eras: `mcp.Client` and `fastmcp.Client` with their
default `mode="auto"` (which negotiates the handshake-free modern era 2026-07-28 with this
server) and with `mode="legacy"` (the 2025-11-25 initialize handshake, like the floor), and
`resilient_mcp.connect` with its default `era="auto"` (modern here too) and with
`era="legacy"`, each of those also with a shared warm `httpx.AsyncClient` for (a). Every
contender's negotiated protocol version is printed. Ratios are like-for-like per era
(legacy: vs the floor and the better legacy-era SDK client; modern: vs the better `auto`
SDK client) and "any era" (our best vs the best SDK variant). Before timing, an untimed
wire check logs the requests one resilient-mcp connect puts on the wire in each era. See
benchmarks/README.md for the definitions.

With `--baseline REV`, a previous revision of resilient-mcp (its `resilient_mcp/` package
at REV, imported as `resilient_mcp_baseline` by `benchmarks/_baseline.py`) runs in the
same process as four more contenders (`baseline`, `baseline legacy` and their shared-httpx
variants for (a)), interleaved with the others, and "ours / baseline" ratio lines with a
regression verdict are printed for every figure in both eras.

    .venv/bin/python benchmarks/bench_client.py [--quick] [--json PATH] [--baseline REV]
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
import random
import signal
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, suppress
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any, cast

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _baseline import (  # noqa: E402
    Baseline,
    BaselineError,
    describe_origins,
    judge,
    load_baseline,
    load_working_copy,
)

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
RESILIENT = "resilient"  # era="auto" (the default)
RESILIENT_SHARED = "resilient+shared"
RESILIENT_LEGACY = "resilient-legacy"
RESILIENT_LEGACY_SHARED = "resilient-legacy+shared"
# With --baseline: the same four, from the previous revision given.
BASELINE = "baseline"  # era="auto"
BASELINE_SHARED = "baseline+shared"
BASELINE_LEGACY = "baseline-legacy"
BASELINE_LEGACY_SHARED = "baseline-legacy+shared"

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
    RESILIENT_LEGACY: "resilient legacy",
    RESILIENT_LEGACY_SHARED: "resil legacy+shared",
    BASELINE: "baseline",
    BASELINE_SHARED: "base+shared",
    BASELINE_LEGACY: "baseline legacy",
    BASELINE_LEGACY_SHARED: "base legacy+shared",
}
ALL_KEYS: list[str] = list(COLUMNS)
BASELINE_KEYS: tuple[str, ...] = (
    BASELINE,
    BASELINE_SHARED,
    BASELINE_LEGACY,
    BASELINE_LEGACY_SHARED,
)
ONLY_A: tuple[str, ...] = (  # (a) only
    SEED,
    RESILIENT_SHARED,
    RESILIENT_LEGACY_SHARED,
    BASELINE_SHARED,
    BASELINE_LEGACY_SHARED,
)

# The SDK variants: all of them, the like-for-like legacy ones (forced initialize
# handshake: the same era, 2025-11-25, and the same round trips as the floor and
# `resilient legacy`) and the modern ones (their default "auto", which negotiates
# 2026-07-28 here, like `resilient`'s default era="auto").
SDK_ALL: tuple[str, ...] = (MCP, MCP_LEGACY, FASTMCP, FASTMCP_LEGACY)
SDK_LEGACY: tuple[str, ...] = (MCP_LEGACY, FASTMCP_LEGACY)
SDK_AUTO: tuple[str, ...] = (MCP, FASTMCP)
# Our variants that make their own httpx client, as the SDK clients do.
RESILIENT_ALL: tuple[str, ...] = (RESILIENT, RESILIENT_LEGACY)

# The era each contender must negotiate for the ratios it is in to be like-for-like.
EXPECTED_ERA: dict[str, str] = {
    FLOOR: "legacy",
    SEED: "legacy",
    MCP_LEGACY: "legacy",
    FASTMCP_LEGACY: "legacy",
    RESILIENT_LEGACY: "legacy",
    RESILIENT_LEGACY_SHARED: "legacy",
    BASELINE_LEGACY: "legacy",
    BASELINE_LEGACY_SHARED: "legacy",
    MCP: "modern",
    FASTMCP: "modern",
    RESILIENT: "modern",
    RESILIENT_SHARED: "modern",
    BASELINE: "modern",
    BASELINE_SHARED: "modern",
}

# Which contender a ResilientClient is: (baseline?, era mode, shared http client?).
RESILIENT_KEYS: dict[tuple[bool, str, bool], str] = {
    (False, "auto", False): RESILIENT,
    (False, "auto", True): RESILIENT_SHARED,
    (False, "legacy", False): RESILIENT_LEGACY,
    (False, "legacy", True): RESILIENT_LEGACY_SHARED,
    (True, "auto", False): BASELINE,
    (True, "auto", True): BASELINE_SHARED,
    (True, "legacy", False): BASELINE_LEGACY,
    (True, "legacy", True): BASELINE_LEGACY_SHARED,
}

# (label, ours, baseline): the pairs "ours / baseline" compares, same era, same setup.
BASELINE_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("modern", RESILIENT, BASELINE),
    ("modern, shared httpx", RESILIENT_SHARED, BASELINE_SHARED),
    ("legacy", RESILIENT_LEGACY, BASELINE_LEGACY),
    ("legacy, shared httpx", RESILIENT_LEGACY_SHARED, BASELINE_LEGACY_SHARED),
)

# resilient-mcp remembers each endpoint's era process-wide (`resilient_mcp._detection`),
# keyed by URL. If a forced era="legacy" connect recorded "legacy" there (as the client
# did until 2026-11-23), later era="auto" connects to the same URL would skip the probe
# and speak legacy too, and the interleaved `resilient` contender would silently become
# a second legacy one. So the legacy contenders connect with this query parameter added
# (the server ignores it; the cache key differs), and the wire check reports whether
# that cross-talk happens. The baseline (another module, so another cache: the previous
# code keeps it in `_detect`, the current one in `_detection`) gets tags of its own in
# both eras anyway, so that no contender ever shares a cache key with another.
LEGACY_URL_TAG = ("bench", "resilient-legacy")
# (baseline?, era mode) -> the `bench` query value, or None for the plain URL.
URL_TAGS: dict[tuple[bool, str], str | None] = {
    (False, "auto"): None,
    (False, "legacy"): LEGACY_URL_TAG[1],
    (True, "auto"): "baseline",
    (True, "legacy"): "baseline-legacy",
}

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
    # (a) with --baseline: ours -> ours / baseline, one ratio per round, the two run
    # back to back (a paired measurement: both met the same neighbours)
    paired: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    # contender -> negotiated protocol version (the last session's)
    protocols: dict[str, str] = field(default_factory=dict)
    # contender -> every version its sessions negotiated in this run
    protocols_seen: dict[str, list[str]] = field(default_factory=dict)
    # the untimed wire check: what was found, and anything that looked wrong
    wire: list[str] = field(default_factory=list)
    wire_warnings: list[str] = field(default_factory=list)

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
    # The protocol version the last session negotiated (recorded in (a) and (b)/(c)),
    # and every version any of its sessions negotiated (a mix means an era switch).
    protocol_version: str | None = None
    seen: frozenset[str] = frozenset()

    def _record(self, version: object) -> None:
        if isinstance(version, str):
            self.protocol_version = version
            self.seen = self.seen | {version}

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


def tagged_url(url: str, value: str) -> str:
    """`url` with the `bench` query parameter set: the same endpoint for the server, a
    different key for resilient-mcp's per-URL detection cache."""
    return str(httpx.URL(url).copy_set_param(LEGACY_URL_TAG[0], value))


def resilient_connect(
    module: Any, url: str, http: httpx.AsyncClient | None, era_mode: str
) -> AbstractAsyncContextManager[Any]:
    """`module.connect` to `url`, sharing `http` if given, in both API generations
    (HTTP options on `HTTPServer` since 2026-12-02, on `connect` before)."""
    if http is None:
        return cast(AbstractAsyncContextManager[Any], module.connect(url, era=era_mode))
    if hasattr(module, "HTTPServer"):
        target = module.HTTPServer(url, http_client=http)
        return cast(AbstractAsyncContextManager[Any], module.connect(target, era=era_mode))
    return cast(
        AbstractAsyncContextManager[Any], module.connect(url, http_client=http, era=era_mode)
    )


class ResilientClient(ClientContender):
    """`resilient_mcp.connect(url, era=era)`; with `shared`, also a shared `http_client`.

    era="auto" (the default) probes `server/discover` and speaks the modern era to this
    server; era="legacy" does the initialize handshake, like the floor. With `baseline`,
    the same from the previous revision loaded by `_baseline.py`. Every variant but the
    current era="auto" one connects to a tagged URL (see `URL_TAGS`).
    """

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient | None,
        era_mode: str,
        baseline: Baseline | None = None,
        ours: Baseline | None = None,
    ) -> None:
        copy = baseline or ours  # with --baseline, both sides are copies loaded alike
        self.module: ModuleType = (
            copy.module if copy is not None else importlib.import_module("resilient_mcp")
        )
        self.baseline = baseline
        self.era_mode = era_mode
        tag = URL_TAGS[(baseline is not None, era_mode)]
        self.url = tagged_url(url, tag) if tag is not None else url
        self.http = http
        self.key = RESILIENT_KEYS[(baseline is not None, era_mode, http is not None)]

    def _client(self) -> AbstractAsyncContextManager[Any]:
        return resilient_connect(self.module, self.url, self.http, self.era_mode)

    def note(self) -> str | None:
        how = f"era={self.era_mode!r}"
        if self.baseline is not None:
            how += f", baseline {self.baseline.commit[:12]}"
        if self.http is not None:
            how += ", shared http_client"
        if self.era_mode == "auto":
            # (a) uses a fresh client per sample but one process: the era detected by
            # the first connect is cached per URL; the wire check shows what it spares.
            how += "; era detection cached per URL process-wide, see the wire check"
        return _negotiated(self.protocol_version, how)


# --------------------------------------------------------------------------------------
# Wire check (untimed): what one resilient-mcp connect -> call -> close sends
# --------------------------------------------------------------------------------------


async def _raw_discover(http: httpx.AsyncClient, url: str, version: str) -> dict[str, Any]:
    """One hand-written `server/discover` POST; its result (for cacheScope/ttlMs)."""
    response = await http.post(
        url,
        headers={**HEADERS, "MCP-Protocol-Version": version, "Mcp-Method": "server/discover"},
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "server/discover",
            "params": {
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": version,
                    "io.modelcontextprotocol/clientCapabilities": {},
                    "io.modelcontextprotocol/clientInfo": {"name": "bench-wire", "version": "0"},
                }
            },
        },
    )
    result = _parse_body(response, 1).get("result")
    return result if isinstance(result, dict) else {}


async def wire_check(
    url: str, results: Results, module: ModuleType, label: str = "resilient"
) -> None:
    """Log the requests of a few untimed connects of `module` (`resilient_mcp`, or the
    baseline's copy), on URLs of their own (so the timed contenders start with a cold
    detection cache). Only the public `connect` is used, through `resilient_connect`,
    so it works with either API generation and wherever the version keeps its cache
    (`_detect` before the layered core, `_detection` since):

    - two era="auto" connects in a row: does the second still send `server/discover`?
    - one era="legacy" connect;
    - an era="legacy" connect, then an era="auto" one to the same URL: does "auto"
      still reach the modern era, or did the legacy connect's cache entry decide it?
    """
    prefix = f"wire-{label}"  # URLs of its own, apart from any other module's
    log: list[str] = []

    async def hook(request: httpx.Request) -> None:
        method = None
        if request.method == "POST":
            try:
                method = json.loads(request.content).get("method")
            except ValueError:
                method = "?"
        log.append(f"{request.method} {method}" if method else request.method)

    async with httpx.AsyncClient(event_hooks={"request": [hook]}, timeout=CALL_TIMEOUT) as http:

        async def one(target: str, era_mode: str) -> tuple[str | None, list[str]]:
            log.clear()
            async with asyncio.timeout(CALL_TIMEOUT):
                async with resilient_connect(module, target, http, era_mode) as client:
                    _check_result(await client.call_tool(TOOL, ARGS))
                    version = client.protocol_version
            return version, list(log)

        def show(requests: list[str]) -> str:
            return ", ".join(requests) or "nothing"

        auto_url = tagged_url(url, f"{prefix}-auto")
        v1, first = await one(auto_url, "auto")
        v2, second = await one(auto_url, "auto")
        results.wire.append(f"{label} era='auto', 1st connect to a URL ({v1}): {show(first)}")
        results.wire.append(f"{label} era='auto', 2nd connect to the URL ({v2}): {show(second)}")
        if "POST server/discover" in second:
            hint = ""
            if era(v2) == "modern" and v2 is not None:
                found = await _raw_discover(http, auto_url, v2)
                hint = (
                    f" (this server's discover result says cacheScope="
                    f"{found.get('cacheScope')!r}, ttlMs={found.get('ttlMs')!r})"
                )
            results.wire.append(
                "  -> the detection cache did not save the discover round trip here: every "
                f"era='auto' connect sends server/discover{hint}; it only spares re-probing "
                "a legacy server"
            )
        else:
            results.wire.append(
                "  -> the detection cache spared the 2nd connect its server/discover: only "
                "the first connect to a URL in a process pays for it"
            )
        v3, legacy = await one(tagged_url(url, f"{prefix}-legacy"), "legacy")
        results.wire.append(f"{label} era='legacy' ({v3}): {show(legacy)}")
        mixed_url = tagged_url(url, f"{prefix}-mixed")
        await one(mixed_url, "legacy")
        v4, mixed = await one(mixed_url, "auto")
        results.wire.append(
            f"{label} era='auto' after an era='legacy' connect to the same URL ({v4}): "
            f"{show(mixed)}"
        )
        if v1 is not None and era(v1) == "modern" and era(v4) != "modern":
            results.wire_warnings.append(
                f"WARNING: {label} ({module.__name__}): an era='legacy' connect makes later "
                f"era='auto' connects to the same URL speak {v4} (the per-URL detection "
                "cache records 'legacy' for a forced era); the benchmark gives its legacy "
                "contenders URLs of their own (?bench=...) to measure each era"
            )


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
    shuffler = random.Random(20261202)  # seeded: the same orders in every run
    by_key = {c.key: c for c in contenders}
    partner = {
        by_key[ours]: by_key[base]
        for _, ours, base in BASELINE_PAIRS
        if ours in by_key and base in by_key
    }
    units = [[c, partner[c]] if c in partner else [c] for c in contenders]
    units = [unit for unit in units if unit[0] not in partner.values()]
    for i in range(settings.connect_warmup + settings.connect_n):
        # A new order every round: a contender that leaves work behind on the server
        # (sessions torn down asynchronously, streams closing) must not always slow
        # down the same neighbour. Ours and its baseline run back to back, in a random
        # order of the two, so that both meet the same neighbours: their ratio is
        # taken per round. (Rotating one fixed order kept each contender's neighbours:
        # an A/A run of identical code then measured one copy 5-11 % slower.)
        shuffler.shuffle(units)
        order = []
        for unit in units:
            order.extend(shuffler.sample(unit, len(unit)))
        took: dict[str, float] = {}
        for contender in order:
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
            took[contender.key] = elapsed
            if i >= settings.connect_warmup:
                samples[contender.key].append(elapsed * 1000.0)
            try:
                await _bounded(contender.after_once())
            except Exception as exc:
                results.fail(contender.key, "(a) cleanup", exc)
                alive.remove(contender)
        if i >= settings.connect_warmup:
            for ours, base in partner.items():
                if ours.key in took and base.key in took:
                    ratio = took[ours.key] / took[base.key]
                    results.paired.setdefault(ours.key, []).append(ratio)
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
    ratio: float | None,
    label: str,
    limit: float,
    at_most: bool,
    vs: str | None = None,
    ours: str | None = None,
) -> dict[str, Any]:
    return {
        "ratio": ratio,
        "label": label,
        "target": f"{'<=' if at_most else '>='} {limit}",
        "met": None if ratio is None else (ratio <= limit if at_most else ratio >= limit),
        "vs": vs,
        "ours": ours,
    }


def ratios(results: Results) -> dict[str, dict[str, Any]]:
    """Ratio lines and whether each target is met (None = cannot tell).

    Per figure, up to three lines:

    - `*_legacy`: like-for-like in the legacy era: `resilient legacy` against the floor
      for (a) and (b) (also with a shared httpx client for (a)), against the better of
      mcp and fastmcp forced to the legacy handshake for (c) and (d);
    - `*_modern`: like-for-like in the modern era: `resilient` (era="auto", modern here)
      against the better of mcp and fastmcp in their default mode="auto";
    - `*_any`: the better of our two eras against the best of all four SDK variants.

    Targets: (a) <= 1.3x and (b) <= 1.1x the floor; against SDK clients, at least as
    good as the best of them (the anchors' "figures to beat").
    """
    get = results.get
    out: dict[str, dict[str, Any]] = {}
    floor_a, floor_b = get("a", FLOOR), get("b", FLOOR)
    out["a_legacy"] = _row(
        _ratio(get("a", RESILIENT_LEGACY), floor_a), "resilient legacy / floor", 1.3, True
    )
    out["a_legacy_shared"] = _row(
        _ratio(get("a", RESILIENT_LEGACY_SHARED), floor_a),
        "resilient legacy (shared httpx) / floor",
        1.3,
        True,
    )
    for fig, higher in (("a", False), ("b", False), ("c", True), ("d", False)):
        if fig == "b":
            out["b_legacy"] = _row(
                _ratio(get("b", RESILIENT_LEGACY), floor_b), "resilient legacy / floor", 1.1, True
            )
        if fig in ("c", "d"):
            best, vs = _best(results, fig, SDK_LEGACY, higher_is_better=higher)
            out[f"{fig}_legacy"] = _row(
                _ratio(get(fig, RESILIENT_LEGACY), best),
                "resilient legacy / best legacy SDK",
                1.0,
                not higher,
                vs,
            )
        best, vs = _best(results, fig, SDK_AUTO, higher_is_better=higher)
        out[f"{fig}_modern"] = _row(
            _ratio(get(fig, RESILIENT), best),
            "resilient / best auto SDK (modern)",
            1.0,
            not higher,
            vs,
        )
        ours, who = _best(results, fig, RESILIENT_ALL, higher_is_better=higher)
        best, vs = _best(results, fig, SDK_ALL, higher_is_better=higher)
        out[f"{fig}_any"] = _row(
            _ratio(ours, best), "resilient best / best SDK, any era", 1.0, not higher, vs, who
        )
    return out


def baseline_comparisons(results: Results) -> dict[str, dict[str, Any]]:
    """ "ours / baseline" per figure and pair, judged by the noise rule of
    `_baseline.judge` (lower is better for (a), (b), (d); higher for (c))."""
    out: dict[str, dict[str, Any]] = {}
    for fig in FIGURES:
        higher = fig == "c"
        for label, ours, base in BASELINE_PAIRS:
            if fig != "a" and ours in ONLY_A:
                continue  # the shared-httpx variants are measured for (a) only
            ratio = _ratio(results.get(fig, ours), results.get(fig, base))
            samples = results.samples.get(fig, {})
            mine_s, theirs_s = samples.get(ours, []), samples.get(base, [])
            paired = results.paired.get(ours, []) if fig == "a" else []
            if paired:
                # Paired rounds: the median of the per-round ratios, judged by their
                # own spread (the pair's shared neighbours cancel out).
                ratio = statistics.median(paired)
                mine_s, theirs_s = paired, [1.0] * len(paired)
            noise, verdict, regression = judge(ratio, mine_s, theirs_s, higher)
            out[f"{fig}_{label.replace(', ', '_').replace(' ', '_')}"] = {
                "figure": fig,
                "label": f"ours / baseline, {label}",
                "ratio": ratio,
                "noise": noise,
                "verdict": verdict,
                "regression": regression,
                "higher_is_better": higher,
                "n": [len(mine_s), len(theirs_s)],
                "ours": ours,
                "baseline": base,
            }
    return out


def baseline_summary(rows: dict[str, dict[str, Any]]) -> str:
    """One line: no regression on any figure, or which lines regressed or cannot tell."""
    regressed = [name for name, row in rows.items() if row["regression"] is True]
    unknown = [name for name, row in rows.items() if row["regression"] is None]
    if regressed:
        return "ours vs baseline: REGRESSION in " + ", ".join(regressed)
    if unknown:
        return (
            f"ours vs baseline: no regression where measurable; cannot tell: {', '.join(unknown)}"
        )
    return f"ours vs baseline: no regression on any figure ({len(rows)} lines)"


def render_baseline(results: Results) -> list[str]:
    rows = baseline_comparisons(results)
    if not rows:
        return []
    label_w = max(len(row["label"]) for row in rows.values())
    lines = [
        "",
        "ours / baseline (medians; noise = the larger relative spread of the two "
        "contenders' samples; (c) higher is better, the others lower):",
    ]
    for row in rows.values():
        ratio = row["ratio"]
        shown = "n/a" if ratio is None else f"{ratio:.2f}x"
        lines.append(
            f"({row['figure']}) {row['label']:<{label_w}} {shown:>7}   "
            f"noise ±{row['noise'] * 100:4.1f}%   {row['verdict']}"
        )
    lines.append(baseline_summary(rows))
    return lines


def era_warnings(results: Results) -> list[str]:
    """Say so when a contender did not negotiate the era its like-for-like ratios assume."""
    lines = []
    for key, expected in EXPECTED_ERA.items():
        versions = results.protocols_seen.get(key, [])
        wrong = [v for v in versions if era(v) != expected]
        if wrong:
            lines.append(
                f"WARNING: {COLUMNS[key]} negotiated {', '.join(wrong)} ({era(wrong[0])} era) "
                f"in this run; the {expected}-era like-for-like ratios assume the {expected} era"
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
        seen = results.protocols_seen.get(key, [])
        version = "mixed" if len(seen) > 1 else results.protocols.get(key) or "?"
        lines.append(f"{COLUMNS[key]:<{name_w}}  {version:<10} " + " ".join(cells))
    lines.append("")
    lines.append(LEGEND)
    lines.append("")
    rows = ratios(results)
    label_w = max(len(row["label"]) for row in rows.values())
    for fig, row in rows.items():
        name = fig.split("_")[0]
        ratio = row["ratio"]
        shown = "n/a" if ratio is None else f"{ratio:.2f}x"
        verdict = {True: "met", False: "NOT met", None: "-"}[row["met"]]
        ours = f"{COLUMNS[row['ours']]} " if row["ours"] else ""
        vs = f"  [{ours}vs {COLUMNS[row['vs']]}]" if row["vs"] else ""
        lines.append(
            f"({name}) {row['label']:<{label_w}} {shown:>7}   target {row['target']:<6} "
            f"{verdict:<7}{vs}".rstrip()
        )
    lines.extend(render_baseline(results))
    warnings = results.wire_warnings + era_warnings(results)
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


async def run(
    url: str,
    settings: Settings,
    results: Results,
    baseline: Baseline | None = None,
    ours: Baseline | None = None,
) -> list[str]:
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
            for era_mode in ("auto", "legacy"):
                contenders.append(ResilientClient(url, None, era_mode, ours=ours))
                contenders.append(ResilientClient(url, shared_http, era_mode, ours=ours))
        except (ImportError, AttributeError) as exc:
            for key in (RESILIENT, RESILIENT_SHARED, RESILIENT_LEGACY, RESILIENT_LEGACY_SHARED):
                results.fail(key, "import", exc)
        if baseline is not None:
            for era_mode in ("auto", "legacy"):
                contenders.append(ResilientClient(url, None, era_mode, baseline))
                contenders.append(ResilientClient(url, shared_http, era_mode, baseline))
        keys = [c.key for c in contenders]
        # Warm the shared clients' connection pools before anything is timed.
        for http in (floor_http, shared_http):
            warm = RawSession(http, url)
            await _bounded(warm.initialize())
            await _bounded(warm.initialized())
            await _bounded(warm.delete())

        print("wire check (untimed) ...", file=sys.stderr)
        wired: list[tuple[str, ModuleType]] = []
        if ours is not None:
            wired.append(("resilient", ours.module))
        else:
            with suppress(ImportError):
                wired.append(("resilient", importlib.import_module("resilient_mcp")))
        if baseline is not None:
            wired.append(("baseline", baseline.module))
        for label, module in wired:
            try:
                await wire_check(url, results, module, label)
            except Exception as exc:
                results.wire.append(f"{label} wire check failed: {type(exc).__name__}: {exc}"[:300])
        print(f"(a) connect->call->close x{settings.connect_n} ...", file=sys.stderr)
        await measure_connect(contenders, settings, results)
        session_contenders = [c for c in contenders if c.key not in ONLY_A]
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
                results.protocols_seen[contender.key] = sorted(contender.seen)
    return keys


def _hard_stop(
    peer_box: list[McpPeer], seconds: float, cleanups: Sequence[Callable[[], None]] = ()
) -> threading.Timer:
    """A watchdog outside the event loop: if everything wedges, stop the server, run
    `cleanups` (`os._exit` skips `finally` and `atexit`) and exit."""

    def fire() -> None:
        print(f"bench: hard timeout after {seconds:.0f} s; aborting", file=sys.stderr)
        for peer in peer_box:
            peer.stop(timeout=2.0)
        for cleanup in cleanups:
            cleanup()
        os._exit(3)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short run for CI smoke (~10-25 s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--timeout", type=float, help="overall timeout in seconds")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also measure resilient_mcp as it was at this git revision, side by side",
    )
    args = parser.parse_args(argv)
    baseline: Baseline | None = None
    ours: Baseline | None = None
    origins: list[str] = []
    if args.baseline:
        try:
            baseline = load_baseline(ROOT, args.baseline)
            ours = load_working_copy(ROOT)
            origins = describe_origins(ours, baseline)
        except BaselineError as exc:
            for copy in (baseline, ours):
                if copy is not None:
                    copy.close()
            print(f"bench: --baseline {args.baseline}: {exc}", file=sys.stderr)
            return 2
        for line in origins:
            print(line, file=sys.stderr)
    settings = Settings.quick() if args.quick else Settings.full()
    overall = args.timeout or settings.overall_timeout

    results = Results()
    load_before = _loadavg()
    peer_box: list[McpPeer] = []
    cleanups = [copy.close for copy in (baseline, ours) if copy is not None]
    watchdog = _hard_stop(peer_box, overall + 15.0, cleanups)
    previous_sigterm = None
    if baseline is not None:
        # The default SIGTERM ends the process without `finally` or `atexit`; make it an
        # orderly exit so the server is stopped and the baseline's directory removed.
        previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_signal)
    started = time.perf_counter()
    keys = [k for k in ALL_KEYS if baseline is not None or k not in BASELINE_KEYS]
    status = 0
    try:
        peer = launch_mcp_peer(stateless=False, json_response=False)
        peer_box.append(peer)
        try:

            async def bounded_run() -> list[str]:
                async with asyncio.timeout(overall):
                    return await run(peer.url, settings, results, baseline, ours)

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
        for copy in (baseline, ours):
            if copy is not None:
                copy.close()
        if baseline is not None:
            signal.signal(signal.SIGTERM, previous_sigterm or signal.SIG_DFL)

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
    for line in origins:
        print(line)
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
    if results.wire:
        print()
        print("wire check (untimed; requests of one connect -> tools/call -> close each):")
        for line in results.wire:
            print(f"  {line}")
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
            "paired_ratios_a": results.paired,
            "ratios": ratios(results),
            "baseline": (
                {
                    "rev": baseline.rev,
                    "commit": baseline.commit,
                    "subject": baseline.subject,
                    "digest": baseline.digest,
                    "origin": str(baseline.origin),
                    "origins": origins,
                    "comparisons": (rows := baseline_comparisons(results)),
                    "summary": baseline_summary(rows),
                }
                if baseline is not None
                else None
            ),
            "errors": results.errors,
            "notes": results.notes,
            "protocols": results.protocols,
            "protocols_seen": results.protocols_seen,
            "wire": results.wire,
            "warnings": results.wire_warnings + era_warnings(results),
            "eras": {key: era(version) for key, version in results.protocols.items()},
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
