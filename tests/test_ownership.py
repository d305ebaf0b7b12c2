"""A client entered in one task and left in another (issue 11).

Frameworks hold long-lived clients (pydantic-ai's toolsets): entered by one task, left
(or closed) by another, often after the entering task has ended. Here that works over
HTTP (StrictServer) and stdio (tests/stdio_servers/legacy_server.py), calls work from a
third task, nothing of the client outlives its close (no host task, no stdio child),
and what already held still holds: enter errors keep their types, a cancelled enter
cleans up, a background failure surfaces as ClientClosed on exit. Nothing sleeps: every
wait is on the event itself; each test is bounded by LIMIT_S.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import resilient_mcp
from resilient_mcp import Client, ClientClosed, ConnectError, StdioServer, Timeouts
from resilient_mcp._host import HOST_TASK_NAME, interrupt_in
from resilient_mcp.testing import StrictServer, serve
from tests.test_stdio import Events, reaped, stdio

pytestmark = pytest.mark.anyio

SERVER = str(Path(__file__).parent / "stdio_servers" / "legacy_server.py")
LIMIT_S = 30
FAST = Timeouts(close=0.5)


def stdio_server(*flags: str) -> StdioServer:
    return StdioServer(sys.executable, args=[SERVER, *flags])


async def in_task(work: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``work()`` in a task of its own, which has ended when this returns; what it
    raises is raised here as itself (not in the task group's ExceptionGroup)."""
    result: list[Any] = []
    error: list[Exception] = []

    async def run() -> None:
        try:
            result.append(await work())
        except Exception as exc:
            error.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
    if error:
        raise error[0]
    return result[0]


def hosts() -> int:
    """How many client host tasks are running."""
    return sum(1 for task in anyio.get_running_tasks() if task.name == HOST_TASK_NAME)


async def enter(client: Client) -> Client:
    return await client.__aenter__()


async def leave(client: Client) -> None:
    await client.__aexit__(None, None, None)


# --- entered here, left there ---------------------------------------------------------------


async def test_http_enter_in_one_task_and_exit_in_another() -> None:
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as running:
            before = hosts()
            client = resilient_mcp.connect(running.url)
            await in_task(lambda: enter(client))  # task A: enters, then ends
            assert hosts() == before + 1
            result = await in_task(lambda: client.call_tool("echo", {"text": "from C"}))
            assert result.text == "from C"
            await in_task(lambda: leave(client))  # task B
            assert hosts() == before
            assert running.stats.sessions_terminated == 1
        with pytest.raises(ClientClosed):
            await client.list_tools()


async def test_stdio_enter_in_one_task_and_exit_in_another_reaps_the_child() -> None:
    with anyio.fail_after(LIMIT_S):
        before = hosts()
        client = resilient_mcp.connect(stdio_server(), timeouts=FAST)
        await in_task(lambda: enter(client))
        pid = stdio(client).pid
        assert pid is not None
        result = await in_task(lambda: client.call_tool("echo", {"text": "from C"}))
        assert result.text == "from C"
        await in_task(lambda: leave(client))
        assert reaped(pid)  # the exit waited for it: nothing to wait for here
        assert stdio(client).returncode == 0
        assert hosts() == before


async def test_entering_task_still_alive_while_another_exits() -> None:
    """The toolset pattern: A enters and waits for shutdown, B leaves, then A goes on."""
    with anyio.fail_after(LIMIT_S):
        client = resilient_mcp.connect(stdio_server(), timeouts=FAST)
        entered = anyio.Event()
        left = anyio.Event()
        seen: list[str] = []

        async def task_a() -> None:
            await client.__aenter__()
            entered.set()
            await left.wait()
            seen.append("A went on")

        async def task_b() -> None:
            await entered.wait()
            seen.append((await client.call_tool("increment")).text)
            await leave(client)
            left.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(task_a)
            tg.start_soon(task_b)
        assert seen == ["1", "A went on"]
        assert stdio(client).pid is None


async def test_wait_ready_false_enter_and_exit_in_different_tasks() -> None:
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as running:
            client = resilient_mcp.connect(running.url, wait_ready=False)
            await in_task(lambda: enter(client))
            assert (await in_task(client.list_tools)) != []
            await in_task(lambda: leave(client))
            assert running.stats.sessions_terminated == 1


# --- closing from elsewhere -----------------------------------------------------------------


async def test_aclose_from_another_task_stops_everything_before_it_returns() -> None:
    with anyio.fail_after(LIMIT_S):
        before = hosts()
        client = resilient_mcp.connect(stdio_server(), timeouts=FAST)
        closed = anyio.Event()
        pids: list[int] = []

        async def owner() -> None:
            async with client:
                transport_pid = stdio(client).pid
                assert transport_pid is not None
                pids.append(transport_pid)
                await closed.wait()
                with pytest.raises(ClientClosed):
                    await client.list_tools()
            # Leaving after the close is a no-op.

        async def closer() -> None:
            while not pids:
                await anyio.wait_all_tasks_blocked()
            await client.aclose()
            assert reaped(pids[0])
            assert hosts() == before
            closed.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(owner)
            tg.start_soon(closer)


async def test_concurrent_aclose_and_exit_both_wait_for_the_close() -> None:
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as running:
            client = resilient_mcp.connect(running.url)
            await in_task(lambda: enter(client))
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.aclose)
                tg.start_soon(leave, client)
            assert running.stats.sessions_terminated == 1
            await client.aclose()  # idempotent


# --- enter that fails or is cancelled -------------------------------------------------------


async def test_enter_errors_keep_their_type_and_leave_no_host() -> None:
    with anyio.fail_after(LIMIT_S):
        before = hosts()
        async with serve(StrictServer()) as running:
            url = running.url
        # The server is gone: nothing listens there any more.
        client = resilient_mcp.connect(url)
        with pytest.raises(ConnectError):
            await in_task(lambda: enter(client))
        assert hosts() == before
        missing = resilient_mcp.connect(StdioServer("/nonexistent/mcp-server"))
        with pytest.raises(ConnectError):
            await in_task(lambda: enter(missing))
        assert hosts() == before
        # The failed client is closed for good; leaving it from elsewhere is harmless.
        await in_task(lambda: leave(missing))
        with pytest.raises(ClientClosed):
            await missing.__aenter__()


async def test_cancelled_enter_stops_the_host_and_the_child() -> None:
    with anyio.fail_after(LIMIT_S):
        before = hosts()
        events = Events()
        client = resilient_mcp.connect(
            stdio_server("--hang"), timeouts=Timeouts(initialize=60, close=0.5), logger=events
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(enter, client)  # waits for a handshake that never comes
            started = await events.wait_for("server.started")
            tg.cancel_scope.cancel()
        assert reaped(started["pid"])
        assert hosts() == before
        with pytest.raises(ClientClosed):
            await client.list_tools()


# --- failures and interrupts ----------------------------------------------------------------


async def test_background_failure_surfaces_as_client_closed_on_exit_elsewhere() -> None:
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as running:
            client = resilient_mcp.connect(running.url)
            await in_task(lambda: enter(client))
            failed = anyio.Event()

            async def broken_worker() -> None:
                failed.set()
                raise RuntimeError("worker bug")

            task_group = client._session._task_group
            assert task_group is not None
            task_group.start_soon(broken_worker)
            await failed.wait()
            with pytest.raises(ClientClosed) as caught:
                await in_task(lambda: leave(client))
            assert isinstance(caught.value.__cause__, RuntimeError)
            assert "worker bug" in str(caught.value)


def test_an_interrupt_in_the_background_stays_an_interrupt() -> None:
    interrupt = KeyboardInterrupt()
    group = BaseExceptionGroup("workers", [RuntimeError("x"), BaseExceptionGroup("g", [interrupt])])
    assert interrupt_in(group) is interrupt
    assert interrupt_in(ExceptionGroup("workers", [RuntimeError("x")])) is None
    assert isinstance(interrupt_in(SystemExit(1)), SystemExit)


# --- the event loop ends without an exit ----------------------------------------------------


async def test_event_loop_ending_without_exit_still_reaps_the_child(anyio_backend: str) -> None:
    """Documented in _host.py: the loop cancels the host, whose cleanup stops the child."""
    pids: list[int] = []

    async def forgetful() -> None:
        client = resilient_mcp.connect(stdio_server(), timeouts=FAST)
        await client.__aenter__()
        pid = stdio(client).pid
        assert pid is not None
        pids.append(pid)
        # Returns without __aexit__: the event loop ends with the client open.

    def run_loop() -> None:
        anyio.run(forgetful, backend=anyio_backend)

    with anyio.fail_after(LIMIT_S):
        await anyio.to_thread.run_sync(run_loop, abandon_on_cancel=True)
    assert reaped(pids[0])
