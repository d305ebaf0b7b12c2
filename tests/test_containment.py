"""Whatever goes wrong stays where it happened, and nothing runs that has no work.

- a background loop's failure (a bad ``Content-Encoding``, a user's ``httpx.Auth``
  raising) is a typed error logged by that loop, never a cancellation of the caller;
- an error raised by an inner step of the handshake keeps its own name;
- a closed client refuses everything, its cache included;
- server→client requests are answered by a bounded number of workers, and a repeated
  request id never takes the place of the first;
- an idle client runs no background task at all (only its host, parked on an event).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Generator, Mapping, MutableMapping
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
import structlog

import resilient_mcp
from resilient_mcp import (
    ClientClosed,
    Handlers,
    HTTPServer,
    Limits,
    RequestTimeout,
    SessionState,
    disable_backoff,
)
from resilient_mcp._host import HOST_TASK_NAME
from resilient_mcp.testing import StrictServer, serve
from resilient_mcp.types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    LoggingMessage,
    TextContent,
)

from .fake import FakeServer, json_response, result

pytestmark = pytest.mark.anyio

URL = "http://127.0.0.1:1/mcp"
TOOLS = {"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}


class Events:
    """A structlog logger that records events and lets a test wait for one."""

    def __init__(self) -> None:
        self.seen: list[Mapping[str, Any]] = []
        self._waiting: dict[str, anyio.Event] = {}
        self.logger = structlog.wrap_logger(None, processors=[self._record])

    def _record(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> Any:
        self.seen.append(dict(event))
        waiting = self._waiting.get(str(event.get("event")))
        if waiting is not None:
            waiting.set()
        raise structlog.DropEvent

    def named(self, name: str) -> list[Mapping[str, Any]]:
        return [event for event in self.seen if event.get("event") == name]

    async def wait_for(self, name: str) -> None:
        if self.named(name):
            return
        waiting = self._waiting.setdefault(name, anyio.Event())
        with anyio.fail_after(10):
            await waiting.wait()


async def on_log(message: LoggingMessage) -> None:
    pass


class TestBackgroundFailuresStayThere:
    """The standalone GET stream fails; the client and its caller carry on."""

    async def test_a_bad_content_encoding_on_the_get_stream(self) -> None:
        events = Events()
        server = FakeServer(
            get_stream=lambda request: httpx.Response(
                200,
                content=b"this is not gzip",
                headers={"content-type": "text/event-stream", "content-encoding": "gzip"},
            )
        )
        with disable_backoff():
            async with (
                server.client() as http,
                resilient_mcp.connect(
                    HTTPServer(URL, http_client=http),
                    handlers=Handlers(log=on_log),
                    logger=events.logger,
                ) as client,
            ):
                await events.wait_for("get_stream.dropped")
                assert (await client.call_tool("echo", {"a": 1})).text == '{"a": 1}'
                assert client.state is SessionState.READY
        (dropped, *_) = events.named("get_stream.dropped")
        assert "DecodingError" in dropped["error"]

    async def test_an_auth_flow_that_raises_on_the_get_stream(self) -> None:
        class Flaky(httpx.Auth):
            def auth_flow(
                self, request: httpx.Request
            ) -> Generator[httpx.Request, httpx.Response, None]:
                if request.method == "GET":
                    raise RuntimeError("token store unavailable")
                yield request

        events = Events()
        server = FakeServer(get_stream=lambda request: httpx.Response(405))
        with disable_backoff():
            async with (
                server.client() as http,
                resilient_mcp.connect(
                    HTTPServer(URL, http_client=http, auth=Flaky()),
                    handlers=Handlers(log=on_log),
                    logger=events.logger,
                ) as client,
            ):
                await events.wait_for("get_stream.dropped")
                assert (await client.call_tool("echo", {"b": 2})).text == '{"b": 2}'
        assert "token store unavailable" in events.named("get_stream.dropped")[0]["error"]


class TestHandshakeErrorsKeepTheirNames:
    async def test_an_inner_timeout_is_not_renamed_a_handshake_timeout(self) -> None:
        """Only the handshake's own deadline says "handshake did not complete"."""

        class SlowTokens(httpx.Auth):
            def auth_flow(
                self, request: httpx.Request
            ) -> Generator[httpx.Request, httpx.Response, None]:
                if b'"initialize"' in request.content:
                    raise RequestTimeout("the token service did not answer")
                yield request

        server = FakeServer()
        with pytest.raises(RequestTimeout) as caught:
            async with (
                server.client() as http,
                resilient_mcp.connect(HTTPServer(URL, http_client=http, auth=SlowTokens())),
            ):
                pass
        assert caught.value.message == "the token service did not answer"

    async def test_a_probe_cut_by_the_handshake_deadline_leaves_nothing_behind(self) -> None:
        answer = anyio.Event()

        async def discover(message: dict[str, Any]) -> httpx.Response:
            await answer.wait()  # silent until the test lets it speak (as legacy)
            error = {"code": -32601, "message": "Method not found"}
            return json_response({"jsonrpc": "2.0", "id": message["id"], "error": error})

        server = FakeServer(routes={"server/discover": discover})
        async with (
            server.client() as http,
            resilient_mcp.connect(
                HTTPServer(URL, http_client=http),
                timeouts=resilient_mcp.Timeouts(initialize=0.2),
                wait_ready=False,
            ) as client,
        ):
            with pytest.raises(RequestTimeout, match="handshake did not complete"):
                await client.wait_ready()
            assert (client.era, client.protocol_version, client.session_id) == (None, None, None)
            assert client.state is SessionState.NEW
            answer.set()
            assert (await client.call_tool("echo", {"c": 3})).text == '{"c": 3}'
            assert client.era == "legacy"
        initialize = next(m for m in server.received if m["method"] == "initialize")
        assert "_meta" not in initialize["params"]
        post = next(
            r for r in server.requests if r.method == "POST" and b'"initialize"' in r.content
        )
        assert "mcp-method" not in post.headers


class TestClosedMeansClosed:
    async def test_aclose_refuses_every_later_call_even_from_the_cache(self) -> None:
        server = FakeServer(routes={"tools/list": lambda m: json_response(result(m, TOOLS))})
        async with (
            server.client() as http,
            resilient_mcp.connect(HTTPServer(URL, http_client=http)) as client,
        ):
            assert [tool.name for tool in await client.list_tools()] == ["echo"]
            await client.aclose()
            assert client.state is SessionState.CLOSED
            with pytest.raises(ClientClosed):
                await client.list_tools()
            with pytest.raises(ClientClosed):
                await client.call_tool("echo")
            await client.aclose()  # idempotent


def sampling(request_id: Any) -> dict[str, Any]:
    params = {
        "messages": [{"role": "user", "content": {"type": "text", "text": str(request_id)}}],
        "maxTokens": 5,
    }
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "sampling/createMessage",
        "params": params,
    }


class PushServer(FakeServer):
    """A FakeServer with a GET stream carrying what the test pushes; records answers."""

    def __init__(self) -> None:
        super().__init__()
        self._push, self._pull = anyio.create_memory_object_stream[dict[str, Any]](1000)
        self.answers: list[dict[str, Any]] = []
        self.answered = anyio.Event()
        self.expected = 0

    def push(self, *messages: dict[str, Any]) -> None:
        for message in messages:
            self._push.send_nowait(message)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            message = json.loads(request.content)
            if "method" not in message:
                self.answers.append(message)
                if len(self.answers) >= self.expected:
                    self.answered.set()
                return httpx.Response(202)
        if request.method != "GET":
            return await super().handle(request)

        async def body() -> AsyncIterator[bytes]:
            yield b": primed\n\n"
            async for message in self._pull:
                yield f"data: {json.dumps(message)}\n\n".encode()

        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})


class TestServerRequestsAreBounded:
    async def test_no_more_handlers_run_at_once_than_the_limit(self) -> None:
        limit = Limits().max_server_requests
        running = peak = 0
        release = anyio.Event()

        async def sample(params: CreateMessageRequestParams) -> CreateMessageResult:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await release.wait()
            running -= 1
            return CreateMessageResult(content=TextContent(text="ok"), model="m")

        server = PushServer()
        server.expected = 5 * limit
        async with (
            server.client() as http,
            resilient_mcp.connect(
                HTTPServer(URL, http_client=http), handlers=Handlers(sampling=sample)
            ),
        ):
            server.push(*(sampling(i) for i in range(5 * limit)))
            with anyio.fail_after(10):
                while running < limit:
                    await anyio.wait_all_tasks_blocked()
                    await anyio.lowlevel.checkpoint()
            await anyio.wait_all_tasks_blocked()
            assert (running, peak) == (limit, limit)
            release.set()
            with anyio.fail_after(10):
                await server.answered.wait()
        assert sorted(answer["id"] for answer in server.answers) == list(range(5 * limit))
        assert all("result" in answer for answer in server.answers)

    async def test_a_repeated_id_never_takes_the_place_of_the_first(self) -> None:
        entered = anyio.Event()
        withdrawn = anyio.Event()

        async def sample(params: CreateMessageRequestParams) -> CreateMessageResult:
            entered.set()
            try:
                await anyio.sleep_forever()
            finally:
                withdrawn.set()
            raise AssertionError("unreachable")

        server = PushServer()
        server.expected = 1
        async with (
            server.client() as http,
            resilient_mcp.connect(
                HTTPServer(URL, http_client=http), handlers=Handlers(sampling=sample)
            ),
        ):
            server.push(sampling(5))
            with anyio.fail_after(10):
                await entered.wait()
            server.push(sampling(5))
            with anyio.fail_after(10):
                await server.answered.wait()
            (refusal,) = server.answers
            assert refusal["id"] == 5
            assert refusal["error"]["code"] == -32600
            # The cancellation reaches the request that holds the id: the first one.
            cancelled = {"requestId": 5, "reason": "user gave up"}
            server.push(
                {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": cancelled}
            )
            with anyio.fail_after(10):
                await withdrawn.wait()
            await anyio.wait_all_tasks_blocked()
        assert len(server.answers) == 1  # a withdrawn request gets no answer


def new_tasks(before: set[int]) -> list[str]:
    """The tasks started since ``before``, but the client's host: one task, parked on
    an event, that owns the task group (so the client may be left from any task)."""
    names = [str(task.name) for task in anyio.get_running_tasks() if task.id not in before]
    assert names.count(HOST_TASK_NAME) <= 1, names
    return [name for name in names if name != HOST_TASK_NAME]


class TestIdleClientsRunNothing:
    async def test_a_ready_idle_client_runs_no_background_task(self) -> None:
        before = {task.id for task in anyio.get_running_tasks()}
        server = FakeServer()
        async with (
            server.client() as http,
            resilient_mcp.connect(HTTPServer(URL, http_client=http)) as client,
        ):
            await client.call_tool("echo", {})
            await anyio.wait_all_tasks_blocked()
            assert new_tasks(before) == []

    async def test_a_transport_fallback_leaves_nothing_of_the_first_transport(self) -> None:
        before = {task.id for task in anyio.get_running_tasks()}
        async with (
            serve(StrictServer(profile="python-sdk-sse")) as running,
            resilient_mcp.connect(running.url) as client,
        ):
            assert client.transport == "sse"
            await client.call_tool("echo", {"text": "x"})
            await anyio.wait_all_tasks_blocked()
            # The one stream of the session, and nothing else.
            assert len(new_tasks(before)) == 1
