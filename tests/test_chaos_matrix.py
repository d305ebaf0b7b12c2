"""Every server dialect, with chaos on: reads always succeed, side effects run at most once.

For each profile of the fault server: 500 concurrent mixed calls while sessions expire
every 50 requests, 10 % of POSTs get 503, tool-call streams drop (and resume), every POST
gets random latency, and the server restarts halfway. Seeded: a failure replays.
"""

from __future__ import annotations

import random
from collections import Counter

import anyio
import pytest

import resilient_mcp
from resilient_mcp.testing import Chaos, StrictServer, serve

pytestmark = pytest.mark.anyio

PROFILES = [
    "python-sdk",
    "python-sdk-2",
    "rmcp-legacy",
    "typescript",
    "typescript-example",
    "server-everything",
    "go",
    "java",
    "lsp-style",
    "lenient",
]
CALLS = 500
SEED = 20261123
# Every profile on asyncio; trio (a different scheduler, so different interleavings) on
# the two most unforgiving dialects. The whole matrix costs minutes, not seconds.
TRIO_PROFILES = ["python-sdk", "rmcp-legacy"]
# Our own bound, inside pytest's (60 s, pyproject.toml): a hang fails with the outcomes
# so far instead of a pytest timeout. A run takes a few seconds on a loaded 2-core box.
LIMIT_S = 45


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("profile", PROFILES)
async def test_500_mixed_calls_under_chaos(profile: str) -> None:
    await run_matrix(profile)


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.parametrize("profile", TRIO_PROFILES)
async def test_500_mixed_calls_under_chaos_on_trio(profile: str, anyio_backend: str) -> None:
    await run_matrix(profile)


async def run_matrix(profile: str) -> None:
    chaos = Chaos(
        seed=SEED,
        expire_after_requests=50,
        reject_rate=0.1,
        reject_status=503,
        retry_after=1,
        drop_rate=0.05,
        latency=(0.0, 0.002),
    )
    server = StrictServer(profile=profile, chaos=chaos, json_response=False)  # type: ignore[arg-type]
    kinds = random.Random(SEED).choices(
        ["read", "idempotent", "side-effect", "resource", "ping"], weights=[4, 2, 2, 1, 1], k=CALLS
    )
    outcomes: Counter[str] = Counter()
    succeeded_keys: list[str] = []
    done = 0
    restarted = anyio.Event()

    # Default settings throughout: no tuned RetryPolicy, and the tools are never listed
    # first (read_counter is annotated read-only, set_value idempotent: a call whose fate
    # is unknown learns that on its failure path).
    with resilient_mcp.disable_backoff():
        async with (
            serve(server) as running,
            resilient_mcp.connect(running.url) as client,
        ):

            async def call(i: int, kind: str) -> None:
                nonlocal done
                try:
                    if kind == "read":
                        await client.call_tool("read_counter")
                    elif kind == "idempotent":
                        await client.call_tool("set_value", {"value": i})
                    elif kind == "resource":
                        await client.read_resource("memo://one")
                    elif kind == "ping":
                        await client.ping()
                    else:
                        key = f"call-{i}"
                        try:
                            await client.call_tool("increment", {"key": key})
                            succeeded_keys.append(key)
                        except resilient_mcp.FateUnknown:
                            outcomes["side-effect fate unknown"] += 1
                            return
                    outcomes[f"{kind} ok"] += 1
                finally:
                    done += 1
                    if done == CALLS // 2 and not restarted.is_set():
                        restarted.set()
                        running.server.restart()

            with anyio.fail_after(LIMIT_S):
                async with anyio.create_task_group() as tg:
                    for i, kind in enumerate(kinds):
                        tg.start_soon(call, i, kind)
            stats = running.stats
            client_stats = client.stats

    expected = Counter(kinds)
    why = f"profile={profile} seed={SEED} outcomes={dict(outcomes)}"
    for kind in ("read", "idempotent", "resource", "ping"):
        assert outcomes[f"{kind} ok"] == expected[kind], why
    assert (
        outcomes["side-effect ok"] + outcomes["side-effect fate unknown"] == expected["side-effect"]
    )
    # At most once: no side-effecting call ran twice, and every success ran exactly once.
    assert all(n == 1 for n in stats.executions.values()), why
    assert all(stats.executions[key] == 1 for key in succeeded_keys), why
    # The chaos really happened, and was recovered from.
    assert restarted.is_set()
    assert stats.restarts == 1
    assert client_stats.recoveries >= 2, why
    assert client_stats.retries > 0, why
    assert stats.early_requests == 0, why
