"""OpenTelemetry (resilient_mcp.otel): a span per call, following the MCP semantic
conventions, with retries and renewed sessions as events, the trace context in
``params._meta`` as the server receives it, and the duration histogram.

Against the fault server, with the default RetryPolicy, on asyncio and trio.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import resilient_mcp
from resilient_mcp.otel import DURATION_BUCKETS, OpenTelemetry
from resilient_mcp.testing import Chaos, StrictServer, serve

pytestmark = pytest.mark.anyio


class Telemetry:
    """An OpenTelemetry of its own (no global provider), with in-memory readers."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metrics])
        self.option = OpenTelemetry(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def durations(self) -> list[HistogramDataPoint]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        points: list[HistogramDataPoint] = []
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == "mcp.client.operation.duration":
                        assert metric.unit == "s"
                        points.extend(p for p in metric.data.data_points)  # type: ignore[misc]
        return points


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    telemetry = Telemetry()
    yield telemetry
    telemetry.tracer_provider.shutdown()
    telemetry.meter_provider.shutdown()


class RecordingServer(StrictServer):
    """The fault server, noting the ``params._meta`` of every request it receives."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.metas: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def asgi_app(self) -> Any:
        app = super().asgi_app()

        async def recording(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["method"] != "POST":
                await app(scope, receive, send)
                return
            chunks: list[bytes] = []

            async def tap() -> Any:
                message = await receive()
                if message["type"] == "http.request":
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body"):
                        self._note(b"".join(chunks))
                return message

            await app(scope, tap, send)

        return recording

    def _note(self, body: bytes) -> None:
        try:
            message = json.loads(body)
        except ValueError:
            return
        if isinstance(message, dict) and "method" in message and "id" in message:
            meta = (message.get("params") or {}).get("_meta") or {}
            with self._lock:
                self.metas.append((message["method"], dict(meta)))

    def received(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [meta for name, meta in self.metas if name == method]


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def span_id(span: ReadableSpan) -> int:
    context = span.get_span_context()
    assert context is not None
    return context.span_id


def traceparent_of(span: ReadableSpan) -> str:
    """The W3C traceparent naming ``span`` as the parent (its flags aside)."""
    context = span.get_span_context()
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}"


async def test_one_span_per_call_with_the_conventions_attributes(otel: Telemetry) -> None:
    server = RecordingServer()
    async with (
        serve(server) as running,
        resilient_mcp.connect(running.url, telemetry=otel.option) as client,
    ):
        await client.list_tools()
        await client.call_tool("echo", {"text": "hi"})
        await client.get_prompt("greet", {"name": "Ada"})
        await client.read_resource("memo://one")
        await client.ping()
        session, version = client.session_id, client.protocol_version
    spans = otel.finished()
    assert sorted(s.name for s in spans) == [
        "ping",
        "prompts/get greet",
        "resources/read",
        "tools/call echo",
        "tools/list",
    ]
    port = int(running.url.split(":")[2].split("/")[0])
    for span in spans:
        attributes = dict(span.attributes or {})
        assert span.kind is SpanKind.CLIENT
        assert span.status.status_code is StatusCode.UNSET
        assert attributes["mcp.method.name"] == span.name.split(" ")[0]
        assert attributes["mcp.session.id"] == session
        assert attributes["mcp.protocol.version"] == version
        assert attributes["network.transport"] == "tcp"
        assert attributes["network.protocol.name"] == "http"
        assert attributes["server.address"] == "127.0.0.1"
        assert attributes["server.port"] == port
        assert attributes["resilient_mcp.executed"] == "executed"
        assert attributes["resilient_mcp.attempts"] == 1
        assert isinstance(attributes["jsonrpc.request.id"], str)
        assert "error.type" not in attributes
    tool = dict(one(spans, "tools/call echo").attributes or {})
    assert tool["gen_ai.tool.name"] == "echo"
    assert tool["gen_ai.operation.name"] == "execute_tool"
    assert dict(one(spans, "prompts/get greet").attributes or {})["gen_ai.prompt.name"] == "greet"
    read = dict(one(spans, "resources/read").attributes or {})
    assert read["mcp.resource.uri"] == "memo://one"
    assert "gen_ai.operation.name" not in read
    # The server received each span's own trace context in params._meta.
    for method, name in (("tools/call", "tools/call echo"), ("resources/read", "resources/read")):
        (meta,) = server.received(method)
        assert meta["traceparent"].rsplit("-", 1)[0] == traceparent_of(one(spans, name))
    # The histogram: one point per call, without the high-cardinality attributes.
    points = otel.durations()
    assert sorted(str(dict(p.attributes or {})["mcp.method.name"]) for p in points) == [
        "ping",
        "prompts/get",
        "resources/read",
        "tools/call",
        "tools/list",
    ]
    for point in points:
        assert point.count == 1
        assert tuple(point.explicit_bounds) == tuple(map(float, DURATION_BUCKETS))
        assert not {"mcp.session.id", "jsonrpc.request.id", "mcp.resource.uri"} & set(
            dict(point.attributes or {})
        )


async def test_the_callers_span_is_the_parent_and_meta_keys_are_kept(otel: Telemetry) -> None:
    server = RecordingServer()
    tracer = otel.tracer_provider.get_tracer("the-agent")
    async with (
        serve(server) as running,
        resilient_mcp.connect(running.url, telemetry=otel.option) as client,
    ):
        with tracer.start_as_current_span("agent step") as outer:
            await client.call_tool("echo", {"text": "hi"}, meta={"app/key": "kept"})
        assert trace.get_current_span() is not outer  # the call's span was detached
    call = one(otel.finished(), "tools/call echo")
    assert call.parent is not None
    assert call.parent.span_id == outer.get_span_context().span_id
    (meta,) = server.received("tools/call")
    assert meta["app/key"] == "kept"
    assert meta["traceparent"].rsplit("-", 1)[0] == traceparent_of(call)


async def test_the_modern_era_carries_trace_context_beside_its_envelope(otel: Telemetry) -> None:
    server = RecordingServer(era="modern")
    async with (
        serve(server) as running,
        resilient_mcp.connect(running.url, telemetry=otel.option) as client,
    ):
        await client.call_tool("echo", {"text": "hi"})
        assert client.era == "modern"
        version = client.protocol_version
    call = one(otel.finished(), "tools/call echo")
    attributes = dict(call.attributes or {})
    assert attributes["mcp.protocol.version"] == version
    assert "mcp.session.id" not in attributes  # the modern era has no sessions
    (meta,) = server.received("tools/call")
    assert meta["traceparent"].rsplit("-", 1)[0] == traceparent_of(call)
    assert meta["io.modelcontextprotocol/protocolVersion"] == version


async def test_a_503_is_a_retry_event_on_the_calls_one_span(otel: Telemetry) -> None:
    # Seeded: some POSTs are refused with a 503 (Retry-After: 0, then the default
    # backoff); every refused ping is retried on the same span. (era="legacy": the
    # modern probe meeting the refusals is not what this test is about.)
    chaos = Chaos(seed=3, reject_rate=0.3, reject_status=503, retry_after=0)
    async with (
        serve(StrictServer(chaos=chaos)) as running,
        resilient_mcp.connect(running.url, telemetry=otel.option, era="legacy") as client,
    ):
        for _ in range(6):
            await client.ping()
        retries = client.stats.retries
    spans = otel.finished()
    assert [s.name for s in spans] == ["ping"] * 6, "one span per call, whatever it took"
    events = [e for s in spans for e in s.events if e.name == "resilient_mcp.retry"]
    assert retries > 0, "the chaos really happened"
    assert len(events) == retries
    for span in spans:
        attributes = dict(span.attributes or {})
        retried = [e for e in span.events if e.name == "resilient_mcp.retry"]
        assert attributes["resilient_mcp.attempts"] == len(retried) + 1
        assert span.status.status_code is StatusCode.UNSET
        for number, event in enumerate(retried, start=1):
            attributes = dict(event.attributes or {})
            delay = attributes.pop("resilient_mcp.retry.delay")
            assert isinstance(delay, float)
            assert delay >= 0
            assert attributes == {
                "resilient_mcp.attempt": number,
                "error.type": "ServerUnavailable",
                "resilient_mcp.retry.sent": True,
            }


async def test_an_expired_session_is_a_renew_event(otel: Telemetry) -> None:
    chaos = Chaos(expire_after_requests=1)
    async with (
        serve(StrictServer(chaos=chaos)) as running,
        resilient_mcp.connect(running.url, telemetry=otel.option) as client,
    ):
        first = client.session_id
        await client.call_tool("echo", {"text": "one"})
        await client.call_tool("echo", {"text": "two"})  # the session is gone: renewed
        second = client.session_id
    assert first != second
    spans = otel.finished()
    assert [s.name for s in spans] == ["tools/call echo"] * 2
    renewed = spans[1]
    (event,) = [e for e in renewed.events if e.name == "resilient_mcp.session.renew"]
    assert dict(event.attributes or {}) == {"error.type": "SessionLost"}
    attributes = dict(renewed.attributes or {})
    assert attributes["mcp.session.id"] == second  # the session it ended on
    assert attributes["resilient_mcp.attempts"] == 2
    assert attributes["resilient_mcp.executed"] == "executed"
    assert renewed.status.status_code is StatusCode.UNSET


async def test_failures_are_error_spans_with_error_type(otel: Telemetry) -> None:
    async with (
        serve(StrictServer()) as running,
        resilient_mcp.connect(running.url, telemetry=otel.option) as client,
    ):
        with pytest.raises(resilient_mcp.InvalidParams):
            await client.call_tool("no-such-tool", {})
        result = await client.call_tool("fail", {})
        assert result.isError
        with pytest.raises(resilient_mcp.RequestTimeout):
            await client.call_tool("progress", {"steps": 50, "interval": 1}, timeout=0.2)
    spans = otel.finished()
    refused = dict(one(spans, "tools/call no-such-tool").attributes or {})
    assert refused["error.type"] == "-32602"  # the JSON-RPC code, as the conventions say
    assert refused["rpc.response.status_code"] == "-32602"
    assert refused["resilient_mcp.executed"] == "not_executed"  # refused before running
    assert one(spans, "tools/call no-such-tool").status.status_code is StatusCode.ERROR
    assert one(spans, "tools/call no-such-tool").status.description
    failed = one(spans, "tools/call fail")
    assert dict(failed.attributes or {})["error.type"] == "tool_error"
    assert failed.status.status_code is StatusCode.ERROR
    late = one(spans, "tools/call progress")
    assert dict(late.attributes or {})["error.type"] == "RequestTimeout"
    assert late.status.status_code is StatusCode.ERROR
    errors = sorted(str(dict(p.attributes or {}).get("error.type")) for p in otel.durations())
    assert errors == ["-32602", "RequestTimeout", "tool_error"]


async def test_a_call_of_unknown_fate_is_one_span_with_its_tool_list_inside(
    otel: Telemetry,
) -> None:
    # Every tools/call answer is cut after the tool ran: the fate of `increment` (not
    # idempotent) is unknown. The client fetches the tool list to read its annotations
    # (a request of its own, inside the call's span) and does not re-send it.
    chaos = Chaos(seed=1, drop_rate=1.0)
    async with (
        serve(StrictServer(chaos=chaos)) as running,
        resilient_mcp.connect(running.url, telemetry=otel.option) as client,
    ):
        with pytest.raises(resilient_mcp.FateUnknown):
            await client.call_tool("increment", {"key": "k"})
    spans = otel.finished()
    call = one(spans, "tools/call increment")
    attributes = dict(call.attributes or {})
    assert attributes["error.type"] == "FateUnknown"
    assert attributes["resilient_mcp.executed"] == "maybe"
    assert attributes["resilient_mcp.attempts"] == 1  # at most once
    assert call.status.status_code is StatusCode.ERROR
    listed = one(spans, "tools/list")
    assert listed.parent is not None
    assert listed.parent.span_id == span_id(call)


async def test_a_group_and_a_sync_client_make_the_same_spans(otel: Telemetry) -> None:
    async with serve(StrictServer()) as running:
        async with resilient_mcp.connect_group({"a": running.url}, telemetry=otel.option) as group:
            await group.call_tool("a__echo", {"text": "hi"})

        def sync_call() -> None:
            with resilient_mcp.connect_sync(running.url, telemetry=otel.option) as client:
                client.call_tool("echo", {"text": "hi"})

        await anyio.to_thread.run_sync(sync_call)
    calls = [s for s in otel.finished() if s.name == "tools/call echo"]
    assert len(calls) == 2
    for span in calls:
        attributes = dict(span.attributes or {})
        assert attributes["gen_ai.tool.name"] == "echo"
        assert attributes["mcp.session.id"]
        assert span.kind is SpanKind.CLIENT


async def test_a_sync_call_is_a_child_of_the_calling_threads_span(otel: Telemetry) -> None:
    # The call runs on the client's loop thread; the caller's span must still be its parent
    # (a sync agent framework's step span, say), for a client and a group alike.
    tracer = otel.tracer_provider.get_tracer("the-agent")
    parents: dict[str, int] = {}
    async with serve(StrictServer()) as running:

        def sync_calls() -> None:
            with resilient_mcp.connect_sync(running.url, telemetry=otel.option) as client:
                with tracer.start_as_current_span("client step") as step:
                    parents["client"] = step.get_span_context().span_id
                    client.call_tool("echo", {"text": "hi"})
                client.call_tool("add", {"a": 1, "b": 2})  # no span current: a root
            group = resilient_mcp.connect_group_sync({"a": running.url}, telemetry=otel.option)
            with group, tracer.start_as_current_span("group step") as step:
                parents["group"] = step.get_span_context().span_id
                group.call_tool("a__echo", {"text": "hi"})

        await anyio.to_thread.run_sync(sync_calls)
    echoes = [s for s in otel.finished() if s.name == "tools/call echo"]
    assert sorted(s.parent.span_id for s in echoes if s.parent) == sorted(parents.values())
    assert one(otel.finished(), "tools/call add").parent is None


def test_nothing_of_opentelemetry_is_imported_unless_enabled() -> None:
    script = (
        "import sys, resilient_mcp, resilient_mcp.testing\n"
        "from resilient_mcp.testing import StrictServer, serve\n"
        "with serve(StrictServer()) as running:\n"
        "    with resilient_mcp.connect_sync(running.url) as client:\n"
        "        client.call_tool('echo', {'text': 'hi'})\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', "
        "'resilient_mcp.otel'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_without_the_extra_the_import_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "resilient_mcp.otel")
    with pytest.raises(ImportError, match=r"pip install 'resilient-mcp\[otel\]'"):
        importlib.import_module("resilient_mcp.otel")
