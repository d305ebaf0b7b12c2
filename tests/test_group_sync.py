"""The sync client group (``resilient_mcp.connect_group_sync``) from plain sync code.

Against strict servers (served from sync code by ``serve()``) and the stdio test server,
on the default settings: the group's methods blocking, many threads at once, recovery
and at-most-once under an expiring session, calls as the group opens, list_changed, a
modern member, isolation (one member down or stuck never delays another), timeouts,
opening and closing in different threads, a member's client as a SyncClient, and no
thread or child process left behind (also when nobody closes the group). Nothing sleeps
to wait: tests wait on events (a handler, a progress callback, a thread's end).
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import resilient_mcp
from resilient_mcp import (
    ClientClosed,
    ConnectError,
    Execution,
    FateUnknown,
    Handlers,
    InvalidParams,
    MemberState,
    RequestCancelled,
    RequestTimeout,
    SessionState,
    StdioServer,
    SyncClient,
    SyncClientGroup,
    UsageError,
)
from resilient_mcp.testing import Chaos, StrictServer, serve
from resilient_mcp.types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    LoggingMessage,
    Progress,
    TextContent,
)
from tests.test_group import FakeClock, closed_port_url
from tests.test_sync import BOUND_S, SERVER, no_threads_left, reaped, stdio_pid


def stdio_member(*flags: str) -> StdioServer:
    return StdioServer(sys.executable, args=[SERVER, *flags])


# --- the happy path ------------------------------------------------------------------------


def test_the_groups_methods_blocking_with_structured_content_and_is_error() -> None:
    with (
        serve(StrictServer()) as one,
        serve(StrictServer()) as two,
        no_threads_left(),
    ):
        group = resilient_mcp.connect_group_sync({"one": one.url, "two": two.url})
        assert isinstance(group, SyncClientGroup)
        assert group.members == ("one", "two")
        assert group.status()["one"].state is MemberState.NEW
        with pytest.raises(ClientClosed, match="not open"):
            group.list_tools()
        with group:
            assert repr(group) == "<SyncClientGroup [2 ready]>"
            names = [tool.name for tool in group.list_tools()]
            assert {"one__echo", "two__echo", "one__add"} <= set(names)
            assert group.origin("two__echo") == ("two", "echo")
            assert group.call_tool("two__echo", {"text": "héllo"}).text == "héllo"
            added = group.call_tool("one__add", {"a": 2, "b": 3})
            assert added.structuredContent == {"sum": 5}
            failed = group.call_tool("one__fail")
            assert failed.isError
            assert "always fails" in failed.text
            with pytest.raises(InvalidParams) as caught:
                group.call_tool("one__nope")
            assert caught.value.execution is Execution.NOT_EXECUTED
            status = group.status()
            assert [s.state for s in status.values()] == [MemberState.READY] * 2
            with pytest.raises(TypeError):
                status["x"] = status["one"]  # type: ignore[index]
        assert {s.state for s in group.status().values()} == {MemberState.CLOSED}
        with pytest.raises(ClientClosed):
            group.call_tool("one__echo", {"text": "x"})
        with pytest.raises(ClientClosed):
            group.open()
        group.close()  # idempotent
    assert one.stats.sessions_terminated == two.stats.sessions_terminated == 1
    assert one.stats.early_requests == two.stats.early_requests == 0


def test_bad_config_raises_at_once_and_starts_nothing() -> None:
    with no_threads_left():
        with pytest.raises(UsageError):
            resilient_mcp.connect_group_sync({})
        with pytest.raises(UsageError):
            resilient_mcp.connect_group_sync({"a": "http://127.0.0.1:9/mcp"}, bogus=1)  # type: ignore[call-arg]
        with pytest.raises(UsageError):
            SyncClientGroup({"a": 42})  # type: ignore[dict-item]


def test_require_all_raises_the_failed_members_error_and_leaves_nothing() -> None:
    with serve(StrictServer()) as running, no_threads_left():
        group = resilient_mcp.connect_group_sync(
            {"up": running.url, "down": closed_port_url()}, require_all=True
        )
        with pytest.raises(ConnectError) as caught:
            group.open()
        assert any("'down'" in note for note in getattr(caught.value, "__notes__", []))
        assert {s.state for s in group.status().values()} == {MemberState.CLOSED}
        with pytest.raises(ClientClosed):
            group.list_tools()


# --- many threads, recovery, at most once (on the default settings) ----------------------------


def test_many_threads_calling_two_members_at_once() -> None:
    with (
        serve(StrictServer()) as one,
        serve(StrictServer()) as two,
        resilient_mcp.connect_group_sync({"one": one.url, "two": two.url}) as group,
    ):

        def work(worker: int) -> list[str]:
            member = ("one", "two")[worker % 2]
            return [
                group.call_tool(f"{member}__echo", {"text": f"{worker}-{n}"}).text
                for n in range(10)
            ]

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(work, range(8)))
        assert results == [[f"{w}-{n}" for n in range(10)] for w in range(8)]
        assert group["one"].stats.handshakes == group["two"].stats.handshakes == 1
    assert one.stats.tool_calls["echo"] == two.stats.tool_calls["echo"] == 40


def test_expiry_during_two_parallel_calls_costs_one_handshake() -> None:
    server = StrictServer(chaos=Chaos(expire_after_requests=2))
    with (
        serve(server) as running,
        serve(StrictServer()) as other,
        resilient_mcp.connect_group_sync({"a": running.url, "b": other.url}) as group,
    ):
        group.list_tools()
        before = running.stats.initialize_requests
        with ThreadPoolExecutor(2) as pool:
            results = list(
                pool.map(lambda key: group.call_tool("a__increment", {"key": key}), "xy")
            )
        assert [result.isError for result in results] == [False, False]
        assert running.stats.initialize_requests - before == 1
        assert group.status()["a"].failures == 0  # recovered by the member's own client
    assert running.stats.executions["x"] == running.stats.executions["y"] == 1


@pytest.mark.parametrize("wait_ready", [True, False], ids=["wait_ready", "no_wait"])
def test_calls_issued_as_the_group_opens_against_an_early_rejecting_server(
    wait_ready: bool,
) -> None:
    # An LSP-style server answers -32002 to anything processed before `initialized`,
    # which takes it 0.3 s here. Without wait_ready, opening returns at once and the
    # calls race the handshake: they wait for it, none is early.
    server = StrictServer(profile="lsp-style", handshake_delay=0.3)
    with serve(server) as running:
        group = resilient_mcp.connect_group_sync({"a": running.url}, wait_ready=wait_ready)
        with group, ThreadPoolExecutor(8) as pool:
            texts = list(
                pool.map(lambda n: group.call_tool("a__echo", {"text": str(n)}).text, range(8))
            )
        assert texts == [str(n) for n in range(8)]
    assert running.stats.tool_calls["echo"] == 8
    assert running.stats.early_requests == 0


def test_side_effecting_call_dropped_after_execution_is_fate_unknown() -> None:
    server = StrictServer(chaos=Chaos(drop_rate=1.0))
    with (
        serve(server) as running,
        resilient_mcp.connect_group_sync({"a": running.url}) as group,
    ):
        with pytest.raises(FateUnknown) as caught:
            group.call_tool("a__increment", {"key": "once"})
        assert caught.value.method == "tools/call"
        assert group.status()["a"].state is MemberState.READY  # not a member failure
    assert running.stats.executions["once"] == 1


def test_a_hanging_call_is_bounded_by_its_timeout() -> None:
    with (
        serve(StrictServer()) as running,
        resilient_mcp.connect_group_sync({"a": running.url}) as group,
    ):
        with pytest.raises(RequestTimeout):
            group.call_tool("a__progress", {"steps": 1, "interval": 30}, timeout=1)
        assert group.call_tool("a__echo", {"text": "still fine"}).text == "still fine"


def test_list_changed_is_seen_by_the_next_listing() -> None:
    changed = threading.Event()

    def on_notification(method: str, params: object) -> None:
        if method == "notifications/tools/list_changed":
            changed.set()

    server = StrictServer()
    with (
        serve(server) as running,
        serve(StrictServer()) as other,
        resilient_mcp.connect_group_sync(
            {"a": running.url, "b": other.url},
            member_options={"a": {"handlers": Handlers(notification=on_notification)}},
        ) as group,
    ):
        assert "a__late" not in {tool.name for tool in group.list_tools()}
        server.add_tool("late.tool", text="late ok")
        assert changed.wait(BOUND_S)
        assert "a__late_tool" in {tool.name for tool in group.list_tools()}
        assert group.origin("a__late_tool") == ("a", "late.tool")
        assert group.call_tool("a__late_tool").text == "late ok"


def test_a_modern_member_beside_a_legacy_one() -> None:
    with (
        serve(StrictServer(era="modern")) as modern,
        serve(StrictServer()) as legacy,
        resilient_mcp.connect_group_sync({"new": modern.url, "old": legacy.url}) as group,
    ):
        assert group.call_tool("new__add", {"a": 1, "b": 1}).structuredContent == {"sum": 2}
        assert group.call_tool("old__add", {"a": 1, "b": 2}).structuredContent == {"sum": 3}
        status = group.status()
        assert (status["new"].era, status["old"].era) == ("modern", "legacy")


# --- isolation ----------------------------------------------------------------------------------


def test_a_down_member_fails_only_its_own_calls_at_once() -> None:
    clock = FakeClock()  # never moves: the down member is not due for another attempt
    with (
        serve(StrictServer()) as running,
        resilient_mcp.connect_group_sync(
            {"up": running.url, "down": closed_port_url()}, clock=clock
        ) as group,
    ):
        down = group.status()["down"]
        assert down.state is MemberState.FAILED
        assert isinstance(down.last_error, ConnectError)
        assert [tool.name for tool in group.list_tools()][:1] == ["up__echo"]
        assert group.call_tool("up__echo", {"text": "hi"}).text == "hi"
        with pytest.raises(ConnectError) as caught:
            group.call_tool("down__echo")
        assert caught.value.execution is Execution.NOT_EXECUTED
        with pytest.raises(ConnectError):
            group["down"]
        assert group.status()["down"].failures == 1  # no attempt before its time


def test_a_stuck_call_does_not_delay_a_call_to_another_member() -> None:
    reached, release = threading.Event(), threading.Event()

    def sampling(params: CreateMessageRequestParams) -> CreateMessageResult:
        reached.set()
        assert release.wait(BOUND_S)
        return CreateMessageResult(content=TextContent(text="late"), model="m")

    done: list[str] = []
    with (
        serve(StrictServer(json_response=False)) as slow,
        serve(StrictServer(era="modern")) as fast,
        resilient_mcp.connect_group_sync(
            {"slow": slow.url, "fast": fast.url},
            member_options={"slow": {"handlers": Handlers(sampling=sampling)}},
        ) as group,
    ):
        group.list_tools()
        caller = threading.Thread(
            target=lambda: done.append(group.call_tool("slow__sample", {"prompt": "p"}).text)
        )
        caller.start()
        try:
            assert reached.wait(BOUND_S)  # the slow call is held at our handler
            assert group.call_tool("fast__echo", {"text": "quick"}).text == "quick"
            assert done == []  # still stuck while the other member answered
        finally:
            release.set()
            caller.join(BOUND_S)
    assert done == ["late"]


def test_a_member_stuck_in_its_handshake_does_not_delay_another(tmp_path: Path) -> None:
    # wait_ready=False for the stuck one: opening does not wait for its handshake.
    go = str(tmp_path / "go")
    os.mkfifo(go)
    with (
        serve(StrictServer()) as running,
        resilient_mcp.connect_group_sync(
            {"slow": stdio_member("--silent-until", go), "fast": running.url},
            member_options={"slow": {"wait_ready": False}},
        ) as group,
    ):
        assert group.call_tool("fast__echo", {"text": "f"}).text == "f"
        assert group.status()["slow"].session is SessionState.INITIALIZING
        with open(go, "w") as fifo:  # blocks until the server opened its end
            fifo.write("go")
        assert group.call_tool("slow__echo", {"text": "s"}).text == "s"


# --- callbacks, meta ---------------------------------------------------------------------------


def test_plain_and_async_progress_callbacks_and_meta() -> None:
    logged = threading.Event()
    messages: list[LoggingMessage] = []

    def on_log(message: LoggingMessage) -> None:
        messages.append(message)
        logged.set()

    with (
        serve(StrictServer(json_response=False)) as legacy,
        serve(StrictServer(era="modern", json_response=False)) as modern,
        resilient_mcp.connect_group_sync(
            {"a": legacy.url, "m": modern.url}, handlers=Handlers(log=on_log)
        ) as group,
    ):
        plain: list[float] = []

        def on_plain_progress(update: Progress) -> None:
            # In a worker thread: it may block, even on a call to the group itself.
            assert "a__echo" in {tool.name for tool in group.list_tools()}
            plain.append(update.progress)

        group.call_tool("a__progress", {"steps": 3}, progress=on_plain_progress)
        assert plain == [1, 2, 3]
        updates: list[float] = []
        states: list[MemberState] = []
        refused: list[UsageError] = []

        async def on_progress(update: Progress) -> None:
            updates.append(update.progress)
            states.append(group.status()["a"].state)  # a read: allowed in the loop
            try:
                group.list_tools()  # a blocking call from the loop itself
            except UsageError as exc:
                refused.append(exc)

        group.call_tool("a__progress", {"steps": 2}, progress=on_progress)
        assert updates == [1, 2]
        assert states == [MemberState.READY] * 2
        assert len(refused) == 2
        assert "SyncClientGroup" in refused[0].message
        # meta= reaches the server: here the modern era's per-request log level.
        wanted = {"io.modelcontextprotocol/logLevel": "info"}
        group.call_tool("m__log", {"message": "traced", "level": "info"}, meta=wanted)
        assert logged.wait(BOUND_S)
        assert [m.data for m in messages] == ["traced"]


# --- a member's client -------------------------------------------------------------------------


def test_a_member_is_a_sync_client_on_the_groups_loop() -> None:
    with serve(StrictServer()) as running, no_threads_left():
        with resilient_mcp.connect_group_sync({"a": running.url}) as group:
            member = group["a"]
            assert isinstance(member, SyncClient)
            assert group["a"] is member  # the same client, the same view
            assert member.state is SessionState.READY
            assert member.list_resources()
            assert member.call_tool("echo", {"text": "direct"}).text == "direct"
            with pytest.raises(UsageError, match="with its group"):
                member.close()
            with pytest.raises(UsageError, match="with its group"):
                member.open()
            with pytest.raises(UsageError, match="no member"):
                group["b"]
            member.ping(timeout=5)
        with pytest.raises(ClientClosed):
            member.ping()
        with pytest.raises(ConnectError):
            group["a"]  # as the async group: the member is not connected


# --- threads, closing, the stdio child ---------------------------------------------------------


def test_opened_in_one_thread_closed_in_another_leaves_no_child() -> None:
    with serve(StrictServer()) as running, no_threads_left():
        group = resilient_mcp.connect_group_sync({"local": stdio_member(), "web": running.url})
        opener = threading.Thread(target=group.open)
        opener.start()
        opener.join(BOUND_S)
        assert not opener.is_alive()
        assert group.call_tool("local__echo", {"text": "x"}).text == "x"
        assert group.call_tool("web__echo", {"text": "y"}).text == "y"
        pid = stdio_pid(group["local"])
        assert not reaped(pid)
        closer = threading.Thread(target=group.close)
        closer.start()
        closer.join(BOUND_S)
        assert not closer.is_alive()
        assert reaped(pid)
    with pytest.raises(ClientClosed):
        group.call_tool("web__echo", {"text": "z"})


def test_close_from_another_thread_cancels_pending_calls() -> None:
    with serve(StrictServer(json_response=False)) as running, no_threads_left():
        group = resilient_mcp.connect_group_sync({"a": running.url}).open()
        started = threading.Event()
        outcome: list[BaseException] = []

        def slow() -> None:
            try:
                group.call_tool(
                    "a__progress",
                    {"steps": 1000, "interval": 0.05},
                    progress=lambda update: started.set(),
                )
            except BaseException as exc:
                outcome.append(exc)

        caller = threading.Thread(target=slow)
        caller.start()
        assert started.wait(BOUND_S)
        closer = threading.Thread(target=group.close)
        closer.start()
        closer.join(BOUND_S)
        caller.join(BOUND_S)
        assert not closer.is_alive()
        assert not caller.is_alive()
        assert [type(exc) for exc in outcome] == [RequestCancelled]


def test_a_group_garbage_collected_open_is_closed() -> None:
    with no_threads_left():
        group = resilient_mcp.connect_group_sync({"local": stdio_member()}).open()
        pid = stdio_pid(group["local"])
        del group
        gc.collect()
        assert reaped(pid)


def test_a_group_never_closed_is_closed_at_exit() -> None:
    """A script that forgets close() still exits, and stops its stdio member: here one
    that ignores end of input and SIGTERM, so only the client's SIGKILL stops it."""
    script = textwrap.dedent(
        f"""
        import sys
        import resilient_mcp
        server = resilient_mcp.StdioServer(
            sys.executable, args=[{SERVER!r}, "--ignore-sigterm"]
        )
        group = resilient_mcp.connect_group_sync(
            {{"local": server}}, timeouts=resilient_mcp.Timeouts(close=0.5)
        ).open()
        print(group["local"]._client._session.transport.pid, flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=BOUND_S
    )
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split()[0])
    try:
        assert reaped(pid)
    finally:
        if not reaped(pid):
            os.kill(pid, signal.SIGKILL)
