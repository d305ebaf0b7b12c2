"""Recovery holds with the default RetryPolicy, against the fault server.

Before issue 10, ``attempts=3`` also bounded failures that certainly did not run, so a
server refusing half its requests (503) while expiring sessions made side-effecting
calls fail with the default settings. Now those are retried until the deadline.
"""

from __future__ import annotations

import anyio
import pytest

import resilient_mcp
from resilient_mcp.testing import Chaos, StrictServer, serve

pytestmark = pytest.mark.anyio


async def test_side_effecting_calls_survive_503s_and_expiring_sessions() -> None:
    chaos = Chaos(
        seed=3, reject_rate=0.25, reject_status=503, retry_after=None, expire_after_requests=7
    )
    server = StrictServer(chaos=chaos)
    keys = [f"call-{i}" for i in range(20)]
    with anyio.fail_after(60):  # a guard only: the real default backoff takes a few seconds
        async with serve(server) as running, resilient_mcp.connect(running.url) as client:
            for key in keys:
                await client.call_tool("increment", {"key": key})
            stats, retries = running.stats, client.stats.retries
    assert all(stats.executions[key] == 1 for key in keys), "each ran exactly once"
    assert retries > 3, "the chaos really happened"
