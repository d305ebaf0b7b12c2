"""Every public call of :class:`resilient_mcp.Client` against a real `mcp` 2.3.0 server.

Each test runs against the three shared peers (stateful with SSE responses, stateless,
stateful with JSON responses), in both eras (mcp 2.3 servers speak the legacy handshake
and the modern 2026-07-28 protocol on one endpoint), on asyncio and on trio. What the
real server answers is asserted exactly, including the class of every typed error, so a
change in either the peer or our classification shows up here.

Facts about mcp 2.3.0 these tests pin down (read from its source, confirmed on the wire):

- an unknown tool and arguments that fail validation are *tool results* with
  ``isError: true``, not JSON-RPC errors;
- ``resources/read`` of an unknown URI is ``-32602`` with ``data: {"uri": ...}``
  (:class:`InvalidParams`), not ``-32002`` (:class:`ResourceNotFound`);
- ``prompts/get`` with a missing argument or an unknown prompt is code ``0``
  (a bare :class:`ServerError`);
- ``resources/subscribe`` is not served (``-32601``) and the capability says so;
- with JSON responses, notifications tied to a request (progress, log messages) are
  dropped by the server: a JSON body carries only the answer.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest

import resilient_mcp
from resilient_mcp import (
    ClientClosed,
    Execution,
    Handlers,
    InvalidParams,
    MethodNotFound,
    ServerError,
    SessionLost,
    ToolError,
    ToolOutputError,
)
from resilient_mcp._classify import FailureContext, classify_http
from resilient_mcp._schema import validate
from resilient_mcp.types import (
    EraMode,
    LoggingMessage,
    Progress,
    PromptReference,
    ResourceTemplateReference,
    TextContent,
    TextResourceContents,
)

from .launcher import McpPeer

pytestmark = [pytest.mark.anyio, pytest.mark.peer]

# Generous for one test body; a healthy run takes milliseconds per test.
DEADLINE = 15.0
PROTOCOL_VERSION = "2025-11-25"
MODERN = "2026-07-28"
TOOLS = {"echo", "add", "progress", "log", "fail", "sleep", "bad_output"}
RAW_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "MCP-Protocol-Version": PROTOCOL_VERSION,
}


@pytest.fixture(params=["mcp_peer", "mcp_peer_stateless", "mcp_peer_json"])
def peer(request: pytest.FixtureRequest) -> McpPeer:
    found = request.getfixturevalue(request.param)
    assert isinstance(found, McpPeer)
    return found


@pytest.fixture(params=["legacy", "modern"])
def era(request: pytest.FixtureRequest) -> EraMode:
    value = request.param
    assert value in ("legacy", "modern")
    return "legacy" if value == "legacy" else "modern"


def streams_notifications(peer: McpPeer) -> bool:
    """Whether the peer can send request-related notifications (SSE responses)."""
    return not peer.json_response


async def test_connect_reports_the_server(peer: McpPeer, era: EraMode) -> None:
    with anyio.fail_after(DEADLINE):
        client = resilient_mcp.connect(peer.url, era=era)
        assert client.server_info is None  # nothing known before the handshake
        async with client:
            assert client.state is resilient_mcp.SessionState.READY
            info = client.server_info
            assert info is not None
            assert (info.name, info.version) == ("resilient-mcp-test-peer", "1.0.0")
            assert client.era == era
            assert client.protocol_version == (PROTOCOL_VERSION if era == "legacy" else MODERN)
            assert client.instructions == "Test peer for resilient-mcp."
            caps = client.capabilities
            assert caps is not None
            # mcp 2.3 serves list_changed and resource updates through subscriptions/listen
            # in the modern era; legacy sessions of this peer get neither.
            modern = era == "modern"
            assert caps.tools == {"listChanged": modern}
            assert caps.resources == {"listChanged": modern, "subscribe": modern}
            assert caps.prompts == {"listChanged": modern}
            assert caps.logging == {}
            assert caps.completions == {}
            if peer.stateless or era == "modern":
                assert client.session_id is None  # no sessions in the modern era
            else:
                assert client.session_id
                assert client.session_id.isascii()
            assert client.stats.handshakes == 1
        assert client.state is resilient_mcp.SessionState.CLOSED


async def test_leaving_at_once_with_the_server_stream_starting(peer: McpPeer, era: EraMode) -> None:
    """Regression: the GET-stream task, started at the handshake's end, ran after the
    client had closed its httpx client and failed the task group (ClientClosed)."""

    async def on_log(message: LoggingMessage) -> None:
        pass  # a handler makes the client open the server->client stream

    with anyio.fail_after(DEADLINE):
        for _ in range(3):
            async with resilient_mcp.connect(
                peer.url, era=era, handlers=Handlers(log=on_log)
            ) as client:
                pass  # leave at once: the stream's task has not run yet
            assert client.state is resilient_mcp.SessionState.CLOSED


async def test_list_tools_gives_names_and_schemas(peer: McpPeer, era: EraMode) -> None:
    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(peer.url, era=era) as client:
            tools = {tool.name: tool for tool in await client.list_tools()}
            assert set(tools) == TOOLS
            echo = tools["echo"]
            assert echo.description == "Return the text unchanged."
            assert echo.inputSchema["type"] == "object"
            assert echo.inputSchema["required"] == ["text"]
            assert echo.inputSchema["properties"]["text"]["type"] == "string"
            add = tools["add"]
            assert add.inputSchema["required"] == ["a", "b"]
            assert {p["type"] for p in add.inputSchema["properties"].values()} == {"integer"}
            assert add.outputSchema is not None
            assert add.outputSchema["properties"] == {
                "result": {"title": "Result", "type": "integer"}
            }
            assert add.outputSchema["required"] == ["result"]
            # The list is cached: a second call costs no request.
            sent = client.stats.requests
            assert {tool.name for tool in await client.list_tools()} == TOOLS
            assert client.stats.requests == sent


async def test_call_tool_results_and_tool_errors(peer: McpPeer, era: EraMode) -> None:
    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(peer.url, era=era) as client:
            echoed = await client.call_tool("echo", {"text": "héllo"})
            assert not echoed.isError
            assert echoed.text == "héllo"
            assert echoed.content == [TextContent(text="héllo")]
            assert echoed.raise_for_error() is echoed

            # Structured output, checked by the client against the listed outputSchema.
            schema = {t.name: t for t in await client.list_tools()}["add"].outputSchema
            assert schema is not None
            added = await client.call_tool("add", {"a": 2, "b": 40})
            assert added.structuredContent == {"result": 42}
            assert added.text == "42"
            assert validate(added.structuredContent, schema) == []

            failed = await client.call_tool("fail", {"message": "nope"})
            assert failed.isError
            assert failed.structuredContent is None
            assert failed.text == "Error executing tool fail: nope"
            with pytest.raises(ToolError) as raised:
                failed.raise_for_error()
            assert type(raised.value) is ToolError
            assert raised.value.result is failed
            assert raised.value.execution is Execution.EXECUTED
            assert raised.value.message == "Error executing tool fail: nope"


async def test_unknown_tool_and_bad_arguments_are_tool_errors(peer: McpPeer, era: EraMode) -> None:
    """mcp 2.3 reports both in the result (isError), not as JSON-RPC -32602."""
    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(peer.url, era=era) as client:
            unknown = await client.call_tool("no_such_tool", {"x": 1})
            assert unknown.isError
            assert unknown.text == "Unknown tool: no_such_tool"
            with pytest.raises(ToolError) as raised:
                unknown.raise_for_error()
            assert type(raised.value) is ToolError
            assert raised.value.result is unknown

            invalid = await client.call_tool("add", {"a": "x"})
            assert invalid.isError
            assert invalid.text.startswith("Error executing tool add: 2 validation errors")
            with pytest.raises(ToolError) as raised:
                invalid.raise_for_error()
            assert type(raised.value) is ToolError


async def test_structured_content_breaking_the_output_schema(peer: McpPeer, era: EraMode) -> None:
    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(peer.url, era=era) as client:
            # Validation uses the schemas of the tool list the client fetched.
            await client.list_tools()
            with pytest.raises(ToolOutputError) as raised:
                await client.call_tool("bad_output")
            error = raised.value
            assert "bad_output" in error.message
            assert error.method == "tools/call"
            assert error.execution is Execution.EXECUTED
            assert error.session_id == client.session_id
            assert error.result is not None
            assert error.result.structuredContent == {"result": "forty-two"}
            assert error.result.text == "forty-two"


async def test_progress_callback(peer: McpPeer, era: EraMode) -> None:
    seen: list[Progress] = []
    last = anyio.Event()

    async def on_progress(progress: Progress) -> None:
        seen.append(progress)
        if progress.progress == 4:
            last.set()

    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(peer.url, era=era) as client:
            done = await client.call_tool("progress", {"steps": 4}, progress=on_progress)
            assert done.text == "done 4"
            assert done.structuredContent == {"result": "done 4"}
            if streams_notifications(peer):
                await last.wait()
                assert [(p.progress, p.total, p.message) for p in seen] == [
                    (float(i), 4.0, f"step {i}/4") for i in range(1, 5)
                ]
            else:
                assert seen == []  # the server drops them in JSON-response mode


async def test_resources(peer: McpPeer, era: EraMode) -> None:
    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(peer.url, era=era) as client:
            resources = await client.list_resources()
            assert [(r.uri, r.name, r.mimeType) for r in resources] == [
                ("resource://static/hello", "hello", "text/plain")
            ]
            assert resources[0].description == "A static text resource."
            templates = await client.list_resource_templates()
            assert [(t.uriTemplate, t.name, t.mimeType) for t in templates] == [
                ("resource://greeting/{name}", "greeting", "text/plain")
            ]

            static = await client.read_resource("resource://static/hello")
            assert static.contents == [
                TextResourceContents(
                    uri="resource://static/hello", mimeType="text/plain", text="hello world"
                )
            ]
            templated = await client.read_resource("resource://greeting/bob")
            assert len(templated.contents) == 1
            content = templated.contents[0]
            assert isinstance(content, TextResourceContents)
            assert (content.uri, content.text) == ("resource://greeting/bob", "Hello, bob!")


async def test_read_unknown_resource_is_invalid_params(peer: McpPeer, era: EraMode) -> None:
    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(peer.url, era=era) as client:
            with pytest.raises(InvalidParams) as raised:
                await client.read_resource("resource://nowhere")
            error = raised.value
            assert type(error) is InvalidParams
            assert error.code == -32602
            assert error.message == "Unknown resource: resource://nowhere"
            assert error.data == {"uri": "resource://nowhere"}
            assert error.method == "resources/read"
            assert error.execution is Execution.NOT_EXECUTED
            assert not error.may_be_not_initialized
            await client.ping()  # the session is unharmed


async def test_subscribe_is_not_served(peer: McpPeer, era: EraMode) -> None:
    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(peer.url, era=era) as client:
            assert client.capabilities is not None
            assert client.capabilities.resources is not None
            if era == "modern":
                # Served by subscriptions/listen: the calls change the stream's filter.
                assert client.capabilities.resources["subscribe"] is True
                await client.subscribe_resource("resource://static/hello")
                await client.unsubscribe_resource("resource://static/hello")
                return
            assert client.capabilities.resources["subscribe"] is False
            for call, method in (
                (client.subscribe_resource, "resources/subscribe"),
                (client.unsubscribe_resource, "resources/unsubscribe"),
            ):
                with pytest.raises(MethodNotFound) as raised:
                    await call("resource://static/hello")
                error = raised.value
                assert type(error) is MethodNotFound
                assert (error.code, error.data, error.method) == (-32601, method, method)
                assert error.execution is Execution.NOT_EXECUTED


async def test_prompts(peer: McpPeer, era: EraMode) -> None:
    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(peer.url, era=era) as client:
            prompts = await client.list_prompts()
            assert [p.name for p in prompts] == ["greet"]
            greet = prompts[0]
            assert greet.description == "A prompt with one argument."
            assert greet.arguments is not None
            assert [(a.name, a.required) for a in greet.arguments] == [("name", True)]

            got = await client.get_prompt("greet", {"name": "Ann"})
            assert got.description == "A prompt with one argument."
            assert len(got.messages) == 1
            assert got.messages[0].role == "user"
            assert got.messages[0].content == TextContent(text="Please greet Ann warmly.")


async def test_prompt_errors_are_code_zero_server_errors(peer: McpPeer, era: EraMode) -> None:
    """The Python SDK answers a prompt's ValueError with code 0, not -32602 (legacy era);
    its modern-era path hides it behind -32603 "Internal server error"."""
    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(peer.url, era=era) as client:
            with pytest.raises(ServerError) as raised:
                await client.get_prompt("greet")
            error = raised.value
            assert type(error) is ServerError
            if era == "modern":
                assert (error.code, error.message) == (-32603, "Internal server error")
                assert error.execution is Execution.EXECUTED
                return
            assert error.code == 0
            assert error.message == "Missing required arguments: {'name'}"
            assert error.method == "prompts/get"
            assert error.execution is Execution.EXECUTED

            with pytest.raises(ServerError) as raised:
                await client.get_prompt("no_such_prompt", {"name": "x"})
            assert type(raised.value) is ServerError
            assert (raised.value.code, raised.value.message) == (
                0,
                "Unknown prompt: no_such_prompt",
            )


async def test_complete(peer: McpPeer, era: EraMode) -> None:
    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(peer.url, era=era) as client:
            by_prompt = await client.complete(
                PromptReference(name="greet"), {"name": "name", "value": "al"}
            )
            assert by_prompt.completion.values == ["alice", "albert"]
            assert (by_prompt.completion.total, by_prompt.completion.hasMore) == (2, False)

            by_template = await client.complete(
                ResourceTemplateReference(uri="resource://greeting/{name}"),
                {"name": "name", "value": "c"},
                context={"other": "ignored"},
            )
            assert by_template.completion.values == ["carol"]

            nothing = await client.complete(
                PromptReference(name="greet"), {"name": "name", "value": "zz"}
            )
            assert nothing.completion.values == []


async def test_logging_level_and_log_handler(peer: McpPeer, era: EraMode) -> None:
    received: list[LoggingMessage] = []
    loud = anyio.Event()

    async def on_log(message: LoggingMessage) -> None:
        received.append(message)
        if message.data == "loud":
            loud.set()

    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(
            peer.url, era=era, handlers=Handlers(log=on_log)
        ) as client:
            await client.set_logging_level("warning")
            quiet = await client.call_tool("log", {"message": "quiet", "level": "info"})
            # A stateless server builds a new session per request: the level cannot stick.
            # The modern era has no session level either: the server filters what it
            # sends by the level in each request's _meta instead.
            sessionless = peer.stateless or era == "modern"
            assert quiet.text == ("logged info" if sessionless else "filtered info")
            logged = await client.call_tool("log", {"message": "loud", "level": "warning"})
            assert logged.text == "logged warning"
            if not streams_notifications(peer):
                return  # the server drops them in JSON-response mode
            await loud.wait()
    # Handlers run in the order the server sent: had "quiet" been sent, it came first.
    # (In the modern era the level in _meta keeps it from being sent at all.)
    expected = [("info", "quiet")] if peer.stateless and era == "legacy" else []
    expected.append(("warning", "loud"))
    assert [(m.level, m.data) for m in received] == expected
    assert {m.logger for m in received} == {"peer"}


async def test_ping(peer: McpPeer, era: EraMode) -> None:
    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(peer.url, era=era) as client:
            await client.ping()
            await client.ping(timeout=5)
            assert await client.request("ping") == {}


async def test_many_sequential_and_concurrent_calls(peer: McpPeer, era: EraMode) -> None:
    concurrent = sequential = 50
    results: dict[int, str] = {}

    async def one(i: int) -> None:
        result = await client.call_tool("add", {"a": i, "b": 1000})
        assert result.structuredContent == {"result": i + 1000}
        results[i] = result.text

    with anyio.fail_after(DEADLINE):
        async with resilient_mcp.connect(peer.url, era=era) as client:
            assert client.stats.requests == 1  # initialize
            # The schemas, so that every result below is validated against outputSchema.
            await client.list_tools()
            async with anyio.create_task_group() as tg:
                for i in range(concurrent):
                    tg.start_soon(one, i)
            assert results == {i: str(i + 1000) for i in range(concurrent)}
            # Nothing hidden, no retries (in the modern era, list_tools also opened the
            # subscriptions/listen stream that keeps the tool cache honest).
            listen = 1 if era == "modern" else 0
            assert client.stats.requests == 1 + 1 + concurrent + listen

            for i in range(sequential):
                echoed = await client.call_tool("echo", {"text": f"n{i}"})
                assert echoed.text == f"n{i}"
            assert client.stats.requests == 2 + concurrent + sequential + listen
            assert client.stats.handshakes == 1
            assert client.stats.unknown_responses == 0


async def test_close_ends_the_session_and_spares_our_http_client(
    peer: McpPeer, era: EraMode
) -> None:
    exchanges: list[tuple[str, int, str | None]] = []

    async def record(response: httpx.Response) -> None:
        request = response.request
        exchanges.append(
            (request.method, response.status_code, request.headers.get("mcp-session-id"))
        )

    ping: dict[str, Any] = {"jsonrpc": "2.0", "id": "raw-ping", "method": "ping"}
    with anyio.fail_after(DEADLINE):
        async with httpx.AsyncClient(event_hooks={"response": [record]}, timeout=5) as http:
            client = resilient_mcp.connect(
                resilient_mcp.HTTPServer(peer.url, http_client=http), era=era
            )
            async with client:
                await client.ping()
                assert {tool.name for tool in await client.list_tools()} == TOOLS  # cached
                session_id = client.session_id
                if session_id is not None:
                    # Control: the id is valid while the client is open.
                    alive = await http.post(
                        peer.url,
                        headers={**RAW_HEADERS, "Mcp-Session-Id": session_id},
                        json=ping,
                    )
                    assert alive.status_code == 200
            # Our client went through the caller's httpx client ...
            assert [m for m, _, _ in exchanges[:2]] == ["POST", "POST"]  # initialize, initialized
            assert not http.is_closed  # ... and left it open.

            deletes = [(status, sid) for method, status, sid in exchanges if method == "DELETE"]
            if session_id is None:
                assert peer.stateless or era == "modern"
                assert deletes == []  # nothing to end
            else:
                assert deletes == [(200, session_id)]
                # The server really forgot the session: the same id is now 404, which
                # is what our client would raise as SessionLost.
                gone = await http.post(
                    peer.url, headers={**RAW_HEADERS, "Mcp-Session-Id": session_id}, json=ping
                )
                assert gone.status_code == 404
                assert json.loads(gone.content)["error"]["message"] == "Session not found"
                lost = classify_http(
                    gone.status_code,
                    gone.headers.get("content-type", ""),
                    gone.content,
                    FailureContext(method="ping", session_id=session_id),
                )
                assert type(lost) is SessionLost

            # A fresh client over the same httpx client gets a new session.
            async with resilient_mcp.connect(
                resilient_mcp.HTTPServer(peer.url, http_client=http), era=era
            ) as fresh:
                assert fresh.session_id != session_id or session_id is None
                assert (await fresh.call_tool("echo", {"text": "again"})).text == "again"
            assert not http.is_closed

    # Every public call on the closed client is refused the same way, without I/O.
    before = len(exchanges)
    calls: list[Callable[[], Awaitable[Any]]] = [
        client.list_tools,  # answered from the cache if it were not refused
        lambda: client.call_tool("echo", {"text": "x"}),
        client.list_resources,
        client.list_resource_templates,
        lambda: client.read_resource("resource://static/hello"),
        lambda: client.subscribe_resource("resource://static/hello"),
        lambda: client.unsubscribe_resource("resource://static/hello"),
        client.list_prompts,
        lambda: client.get_prompt("greet", {"name": "x"}),
        lambda: client.complete(PromptReference(name="greet"), {"name": "name", "value": ""}),
        lambda: client.set_logging_level("info"),
        client.ping,
        lambda: client.request("ping"),
        client.wait_ready,
    ]
    for call in calls:
        with pytest.raises(ClientClosed):
            await call()
    assert len(exchanges) == before
    await client.aclose()  # idempotent
