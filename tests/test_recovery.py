"""Recovery: one coordinated new handshake, safe retries only, and the deadline always wins."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

import resilient_mcp
from resilient_mcp import Execution, RetryPolicy
from resilient_mcp._recovery import MAX_NOT_RUN_RETRIES

pytestmark = pytest.mark.anyio

URL = "http://127.0.0.1:1/mcp"
Rule = Callable[[dict[str, Any], "SessionServer"], httpx.Response | None]


def rpc(message: dict[str, Any], result: Any) -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": message["id"], "result": result}
    return httpx.Response(200, json=body)


def rpc_error(message: dict[str, Any], code: int, text: str, data: Any = "") -> httpx.Response:
    body = {
        "jsonrpc": "2.0",
        "id": message["id"],
        "error": {"code": code, "message": text, "data": data},
    }
    return httpx.Response(200, json=body)


class SessionServer:
    """A scripted stateful server: sessions can be killed; ``rule`` may answer any request."""

    def __init__(self, rule: Rule | None = None) -> None:
        self.rule = rule
        self.live: set[str] = set()
        self.sessions = 0
        self.initialize_ids: list[str | None] = []
        self.executed: dict[str, int] = {}
        self.received: list[dict[str, Any]] = []

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    def kill_all(self) -> None:
        self.live.clear()

    def count(self, method: str) -> int:
        return sum(1 for m in self.received if m.get("method") == method)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            return httpx.Response(405)
        message = json.loads(request.content)
        self.received.append(message)
        sid = request.headers.get("mcp-session-id")
        if message.get("method") == "initialize":
            self.initialize_ids.append(sid)
            self.sessions += 1
            new = f"s{self.sessions}"
            self.live.add(new)
            result = {
                "protocolVersion": "2025-11-25",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "scripted", "version": "1"},
            }
            response = rpc(message, result)
            response.headers["mcp-session-id"] = new
            return response
        if sid not in self.live:
            return httpx.Response(
                404,
                json={
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {"code": -32600, "message": "Session not found"},
                },
            )
        if "id" not in message:
            return httpx.Response(202)
        if self.rule is not None:
            answer = self.rule(message, self)
            if answer is not None:
                return answer
        if message["method"] == "tools/call":
            name = message["params"]["name"]
            self.executed[name] = self.executed.get(name, 0) + 1
            return rpc(message, {"content": [{"type": "text", "text": f"ran {name}"}]})
        if message["method"] == "tools/list":
            tools = [
                {"name": "increment", "inputSchema": {"type": "object"}},
                {
                    "name": "set_value",
                    "inputSchema": {"type": "object"},
                    "annotations": {"idempotentHint": True},
                },
            ]
            return rpc(message, {"tools": tools})
        return rpc(message, {})


class Sleeps:
    """An injectable sleep that records delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class TestCoordinatedRecovery:
    """A lost session costs exactly one new handshake, shared by every caller."""

    async def test_lost_session_is_recovered_and_the_call_succeeds(self) -> None:
        server = SessionServer()
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            assert client.session_id == "s1"
            server.kill_all()
            result = await client.call_tool("increment")
            assert result.text == "ran increment"
            assert client.session_id == "s2"
            assert client.stats.recoveries == 1
            assert client.stats.session_changes == 1
            assert client.stats.retries == 1
        # The new initialize did not carry the dead session's id.
        assert server.initialize_ids == [None, None]
        assert server.executed == {"increment": 1}

    async def test_100_parked_calls_cost_one_handshake(self) -> None:
        server = SessionServer()
        texts: list[str] = []
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            server.kill_all()

            async def call(i: int) -> None:
                texts.append((await client.call_tool(f"t{i}")).text)

            async with anyio.create_task_group() as tg:
                for i in range(100):
                    tg.start_soon(call, i)
            assert client.stats.recoveries == 1
        assert len(texts) == 100
        assert server.count("initialize") == 2, "exactly one new handshake"
        assert all(n == 1 for n in server.executed.values())

    async def test_not_initialized_answer_triggers_recovery(self) -> None:
        calls = {"n": 0}

        def once_not_initialized(
            message: dict[str, Any], srv: SessionServer
        ) -> httpx.Response | None:
            if message["method"] == "tools/call" and calls["n"] == 0:
                calls["n"] += 1
                return httpx.Response(
                    400,
                    json={
                        "jsonrpc": "2.0",
                        "id": None,
                        "error": {"code": -32000, "message": "Bad Request: Server not initialized"},
                    },
                )
            return None

        server = SessionServer(once_not_initialized)
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            assert (await client.call_tool("increment")).text == "ran increment"
            assert client.stats.recoveries == 1
        assert server.executed == {"increment": 1}


class TestGenuineErrorsAreNotRetriedForever:
    """Real errors reach the caller; the ambiguous -32602 costs at most one handshake."""

    async def test_ambiguous_32602_is_retried_then_rehandshaken_then_invalid_params(self) -> None:
        # Two retries on the same session (`initialized` may still be queued), then one
        # new handshake and one last send: a real bad argument costs a bounded ~0.15 s.
        def always_generic(message: dict[str, Any], srv: SessionServer) -> httpx.Response | None:
            if message["method"] == "tools/call":
                return rpc_error(message, -32602, "Invalid request parameters")
            return None

        server = SessionServer(always_generic)
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            with pytest.raises(resilient_mcp.InvalidParams) as info:
                await client.call_tool("bad", {"x": 1})
            assert info.value.may_be_not_initialized
        assert server.count("initialize") == 2
        assert server.count("tools/call") == 4

    async def test_explicit_invalid_params_is_not_retried(self) -> None:
        def unknown_tool(message: dict[str, Any], srv: SessionServer) -> httpx.Response | None:
            if message["method"] == "tools/call":
                return rpc_error(message, -32602, "Unknown tool: nope", None)
            return None

        server = SessionServer(unknown_tool)
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            with pytest.raises(resilient_mcp.InvalidParams):
                await client.call_tool("nope")
        assert server.count("initialize") == 1
        assert server.count("tools/call") == 1

    async def test_resource_not_found_is_final(self) -> None:
        def missing(message: dict[str, Any], srv: SessionServer) -> httpx.Response | None:
            if message["method"] == "resources/read":
                return rpc_error(message, -32002, "Resource not found", {"uri": "x://y"})
            return None

        server = SessionServer(missing)
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            with pytest.raises(resilient_mcp.ResourceNotFound):
                await client.read_resource("x://y")
        assert server.count("resources/read") == 1


class TestAtMostOnce:
    """A side-effecting call that may have run is never repeated behind the caller's back."""

    @staticmethod
    def drop_after_executing(message: dict[str, Any], srv: SessionServer) -> httpx.Response | None:
        if message["method"] == "tools/call":
            name = message["params"]["name"]
            srv.executed[name] = srv.executed.get(name, 0) + 1
            if srv.executed[name] == 1:
                raise httpx.ReadError("connection reset after the request was processed")
            return rpc(message, {"content": [{"type": "text", "text": f"ran {name}"}]})
        return None

    async def test_side_effecting_call_raises_fate_unknown(self) -> None:
        server = SessionServer(self.drop_after_executing)
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            with pytest.raises(resilient_mcp.FateUnknown) as info:
                await client.call_tool("increment", {"by": 1})
        assert info.value.execution is Execution.MAYBE
        assert info.value.params == {"name": "increment", "arguments": {"by": 1}}
        assert isinstance(info.value.__cause__, resilient_mcp.ConnectionLost)
        assert server.executed == {"increment": 1}, "never run twice"

    async def test_caller_marked_idempotent_is_retried(self) -> None:
        server = SessionServer(self.drop_after_executing)
        with resilient_mcp.disable_backoff():
            async with (
                server.client() as http,
                resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
            ):
                result = await client.call_tool("increment", idempotent=True)
        assert result.text == "ran increment"
        assert server.executed == {"increment": 2}

    async def test_annotated_idempotent_tool_is_retried(self) -> None:
        server = SessionServer(self.drop_after_executing)
        with resilient_mcp.disable_backoff():
            async with (
                server.client() as http,
                resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
            ):
                await client.list_tools()
                assert (await client.call_tool("set_value")).text == "ran set_value"
                with pytest.raises(resilient_mcp.FateUnknown):
                    await client.call_tool("increment")
        assert server.executed == {"set_value": 2, "increment": 1}

    async def test_reads_are_retried_after_a_drop(self) -> None:
        drops = {"n": 0}

        def drop_once(message: dict[str, Any], srv: SessionServer) -> httpx.Response | None:
            if message["method"] == "resources/list" and drops["n"] == 0:
                drops["n"] += 1
                raise httpx.RemoteProtocolError("server disconnected")
            return None

        server = SessionServer(drop_once)
        with resilient_mcp.disable_backoff():
            async with (
                server.client() as http,
                resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
            ):
                assert await client.list_resources() == []
                assert client.stats.retries == 1


class TestBackoff:
    """Waits grow, honour Retry-After, use the injected sleep, and never outlast the deadline."""

    @staticmethod
    def unavailable(status: int, retry_after: str, times: int) -> Rule:
        seen = {"n": 0}

        def rule(message: dict[str, Any], srv: SessionServer) -> httpx.Response | None:
            if message["method"] == "tools/call" and seen["n"] < times:
                seen["n"] += 1
                return httpx.Response(status, headers={"retry-after": retry_after}, text="busy")
            return None

        return rule

    async def test_retry_after_is_honoured_with_an_injected_sleep(self) -> None:
        sleeps = Sleeps()
        server = SessionServer(self.unavailable(503, "2", times=2))
        policy = RetryPolicy(attempts=3, sleep=sleeps)
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http), retry=policy
            ) as client,
        ):
            # 503 proves the call did not run: retried even though it has side effects.
            assert (await client.call_tool("increment")).text == "ran increment"
        assert len(sleeps.delays) == 2
        assert all(d >= 2 for d in sleeps.delays)
        assert server.executed == {"increment": 1}

    async def test_attempts_bound_resends_of_what_may_have_run(self) -> None:
        # 502 may have been forwarded: only a read is re-sent, attempts (3) times in all.
        sleeps = Sleeps()
        seen = {"n": 0}

        def bad_gateway(message: dict[str, Any], srv: SessionServer) -> httpx.Response | None:
            if message["method"] == "resources/list" and seen["n"] < 100:
                seen["n"] += 1
                return httpx.Response(502, text="bad gateway")
            return None

        server = SessionServer(bad_gateway)
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http), retry=RetryPolicy(sleep=sleeps)
            ) as client,
        ):
            with pytest.raises(resilient_mcp.ServerUnavailable) as info:
                await client.list_resources()
        assert info.value.status_code == 502
        assert len(sleeps.delays) == 2
        assert 0.05 <= sleeps.delays[0] <= 0.1 <= sleeps.delays[1] <= 0.15, "exponential"
        assert server.count("resources/list") == 3

    async def test_deadline_wins_over_retry_after(self) -> None:
        sleeps = Sleeps()
        server = SessionServer(self.unavailable(503, "30", times=100))
        policy = RetryPolicy(attempts=5, timeout=1.0, sleep=sleeps)
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http), retry=policy
            ) as client,
        ):
            with pytest.raises(resilient_mcp.ServerUnavailable):
                await client.call_tool("increment")
        assert sleeps.delays == [], "a wait past the deadline is not even started"
        assert server.count("tools/call") == 1

    async def test_disable_backoff_removes_the_waits(self) -> None:
        sleeps = Sleeps()
        server = SessionServer(self.unavailable(503, "5", times=2))
        with resilient_mcp.disable_backoff():
            async with (
                server.client() as http,
                resilient_mcp.connect(
                    resilient_mcp.HTTPServer(URL, http_client=http), retry=RetryPolicy(sleep=sleeps)
                ) as client,
            ):
                await client.call_tool("increment")
        assert sleeps.delays == []

    async def test_refused_connection_is_retried_then_reported(self) -> None:
        # Refused: it never ran, so attempts do not bound it; with no deadline, the cap
        # on not-run retries does (the waits are injected: no real time passes).
        sleeps = Sleeps()
        # Port 9 on loopback has no listener: every handshake attempt is refused.
        async with resilient_mcp.connect(
            "http://127.0.0.1:9/mcp", wait_ready=False, retry=RetryPolicy(sleep=sleeps)
        ) as client:
            with pytest.raises(resilient_mcp.ConnectError):
                await client.ping(timeout=None)
        assert len(sleeps.delays) == MAX_NOT_RUN_RETRIES
        assert max(sleeps.delays) <= 2.05, "capped at wait_max plus jitter"


class TestKeepAlive:
    """An idle client pings; a session lost meanwhile is recovered before the next call."""

    async def test_idle_ping_recovers_a_lost_session(self) -> None:
        recovered = anyio.Event()

        def watch(message: dict[str, Any], srv: SessionServer) -> httpx.Response | None:
            if message["method"] == "ping" and srv.sessions == 2:
                recovered.set()
            return None

        server = SessionServer(watch)
        timeouts = resilient_mcp.Timeouts(keepalive=0.05)
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http), timeouts=timeouts
            ) as client,
        ):
            server.kill_all()
            with anyio.fail_after(5):
                await recovered.wait()
            assert client.session_id == "s2"
            assert client.stats.recoveries == 1
            before = server.count("initialize")
            assert (await client.call_tool("increment")).text == "ran increment"
            assert server.count("initialize") == before, "the call found a ready session"

    async def test_no_keepalive_traffic_by_default(self) -> None:
        server = SessionServer()
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            await client.call_tool("increment")
        assert server.count("ping") == 0
