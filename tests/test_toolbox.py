"""The framework-neutral tool surface: specs, outcomes and who closes the client."""

from __future__ import annotations

import base64
import json
import socket
from typing import Any, Literal

import anyio
import httpx
import pytest

import resilient_mcp
from resilient_mcp import ContentPart, Toolbox, ToolOutcome, ToolSpec
from resilient_mcp.testing import Chaos, StrictServer, serve
from resilient_mcp.types import (
    BlobResourceContents,
    CallToolResult,
    ContentBlock,
    EmbeddedResource,
    ImageContent,
    Progress,
    ResourceLink,
    TextContent,
    TextResourceContents,
    Tool,
    UnknownContent,
)

LIMIT_S = 60  # a guard against hangs only


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mcp"


class TestSpecs:
    @pytest.mark.anyio
    @pytest.mark.parametrize("era", ["legacy", "modern"])
    async def test_specs_pass_the_servers_tools_through_unchanged(self, era: str) -> None:
        with anyio.fail_after(LIMIT_S):
            async with (
                serve(StrictServer(era=era)) as running,  # type: ignore[arg-type]
                resilient_mcp.connect(running.url) as client,
            ):
                listed = {tool.name: tool for tool in await client.list_tools()}
                specs = {spec.name: spec for spec in await Toolbox(client).specs()}
        assert specs.keys() == listed.keys()
        add = specs["add"]
        assert add.description == listed["add"].description
        assert add.input_schema == listed["add"].inputSchema
        assert add.output_schema == listed["add"].outputSchema
        assert add.title == "Add"
        assert (add.server, add.original_name) == (None, "add")
        assert specs["read_counter"].read_only
        assert specs["read_counter"].idempotent
        assert not specs["read_counter"].destructive
        assert specs["set_value"].idempotent
        assert not specs["set_value"].read_only
        assert specs["increment"].destructive
        assert not specs["increment"].idempotent

    def test_meta_and_annotation_title_are_kept(self) -> None:
        tool = Tool.model_validate(
            {
                "name": "t",
                "inputSchema": {"type": "object"},
                "annotations": {"title": "From hints"},
                "_meta": {"vendor/x": 1},
            }
        )
        spec = ToolSpec.of(tool)
        assert spec.meta == {"vendor/x": 1}
        assert spec.title == "From hints"
        assert spec.description == ""

    @pytest.mark.anyio
    async def test_a_new_tool_is_seen_after_list_changed(self) -> None:
        changed = anyio.Event()

        async def on_notification(method: str, params: object) -> None:
            if method == "notifications/tools/list_changed":
                changed.set()

        server = StrictServer()
        handlers = resilient_mcp.Handlers(notification=on_notification)
        with anyio.fail_after(LIMIT_S):
            async with (
                serve(server) as running,
                resilient_mcp.connect(running.url, handlers=handlers) as client,
            ):
                box = Toolbox(client)
                assert "fresh" not in {spec.name for spec in await box.specs()}
                server.add_tool("fresh", description="Brand new.", text="hello")
                await changed.wait()
                assert box.spec("fresh") is None  # not until the next listing
                names = {spec.name for spec in await box.specs()}
                outcome = await box.call("fresh")
        assert "fresh" in names
        assert (outcome.status, outcome.text) == ("ok", "hello")


class TestOutcomes:
    @pytest.mark.anyio
    async def test_ok_structured_and_tool_error(self) -> None:
        with anyio.fail_after(LIMIT_S):
            async with serve(StrictServer()) as running, Toolbox(running.url) as box:
                echo = await box.call("echo", {"text": "hi"})
                add = await box.call("add", {"a": 2, "b": 3})
                fail = await box.call("fail")
        assert (echo.status, echo.ok, echo.text, echo.message) == ("ok", True, "hi", "hi")
        assert add.structured == {"sum": 5}
        assert add.result is not None
        assert add.result.structuredContent == {"sum": 5}
        assert (fail.status, fail.ok, fail.terminal) == ("tool_error", False, False)
        assert fail.message == "The fail tool always fails."
        assert fail.error is None

    @pytest.mark.anyio
    async def test_a_dropped_side_effect_is_maybe_executed_and_runs_once(self) -> None:
        server = StrictServer(chaos=Chaos(seed=1, drop_rate=1.0))
        with anyio.fail_after(LIMIT_S):
            async with serve(server) as running, Toolbox(running.url) as box:
                outcome = await box.call("increment", {"key": "k1"})
                stats = running.stats
        assert outcome.status == "maybe_executed"
        assert outcome.terminal
        assert not outcome.ok
        assert isinstance(outcome.error, resilient_mcp.FateUnknown)
        assert stats.executions["k1"] == 1
        lowered = outcome.message.lower()
        assert "may or may not have run" in lowered
        assert "try again" not in lowered
        assert "retry" not in lowered

    @pytest.mark.anyio
    async def test_a_dropped_read_only_call_is_repeated_and_ok(self) -> None:
        # Seeded: two of these calls lose their response once (never three times in a
        # row, which the default policy's 3 attempts would give up on).
        server = StrictServer(chaos=Chaos(seed=1, drop_rate=0.3))
        with anyio.fail_after(LIMIT_S):
            async with serve(server) as running, resilient_mcp.connect(running.url) as client:
                box = Toolbox(client)
                outcomes = [await box.call("read_counter") for _ in range(6)]
                retries = client.stats.retries
        assert all(outcome.ok for outcome in outcomes)
        assert retries == 2

    @pytest.mark.anyio
    async def test_a_hanging_call_is_bounded_by_its_timeout(self) -> None:
        with anyio.fail_after(LIMIT_S):
            async with serve(StrictServer()) as running, Toolbox(running.url) as box:
                outcome = await box.call("progress", {"steps": 1, "interval": 30}, timeout=0.5)
        assert outcome.status == "maybe_executed"
        assert isinstance(outcome.error, resilient_mcp.RequestTimeout)

    @pytest.mark.anyio
    async def test_an_unreachable_server_is_not_executed_and_tried_again_later(self) -> None:
        url = closed_port_url()
        timeouts = resilient_mcp.Timeouts(connect=1)
        with anyio.fail_after(LIMIT_S):
            with pytest.raises(resilient_mcp.ConnectError):
                async with Toolbox(url, timeouts=timeouts):  # entering connects
                    pass
            box = Toolbox(url, timeouts=timeouts)  # else it connects on first use
            first = await box.call("echo", {"text": "x"}, timeout=2)
            second = await box.call("echo", {"text": "x"}, timeout=2)
            await box.aclose()
        for outcome in (first, second):
            assert outcome.status == "not_executed"
            assert isinstance(outcome.error, resilient_mcp.ConnectError)
            assert "did not run" in outcome.message

    def test_an_output_schema_breach_is_a_tool_error_with_its_result(self) -> None:
        result = CallToolResult(content=[TextContent(text="{}")], structuredContent={})
        error = resilient_mcp.ToolOutputError("breaks its outputSchema: sum", result=result)
        outcome = ToolOutcome.of_error("add", error)
        assert (outcome.status, outcome.structured, outcome.text) == ("tool_error", {}, "{}")
        assert "breaks its outputSchema" in outcome.message

    def test_an_executed_but_unreadable_result_is_terminal(self) -> None:
        error = resilient_mcp.MalformedMessage(
            "invalid tools/call result", execution=resilient_mcp.Execution.EXECUTED
        )
        assert ToolOutcome.of_error("increment", error).terminal

    def test_structured_only_results_show_the_model_json(self) -> None:
        result = CallToolResult(structuredContent={"sum": 5})
        assert ToolOutcome.of_result("add", result).message == '{"sum": 5}'


class TestContentParts:
    def test_every_block_kind_is_converted_once(self) -> None:
        png = b"\x89PNG\r\n"
        blocks: list[ContentBlock] = [
            TextContent(text="t"),
            ImageContent(data=base64.b64encode(png).decode(), mimeType="image/png"),
            EmbeddedResource(resource=TextResourceContents(uri="file:///a", text="body")),
            EmbeddedResource(
                resource=BlobResourceContents(uri="file:///b", blob=base64.b64encode(b"x").decode())
            ),
            ResourceLink(uri="file:///c", name="c", description="a file"),
            UnknownContent.model_validate({"type": "hologram", "x": 1}),
            ImageContent(data="not base64!", mimeType="image/png"),
        ]
        parts = [ContentPart.of(block) for block in blocks]
        assert [part.kind for part in parts] == [
            "text",
            "image",
            "resource",
            "resource",
            "link",
            "unknown",
            "unknown",
        ]
        assert parts[1].data == png
        assert parts[1].base64 == base64.b64encode(png).decode()
        assert parts[3].base64 == base64.b64encode(b"x").decode()
        assert parts[0].base64 is None
        assert parts[1].mime_type == "image/png"
        assert (parts[2].text, parts[2].uri) == ("body", "file:///a")
        assert parts[3].data == b"x"
        assert (parts[4].name, parts[4].uri, parts[4].text) == ("c", "file:///c", "a file")
        assert parts[5].block is blocks[5]
        outcome = ToolOutcome.of_result("t", CallToolResult(content=blocks))
        assert outcome.text == "t"
        assert "[image image/png, 6 bytes]" in outcome.message
        assert "[link c: file:///c] a file" in outcome.message


class TestOwnership:
    @pytest.mark.anyio
    async def test_a_given_client_is_never_closed(self) -> None:
        with anyio.fail_after(LIMIT_S):
            async with serve(StrictServer()) as running, resilient_mcp.connect(running.url) as c:
                async with Toolbox(c) as box:
                    assert not box.owns_client
                    assert (await box.call("echo", {"text": "a"})).ok
                assert (await c.call_tool("echo", {"text": "b"})).text == "b"

    @pytest.mark.anyio
    async def test_an_owned_client_is_closed_with_the_toolbox(self) -> None:
        with anyio.fail_after(LIMIT_S):
            async with serve(StrictServer()) as running:
                box = Toolbox(running.url)
                assert box.owns_client
                assert (await box.call("echo", {"text": "a"})).ok
                await box.aclose()
                with pytest.raises(resilient_mcp.ClientClosed):
                    await box.call("echo", {"text": "a"})
                with pytest.raises(resilient_mcp.ClientClosed):
                    await box.specs()

    def test_options_with_a_client_are_refused(self) -> None:
        client = resilient_mcp.connect("http://127.0.0.1:9/mcp")
        with pytest.raises(resilient_mcp.UsageError):
            Toolbox(client, timeouts=resilient_mcp.Timeouts())


@pytest.mark.anyio
@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_meta_is_sent_as_the_requests_meta_beside_the_clients_own(
    era: Literal["legacy", "modern"],
) -> None:
    sent: list[dict[str, Any]] = []

    async def capture(request: httpx.Request) -> None:
        if request.method == "POST":
            body = json.loads(request.content)
            if body.get("method") == "tools/call":
                sent.append(body["params"])

    async def on_progress(update: Progress) -> None:
        pass

    trace = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    async with (
        serve(StrictServer(era=era)) as running,
        httpx.AsyncClient(event_hooks={"request": [capture]}) as http,
        resilient_mcp.connect(resilient_mcp.HTTPServer(running.url, http_client=http)) as client,
    ):
        outcome = await Toolbox(client).call("echo", {"text": "x"}, meta=trace)
        result = await client.call_tool("echo", {"text": "y"}, meta=trace, progress=on_progress)
    assert outcome.ok
    assert not result.isError
    assert [params["_meta"]["traceparent"] for params in sent] == [trace["traceparent"]] * 2
    assert "progressToken" in sent[1]["_meta"]  # the client's own key, merged in
