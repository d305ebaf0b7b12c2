"""The two HTTP transports, driven directly (no session) against a mock router: a
recording peer stands in for the JSON-RPC layer; headers, receipts, typed errors and
streams. Every test runs on both HTTP stacks (httpx and httpx2): the router answers in
the stack's own classes, as the library's network layer would."""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import AsyncIterator, Callable, Generator
from types import ModuleType
from typing import Any, NamedTuple, TypeVar

import anyio
import httpx
import httpx2
import pytest
import respx
from anyio.streams.memory import MemoryObjectSendStream

import resilient_mcp
from resilient_mcp import _exceptions as errors
from resilient_mcp._config import Limits, Timeouts
from resilient_mcp._http_stack import HTTPStackName
from resilient_mcp._targets import HTTPServer
from resilient_mcp._transports.base import Receipt, SendContext, Transport
from resilient_mcp._transports.sse import LegacySSETransport
from resilient_mcp._transports.streamable import StreamableHTTPTransport

pytestmark = pytest.mark.anyio

URL = "http://127.0.0.1:8931/mcp"
SSE_URL = "http://127.0.0.1:8931/mcp/sse"
SSE_TYPE = {"content-type": "text/event-stream"}
BODY = b'{"jsonrpc":"2.0","id":1,"method":"tools/call"}'
ANSWER = {"jsonrpc": "2.0", "id": 1, "result": {}}
NOTE = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}
REQUEST = SendContext(method="tools/call", request_id=1)
NOTIFY = SendContext(method="notifications/initialized", kind="notification")
T = TypeVar("T", bound=Transport)
E = TypeVar("E", bound=errors.MCPError)


class Peer:
    """Records what the transport reports; tests wait on it instead of sleeping."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.lost_reasons: list[str] = []
        self.undeliverable_calls: list[tuple[Any, errors.MCPError]] = []
        self._changed = anyio.Event()

    def _note(self, record: list[Any], item: Any) -> None:
        record.append(item)
        self._changed.set()
        self._changed = anyio.Event()

    def deliver(self, message: Any) -> None:
        self._note(self.messages, message)

    def lost(self, reason: str) -> None:
        self._note(self.lost_reasons, reason)

    def undeliverable(self, request_id: Any, error: errors.MCPError) -> None:
        self._note(self.undeliverable_calls, (request_id, error))

    async def wait_until(self, check: Callable[[], bool]) -> None:
        while not check():
            await self._changed.wait()


class Log:
    """A structlog-like logger that keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        return lambda event, **kw: self.events.append((level, event, kw))


class _FailingFlow:
    """An auth flow that raises a foreign exception (for every method, or one)."""

    def __init__(self, method: str | None = None) -> None:
        self.method = method

    def auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        if self.method is None or request.method == self.method:
            raise RuntimeError("token refresh failed")
        yield request


class FailingAuth(_FailingFlow, httpx.Auth):
    pass


class FailingAuth2(_FailingFlow, httpx2.Auth):
    pass


LIBS: dict[str, ModuleType] = {"httpx": httpx, "httpx2": httpx2}
AUTHS: dict[str, type[_FailingFlow]] = {"httpx": FailingAuth, "httpx2": FailingAuth2}


def event(message: Any, *, event_id: str | None = None, name: str | None = None) -> bytes:
    text = "" if event_id is None else f"id: {event_id}\n"
    text += "" if name is None else f"event: {name}\n"
    data = message if isinstance(message, str) else json.dumps(message)
    return f"{text}data: {data}\n\n".encode()


async def body(
    *steps: bytes | anyio.Event | Exception, done: anyio.Event | None = None
) -> AsyncIterator[bytes]:
    """A streamed body: yields bytes, waits on events, raises exceptions, in order."""
    try:
        for step in steps:
            if isinstance(step, bytes):
                yield step
            elif isinstance(step, anyio.Event):
                await step.wait()
            else:
                raise step
    finally:
        if done is not None:
            done.set()


class Call(NamedTuple):
    request: Any


class Calls(list[Call]):
    @property
    def last(self) -> Call:
        return self[-1]


class Route:
    """What one (method, URL) is answered with, and the requests it got (respx's shape)."""

    def __init__(self, method: str | None, url: str | None) -> None:
        self.method, self.url = method, url
        self.calls = Calls()
        self._answer: Any = None
        self._side_effect: Any = None

    def mock(self, *, return_value: Any = None, side_effect: Any = None) -> Route:
        self._answer, self._side_effect = return_value, side_effect
        return self

    @property
    def called(self) -> bool:
        return bool(self.calls)

    @property
    def call_count(self) -> int:
        return len(self.calls)

    def matches(self, request: Any) -> bool:
        return (self.method is None or request.method == self.method) and (
            self.url is None or str(request.url) == self.url
        )

    async def answer(self, request: Any) -> Any:
        self.calls.append(Call(request))
        effect = self._side_effect
        if effect is None:
            return self._answer
        if isinstance(effect, type) and issubclass(effect, Exception):
            request_error: Any = effect  # an httpx(2) RequestError class: takes the request
            raise request_error("mocked", request=request)
        if isinstance(effect, Exception):
            raise effect
        answer = effect(request)
        return await answer if inspect.isawaitable(answer) else answer


class Router:
    """respx's shape for httpx2 (respx mocks httpx only): answers every request of
    httpx2's clients (ours and the user's) in place of its network transport; the first
    matching route wins."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(self, method: str | None = None, url: str | None = None) -> Route:
        self.routes.append(Route(method, url))
        return self.routes[-1]

    def post(self, url: str) -> Route:
        return self.route("POST", url)

    def get(self, url: str) -> Route:
        return self.route("GET", url)

    def delete(self, url: str) -> Route:
        return self.route("DELETE", url)

    async def handle(self, request: Any) -> Any:
        await request.aread()
        for route in self.routes:
            if route.matches(request):
                return await route.answer(request)
        raise AssertionError(f"no route for {request.method} {request.url}")


AnyRoute = Route | respx.Route


class Mocked:
    """Base of the test classes: the router answers every request, on both stacks;
    ``self.http`` is the stack's module (its ``Response``, its exceptions)."""

    router: Router | respx.MockRouter
    peer: Peer
    stream: AnyRoute
    stack: HTTPStackName
    http: Any

    @pytest.fixture(autouse=True)
    def _router(
        self, http_stack: HTTPStackName, monkeypatch: pytest.MonkeyPatch
    ) -> Generator[None, None, None]:
        self.stack, self.http = http_stack, LIBS[http_stack]
        if http_stack == "httpx":
            # respx, the mock router made for httpx; `Router` plays it for httpx2.
            with respx.mock(assert_all_called=False, assert_all_mocked=True) as mocked:
                self.router = mocked
                yield
            return
        self.router = Router()
        router = self.router

        async def handle(transport: Any, request: Any) -> Any:
            return await router.handle(request)

        monkeypatch.setattr(self.http.AsyncHTTPTransport, "handle_async_request", handle)
        yield

    def post(self, **mock: Any) -> AnyRoute:
        return self.router.post(URL).mock(**mock)

    def get(self, **mock: Any) -> AnyRoute:
        return self.router.get(URL).mock(**mock)

    def sse(self, *steps: bytes | anyio.Event | Exception, done: anyio.Event | None = None) -> Any:
        return self.http.Response(200, content=body(*steps, done=done), headers=SSE_TYPE)

    def json_response(self, doc: Any, status: int = 200, session: str | None = None) -> Any:
        headers = {} if session is None else {"mcp-session-id": session}
        return self.http.Response(status, json=doc, headers=headers)

    def auth(self, method: str | None = None) -> _FailingFlow:
        return AUTHS[self.stack](method)

    def streamable(
        self, *, limits: Limits | None = None, log: Log | None = None, **server: Any
    ) -> StreamableHTTPTransport:
        limits, http = limits or Limits(), HTTPServer(URL, http_stack=self.stack, **server)
        return StreamableHTTPTransport(
            http, timeouts=Timeouts(), limits=limits, logger=log or Log()
        )

    async def send(self, ctx: SendContext = REQUEST, **server: Any) -> Receipt:
        """One message on a fresh transport (``streamable(**server)``), to ``self.peer``."""
        self.peer = Peer()
        async with opened(self.streamable(**server), self.peer) as transport:
            return await transport.send(BODY if ctx.kind == "request" else b"{}", ctx)

    async def fail(self, exc_type: type[E], ctx: SendContext = REQUEST, **server: Any) -> E:
        """The error one message fails with on a fresh transport."""
        async with opened(self.streamable(**server), Peer()) as transport:
            with pytest.raises(exc_type) as info:
                await transport.send(BODY, ctx)
        return info.value


@contextlib.asynccontextmanager
async def opened(transport: T, peer: Peer) -> AsyncIterator[T]:
    """The transport open in a task group of its own; bounded, closed on the way out."""
    with anyio.fail_after(5), resilient_mcp.disable_backoff():
        async with anyio.create_task_group() as tg:
            await transport.open(peer, tg)
            try:
                yield transport
            finally:
                await transport.aclose()
                tg.cancel_scope.cancel()


class TestHeaders(Mocked):
    """Every POST's headers come from its SendContext and the HTTPServer, never from state."""

    async def test_headers_come_from_the_context_and_the_server_spec(self) -> None:
        route = self.post(return_value=self.json_response(ANSWER))
        ctx = SendContext(
            method="tools/call",
            request_id=1,
            session_id="s-1",
            protocol_version="2025-06-18",
            headers={"Mcp-Method": "tools/call"},
        )
        async with opened(self.streamable(headers={"X-Api-Key": "k"}), Peer()) as transport:
            await transport.send(BODY, ctx)
        request = route.calls.last.request
        assert request.headers["mcp-session-id"] == "s-1"
        assert request.headers["mcp-protocol-version"] == "2025-06-18"
        assert request.headers["mcp-method"] == "tools/call"
        assert request.headers["accept"] == "application/json, text/event-stream"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-api-key"] == "k"
        assert request.content == BODY

    async def test_our_headers_replace_the_users_whatever_their_case(self) -> None:
        route = self.post(return_value=self.json_response(ANSWER))
        mine = {"accept": "text/html", "content-type": "text/plain", "X-Api-Key": "k"}
        async with opened(self.streamable(headers=mine), Peer()) as transport:
            await transport.send(BODY, REQUEST)
        sent = route.calls.last.request.headers
        assert sent.get_list("accept") == ["application/json, text/event-stream"]
        assert sent.get_list("content-type") == ["application/json"]
        assert sent["x-api-key"] == "k"

    @pytest.mark.parametrize(
        ("version", "sent"),
        [("2024-11-05", False), ("2025-03-26", False), ("2025-06-18", True), ("2025-11-25", True)],
    )
    async def test_protocol_version_header_only_from_2025_06_18(
        self, version: str, sent: bool
    ) -> None:
        route = self.post(return_value=self.http.Response(202))
        await self.send(SendContext(kind="notification", protocol_version=version))
        assert ("mcp-protocol-version" in route.calls.last.request.headers) is sent

    async def test_an_assigned_session_id_is_sent_only_when_the_context_carries_it(self) -> None:
        route = self.post(return_value=self.json_response(ANSWER, session="a"))
        async with opened(self.streamable(), Peer()) as transport:
            assert await transport.send(BODY, REQUEST) == Receipt("delivered", "a")
            await transport.send(BODY, REQUEST)
        assert "mcp-session-id" not in route.calls.last.request.headers


class TestReceipts(Mocked):
    """What send() returns tells how the answer came, and which session the server gave."""

    async def test_json_answer_is_delivered_with_the_assigned_session_id(self) -> None:
        self.post(return_value=self.json_response(ANSWER, session="srv-1"))
        assert await self.send() == Receipt("delivered", "srv-1")
        assert self.peer.messages == [ANSWER]

    async def test_session_id_on_an_error_status_is_not_taken(self) -> None:
        # The Python SDK's 400 "Missing session ID" carries a fresh, never-initialized id.
        refusal = {"code": -32600, "message": "Bad Request: Missing session ID"}
        error = {"jsonrpc": "2.0", "id": "x", "error": refusal}
        self.post(return_value=self.json_response(error, 400, "trap"))
        assert (await self.fail(errors.NotInitialized)).session_id is None

    async def test_202_to_a_request_is_accepted(self) -> None:
        self.post(return_value=self.http.Response(202, headers={"mcp-session-id": "s"}))
        assert await self.send() == Receipt("accepted", "s")

    async def test_202_to_a_notification_is_delivered(self) -> None:
        self.post(return_value=self.http.Response(202))
        assert await self.send(NOTIFY) == Receipt("delivered")

    async def test_sse_answer_and_the_notification_before_it_reach_the_peer_in_order(self) -> None:
        self.post(side_effect=lambda request: self.sse(event(NOTE) + event(ANSWER)))
        assert await self.send() == Receipt("delivered")
        assert self.peer.messages == [NOTE, ANSWER]

    async def test_empty_json_body_to_a_notification_is_delivered(self) -> None:
        self.post(
            return_value=self.http.Response(200, headers={"content-type": "application/json"})
        )
        assert await self.send(NOTIFY) == Receipt("delivered")


class TestTypedErrors(Mocked):
    """Whatever fails below the transport comes out as one typed MCPError for this message."""

    CTX = SendContext(method="m", request_id=1, session_id="s")

    async def expect(self, exc_type: type[E], **server: Any) -> E:
        error = await self.fail(exc_type, self.CTX, **server)
        assert (error.method, error.request_id, error.session_id) == ("m", 1, "s")
        return error

    async def test_refused_connection_is_connect_error_not_executed(self) -> None:
        self.post(side_effect=self.http.ConnectError)
        error = await self.expect(errors.ConnectError)
        assert error.execution is errors.Execution.NOT_EXECUTED

    async def test_read_error_after_sending_is_connection_lost_maybe(self) -> None:
        self.post(side_effect=self.http.ReadError)
        error = await self.expect(errors.ConnectionLost)
        assert error.execution is errors.Execution.MAYBE

    async def test_503_is_server_unavailable_with_retry_after(self) -> None:
        self.post(return_value=self.http.Response(503, headers={"retry-after": "7"}))
        error = await self.expect(errors.ServerUnavailable)
        assert (error.status_code, error.retry_after) == (503, 7.0)

    async def test_404_with_a_session_id_is_session_lost(self) -> None:
        self.post(return_value=self.http.Response(404, text="Not Found"))
        await self.expect(errors.SessionLost)

    async def test_failing_auth_flow_is_a_typed_transport_error(self) -> None:
        route = self.post(return_value=self.json_response(ANSWER))
        error = await self.expect(errors.TransportError, auth=self.auth())
        assert isinstance(error.__cause__, RuntimeError)
        assert not route.called

    async def test_json_without_an_answer_to_this_id_is_malformed(self) -> None:
        self.post(return_value=self.json_response({**ANSWER, "id": 99}))
        await self.expect(errors.MalformedMessage)

    @pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
    async def test_oversized_json_is_message_too_large(self, declared: bool) -> None:
        big = json.dumps({**ANSWER, "result": {"text": "x" * 200}}).encode()
        content: bytes | AsyncIterator[bytes] = big if declared else body(big)
        json_type = {"content-type": "application/json"}
        response = lambda r: self.http.Response(200, content=content, headers=json_type)  # noqa: E731
        self.post(side_effect=response)
        await self.expect(errors.MessageTooLarge, limits=Limits(max_message_size=64))


class TestResumption(Mocked):
    """A response stream that drops after an event id is resumed with GET + Last-Event-ID."""

    DROPPING = event(NOTE, event_id="e1") + b"retry: 60000\n\n"  # a 30 s wait unless disabled

    async def test_dropped_stream_is_resumed_with_last_event_id(self) -> None:
        self.post(side_effect=lambda r: self.sse(self.DROPPING, self.http.ReadError("cut")))
        get = self.get(side_effect=lambda r: self.sse(event(ANSWER, event_id="e2")))
        ctx = SendContext(method="tools/call", request_id=1, session_id="s-1")
        assert await self.send(ctx) == Receipt("delivered")
        assert self.peer.messages == [NOTE, ANSWER]
        resumed = get.calls.last.request.headers
        assert (resumed["last-event-id"], resumed["mcp-session-id"]) == ("e1", "s-1")
        assert resumed["accept"] == "text/event-stream"

    async def test_dropped_stream_is_not_resumed_when_not_resumable(self) -> None:
        self.post(side_effect=lambda r: self.sse(self.DROPPING, self.http.ReadError("cut")))
        get = self.get(side_effect=lambda r: self.sse(event(ANSWER)))
        error = await self.fail(errors.ConnectionLost, SendContext(request_id=1, resumable=False))
        assert error.execution is errors.Execution.MAYBE
        assert not get.called

    async def test_incomplete_event_of_a_dropped_stream_is_discarded(self) -> None:
        cut = event(NOTE, event_id="e1") + b'data: {"jsonrpc":"2.0","method":"half"}\n'
        self.post(side_effect=lambda r: self.sse(cut, self.http.ReadError("cut")))

        def replay(request: Any) -> Any:
            after_e1 = request.headers["last-event-id"] == "e1"
            return self.sse(event(ANSWER, event_id="e2")) if after_e1 else self.sse()

        self.get(side_effect=replay)
        assert await self.send() == Receipt("delivered")
        assert self.peer.messages == [NOTE, ANSWER]


class TestAdmission(Mocked):
    """An answered stream frees its caller and its slot; answers to the server never queue."""

    async def test_a_server_that_keeps_answered_streams_open_is_not_waited_for(self) -> None:
        """Its first answered stream gets the grace, then is closed; later ones at once,
        so the only admission slot is free again for the next send."""
        release = anyio.Event()
        self.post(side_effect=lambda request: self.sse(event(ANSWER), release))
        log = Log()
        limits = Limits(max_connections=1, long_request=3600)
        async with opened(self.streamable(limits=limits, log=log), Peer()) as transport:
            for _ in range(3):
                assert await transport.send(BODY, REQUEST) == Receipt("delivered")
            assert not release.is_set()
        lingering = [name for _, name, _ in log.events if name == "sse.answered_streams_linger"]
        assert lingering == ["sse.answered_streams_linger"]  # found out once

    async def test_priority_send_does_not_wait_for_an_admission_slot(self) -> None:
        release = anyio.Event()

        def handler(request: Any) -> Any:
            if json.loads(request.content).get("method") == "tools/call":
                return self.sse(b": working\n\n", release, event(ANSWER))
            return self.http.Response(202)

        self.post(side_effect=handler)
        done: dict[str, Receipt] = {}

        async def send(name: str, message: bytes, ctx: SendContext) -> None:
            done[name] = await transport.send(message, ctx)

        limits = Limits(max_connections=1, long_request=3600)
        async with (
            opened(self.streamable(limits=limits), Peer()) as transport,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(send, "call", BODY, REQUEST)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(send, "queued", b"{}", NOTIFY)
            await anyio.wait_all_tasks_blocked()
            answer = SendContext(kind="response", priority=True)
            assert await transport.send(b'{"id":"s1","result":{}}', answer) == Receipt()
            assert done == {}, "the call and the queued notification are still waiting"
            release.set()
        assert done == {"call": Receipt("delivered"), "queued": Receipt("delivered")}


class TestGetStream(Mocked):
    """The standalone GET stream delivers server messages; its failures stay inside it."""

    CTX = SendContext(session_id="s-1", protocol_version="2025-06-18")

    async def test_405_stops_listening_quietly(self) -> None:
        get = self.get(return_value=self.http.Response(405))
        log = Log()
        async with opened(self.streamable(log=log), Peer()) as transport:
            await transport.listen(self.CTX)
            await anyio.wait_all_tasks_blocked()
            assert not transport.listening
        assert get.call_count == 1
        assert [level for level, _, _ in log.events] == ["debug"]

    async def test_messages_on_the_get_stream_reach_the_peer(self) -> None:
        ping = {"jsonrpc": "2.0", "id": "s1", "method": "ping"}
        hold = anyio.Event()
        get = self.get(side_effect=lambda r: self.sse(event(NOTE), event(ping), hold))
        peer = Peer()
        async with opened(self.streamable(), peer) as transport:
            await transport.listen(self.CTX)
            await peer.wait_until(lambda: len(peer.messages) == 2)
            assert transport.listening
        assert peer.messages == [NOTE, ping]
        headers = get.calls.last.request.headers
        assert (headers["accept"], headers["mcp-session-id"]) == ("text/event-stream", "s-1")

    @pytest.mark.parametrize("broken", ["bad-gzip", "auth-raises-on-get"])
    async def test_broken_get_stream_is_contained(self, broken: str) -> None:
        headers = {**SSE_TYPE, "content-encoding": "gzip"}
        gzip = lambda r: self.http.Response(200, content=body(b"not gzip"), headers=headers)  # noqa: E731
        get = self.get(side_effect=gzip)
        self.post(return_value=self.json_response(ANSWER))
        log = Log()
        auth = self.auth("GET") if broken == "auth-raises-on-get" else None
        async with opened(self.streamable(log=log, auth=auth), Peer()) as transport:
            await transport.listen(self.CTX)
            await anyio.wait_all_tasks_blocked()
            assert not transport.listening, "given up after a few failures"
            assert await transport.send(BODY, REQUEST) == Receipt("delivered")
        dropped = [kw for _, name, kw in log.events if name == "get_stream.dropped"]
        assert dropped, log.events
        assert ("warning", "get_stream.given_up") in {(lvl, name) for lvl, name, _ in log.events}
        assert all("unexpected failure in the transport" in kw["error"] for kw in dropped)
        assert get.call_count == (0 if auth else len(dropped))


class TestLifecycle(Mocked):
    """DELETE ends a session that has an id; aclose() closes only what the transport made."""

    async def test_end_session_deletes_only_a_session_with_an_id(self) -> None:
        delete = self.router.delete(URL).mock(return_value=self.http.Response(200))
        async with opened(self.streamable(), Peer()) as transport:
            await transport.end_session(SendContext())
            assert not delete.called, "no session id: nothing to end"
            await transport.end_session(SendContext(session_id="s-1"))
        assert delete.calls.last.request.headers["mcp-session-id"] == "s-1"

    async def test_aclose_closes_the_client_the_transport_created(self) -> None:
        async with opened(self.streamable(), Peer()) as transport:
            client = transport._client
            assert isinstance(client, self.http.AsyncClient)
        assert client.is_closed
        await transport.aclose()  # idempotent

    async def test_aclose_never_closes_the_users_client(self) -> None:
        self.post(return_value=self.json_response(ANSWER))
        async with self.http.AsyncClient() as users:
            async with opened(self.streamable(http_client=users), Peer()) as transport:
                assert await transport.send(BODY, REQUEST) == Receipt("delivered")
            assert not users.is_closed
            assert (await users.post(URL)).status_code == 200


class LegacyServer:
    """GET: a new session's stream, opened by an `endpoint` event; POST: 202, and a
    request's answer as an `event: message` on the newest stream."""

    def __init__(self, http: Any, endpoint: str = "/messages/?session_id={}") -> None:
        self.http, self.endpoint = http, endpoint
        self.streams: list[MemoryObjectSendStream[bytes]] = []
        self.posts: list[Any] = []

    def get(self, request: Any) -> Any:
        send, receive = anyio.create_memory_object_stream[bytes](16)
        self.streams.append(send)
        send.send_nowait(event(self.endpoint.format(f"s{len(self.streams)}"), name="endpoint"))

        async def chunks() -> AsyncIterator[bytes]:
            with receive:
                async for chunk in receive:
                    yield chunk

        return self.http.Response(200, content=chunks(), headers=SSE_TYPE)

    def post(self, request: Any) -> Any:
        self.posts.append(request)
        message = json.loads(request.content)
        if "id" in message and "method" in message:
            answer = {"jsonrpc": "2.0", "id": message["id"], "result": {}}
            self.streams[-1].send_nowait(event(answer, name="message"))
        return self.http.Response(202)

    def close(self) -> None:
        for stream in self.streams:
            stream.close()


class TestLegacySSE(Mocked):
    """HTTP+SSE: POSTs go to the endpoint the GET stream names; answers come on the stream."""

    @contextlib.asynccontextmanager
    async def legacy(self, server: LegacyServer) -> AsyncIterator[LegacySSETransport]:
        self.peer, self.stream = Peer(), self.router.get(SSE_URL).mock(side_effect=server.get)
        self.router.route(method="POST").mock(side_effect=server.post)
        http = HTTPServer(SSE_URL, http_stack=self.stack)
        transport = LegacySSETransport(http, timeouts=Timeouts(), limits=Limits(), logger=Log())
        try:
            async with opened(transport, self.peer):
                yield transport
        finally:
            server.close()

    @pytest.mark.parametrize(
        ("endpoint", "posted"),
        [
            ("/messages/?session_id={}", "http://127.0.0.1:8931/messages/?session_id=s1"),
            ("messages/?session_id={}", "http://127.0.0.1:8931/mcp/messages/?session_id=s1"),
            ("http://127.0.0.1:8931/m?session_id={}", "http://127.0.0.1:8931/m?session_id=s1"),
        ],
    )
    async def test_first_send_opens_the_stream_and_posts_to_its_endpoint(
        self, endpoint: str, posted: str
    ) -> None:
        server = LegacyServer(self.http, endpoint)
        async with self.legacy(server) as transport:
            assert not self.stream.called, "open() does not touch the network"
            assert await transport.send(BODY, REQUEST) == Receipt("later", "s1")
            await self.peer.wait_until(lambda: bool(self.peer.messages))
        assert self.stream.call_count == 1
        (post,) = server.posts
        assert (str(post.url), post.content) == (posted, BODY)
        assert post.headers["content-type"] == "application/json"
        assert self.peer.messages == [ANSWER]

    @pytest.mark.parametrize(
        "endpoint",
        ["http://evil.example:8931/m", "http://127.0.0.1:9999/m", "https://127.0.0.1:8931/m"],
    )
    async def test_endpoint_on_another_origin_is_refused(self, endpoint: str) -> None:
        server = LegacyServer(self.http, endpoint)
        async with self.legacy(server) as transport:
            with pytest.raises(errors.ProtocolError):
                await transport.send(BODY, REQUEST)
        assert server.posts == []
        assert self.peer.lost_reasons == []

    async def test_stream_end_after_the_endpoint_is_reported_once(self) -> None:
        server = LegacyServer(self.http)
        async with self.legacy(server) as transport:
            await transport.send(BODY, REQUEST)
            server.streams[0].close()
            await self.peer.wait_until(lambda: bool(self.peer.lost_reasons))
            await anyio.wait_all_tasks_blocked()
            assert self.peer.lost_reasons == ["the server closed the SSE stream"]
            with pytest.raises(errors.SessionLost):
                await transport.send(BODY, REQUEST)
            await transport.reset()
            assert await transport.send(BODY, REQUEST) == Receipt("later", "s2")
        assert len(self.peer.lost_reasons) == 1

    async def test_after_reset_the_next_send_opens_a_new_stream(self) -> None:
        server = LegacyServer(self.http)
        async with self.legacy(server) as transport:
            assert await transport.send(BODY, REQUEST) == Receipt("later", "s1")
            await self.peer.wait_until(lambda: len(self.peer.messages) == 1)
            await transport.reset()
            assert await transport.send(BODY, REQUEST) == Receipt("later", "s2")
            await self.peer.wait_until(lambda: len(self.peer.messages) == 2)
            await anyio.wait_all_tasks_blocked()
        assert self.stream.call_count == 2
        # Abandoning the old session's stream is reported once, so that whatever it still
        # owed fails at once (here nothing: its one answer had arrived).
        assert self.peer.lost_reasons == ["the SSE stream of the replaced session was abandoned"]
        assert [str(p.url).rsplit("=", 1)[1] for p in server.posts] == ["s1", "s2"]
