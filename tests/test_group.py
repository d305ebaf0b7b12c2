"""Many servers as one: parallel connect, isolation, names, lazy reconnect, ownership."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

import resilient_mcp
from resilient_mcp import (
    ClientClosed,
    ClientGroup,
    ConnectError,
    Execution,
    Handlers,
    InvalidParams,
    MemberState,
    MemberStatus,
    StdioServer,
    Toolbox,
    UsageError,
    connect_group,
    disable_backoff,
)
from resilient_mcp._group_members import MAX_NAME_LENGTH, assign_names, default_namer
from resilient_mcp.testing import StrictServer, serve
from resilient_mcp.types import CreateMessageRequestParams, CreateMessageResult, TextContent
from tests.test_stdio import Events, reaped, stdio

pytestmark = pytest.mark.anyio

LIMIT_S = 60  # a guard against hangs only
SERVER = str(Path(__file__).parent / "stdio_servers" / "legacy_server.py")
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def stdio_server(*flags: str, **options: Any) -> StdioServer:
    return StdioServer(sys.executable, args=[SERVER, *flags], **options)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mcp"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- names -------------------------------------------------------------------------------


class TestNames:
    """Shown names are valid for model APIs, unique, and a pure function of the lists."""

    PREFIXED = staticmethod(default_namer("__"))

    def test_names_are_prefixed_and_sanitised(self) -> None:
        names = assign_names(
            [("files", ["read", "dir/list"]), ("my.web", ["fetch page"])], self.PREFIXED
        )
        assert names == {
            "files__read": ("files", "read"),
            "files__dir_list": ("files", "dir/list"),
            "my_web__fetch_page": ("my.web", "fetch page"),
        }

    def test_a_collision_keeps_the_unchanged_name_and_suffixes_the_other(self) -> None:
        names = assign_names([("s", ["a.b", "a_b"])], self.PREFIXED)
        assert names["s__a_b"] == ("s", "a_b")
        (other,) = set(names) - {"s__a_b"}
        assert other.startswith("s__a_b_")
        assert names[other] == ("s", "a.b")
        assert len(other) == len("s__a_b_") + 8

    def test_without_prefix_the_first_member_keeps_a_shared_name(self) -> None:
        names = assign_names([("one", ["search"]), ("two", ["search"])], lambda s, t: t)
        assert names["search"] == ("one", "search")
        (other,) = set(names) - {"search"}
        assert names[other] == ("two", "search")

    def test_long_names_are_cut_with_a_stable_hash_and_stay_apart(self) -> None:
        long_a, long_b = "x" * 80 + "a", "x" * 80 + "b"
        names = assign_names([("s", [long_a, long_b])], self.PREFIXED)
        assert len(names) == 2
        for name in names:
            assert len(name) == MAX_NAME_LENGTH
            assert set(name) <= NAME_CHARS
        assert set(names.values()) == {("s", long_a), ("s", long_b)}
        assert assign_names([("s", [long_b, long_a])], self.PREFIXED) == names

    def test_the_same_lists_give_the_same_names_in_any_tool_order(self) -> None:
        tools = ["a.b", "a_b", "a b", "ok", "é", "x" * 70]
        first = assign_names([("s", tools), ("t", ["ok"])], self.PREFIXED)
        again = assign_names([("s", list(reversed(tools))), ("t", ["ok"])], self.PREFIXED)
        assert first == again
        assert len(first) == len(tools) + 1  # nothing merged
        assert all(set(name) <= NAME_CHARS and len(name) <= 64 for name in first)

    def test_a_custom_name_function_and_a_bad_one(self) -> None:
        names = assign_names([("s", ["t"])], lambda s, t: f"{s}.{t}")
        assert names == {"s_t": ("s", "t")}
        with pytest.raises(UsageError):
            assign_names([("s", ["t"])], lambda s, t: 42)  # type: ignore[arg-type, return-value]


# --- configuration -----------------------------------------------------------------------


class TestConfig:
    """Members come from a mapping, an mcpServers config or a file; mistakes raise at once."""

    def test_a_config_and_a_file_give_the_same_members(self, tmp_path: Path) -> None:
        config = {
            "mcpServers": {
                "web": {"url": "http://127.0.0.1:9/mcp", "headers": {"X-Key": "secret"}},
                "local": {"command": sys.executable, "args": [SERVER]},
            }
        }
        path = tmp_path / "mcp.json"
        path.write_text(json.dumps(config))
        for source in (config, str(path), path, config["mcpServers"]):
            group = connect_group(source)  # type: ignore[arg-type]
            assert group.members == ("web", "local")
            status = group.status()
            assert status["web"].state is MemberState.NEW
            assert status["local"].server == f"stdio:{sys.executable}"
            assert "secret" not in repr(status)

    @pytest.mark.parametrize(
        "servers",
        [{}, "http://127.0.0.1:9/mcp", {"a": 42}, {"a": {"url": "ftp://x"}}, "/no/such/file.json"],
    )
    def test_bad_configs_raise_usage_errors(self, servers: Any) -> None:
        with pytest.raises(UsageError):
            connect_group(servers)

    def test_bad_options_raise_usage_errors(self) -> None:
        servers = {"a": "http://127.0.0.1:9/mcp"}
        with pytest.raises(UsageError):
            connect_group(servers, member_options={"b": {}})
        with pytest.raises(UsageError):
            connect_group(servers, member_options={"a": {"nope": 1}})  # type: ignore[typeddict-unknown-key]
        with pytest.raises(UsageError):
            connect_group(servers, prefix="x")  # type: ignore[arg-type]
        with pytest.raises(UsageError):
            connect_group(servers, unknown=1)  # type: ignore[call-arg]

    def test_a_group_is_a_tool_source(self) -> None:
        group = connect_group({"a": "http://127.0.0.1:9/mcp"})
        assert isinstance(group, resilient_mcp.ToolSource)
        with pytest.raises(UsageError):
            group["b"]
        with pytest.raises(ConnectError):
            group["a"]  # not connected


# --- connecting and isolation ---------------------------------------------------------------


async def test_members_connect_in_parallel() -> None:
    # The stdio member cannot finish its handshake until the test writes to its pipe,
    # which the test does only once the HTTP member (listed after it) is ready.
    events = Events()
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as running:
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                go = os.path.join(tmp, "go")
                os.mkfifo(go)
                group = connect_group(
                    {"slow": stdio_server("--silent-until", go), "fast": running.url},
                    logger=events,
                )
                states: list[MemberState] = []

                async def release() -> None:
                    await events.wait_for("group.member_ready", member="fast")
                    states.append(group.status()["slow"].state)

                    def write() -> None:
                        with open(go, "w") as fifo:
                            fifo.write("go")

                    await anyio.to_thread.run_sync(write)

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(release)
                    await group.__aenter__()
                try:
                    assert states == [MemberState.CONNECTING]
                    assert {s.state for s in group.status().values()} == {MemberState.READY}
                    assert (await group.call_tool("slow__echo", {"text": "s"})).text == "s"
                    assert (await group.call_tool("fast__echo", {"text": "f"})).text == "f"
                finally:
                    await group.aclose()


async def test_a_down_member_fails_only_its_own_calls_at_once() -> None:
    clock = FakeClock()
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer()) as running,
            connect_group({"up": running.url, "down": closed_port_url()}, clock=clock) as group,
        ):
            status = group.status()["down"]
            assert status.state is MemberState.FAILED
            assert isinstance(status.last_error, ConnectError)
            assert status.failures == 1
            assert status.retry_at is not None
            assert status.retry_at > clock.now
            assert [t.name for t in await group.list_tools()][:1] == ["up__echo"]
            assert (await group.call_tool("up__echo", {"text": "hi"})).text == "hi"
            # Before its not-before time, a use of the member makes no attempt at all.
            with pytest.raises(ConnectError) as caught:
                await group.call_tool("down__echo")
            assert caught.value.execution is Execution.NOT_EXECUTED
            assert "'down'" in caught.value.message
            with pytest.raises(ConnectError):
                group["down"]
            assert group.status()["down"].failures == 1
            # After it, the next use tries again (and fails again, with a longer wait).
            clock.now = status.retry_at
            with pytest.raises(ConnectError) as caught:
                await group.call_tool("down__echo")
            assert "server 'down' is down" in caught.value.message
            again = group.status()["down"]
            assert again.failures == 2
            assert again.retry_at is not None
            assert again.retry_at - clock.now >= status.retry_at - 1000.0


async def test_a_stuck_call_does_not_delay_a_call_to_another_member() -> None:
    reached, release = anyio.Event(), anyio.Event()

    async def sampling(params: CreateMessageRequestParams) -> CreateMessageResult:
        reached.set()
        await release.wait()
        return CreateMessageResult(role="assistant", content=TextContent(text="late"), model="m")

    done: list[str] = []
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer()) as slow,
            serve(StrictServer(era="modern")) as fast,
            connect_group(
                {"slow": slow.url, "fast": fast.url},
                member_options={"slow": {"handlers": Handlers(sampling=sampling)}},
            ) as group,
        ):
            await group.list_tools()

            async def stuck() -> None:
                result = await group.call_tool("slow__sample", {"prompt": "p"})
                done.append(result.text)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(stuck)
                await reached.wait()  # the slow call is held at the server, by us
                assert (await group.call_tool("fast__echo", {"text": "quick"})).text == "quick"
                assert (await group.call_tool("fast__add", {"a": 1, "b": 2})).structuredContent
                assert done == []  # still stuck while the other member answered
                release.set()
    assert done == ["late"]


async def test_a_member_stuck_in_its_handshake_does_not_delay_another(tmp_path: Path) -> None:
    # wait_ready=False: entering does not wait for handshakes, which finish in the
    # background; a call waits for its own member's, never for another's.
    go = tmp_path / "go"
    os.mkfifo(go)
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer()) as running,
            connect_group(
                {"slow": stdio_server("--silent-until", str(go)), "fast": running.url},
                member_options={"slow": {"wait_ready": False}},
            ) as group,
        ):
            assert (await group.call_tool("fast__echo", {"text": "f"})).text == "f"
            assert group.status()["slow"].session is resilient_mcp.SessionState.INITIALIZING

            def write() -> None:
                with open(go, "w") as fifo:  # blocks until the server opened its end
                    fifo.write("go")

            await anyio.to_thread.run_sync(write)
            assert (await group.call_tool("slow__echo", {"text": "s"})).text == "s"
            assert group.status()["slow"].session is resilient_mcp.SessionState.READY


async def test_closing_the_group_ends_a_call_waiting_for_a_member(tmp_path: Path) -> None:
    go = tmp_path / "go"
    os.mkfifo(go)  # never written: the server stays silent
    errors: list[Exception] = []
    with anyio.fail_after(LIMIT_S):
        group = connect_group({"slow": stdio_server("--silent-until", str(go))}, wait_ready=False)
        await group.__aenter__()
        pid = stdio(group["slow"]).pid

        async def call() -> None:
            try:
                await group.call_tool("slow__echo", {"text": "never"})
            except Exception as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(call)
            await anyio.wait_all_tasks_blocked()  # the call waits for the silent server
            await group.aclose()
    assert len(errors) == 1
    assert isinstance(errors[0], ClientClosed)
    assert pid is not None
    assert reaped(pid)


async def test_require_all_fails_the_group_and_closes_the_others() -> None:
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as running:
            group = connect_group({"up": running.url, "down": closed_port_url()}, require_all=True)
            with pytest.raises(ConnectError) as caught:
                async with group:
                    pytest.fail("entered")
            assert any("'down'" in note for note in getattr(caught.value, "__notes__", []))
            assert {s.state for s in group.status().values()} == {MemberState.CLOSED}
            with pytest.raises(ClientClosed):
                await group.list_tools()


# --- reconnecting ---------------------------------------------------------------------------


async def test_a_crashed_stdio_member_is_reconnected_on_its_next_use(tmp_path: Path) -> None:
    record = tmp_path / "record"
    spec = stdio_server(
        "--crash-after", "2", "--crash-marker", str(tmp_path / "crashed"),
        "--record", str(record), restart=False,
    )  # fmt: skip
    with anyio.fail_after(LIMIT_S), disable_backoff():
        async with (
            serve(StrictServer()) as running,
            connect_group({"local": spec, "web": running.url}) as group,
        ):
            first_pid = stdio(group["local"]).pid
            assert (await group.call_tool("local__echo", {"text": "1"})).text == "1"
            with pytest.raises(ConnectError) as caught:  # the server exits on this one
                await group.call_tool("local__echo", {"text": "2"})
            assert caught.value.execution is Execution.NOT_EXECUTED
            status = group.status()["local"]
            assert (status.state, status.failures) == (MemberState.FAILED, 1)
            assert (await group.call_tool("web__echo", {"text": "w"})).text == "w"
            # The next use starts the server again, with a new client.
            assert (await group.call_tool("local__echo", {"text": "3"})).text == "3"
            second_pid = stdio(group["local"]).pid
            status = group.status()["local"]
            assert (status.state, status.failures) == (MemberState.READY, 0)
    assert first_pid is not None
    assert second_pid not in (None, first_pid)
    assert reaped(first_pid)
    assert second_pid is not None
    assert reaped(second_pid)
    pids = {line.split(" ")[0] for line in record.read_text().splitlines()}
    assert pids == {str(first_pid), str(second_pid)}


async def test_a_member_closed_under_the_group_is_reconnected() -> None:
    with anyio.fail_after(LIMIT_S), disable_backoff():
        async with serve(StrictServer()) as running, connect_group({"a": running.url}) as group:
            await group.list_tools()
            old = group["a"]
            await old.aclose()
            with pytest.raises(ConnectError) as caught:
                await group.call_tool("a__echo", {"text": "x"})
            assert caught.value.execution is Execution.NOT_EXECUTED
            assert isinstance(caught.value.__cause__, ClientClosed)
            assert (await group.call_tool("a__echo", {"text": "y"})).text == "y"
            assert group["a"] is not old


async def test_a_restarted_server_is_recovered_by_the_member_itself() -> None:
    server = StrictServer()
    with anyio.fail_after(LIMIT_S):
        async with serve(server) as running, connect_group({"a": running.url}) as group:
            client = group["a"]
            assert (await group.call_tool("a__echo", {"text": "1"})).text == "1"
            server.restart()  # every session lost
            assert (await group.call_tool("a__echo", {"text": "2"})).text == "2"
            assert group["a"] is client
            assert group.status()["a"].failures == 0
            assert client.stats.handshakes == 2


# --- tools ------------------------------------------------------------------------------------


async def test_tools_without_prefix_keep_both_of_a_shared_name() -> None:
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer()) as one,
            serve(StrictServer()) as two,
            connect_group({"one": one.url, "two": two.url}, prefix=False) as group,
        ):
            names = [tool.name for tool in await group.list_tools()]
            assert len(names) == len(set(names))
            assert group.origin("increment") == ("one", "increment")
            (other,) = [n for n in names if n.startswith("increment_")]
            assert group.origin(other) == ("two", "increment")
            await group.call_tool(other, {"key": "k"})
            stats_one, stats_two = one.stats, two.stats
            with pytest.raises(InvalidParams) as caught:
                group.origin("nope")
            assert caught.value.execution is Execution.NOT_EXECUTED
    assert (stats_one.executions["k"], stats_two.executions["k"]) == (0, 1)


async def test_an_unknown_tool_is_a_not_executed_invalid_params() -> None:
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as running, connect_group({"a": running.url}) as group:
            with pytest.raises(InvalidParams) as caught:
                await group.call_tool("a__nope")
    assert caught.value.execution is Execution.NOT_EXECUTED
    assert caught.value.code == -32602


async def test_list_changed_of_a_member_refreshes_the_group() -> None:
    changed = anyio.Event()

    async def on_notification(method: str, params: object) -> None:
        if method == "notifications/tools/list_changed":
            changed.set()

    server = StrictServer()
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(server) as running,
            serve(StrictServer()) as other,
            connect_group(
                {"a": running.url, "b": other.url},
                member_options={"a": {"handlers": Handlers(notification=on_notification)}},
            ) as group,
        ):
            before = {tool.name for tool in await group.list_tools()}
            server.add_tool("fresh.tool", text="hello")
            await changed.wait()
            after = {tool.name for tool in await group.list_tools()}
            assert after - before == {"a__fresh_tool"}
            assert group.origin("a__fresh_tool") == ("a", "fresh.tool")
            assert (await group.call_tool("a__fresh_tool")).text == "hello"
            assert group.status()["a"].tools == len(before) // 2 + 1


async def test_status_is_an_immutable_snapshot() -> None:
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer(era="modern")) as running,
            connect_group({"a": running.url}) as group,
        ):
            assert group.status()["a"].tools is None
            tools = await group.list_tools()
            status = group.status()
            with pytest.raises(TypeError):
                status["b"] = status["a"]  # type: ignore[index]
            with pytest.raises(AttributeError):
                status["a"].state = MemberState.FAILED  # type: ignore[misc]
            assert "1 ready" in repr(group)
    assert isinstance(status["a"], MemberStatus)
    assert status["a"] == MemberStatus(
        name="a",
        state=MemberState.READY,
        server=running.url,
        transport="streamable-http",
        era="modern",
        session=resilient_mcp.SessionState.READY,
        tools=len(tools),
    )
    assert group.status()["a"].state is MemberState.CLOSED


async def test_a_toolbox_over_a_group() -> None:
    with anyio.fail_after(LIMIT_S):
        async with (
            serve(StrictServer()) as running,
            connect_group({"srv": running.url, "down": closed_port_url()}) as group,
        ):
            box = Toolbox(group)
            specs = {spec.name: spec for spec in await box.specs()}
            add = specs["srv__add"]
            assert (add.server, add.original_name, add.title) == ("srv", "add", "Add")
            assert add.tool is not None
            assert add.tool.name == "srv__add"
            outcome = await box.call("srv__add", {"a": 2, "b": 3})
            unknown = await box.call("srv__nope")
            async with box:
                pass  # a group given to it is not closed
            assert (await group.call_tool("srv__echo", {"text": "still"})).text == "still"
    assert (outcome.status, outcome.structured) == ("ok", {"sum": 5})
    assert unknown.status == "not_executed"
    assert isinstance(unknown.error, InvalidParams)


# --- ownership ---------------------------------------------------------------------------------


async def test_entered_in_one_task_and_left_in_another_with_stdio_reaped() -> None:
    with anyio.fail_after(LIMIT_S):
        async with serve(StrictServer()) as running:
            group = ClientGroup({"local": stdio_server(), "web": running.url})

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(group.__aenter__)  # that task ends here
            pid = stdio(group["local"]).pid
            assert pid is not None
            assert not reaped(pid)
            assert (await group.call_tool("local__echo", {"text": "a"})).text == "a"

            async def leave() -> None:
                await group.__aexit__(None, None, None)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(leave)
            await group.aclose()  # again: nothing more
    assert reaped(pid)
    with pytest.raises(ClientClosed):
        await group.call_tool("web__echo", {"text": "b"})
