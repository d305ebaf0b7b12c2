"""Retry budgets that fit the failure, with the default RetryPolicy.

A failure that certainly did not run is retried until the call's deadline; ``attempts``
bounds only re-sends of requests that may have run. The budget tests run on trio with
``MockClock(autojump_threshold=0)`` (as tests/test_time_budget.py): the default backoff
really sleeps, but on a virtual clock, so they assert times exactly on any machine.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
import trio.testing

import resilient_mcp
from resilient_mcp import Execution, FateUnknown, RetryPolicy
from resilient_mcp._deadline import Deadline
from resilient_mcp._log import default_logger
from resilient_mcp._recovery import MAX_NOT_RUN_RETRIES, Recovery
from resilient_mcp._stats import SessionStats

from .test_recovery import URL, Rule, SessionServer, rpc, rpc_error

pytestmark = pytest.mark.anyio

SESSION_NOT_FOUND = {
    "jsonrpc": "2.0",
    "id": None,
    "error": {"code": -32600, "message": "Session not found"},
}


def failing(method: str, times: int, answer: Any) -> Rule:
    """A rule that answers ``method`` with ``answer(message)`` the first ``times`` times."""
    seen = {"n": 0}

    def rule(message: dict[str, Any], srv: SessionServer) -> httpx.Response | None:
        if message["method"] == method and seen["n"] < times:
            seen["n"] += 1
            response: httpx.Response = answer(message)
            return response
        return None

    return rule


def status(code: int, retry_after: str | None = None) -> Any:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return lambda message: httpx.Response(code, headers=headers, text="busy")


class TestVirtualTime:
    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, Any]]:
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})

    async def test_429_without_retry_after_is_retried_past_attempts(self) -> None:
        server = SessionServer(failing("tools/call", 10, status(429)))
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            start = anyio.current_time()
            assert (await client.call_tool("increment")).text == "ran increment"
            waited = anyio.current_time() - start
        assert server.count("tools/call") == 11, "ten refusals did not use up attempts=3"
        assert server.executed == {"increment": 1}
        assert 0 < waited < 20, "capped backoff (2 s at most per wait, plus jitter)"

    async def test_503_forever_ends_at_the_deadline(self) -> None:
        server = SessionServer(failing("tools/call", 10_000, status(503)))
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            start = anyio.current_time()
            with pytest.raises(resilient_mcp.ServerUnavailable):
                await client.call_tool("increment", timeout=10)
            took = anyio.current_time() - start
        assert took <= 10, "the deadline always wins"
        assert server.count("tools/call") > 3
        assert server.executed == {}

    async def test_retry_after_beyond_the_deadline_fails_at_once(self) -> None:
        server = SessionServer(failing("tools/call", 10, status(503, "30")))
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            start = anyio.current_time()
            with pytest.raises(resilient_mcp.ServerUnavailable) as info:
                await client.call_tool("increment", timeout=5)
            assert anyio.current_time() == start, "no wait was started"
        assert info.value.retry_after == 30
        assert "30 s" in str(info.value)
        assert server.count("tools/call") == 1

    async def test_retry_after_within_the_deadline_is_honoured(self) -> None:
        server = SessionServer(failing("tools/call", 1, status(429, "3")))
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            start = anyio.current_time()
            await client.call_tool("increment", timeout=5)
            assert anyio.current_time() - start >= 3
        assert server.executed == {"increment": 1}

    async def test_no_deadline_is_bounded_by_the_not_run_cap(self) -> None:
        server = SessionServer(failing("tools/call", 10_000, status(503)))
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            start = anyio.current_time()
            with pytest.raises(resilient_mcp.ServerUnavailable):
                await client.call_tool("increment", timeout=None)
            took = anyio.current_time() - start
        assert server.count("tools/call") == MAX_NOT_RUN_RETRIES + 1
        assert 30 < took < 70, "about 50 s with the default waits"

    async def test_a_server_losing_every_session_gets_backoff(self) -> None:
        def lose(message: dict[str, Any], srv: SessionServer) -> httpx.Response | None:
            srv.kill_all()
            return httpx.Response(404, json=SESSION_NOT_FOUND)

        server = SessionServer(lose)
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            start = anyio.current_time()
            with pytest.raises(resilient_mcp.SessionLost):
                await client.call_tool("increment", timeout=10)
            took = anyio.current_time() - start
        assert took > 1, "the follows after the first wait"
        assert server.count("initialize") <= 34, "bounded by MAX_SESSION_FOLLOWS"

    async def test_maybe_failures_of_a_read_use_attempts(self) -> None:
        server = SessionServer(failing("resources/list", 10, status(502)))
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            with pytest.raises(resilient_mcp.ServerUnavailable) as info:
                await client.list_resources()
        assert info.value.execution is Execution.MAYBE
        assert server.count("resources/list") == RetryPolicy().attempts

    async def test_ambiguous_32602_settles_on_the_same_session(self) -> None:
        generic = failing(
            "tools/call", 1, lambda m: rpc_error(m, -32602, "Invalid request parameters")
        )
        server = SessionServer(generic)
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            start = anyio.current_time()
            assert (await client.call_tool("increment")).text == "ran increment"
            assert anyio.current_time() - start < 0.2, "one short backoff"
        assert server.count("initialize") == 1, "no new handshake"

    async def test_a_real_bad_argument_costs_a_bounded_time(self) -> None:
        generic = failing(
            "tools/call", 100, lambda m: rpc_error(m, -32602, "Invalid request parameters")
        )
        server = SessionServer(generic)
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            start = anyio.current_time()
            with pytest.raises(resilient_mcp.InvalidParams):
                await client.call_tool("bad", timeout=60)
            assert anyio.current_time() - start < 1, "not the whole deadline"
        assert server.count("tools/call") == 4
        assert server.count("initialize") == 2


class TestSessionEndedWhileRunning:
    """A SessionError saying MAYBE (mcp 2.3's 500 -32603): renew, re-send only if safe."""

    @staticmethod
    def recovery(safe: bool, renews: list[tuple[int, str]]) -> Recovery:
        return Recovery(
            policy=RetryPolicy(),
            deadline=Deadline.after(10),
            method="tools/call",
            params={"name": "increment", "arguments": {}},
            safe=safe,
            stats=SessionStats(),
            log=default_logger(),
            renew=lambda generation, reason: renews.append((generation, reason)),
            generation=lambda: 1,
            modern=lambda: False,
        )

    @staticmethod
    def terminated() -> resilient_mcp.SessionLost:
        return resilient_mcp.SessionLost(
            "Session terminated before the request completed", execution=Execution.MAYBE
        )

    async def test_side_effecting_call_raises_fate_unknown_and_renews(self) -> None:
        renews: list[tuple[int, str]] = []
        sends: list[int] = []

        async def attempt(n: int) -> str:
            sends.append(n)
            raise self.terminated()

        with pytest.raises(FateUnknown) as info:
            await self.recovery(False, renews).run(attempt)
        assert isinstance(info.value.__cause__, resilient_mcp.SessionLost)
        assert sends == [1], "never re-sent"
        assert renews == [(1, "SessionLost")], "the session is renewed all the same"

    async def test_safe_call_is_resent_on_a_new_session(self) -> None:
        renews: list[tuple[int, str]] = []
        sends: list[int] = []

        async def attempt(n: int) -> str:
            sends.append(n)
            if n == 1:
                raise self.terminated()
            return "ok"

        assert await self.recovery(True, renews).run(attempt) == "ok"
        assert sends == [1, 2]
        assert renews == [(1, "SessionLost")]


class TestSafetyFromAnnotations:
    """Without a prior listing, the annotations are fetched on the failure path only."""

    @staticmethod
    def drop_after_executing(message: dict[str, Any], srv: SessionServer) -> httpx.Response | None:
        if message["method"] == "tools/call":
            name = message["params"]["name"]
            srv.executed[name] = srv.executed.get(name, 0) + 1
            if srv.executed[name] == 1:
                raise httpx.ReadError("connection reset after the request was processed")
            return rpc(message, {"content": [{"type": "text", "text": f"ran {name}"}]})
        return None

    async def test_annotated_idempotent_tool_never_listed_is_resent(self) -> None:
        server = SessionServer(self.drop_after_executing)
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            assert (await client.call_tool("set_value")).text == "ran set_value"
        assert server.executed == {"set_value": 2}
        assert server.count("tools/list") == 1

    async def test_not_annotated_tool_raises_fate_unknown_and_ran_once(self) -> None:
        server = SessionServer(self.drop_after_executing)
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            with pytest.raises(FateUnknown):
                await client.call_tool("increment")
        assert server.executed == {"increment": 1}
        assert server.count("tools/list") == 1

    async def test_caller_said_not_idempotent_fetches_nothing(self) -> None:
        server = SessionServer(self.drop_after_executing)
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            with pytest.raises(FateUnknown):
                await client.call_tool("set_value", idempotent=False)
        assert server.executed == {"set_value": 1}
        assert server.count("tools/list") == 0

    async def test_no_tools_list_on_the_happy_path(self) -> None:
        server = SessionServer()
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            for _ in range(3):
                await client.call_tool("set_value")
        methods = [m.get("method") for m in server.received if m.get("method") != "server/discover"]
        assert methods == ["initialize", "notifications/initialized"] + ["tools/call"] * 3

    async def test_the_cached_list_is_dropped_on_a_new_session(self) -> None:
        server = SessionServer(self.drop_after_executing)
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            await client.list_tools()
            server.kill_all()
            await client.ping()  # recovers: a new session
            await client.list_tools()
        assert server.count("tools/list") == 2
