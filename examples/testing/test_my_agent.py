"""Test your agent against strict and flaky MCP servers: copy this file and swap the agent.

`resilient_mcp.testing` runs real MCP servers on 127.0.0.1 that answer exactly as the
real ones do (`profile=`: the Python SDK, rmcp, TypeScript, Go, Java, ...) and inject
seeded faults (`Chaos`: 503s, sessions that expire, answers cut mid-way; `restart()`).
Their counters (`running.stats`) say what really ran, so a test can check the agent's
own account of what it did: a side effect it reports done ran exactly once, one it
reports not done never ran, and none ran twice.

Run it with ``pytest examples/testing`` (needs ``resilient-mcp[testing]``, pytest, and
anyio's pytest plugin, which comes with anyio).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

import resilient_mcp
from resilient_mcp.testing import ERAS, PROFILES, Chaos, Era, Profile, StrictServer, serve

pytestmark = pytest.mark.anyio


# --- the agent under test: replace with yours ------------------------------------------


@dataclass(frozen=True)
class Answer:
    text: str
    recorded: bool | None
    """Whether the visit was recorded: True, False, or None when nobody can know."""


async def my_agent(client: resilient_mcp.Client, a: int, b: int, visit: str) -> Answer:
    """A tiny agent: adds two numbers with a tool, then records a visit (a side effect).

    It never repeats a call that may have run: `FateUnknown` becomes "maybe recorded".
    """
    tools = {tool.name for tool in await client.list_tools()}
    if not {"add", "increment"} <= tools:
        return Answer("the server lacks the tools I need", recorded=False)
    # `add` has no side effect, but no annotation says so: tell the client, and it may
    # resend it when its answer is lost.
    total = await client.call_tool("add", {"a": a, "b": b}, idempotent=True)
    text = f"{a} + {b} = {(total.structuredContent or {}).get('sum')}"
    try:
        await client.call_tool("increment", {"key": visit})
    except resilient_mcp.FateUnknown:
        return Answer(text, recorded=None)
    except resilient_mcp.MCPError as exc:
        # Certainly not run ("not_executed") or run and failed ("executed").
        return Answer(text, recorded=exc.execution is resilient_mcp.Execution.EXECUTED)
    return Answer(text, recorded=True)


# --- the tests ---------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # add "trio" if your agent runs on it too


def check_side_effects(answers: dict[str, Answer], executions: dict[str, int]) -> None:
    """The agent's account against the server's: at most once, and truthfully."""
    for visit, answer in answers.items():
        ran = executions.get(visit, 0)
        assert ran <= 1, f"{visit} ran {ran} times"
        if answer.recorded is not None:
            assert ran == int(answer.recorded), f"{visit}: said {answer.recorded}, ran {ran}"


@pytest.mark.parametrize("profile", PROFILES)
async def test_every_dialect(profile: Profile) -> None:
    # Slow to process `initialized` (a big catalog): a request that arrives before that
    # fails in each server's own way, and rmcp even ends the session.
    server = StrictServer(profile=profile, handshake_delay=0.2)
    async with serve(server) as running, resilient_mcp.connect(running.url) as client:
        answer = await my_agent(client, 2, 3, visit="v1")
    assert answer == Answer("2 + 3 = 5", recorded=True)
    assert running.stats.early_requests == 0
    assert running.stats.executions["v1"] == 1


@pytest.mark.parametrize("era", ERAS)
async def test_every_protocol_era(era: Era) -> None:
    server = StrictServer(era=era)
    async with serve(server) as running, resilient_mcp.connect(running.url) as client:
        answer = await my_agent(client, 2, 3, visit="v1")
    assert answer == Answer("2 + 3 = 5", recorded=True)
    assert running.stats.executions["v1"] == 1


FLAKY = [
    # 503 on 30% of requests: nothing ran, so the client backs off and resends. (With
    # `retry_after=1`, the default, it honours the header: a second per refusal. Backoff
    # delays are real; `with resilient_mcp.disable_backoff():` removes them in tests.)
    pytest.param("python-sdk-2", Chaos(seed=1, reject_rate=0.3, retry_after=None), id="503s"),
    # Sessions that are gone after 3 requests: the client opens a new one and resends.
    *(
        pytest.param(profile, Chaos(seed=2, expire_after_requests=3), id=f"expiring-{profile}")
        for profile in ("python-sdk-2", "rmcp-legacy", "typescript")
    ),
    # 40% of tool answers cut: a read is repeated, a side effect is not (FateUnknown).
    pytest.param("python-sdk-2", Chaos(seed=3, drop_rate=0.4), id="dropped"),
    pytest.param(
        "rmcp-legacy",
        Chaos(seed=4, reject_rate=0.2, retry_after=None, expire_after_requests=4, drop_rate=0.2),
        id="everything",
    ),
]


@pytest.mark.parametrize(("profile", "chaos"), FLAKY)
async def test_flaky_server(profile: Profile, chaos: Chaos) -> None:
    server = StrictServer(profile=profile, chaos=chaos)
    answers: dict[str, Answer] = {}
    failures: list[resilient_mcp.MCPError] = []
    async with serve(server) as running, resilient_mcp.connect(running.url) as client:
        for n in range(6):
            try:
                answers[f"v{n}"] = await my_agent(client, n, 1, visit=f"v{n}")
            except resilient_mcp.MCPError as exc:
                failures.append(exc)  # e.g. a read whose every resend was cut
    assert running.stats.faults, "the chaos should have injected something"
    # A call that failed for good says it did not run, or that nobody can know.
    assert all(exc.execution is not resilient_mcp.Execution.EXECUTED for exc in failures)
    assert running.stats.early_requests == 0
    check_side_effects(answers, dict(running.stats.executions))
    for visit, answer in answers.items():
        assert answer.text.endswith(f"= {int(visit[1:]) + 1}")


@pytest.fixture
async def restarting() -> AsyncIterator[tuple[StrictServer, resilient_mcp.Client]]:
    server = StrictServer(profile="typescript")
    async with serve(server) as running, resilient_mcp.connect(running.url) as client:
        yield server, client


async def test_server_restart_between_turns(
    restarting: tuple[StrictServer, resilient_mcp.Client],
) -> None:
    server, client = restarting
    first = await my_agent(client, 1, 1, visit="before")
    server.restart()  # every session is gone: the next call gets a 404 and recovers
    second = await my_agent(client, 2, 2, visit="after")
    assert (first.recorded, second.recorded) == (True, True)
    assert server.stats.sessions_created == 2
    check_side_effects({"before": first, "after": second}, dict(server.stats.executions))
