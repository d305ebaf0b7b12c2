"""Server→client requests: sampling, roots and elicitation are answered by the handlers.

Against the strict server the requests travel inside the POST's SSE stream
(``json_response=False``) or, in JSON mode, on the standalone GET stream; the strict
server refuses to ask a client that did not declare the capability, so it also shows
that capabilities are advertised exactly for the handlers supplied.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest

import resilient_mcp
from resilient_mcp import Handlers
from resilient_mcp.testing import StrictServer, serve
from resilient_mcp.types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    Root,
    TextContent,
)

from .fake import FakeServer, json_response, result

pytestmark = pytest.mark.anyio

URL = "http://127.0.0.1:1/mcp"


async def sampler(params: CreateMessageRequestParams) -> CreateMessageResult:
    content = params.messages[0].content
    assert isinstance(content, TextContent)
    return CreateMessageResult(content=TextContent(text=f"sampled: {content.text}"), model="m")


async def roots() -> list[Root]:
    return [Root(uri="file:///work", name="work"), Root(uri="file:///tmp")]


async def elicitor(params: ElicitRequestParams) -> ElicitResult:
    assert params.requestedSchema is not None
    assert params.requestedSchema["required"] == ["name"]
    return ElicitResult(action="accept", content={"name": "Ada", "asked": params.message})


ALL_HANDLERS = Handlers(sampling=sampler, roots=roots, elicitation=elicitor)


def sse_stream(parts: AsyncIterator[dict[str, Any]]) -> httpx.Response:
    """An SSE response whose events are produced while the client is reading."""

    async def body() -> AsyncIterator[bytes]:
        async for message in parts:
            yield f"event: message\ndata: {json.dumps(message)}\n\n".encode()

    return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})


@dataclass
class AnsweredServer(FakeServer):
    """A FakeServer that hands every JSON-RPC *response* the client POSTs to ``on_answer``."""

    on_answer: Callable[[dict[str, Any]], None] | None = None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle(request)
        if request.method == "POST":
            message = json.loads(request.content)
            if "method" not in message and self.on_answer is not None:
                self.on_answer(message)
        return response


def ask_then_answer(
    server: AnsweredServer, ask: dict[str, Any]
) -> anyio.abc.ObjectReceiveStream[dict[str, Any]]:
    """Route tools/call: send ``ask`` to the client, wait for its answer, then finish.

    Returns a stream of the client's answers (the tool result's text is the answer too).
    """
    send, receive = anyio.create_memory_object_stream[dict[str, Any]](10)
    answers, answers_out = anyio.create_memory_object_stream[dict[str, Any]](10)

    def on_answer(message: dict[str, Any]) -> None:
        send.send_nowait(message)
        answers.send_nowait(message)

    server.on_answer = on_answer

    def route(message: dict[str, Any]) -> httpx.Response:
        if message["params"]["name"] != "ask":
            text = json.dumps(message["params"].get("arguments", {}))
            return json_response(result(message, {"content": [{"type": "text", "text": text}]}))

        async def parts() -> AsyncIterator[dict[str, Any]]:
            yield ask
            answer = await receive.receive()
            text = json.dumps(answer)
            yield result(message, {"content": [{"type": "text", "text": text}]})

        return sse_stream(parts())

    server.routes["tools/call"] = route
    return answers_out


def text_of(call_result: resilient_mcp.types.CallToolResult) -> str:
    block = call_result.content[0]
    assert isinstance(block, TextContent)
    return block.text


class TestAgainstStrictServer:
    """The three kinds of server request, answered through the real tools."""

    @pytest.mark.parametrize("json_mode", [False, True], ids=["sse", "json+get"])
    async def test_sample_roots_and_elicit(self, json_mode: bool) -> None:
        server = StrictServer(json_response=json_mode, get_stream=True)
        async with (
            serve(server) as running,
            resilient_mcp.connect(running.url, handlers=ALL_HANDLERS) as client,
        ):
            sampled = await client.call_tool("sample", {"prompt": "Say hi"}, timeout=5)
            assert not sampled.isError, text_of(sampled)
            assert text_of(sampled) == "sampled: Say hi"

            listed = await client.call_tool("list_roots", timeout=5)
            assert not listed.isError, text_of(listed)
            assert json.loads(text_of(listed)) == [
                {"uri": "file:///work", "name": "work"},
                {"uri": "file:///tmp"},
            ]

            elicited = await client.call_tool("elicit", {"message": "Who?"}, timeout=5)
            assert not elicited.isError, text_of(elicited)
            assert json.loads(text_of(elicited)) == {
                "action": "accept",
                "content": {"name": "Ada", "asked": "Who?"},
            }
        assert running.stats.early_requests == 0

    async def test_plain_function_handlers_run_in_a_worker_thread(self) -> None:
        loop_thread = threading.get_ident()
        threads: list[int] = []

        def plain_sampler(params: CreateMessageRequestParams) -> CreateMessageResult:
            threads.append(threading.get_ident())  # blocking here would not stall the loop
            return CreateMessageResult(content=TextContent(text="plain"), model="m")

        def plain_roots() -> list[Root]:
            threads.append(threading.get_ident())
            return [Root(uri="file:///plain")]

        handlers = Handlers(sampling=plain_sampler, roots=plain_roots)
        async with (
            serve(StrictServer(json_response=False)) as running,
            resilient_mcp.connect(running.url, handlers=handlers) as client,
        ):
            sampled = await client.call_tool("sample", {"prompt": "x"}, timeout=5)
            listed = await client.call_tool("list_roots", timeout=5)
        assert text_of(sampled) == "plain"
        assert json.loads(text_of(listed)) == [{"uri": "file:///plain"}]
        assert len(threads) == 2
        assert loop_thread not in threads

    async def test_json_mode_first_call_can_be_asked_at_once(self) -> None:
        """In JSON mode the server can only ask on the GET stream: the very first call
        after the handshake must already find it open."""
        async with serve(StrictServer(json_response=True)) as running:
            for _ in range(5):
                async with resilient_mcp.connect(running.url, handlers=ALL_HANDLERS) as client:
                    listed = await client.call_tool("list_roots", timeout=5)
                    assert not listed.isError, text_of(listed)
            assert running.stats.sessions_created == 5

    async def test_only_supplied_handlers_are_advertised(self) -> None:
        async with (
            serve(StrictServer(json_response=False)) as running,
            resilient_mcp.connect(running.url, handlers=Handlers(roots=roots)) as client,
        ):
            listed = await client.call_tool("list_roots", timeout=5)
            assert not listed.isError, text_of(listed)
            for tool, capability in (("sample", "sampling"), ("elicit", "elicitation")):
                refused = await client.call_tool(tool, {"prompt": "x"} if tool == "sample" else {})
                assert refused.isError
                assert f"did not declare the {capability} capability" in text_of(refused)

    async def test_no_handlers_advertise_nothing(self) -> None:
        async with (
            serve(StrictServer(json_response=False)) as running,
            resilient_mcp.connect(running.url) as client,
        ):
            for tool, arguments in (
                ("sample", {"prompt": "x"}),
                ("list_roots", {}),
                ("elicit", {}),
            ):
                refused = await client.call_tool(tool, arguments, timeout=5)
                assert refused.isError
                assert "did not declare" in text_of(refused)

    async def test_failing_handler_answers_internal_error_and_client_survives(self) -> None:
        async def broken_sampler(params: CreateMessageRequestParams) -> CreateMessageResult:
            raise RuntimeError("no model available")

        async with (
            serve(StrictServer(json_response=False)) as running,
            resilient_mcp.connect(
                running.url, handlers=Handlers(sampling=broken_sampler, roots=roots)
            ) as client,
        ):
            failed = await client.call_tool("sample", {"prompt": "x"}, timeout=5)
            assert failed.isError
            assert "error -32603: no model available" in text_of(failed)
            # The session is intact: other server requests and plain calls still work.
            listed = await client.call_tool("list_roots", timeout=5)
            assert not listed.isError
            assert (await client.call_tool("echo", {"text": "ok"}, timeout=5)).text == "ok"

    async def test_handler_waits_for_a_concurrent_call(self) -> None:
        """A handler that is still running never blocks other calls or their answers."""
        other_call_done = anyio.Event()
        handler_started = anyio.Event()

        async def patient_sampler(params: CreateMessageRequestParams) -> CreateMessageResult:
            handler_started.set()
            await other_call_done.wait()
            return CreateMessageResult(content=TextContent(text="after echo"), model="m")

        async with (
            serve(StrictServer(json_response=False)) as running,
            resilient_mcp.connect(running.url, handlers=Handlers(sampling=patient_sampler)) as c,
        ):
            outcome: dict[str, str] = {}

            async def sample() -> None:
                outcome["sample"] = (await c.call_tool("sample", {"prompt": "x"}, timeout=5)).text

            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(sample)
                    await handler_started.wait()
                    outcome["echo"] = (await c.call_tool("echo", {"text": "e"}, timeout=5)).text
                    other_call_done.set()
        assert outcome == {"echo": "e", "sample": "after echo"}

    async def test_handlers_run_concurrently(self) -> None:
        """Two server requests in flight at once are handled at once (a barrier of 2)."""
        arrived = 0
        both = anyio.Event()

        async def barrier_roots() -> list[Root]:
            nonlocal arrived
            arrived += 1
            if arrived == 2:
                both.set()
            await both.wait()
            return [Root(uri=f"file:///{arrived}")]

        async with (
            serve(StrictServer(json_response=False)) as running,
            resilient_mcp.connect(running.url, handlers=Handlers(roots=barrier_roots)) as c,
        ):
            texts: list[str] = []

            async def call() -> None:
                texts.append((await c.call_tool("list_roots", timeout=5)).text)

            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(call)
                    tg.start_soon(call)
        assert texts == ['[{"uri": "file:///2"}]'] * 2


class TestAgainstFakeServer:
    """What exactly goes over the wire."""

    @pytest.mark.parametrize(
        ("handlers", "expected"),
        [
            (Handlers(), {}),
            (Handlers(sampling=sampler), {"sampling": {}}),
            (Handlers(roots=roots), {"roots": {"listChanged": False}}),
            (Handlers(elicitation=elicitor), {"elicitation": {"form": {"applyDefaults": True}}}),
            (
                ALL_HANDLERS,
                {
                    "sampling": {},
                    "roots": {"listChanged": False},
                    "elicitation": {"form": {"applyDefaults": True}},
                },
            ),
        ],
        ids=["none", "sampling", "roots", "elicitation", "all"],
    )
    async def test_initialize_advertises_exactly_the_handlers(
        self, handlers: Handlers, expected: dict[str, Any]
    ) -> None:
        server = FakeServer()
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http), handlers=handlers
            ),
        ):
            pass
        initialize = server.received[0]
        assert initialize["method"] == "initialize"
        assert initialize["params"]["capabilities"] == expected

    async def _ask(self, handlers: Handlers, ask: dict[str, Any]) -> dict[str, Any]:
        """Send ``ask`` mid-call; return the client's POSTed answer (also the call's text)."""
        server = AnsweredServer()
        answers = ask_then_answer(server, ask)
        async with (
            server.client() as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(URL, http_client=http), handlers=handlers
            ) as client,
        ):
            with anyio.fail_after(5):
                called = await client.call_tool("ask", timeout=5)
                answer = await answers.receive()
            assert json.loads(called.text) == answer
            # The client survives whatever it answered.
            assert (await client.call_tool("x", {"ok": 1}, timeout=5)).text == '{"ok": 1}'
        return answer

    async def test_unknown_method_is_method_not_found(self) -> None:
        ask = {"jsonrpc": "2.0", "id": "q-1", "method": "foo/bar", "params": {}}
        answer = await self._ask(ALL_HANDLERS, ask)
        assert answer["id"] == "q-1"
        assert answer["jsonrpc"] == "2.0"
        assert answer["error"]["code"] == -32601
        assert "result" not in answer

    async def test_request_without_its_handler_is_method_not_found(self) -> None:
        ask = {"jsonrpc": "2.0", "id": 7, "method": "roots/list"}
        answer = await self._ask(Handlers(sampling=sampler), ask)
        assert answer["id"] == 7
        assert answer["error"]["code"] == -32601

    async def test_raising_handler_is_internal_error(self) -> None:
        async def broken() -> list[Root]:
            raise ValueError("disk on fire")

        ask = {"jsonrpc": "2.0", "id": 8, "method": "roots/list", "params": {}}
        answer = await self._ask(Handlers(roots=broken), ask)
        assert answer["id"] == 8
        assert answer["error"] == {"code": -32603, "message": "disk on fire"}

    async def test_invalid_params_is_invalid_params(self) -> None:
        ask = {"jsonrpc": "2.0", "id": 9, "method": "sampling/createMessage", "params": {}}
        answer = await self._ask(ALL_HANDLERS, ask)
        assert answer["id"] == 9
        assert answer["error"]["code"] == -32602

    async def test_ping_is_answered_without_handlers(self) -> None:
        ask = {"jsonrpc": "2.0", "id": 10, "method": "ping"}
        answer = await self._ask(Handlers(), ask)
        assert answer == {"jsonrpc": "2.0", "id": 10, "result": {}}

    async def test_sampling_answer_is_the_handlers_result(self) -> None:
        ask = {
            "jsonrpc": "2.0",
            "id": 11,
            "method": "sampling/createMessage",
            "params": {
                "messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}],
                "maxTokens": 5,
            },
        }
        answer = await self._ask(ALL_HANDLERS, ask)
        assert answer["id"] == 11
        assert answer["result"] == {
            "role": "assistant",
            "content": {"type": "text", "text": "sampled: hi"},
            "model": "m",
        }

    async def test_answer_is_posted_with_the_session_headers(self) -> None:
        server = AnsweredServer()
        answers = ask_then_answer(server, {"jsonrpc": "2.0", "id": 12, "method": "ping"})
        async with (
            server.client() as http,
            resilient_mcp.connect(resilient_mcp.HTTPServer(URL, http_client=http)) as client,
        ):
            with anyio.fail_after(5):
                await client.call_tool("ask", timeout=5)
                await answers.receive()
        posts = [r for r in server.requests if r.method == "POST" and b'"result"' in r.content]
        assert len(posts) == 1
        assert posts[0].headers["mcp-session-id"] == "fake-session"
        assert posts[0].headers["mcp-protocol-version"] == "2025-11-25"
        assert posts[0].headers["content-type"] == "application/json"
