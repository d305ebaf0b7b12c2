"""Timeouts and cancellation: typed errors, ``notifications/cancelled``, progress keep-alive.

The scripted server's slow routes wait on events that only the test sets (or never), so
the only real clocks here are the timeouts under test, and they are short.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

import resilient_mcp
from resilient_mcp import Execution, Timeouts
from resilient_mcp.testing import StrictServer, serve
from resilient_mcp.types import Progress

from .fake import FakeServer, json_response, result

pytestmark = pytest.mark.anyio

URL = "http://127.0.0.1:1/mcp"


class SlowServer(FakeServer):
    """Tools named ``slow*`` hang until ``release[name]`` is set; the others echo.

    ``entered`` receives each slow call's message as it arrives; ``cancelled`` receives
    the params of every ``notifications/cancelled``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.release: dict[str, anyio.Event] = {}
        self._entered_send, self.entered = anyio.create_memory_object_stream[dict[str, Any]](100)
        self._cancelled_send, self.cancelled = anyio.create_memory_object_stream[dict[str, Any]](
            100
        )
        self.routes["tools/call"] = self._call
        self.routes["notifications/cancelled"] = self._on_cancelled

    async def _call(self, message: dict[str, Any]) -> httpx.Response:
        name = message["params"]["name"]
        if name.startswith("slow"):
            release = self.release.setdefault(name, anyio.Event())
            self._entered_send.send_nowait(message)
            await release.wait()
        return json_response(result(message, {"content": [{"type": "text", "text": name}]}))

    def _on_cancelled(self, message: dict[str, Any]) -> httpx.Response:
        self._cancelled_send.send_nowait(message["params"])
        return httpx.Response(202)

    async def next_entered(self) -> dict[str, Any]:
        with anyio.fail_after(5):
            return await self.entered.receive()

    async def next_cancelled(self) -> dict[str, Any]:
        with anyio.fail_after(5):
            return await self.cancelled.receive()


class TestRequestTimeout:
    @pytest.mark.parametrize("where", ["per_call", "default"])
    async def test_timeout_is_typed_and_cancels_on_the_server(self, where: str) -> None:
        server = SlowServer()
        timeouts = Timeouts(request=None) if where == "per_call" else Timeouts(request=0.1)
        per_call: dict[str, Any] = {"timeout": 0.1} if where == "per_call" else {}
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http), timeouts=timeouts
            ) as client,
        ):
            with pytest.raises(resilient_mcp.RequestTimeout) as info:
                await client.call_tool("slow", {"x": 1}, **per_call)
            sent = await server.next_entered()
            error = info.value
            assert isinstance(error, TimeoutError)
            assert error.execution is Execution.MAYBE
            assert error.method == "tools/call"
            assert error.request_id == sent["id"]
            assert error.session_id == "fake-session"
            cancelled = await server.next_cancelled()
            assert cancelled["requestId"] == sent["id"]
            assert isinstance(cancelled["reason"], str)
            # The session is unharmed.
            assert (await client.call_tool("fast")).text == "fast"
        assert server.methods().count("notifications/cancelled") == 1

    async def test_timeout_none_means_no_limit(self) -> None:
        server = SlowServer()
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http),
                timeouts=Timeouts(request=0.1, max_total=0.1),
            ) as client,
        ):
            texts: list[str] = []

            async def unlimited() -> None:
                texts.append((await client.call_tool("slow-unlimited", timeout=None)).text)

            async with anyio.create_task_group() as tg:
                tg.start_soon(unlimited)
                assert (await server.next_entered())["params"]["name"] == "slow-unlimited"
                # A call with the default timeout, started later, times out first...
                with pytest.raises(resilient_mcp.RequestTimeout):
                    await client.call_tool("slow-limited")
                # ...while the unlimited one is still waiting, well past both limits.
                assert texts == []
                server.release["slow-unlimited"].set()
            assert texts == ["slow-unlimited"]
            limited = await server.next_entered()
            assert (await server.next_cancelled())["requestId"] == limited["id"]

    async def test_queued_on_the_http_pool_still_times_out(self) -> None:
        """The deadline covers waiting for a connection slot too."""
        server = SlowServer()
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http),
                limits=resilient_mcp.Limits(max_connections=1),
            ) as client,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(client.call_tool, "slow-holder")
            await server.next_entered()
            with pytest.raises(resilient_mcp.RequestTimeout):
                await client.call_tool("fast", timeout=0.1)
            server.release["slow-holder"].set()


class TestCallerCancellation:
    async def test_move_on_after_propagates_and_cancels_on_the_server(self) -> None:
        server = SlowServer()
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            with anyio.move_on_after(0.1) as scope:
                await client.call_tool("slow", timeout=None)
                raise AssertionError("unreachable: the call never returns")
            assert scope.cancelled_caught
            sent = await server.next_entered()
            cancelled = await server.next_cancelled()
            assert cancelled["requestId"] == sent["id"]
            assert (await client.call_tool("fast")).text == "fast"

    async def test_cancel_scope_from_another_task(self) -> None:
        server = SlowServer()
        outcome: list[str] = []
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            scope = anyio.CancelScope()

            async def call() -> None:
                try:
                    with scope:
                        await client.call_tool("slow")
                        outcome.append("returned")
                except resilient_mcp.MCPError as exc:  # must not happen
                    outcome.append(f"error {exc!r}")
                    return
                except BaseException:
                    outcome.append("cancellation escaped the scope")
                    raise
                outcome.append("cancelled" if scope.cancelled_caught else "not cancelled")

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                sent = await server.next_entered()
                scope.cancel()
            assert outcome == ["cancelled"]
            cancelled = await server.next_cancelled()
            assert cancelled["requestId"] == sent["id"]
            assert client.state is resilient_mcp.SessionState.READY

    async def test_native_cancellation_exception_is_what_propagates(self) -> None:
        server = SlowServer()
        seen: list[type[BaseException]] = []
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            with anyio.CancelScope() as scope:

                async def cancel_when_entered() -> None:
                    await server.next_entered()
                    scope.cancel()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(cancel_when_entered)
                    try:
                        await client.call_tool("slow")
                    except BaseException as exc:
                        seen.append(type(exc))
                        raise
            assert seen == [anyio.get_cancelled_exc_class()]
            await server.next_cancelled()


class TestInitializeIsNeverCancelled:
    def hanging_initialize(self, server: FakeServer) -> None:
        async def hang(message: dict[str, Any]) -> httpx.Response:
            await anyio.Event().wait()
            raise AssertionError("unreachable")

        server.routes["initialize"] = hang

    async def test_handshake_timeout_raises_from_connect_without_cancelled(self) -> None:
        server = FakeServer()
        self.hanging_initialize(server)
        async with server.client() as http:
            with pytest.raises(resilient_mcp.RequestTimeout) as info:
                async with resilient_mcp.connect(
                    resilient_mcp.HTTPServer(URL, http_client=http),
                    timeouts=Timeouts(initialize=0.1),
                ):
                    raise AssertionError("connect must not succeed")
        assert info.value.execution is Execution.NOT_EXECUTED
        # Only initialize (if the loaded machine even got to post it), never a cancel.
        assert set(server.methods()) <= {"initialize"}

    async def test_caller_giving_up_on_connect_sends_no_cancelled(self) -> None:
        server = FakeServer()
        self.hanging_initialize(server)
        async with server.client() as http:
            with anyio.move_on_after(0.1) as scope:
                async with resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)):
                    raise AssertionError("connect must not succeed")
        assert scope.cancelled_caught
        # Only initialize (if the loaded machine even got to post it), never a cancel.
        assert set(server.methods()) <= {"initialize"}

    async def test_parked_call_timing_out_sends_no_cancelled(self) -> None:
        server = FakeServer()
        self.hanging_initialize(server)
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http),
                wait_ready=False,
                timeouts=Timeouts(request=0.1, initialize=0.2),
            ) as client,
        ):
            with pytest.raises(resilient_mcp.RequestTimeout) as info:
                await client.call_tool("x")
            assert info.value.execution is Execution.NOT_EXECUTED
            assert info.value.method == "tools/call"
            with pytest.raises(resilient_mcp.RequestTimeout) as handshake:
                await client.wait_ready()
            assert handshake.value.execution is Execution.NOT_EXECUTED
        # Only initialize (if the loaded machine even got to post it), never a cancel.
        assert set(server.methods()) <= {"initialize"}


class TestProgressKeepsCallsAlive:
    """Progress restarts the request clock, never past ``max_total``.

    The strict server's ``progress`` tool does real (simulated) work between steps, so
    these tests run on real time, with timeouts of a few tenths of a second.
    """

    async def test_progress_keeps_a_call_alive_past_its_request_timeout(self) -> None:
        steps: list[float] = []

        async def on_progress(progress: Progress) -> None:
            steps.append(progress.progress)

        async with (
            serve(StrictServer(json_response=False)) as running,
            resilient_mcp.connect(
                running.url, timeouts=Timeouts(request=0.5, reset_on_progress=True)
            ) as client,
        ):
            started = anyio.current_time()
            done = await client.call_tool(
                "progress", {"steps": 8, "interval": 0.1}, progress=on_progress
            )
            elapsed = anyio.current_time() - started
        assert done.text == "completed 8 steps"
        assert elapsed > 0.5, "the call outlived its request timeout"
        assert steps == [1, 2, 3, 4, 5, 6, 7, 8]

    async def test_without_reset_the_same_call_times_out(self) -> None:
        async def on_progress(progress: Progress) -> None:
            pass

        async with (
            serve(StrictServer(json_response=False)) as running,
            resilient_mcp.connect(
                running.url, timeouts=Timeouts(request=0.5, reset_on_progress=False)
            ) as client,
        ):
            with pytest.raises(resilient_mcp.RequestTimeout):
                await client.call_tool(
                    "progress", {"steps": 8, "interval": 0.1}, progress=on_progress
                )

    async def test_progress_never_extends_past_max_total(self) -> None:
        """A server that reports progress for ever is cut off at max_total."""
        server = SlowServer()
        stop = anyio.Event()

        def endless(message: dict[str, Any]) -> httpx.Response:
            token = message["params"]["_meta"]["progressToken"]

            async def body() -> AsyncIterator[bytes]:
                step = 0
                while not stop.is_set():
                    step += 1
                    note = {
                        "jsonrpc": "2.0",
                        "method": "notifications/progress",
                        "params": {"progressToken": token, "progress": step},
                    }
                    yield f"data: {json.dumps(note)}\n\n".encode()
                    # Simulated server work between steps: well inside the request timeout.
                    with anyio.move_on_after(0.04):
                        await stop.wait()

            return httpx.Response(
                200, content=body(), headers={"content-type": "text/event-stream"}
            )

        server.routes["tools/call"] = endless
        seen: list[float] = []

        async def on_progress(progress: Progress) -> None:
            seen.append(progress.progress)

        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http),
                timeouts=Timeouts(request=0.2, max_total=0.4),
            ) as client,
        ):
            started = anyio.current_time()
            with pytest.raises(resilient_mcp.RequestTimeout) as info:
                await client.call_tool("endless", progress=on_progress)
            elapsed = anyio.current_time() - started
            stop.set()
            cancelled = await server.next_cancelled()
        assert info.value.execution is Execution.MAYBE
        assert cancelled["requestId"] == info.value.request_id
        # Cut at max_total; the upper bound only has to prove "not for ever" and leaves
        # room for a loaded CI machine.
        assert 0.4 <= elapsed < 2.0, elapsed
        assert len(seen) >= 3, "progress kept flowing past the request timeout"
        assert seen == sorted(seen)

    async def test_no_limit_call_ignores_request_timeout_and_max_total(self) -> None:
        """``timeout=None`` stays unlimited, with or without progress."""
        async with (
            serve(StrictServer(json_response=False)) as running,
            resilient_mcp.connect(
                running.url, timeouts=Timeouts(request=0.05, max_total=0.05)
            ) as client,
        ):

            async def ignore(progress: Progress) -> None:
                pass

            done = await client.call_tool(
                "progress", {"steps": 3, "interval": 0.05}, timeout=None, progress=ignore
            )
        assert done.text == "completed 3 steps"


class TestCloseWhilePending:
    async def test_aclose_from_another_task_fails_pending_calls(self) -> None:
        server = SlowServer()
        errors: list[resilient_mcp.MCPError] = []
        async with server.client() as http:
            client = resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http))
            with anyio.fail_after(5):
                async with client, anyio.create_task_group() as tg:

                    async def call(name: str) -> None:
                        try:
                            await client.call_tool(name)
                        except resilient_mcp.MCPError as exc:
                            errors.append(exc)

                    for i in range(3):
                        tg.start_soon(call, f"slow-{i}")
                    sent = [await server.next_entered() for _ in range(3)]
                    await client.aclose()
                    with pytest.raises(resilient_mcp.ClientClosed):
                        await client.call_tool("fast")
        assert len(errors) == 3
        assert {type(e) for e in errors} == {resilient_mcp.RequestCancelled}
        assert {e.request_id for e in errors} == {m["id"] for m in sent}
        assert {e.method for e in errors} == {"tools/call"}
        # Closing ends the session; it does not cancel requests one by one.
        assert "notifications/cancelled" not in server.methods()
        assert server.requests[-1].method == "DELETE"

    @pytest.mark.parametrize("json_mode", [False, True], ids=["sse", "json"])
    async def test_aclose_fails_a_call_running_on_the_strict_server(self, json_mode: bool) -> None:
        """Closing ends the server session too; the call still reports RequestCancelled,
        not whatever the server or the torn-down stream said afterwards."""
        running_call = anyio.Event()

        async def on_progress(progress: Progress) -> None:
            running_call.set()

        errors: list[resilient_mcp.MCPError] = []
        async with serve(StrictServer(json_response=json_mode)) as running:
            # Progress reaches a JSON-mode client on the GET stream, which a log handler opens.
            client = resilient_mcp.connect(
                running.url, handlers=resilient_mcp.Handlers(log=self._ignore_log)
            )
            with anyio.fail_after(5):
                async with client, anyio.create_task_group() as tg:

                    async def call() -> None:
                        try:
                            await client.call_tool(
                                "progress", {"steps": 100, "interval": 0.02}, progress=on_progress
                            )
                        except resilient_mcp.MCPError as exc:
                            errors.append(exc)

                    tg.start_soon(call)
                    await running_call.wait()
                    await client.aclose()
        assert [type(e) for e in errors] == [resilient_mcp.RequestCancelled]
        assert errors[0].method == "tools/call"

    @staticmethod
    async def _ignore_log(message: Any) -> None:
        pass
