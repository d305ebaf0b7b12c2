"""The sync client (``resilient_mcp.connect_sync``) from plain sync code.

Against the strict server (served from sync code by ``serve()``) and the stdio test
server: the happy path, many threads at once, recovery and at-most-once on the default
settings (the adapters' done-when cases: two parallel calls under an expiring session,
calls as the client opens, list_changed, a modern server, opened and closed in
different threads), timeouts, closing from another thread, a KeyboardInterrupt, and no
thread or child process left behind (also when nobody closes the client). Nothing
sleeps to wait: tests wait on events (a progress callback, the server's own counters,
a process's exit).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

import resilient_mcp
from resilient_mcp import (
    ClientClosed,
    ConnectError,
    FateUnknown,
    Handlers,
    RequestCancelled,
    RequestTimeout,
    SessionState,
    StdioServer,
    SyncClient,
    Timeouts,
    UsageError,
)
from resilient_mcp._transports.stdio import StdioTransport
from resilient_mcp.testing import Chaos, StrictServer, serve
from resilient_mcp.types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    Progress,
    Root,
    TextContent,
)

SERVER = str(Path(__file__).parent / "stdio_servers" / "legacy_server.py")
# anyio's worker threads (which run plain-function callbacks) end once their loop has,
# a moment after close() returned: they are waited for, never taken for a leak.
WORKER = "AnyIO worker thread"
# A bound for things that finish at once on a healthy machine; generous for a slow one.
BOUND_S = 20


@contextmanager
def no_threads_left() -> Iterator[None]:
    """Fails if the block leaves a thread running (after its callback workers ended)."""
    before = set(threading.enumerate())
    yield
    left = [t for t in threading.enumerate() if t not in before]
    for thread in left:
        if thread.name.startswith(WORKER):
            thread.join(BOUND_S)
    assert [t for t in left if t.is_alive()] == []


def stdio_pid(client: SyncClient) -> int:
    transport = client._client._session.transport
    assert isinstance(transport, StdioTransport)
    assert transport.pid is not None
    return transport.pid


def reaped(pid: int) -> bool:
    """True if ``pid`` is gone entirely: neither running nor a zombie left to reap."""
    try:
        os.kill(pid, 0)  # succeeds for a zombie too
    except ProcessLookupError:
        return True
    return False


# --- the happy path ------------------------------------------------------------------


def test_happy_path_with_structured_content_and_is_error() -> None:
    with serve(StrictServer()) as running, no_threads_left():
        with resilient_mcp.connect_sync(running.url) as client:
            assert client.state is SessionState.READY
            assert client.era == "legacy"
            assert client.transport == "streamable-http"
            assert client.server_info is not None
            assert client.server_info.name == "resilient-mcp-strict"
            assert client.capabilities is not None
            assert client.instructions
            assert client.protocol_version == "2025-11-25"
            assert client.session_id
            assert "echo" in {tool.name for tool in client.list_tools()}
            assert client.call_tool("echo", {"text": "héllo"}).text == "héllo"
            added = client.call_tool("add", {"a": 2, "b": 3})
            assert added.structuredContent == {"sum": 5}
            failed = client.call_tool("fail")
            assert failed.isError
            assert "always fails" in failed.text
            assert client.list_resources()
            assert client.list_prompts()
            client.ping(timeout=5)
            client.set_logging_level("info")
            with pytest.raises(UsageError):
                client.set_logging_level("loud")  # type: ignore[arg-type]
            assert client.request("tools/list")["tools"]
        closed: SessionState = client.state  # (a new read: mypy keeps the narrowing above)
        assert closed is SessionState.CLOSED
        assert client.stats.handshakes == 1  # still readable after close
        with pytest.raises(ClientClosed):
            client.ping()
        with pytest.raises(ClientClosed):
            client.open()
    assert running.stats.early_requests == 0


def test_open_and_close_without_with() -> None:
    with serve(StrictServer()) as running, no_threads_left():
        client = resilient_mcp.connect_sync(running.url)
        with pytest.raises(ClientClosed, match="not open"):
            client.ping()  # not opened yet
        assert client.open() is client
        assert client.call_tool("increment").text == "1"
        client.close()
        client.close()  # idempotent
        with pytest.raises(ClientClosed):
            client.call_tool("increment")
    assert running.stats.sessions_terminated == 1


def test_bad_options_raise_at_once_and_start_nothing() -> None:
    with no_threads_left():
        with pytest.raises(UsageError, match="unknown option"):
            resilient_mcp.connect_sync("http://127.0.0.1:9/mcp", bogus=1)  # type: ignore[call-arg]
        with pytest.raises(UsageError):
            SyncClient(42)  # type: ignore[arg-type]


def test_a_failed_open_raises_its_error_and_leaves_nothing() -> None:
    with no_threads_left():
        client = resilient_mcp.connect_sync([sys.executable, SERVER, "--exit-at-start"])
        with pytest.raises(ConnectError):
            client.open()
        with pytest.raises(ClientClosed):
            client.ping()


# --- many threads at once ----------------------------------------------------------------


def test_many_threads_calling_at_once() -> None:
    with serve(StrictServer()) as running, no_threads_left():
        with resilient_mcp.connect_sync(running.url) as client:

            def work(worker: int) -> list[str]:
                return [client.call_tool("echo", {"text": f"{worker}-{n}"}).text for n in range(20)]

            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(work, range(8)))
        assert results == [[f"{w}-{n}" for n in range(20)] for w in range(8)]
        assert client.stats.handshakes == 1
    assert running.stats.tool_calls["echo"] == 160


# --- recovery, at most once, timeouts (on the default settings) --------------------------


def test_session_expiry_mid_run_is_recovered() -> None:
    server = StrictServer(chaos=Chaos(expire_after_requests=5))
    with serve(server) as running, resilient_mcp.connect_sync(running.url) as client:
        texts = [client.call_tool("echo", {"text": str(n)}).text for n in range(20)]
        assert texts == [str(n) for n in range(20)]
        assert client.stats.recoveries >= 1
    assert running.stats.sessions_created >= 2


def test_side_effecting_call_dropped_after_execution_is_fate_unknown() -> None:
    server = StrictServer(chaos=Chaos(drop_rate=1.0))
    with serve(server) as running, resilient_mcp.connect_sync(running.url) as client:
        with pytest.raises(FateUnknown) as caught:
            client.call_tool("increment", {"key": "once"})
        assert caught.value.method == "tools/call"
    assert running.stats.executions["once"] == 1


def test_a_hanging_call_is_bounded_by_its_timeout() -> None:
    with serve(StrictServer()) as running, resilient_mcp.connect_sync(running.url) as client:
        with pytest.raises(RequestTimeout):
            client.call_tool("progress", {"steps": 1, "interval": 30}, timeout=1)
        assert client.call_tool("echo", {"text": "still fine"}).text == "still fine"


def test_expiry_during_two_parallel_calls_costs_one_handshake() -> None:
    # The adapters' case: a model step makes two side-effecting calls at once (here from
    # two threads) and the session expires under them.
    server = StrictServer(chaos=Chaos(expire_after_requests=2))
    with serve(server) as running, resilient_mcp.connect_sync(running.url) as client:
        client.list_tools()
        before = running.stats.initialize_requests
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda key: client.call_tool("increment", {"key": key}), "ab"))
        assert [result.isError for result in results] == [False, False]
        assert running.stats.initialize_requests - before == 1
    assert running.stats.executions["a"] == running.stats.executions["b"] == 1


def test_calls_issued_as_the_client_opens_against_an_early_rejecting_server() -> None:
    # An LSP-style server answers -32002 to anything processed before `initialized`,
    # which takes it 0.3 s here: the calls wait for the handshake, none is early.
    with serve(StrictServer(profile="lsp-style", handshake_delay=0.3)) as running:
        with resilient_mcp.connect_sync(running.url) as client, ThreadPoolExecutor(8) as pool:
            texts = list(
                pool.map(lambda n: client.call_tool("echo", {"text": str(n)}).text, range(8))
            )
        assert texts == [str(n) for n in range(8)]
    assert running.stats.tool_calls["echo"] == 8
    assert running.stats.early_requests == 0


def test_list_changed_is_seen_by_the_next_listing() -> None:
    changed = threading.Event()

    def on_notification(method: str, params: object) -> None:
        if method == "notifications/tools/list_changed":
            changed.set()

    server = StrictServer()
    handlers = Handlers(notification=on_notification)
    with (
        serve(server) as running,
        resilient_mcp.connect_sync(running.url, handlers=handlers) as client,
    ):
        assert "late" not in {tool.name for tool in client.list_tools()}
        server.add_tool("late", text="late ok")
        assert changed.wait(BOUND_S)
        assert "late" in {tool.name for tool in client.list_tools()}
        assert client.call_tool("late").text == "late ok"


def test_opened_in_one_thread_closed_in_another_leaves_no_child() -> None:
    with no_threads_left():
        opened: list[SyncClient] = []
        opener = threading.Thread(
            target=lambda: opened.append(
                resilient_mcp.connect_sync([sys.executable, SERVER]).open()
            )
        )
        opener.start()
        opener.join(BOUND_S)
        (client,) = opened
        assert client.call_tool("echo", {"text": "x"}).text == "x"
        pid = stdio_pid(client)
        closer = threading.Thread(target=client.close)
        closer.start()
        closer.join(BOUND_S)
        assert not closer.is_alive()
        assert reaped(pid)


def test_a_modern_server_through_the_same_client() -> None:
    with (
        serve(StrictServer(era="modern")) as running,
        resilient_mcp.connect_sync(running.url) as client,
    ):
        assert client.era == "modern"
        assert client.call_tool("add", {"a": 1, "b": 1}).structuredContent == {"sum": 2}


# --- closing, interrupting ----------------------------------------------------------------


def test_close_from_another_thread_cancels_pending_calls() -> None:
    server = StrictServer(json_response=False)
    with serve(server) as running, no_threads_left():
        client = resilient_mcp.connect_sync(running.url).open()
        started = threading.Event()
        outcome: list[BaseException] = []

        def slow() -> None:
            try:
                client.call_tool(
                    "progress",
                    {"steps": 1000, "interval": 0.05},
                    progress=lambda update: started.set(),
                )
            except BaseException as exc:
                outcome.append(exc)

        caller = threading.Thread(target=slow)
        caller.start()
        assert started.wait(BOUND_S)
        closer = threading.Thread(target=client.close)
        closer.start()
        closer.join(BOUND_S)
        caller.join(BOUND_S)
        assert not closer.is_alive()
        assert not caller.is_alive()
        assert [type(exc) for exc in outcome] == [RequestCancelled]
        with pytest.raises(ClientClosed):
            client.ping()


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals: main thread"
)
def test_keyboard_interrupt_cancels_the_call_and_the_client_stays_usable() -> None:
    # Modern era: the server counts the cancellation (its response stream closed) and
    # lets a test wait for it.
    server = StrictServer(era="modern", json_response=False)
    with serve(server) as running, resilient_mcp.connect_sync(running.url) as client:
        sent = threading.Lock()

        def interrupt(update: Progress) -> None:
            if sent.acquire(blocking=False):  # once: a second one would end the test
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

        # Python turns SIGINT into KeyboardInterrupt only if it was not ignored at start
        # (a shell's background job, e.g. `make test &`, starts with SIGINT ignored).
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            with pytest.raises(KeyboardInterrupt):
                client.call_tool("progress", {"steps": 1000, "interval": 0.05}, progress=interrupt)
        finally:
            signal.signal(signal.SIGINT, previous)
        assert running.server.wait_for_cancellations(1, timeout=BOUND_S)
        assert client.call_tool("echo", {"text": "after"}).text == "after"
        assert client.era == "modern"


# --- callbacks ------------------------------------------------------------------------------


def test_plain_and_async_handlers_and_progress_callbacks() -> None:
    def sampler(params: CreateMessageRequestParams) -> CreateMessageResult:
        content = params.messages[0].content
        assert isinstance(content, TextContent)
        return CreateMessageResult(content=TextContent(text=f"plain: {content.text}"), model="m")

    async def roots() -> list[Root]:
        return [Root(uri="file:///work", name="work")]

    updates: list[float] = []

    async def on_progress(update: Progress) -> None:
        updates.append(update.progress)

    handlers = Handlers(sampling=sampler, roots=roots)
    with (
        serve(StrictServer(json_response=False)) as running,
        no_threads_left(),
        resilient_mcp.connect_sync(running.url, handlers=handlers) as client,
    ):
        assert client.call_tool("sample", {"prompt": "hi"}).text == "plain: hi"
        assert "file:///work" in client.call_tool("list_roots").text
        client.call_tool("progress", {"steps": 3}, progress=on_progress)
        assert updates == [1, 2, 3]
        plain: list[float] = []
        client.call_tool("progress", {"steps": 3}, progress=lambda u: plain.append(u.progress))
        assert plain == [1, 2, 3]


def test_a_plain_handler_may_call_the_client_back() -> None:
    holder: list[SyncClient] = []

    def roots() -> list[Root]:
        holder[0].ping(timeout=5)  # from the handler's worker thread: the loop runs on
        return [Root(uri="file:///back", name="back")]

    handlers = Handlers(roots=roots)
    with (
        serve(StrictServer(json_response=False)) as running,
        no_threads_left(),
        resilient_mcp.connect_sync(running.url, handlers=handlers) as client,
    ):
        holder.append(client)
        assert "file:///back" in client.call_tool("list_roots").text


def test_a_plain_callback_may_close_the_client() -> None:
    """Closing from a callback cannot wait for the end (the end waits for the callback):
    it asks for it, the call is cancelled, and leaving the block waits for the rest."""
    with (
        serve(StrictServer(json_response=False)) as running,
        no_threads_left(),
        resilient_mcp.connect_sync(running.url) as client,
    ):
        with pytest.raises(RequestCancelled):
            client.call_tool(
                "progress", {"steps": 1000, "interval": 0.05}, progress=lambda _: client.close()
            )
        with pytest.raises(ClientClosed):
            client.ping()


# --- stdio: the child process ---------------------------------------------------------------


def test_stdio_server_is_stopped_on_close() -> None:
    with no_threads_left():
        with resilient_mcp.connect_sync([sys.executable, SERVER]) as client:
            assert client.transport == "stdio"
            assert client.call_tool("echo", {"text": "x"}).text == "x"
            with ThreadPoolExecutor(4) as pool:
                texts = list(pool.map(lambda _: client.call_tool("increment").text, range(8)))
            assert sorted(texts, key=int) == [str(n) for n in range(1, 9)]
            pid = stdio_pid(client)
        assert reaped(pid)


def test_a_client_never_closed_is_closed_at_exit() -> None:
    """A script that forgets close() still exits, and stops its stdio server: here one
    that ignores end of input and SIGTERM, so only the client's SIGKILL stops it."""
    script = textwrap.dedent(
        f"""
        import sys
        import resilient_mcp
        server = resilient_mcp.StdioServer(
            sys.executable, args=[{SERVER!r}, "--ignore-sigterm"]
        )
        client = resilient_mcp.connect_sync(
            server, timeouts=resilient_mcp.Timeouts(close=0.5)
        ).open()
        print(client._client._session.transport.pid, flush=True)
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


def test_stdio_server_options_are_the_async_clients() -> None:
    server = StdioServer(sys.executable, args=[SERVER])
    with resilient_mcp.connect_sync(server, timeouts=Timeouts(request=10)) as client:
        assert client.call_tool("echo", {"text": "y"}, timeout=None).text == "y"
