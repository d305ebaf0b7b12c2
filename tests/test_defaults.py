"""Default settings, every dialect: calls issued while the handshake is still under way.

Nothing here tunes a :class:`~resilient_mcp.RetryPolicy`, a timeout or a limit: what a
new user gets is what is tested. The server acknowledges `notifications/initialized`
and then needs 0.2 s to process it (the order of the real servers' acknowledgement and
processing is each profile's own), while 200 calls are already waiting to go out.
"""

from __future__ import annotations

from collections import Counter

import anyio
import pytest

import resilient_mcp
from resilient_mcp.testing import PROFILES, StrictServer, serve
from resilient_mcp.types import HTTPTransportName

pytestmark = pytest.mark.anyio

CALLS = 200
PROCESSING_S = 0.2
# A hang fails the test long before pytest's own limit, with room for a slow machine.
LIMIT_S = 40


@pytest.mark.parametrize("profile", PROFILES)
async def test_200_calls_issued_as_connect_starts_all_succeed(
    profile: str, anyio_backend: str
) -> None:
    transport: HTTPTransportName = "sse" if profile == "python-sdk-sse" else "auto"
    server = StrictServer(profile=profile, handshake_delay=PROCESSING_S)  # type: ignore[arg-type]
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    with anyio.fail_after(LIMIT_S):
        async with serve(server) as running:
            target = resilient_mcp.HTTPServer(running.url, transport=transport)
            async with resilient_mcp.connect(target, wait_ready=False) as client:

                async def call(i: int) -> None:
                    try:
                        if i % 3 == 0:
                            await client.call_tool("increment", {"key": f"k{i}"})
                            outcomes["side effect"] += 1
                        elif i % 3 == 1:
                            await client.call_tool("read_counter")
                            outcomes["read"] += 1
                        else:
                            await client.ping()
                            outcomes["ping"] += 1
                    except resilient_mcp.MCPError as exc:
                        failures.append(f"{i}: {exc!r}")

                async with anyio.create_task_group() as tg:
                    for i in range(CALLS):
                        tg.start_soon(call, i)
            executions = running.stats.executions
    assert failures == [], f"profile={profile}: {len(failures)} failed, first: {failures[:3]}"
    assert sum(outcomes.values()) == CALLS
    # Every side effect ran exactly once.
    assert sorted(executions) == sorted(f"k{i}" for i in range(0, CALLS, 3))
    assert set(executions.values()) == {1}
