"""OpenTelemetry traces and metrics for every call (the ``otel`` extra).

::

    import resilient_mcp
    from resilient_mcp.otel import OpenTelemetry

    async with resilient_mcp.connect(url, telemetry=OpenTelemetry()) as client:
        await client.call_tool("search", {"q": "otel"})  # one CLIENT span "tools/call search"

Follows the OpenTelemetry semantic conventions for the Model Context Protocol, as of
the GenAI semantic conventions v0.1.0 (``open-telemetry/semantic-conventions-genai``,
``docs/gen-ai/mcp.md``; status Development), for the client side:

- one span per call, kind ``CLIENT``, named ``{mcp.method.name} {target}`` (the tool's
  or the prompt's name when there is one), covering every attempt of the call, as the
  GenAI conventions ask of retried operations; its attributes: ``mcp.method.name``,
  ``jsonrpc.request.id`` (the last attempt's), ``mcp.session.id``,
  ``mcp.protocol.version``, ``gen_ai.tool.name`` and ``gen_ai.operation.name =
  execute_tool`` (``tools/call``), ``gen_ai.prompt.name`` (``prompts/get``),
  ``mcp.resource.uri`` (``resources/read``, ``subscribe``, ``unsubscribe``),
  ``network.transport`` (``tcp``, ``pipe`` for stdio), ``network.protocol.name``
  (``http``), ``server.address``, ``server.port``; on failure ``error.type`` (the
  JSON-RPC error code of an error answer, also in ``rpc.response.status_code``;
  ``tool_error`` for a tool result with ``isError``; else the error's class name, such
  as ``RequestTimeout`` or ``FateUnknown``) and status ``ERROR`` with the error's
  message;
- the trace context injected into the request's ``params._meta`` with the configured
  propagators (W3C ``traceparent``, ``tracestate``, ``baggage``, unprefixed, as
  SEP-414 says), so that the server's span is a child of the client's;
- the histogram ``mcp.client.operation.duration`` (seconds, the conventions' bucket
  boundaries), with the span's attributes but the high-cardinality ones (session,
  request id, resource URI).

Beyond the conventions, in the ``resilient_mcp.`` namespace: span events
``resilient_mcp.retry`` (per backoff: ``resilient_mcp.attempt``, ``error.type``,
``resilient_mcp.retry.delay`` in seconds, ``resilient_mcp.retry.sent``) and
``resilient_mcp.session.renew`` (per abandoned session: ``error.type``); the span
attributes ``resilient_mcp.attempts`` (sends) and ``resilient_mcp.executed``
(``executed``, ``not_executed`` or ``maybe``: whether the server acted on the request,
:class:`~resilient_mcp.Execution`).

Only ``opentelemetry-api`` is needed; the application installs and configures the SDK.
"""

from __future__ import annotations

import timeit
from collections.abc import Mapping
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, propagate, trace
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
except ImportError as exc:
    raise ImportError(
        "resilient_mcp.otel needs the otel extra: pip install 'resilient-mcp[otel]'"
    ) from exc

import contextlib
from collections.abc import Callable, Iterator

from ._exceptions import MCPError, ServerError
from ._telemetry import CallObserver, ClientFacts, Observer, Telemetry, register_carrier

__all__ = ["DURATION_BUCKETS", "OpenTelemetry"]

# The conventions' ExplicitBucketBoundaries for mcp.client.operation.duration (seconds).
DURATION_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)

_SCOPE = "resilient_mcp"
_URI_METHODS = frozenset({"resources/read", "resources/subscribe", "resources/unsubscribe"})
# Span attributes left out of the metric: high cardinality (the conventions' list).
_SPAN_ONLY = ("mcp.session.id", "jsonrpc.request.id", "mcp.resource.uri")

try:
    from importlib.metadata import version as _dist_version

    _VERSION = _dist_version("resilient-mcp")
except Exception:  # not installed (running from a source tree)
    _VERSION = "0.0.0"


def _capture() -> Callable[[], contextlib.AbstractContextManager[None]]:
    """The calling thread's OpenTelemetry context, to attach on a sync client's loop
    thread for the call. Recent anyio portals run a task in a copy of the caller's
    context variables already; this keeps a sync call's span the child of its caller's
    with every anyio we accept (>= 4.5), and carries only OpenTelemetry's context."""
    captured = otel_context.get_current()

    @contextlib.contextmanager
    def attached() -> Iterator[None]:
        token = otel_context.attach(captured)
        try:
            yield
        finally:
            otel_context.detach(token)

    return attached


# Imported means wanted: sync clients carry their caller's context from now on.
register_carrier(_capture)


class OpenTelemetry(Telemetry):
    """Traces and metrics of every call, for ``connect(..., telemetry=OpenTelemetry())``.

    Args:
        tracer_provider: where spans go (default: the global one, as set by the
            OpenTelemetry SDK or ``opentelemetry-instrument``).
        meter_provider: where the duration histogram goes (default: the global one).

    One instance may serve many clients (a :class:`~resilient_mcp.ClientGroup`'s
    members, say); each client binds its own observer.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(_SCOPE, _VERSION, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, _VERSION, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "mcp.client.operation.duration",
            unit="s",
            description=(
                "The duration of the MCP request or notification as observed on the sender "
                "from the time it was sent until the response or ack is received."
            ),
            explicit_bucket_boundaries_advisory=list(map(float, DURATION_BUCKETS)),
        )

    def __repr__(self) -> str:
        return "OpenTelemetry()"

    def bind(self, facts: ClientFacts) -> Observer:
        """The observer of one client."""
        return _Observer(self._tracer, self._duration, facts)


class _Observer:
    def __init__(self, tracer: trace.Tracer, duration: metrics.Histogram, facts: ClientFacts):
        self._tracer = tracer
        self._duration = duration
        self._facts = facts
        self._static: dict[str, Any] = {}
        if facts.server_address is not None:
            self._static["server.address"] = facts.server_address
        if facts.server_port is not None:
            self._static["server.port"] = facts.server_port

    def start(self, method: str, params: Mapping[str, Any] | None) -> CallObserver:
        return _Call(self, method, params)


class _Call:
    """One call's span, from its start to its end."""

    def __init__(self, owner: _Observer, method: str, params: Mapping[str, Any] | None):
        self._owner = owner
        self._attempts = 0
        self._started = timeit.default_timer()
        attributes: dict[str, Any] = {"mcp.method.name": method, **owner._static}
        name = method
        target = (params or {}).get("name")
        if method == "tools/call" and isinstance(target, str):
            attributes["gen_ai.tool.name"] = target
            attributes["gen_ai.operation.name"] = "execute_tool"
            name = f"{method} {target}"
        elif method == "prompts/get" and isinstance(target, str):
            attributes["gen_ai.prompt.name"] = target
            name = f"{method} {target}"
        uri = (params or {}).get("uri")
        if method in _URI_METHODS and isinstance(uri, str):
            attributes["mcp.resource.uri"] = uri
        self._attributes = attributes
        self._given = frozenset(attributes)  # on the span already: not set (cleaned) twice
        self._span = owner._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        # Current while the call runs: the spans of what it does (an HTTP client's, the
        # tool list a call of unknown fate fetches) are its children.
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        self._params: Mapping[str, Any] | None = params
        if carrier:
            given = (params or {}).get("_meta")
            meta = {**given, **carrier} if isinstance(given, Mapping) else carrier
            self._params = {**(params or {}), "_meta": meta}

    @property
    def params(self) -> Mapping[str, Any] | None:
        return self._params

    def sent(self, request_id: int | str) -> None:
        self._attempts += 1
        self._attributes["jsonrpc.request.id"] = str(request_id)

    def retry(self, attempt: int, error: MCPError, delay: float, *, sent: bool) -> None:
        self._span.add_event(
            "resilient_mcp.retry",
            {
                "resilient_mcp.attempt": attempt,
                "error.type": _error_type(error),
                "resilient_mcp.retry.delay": delay,
                "resilient_mcp.retry.sent": sent,
            },
        )

    def renew(self, error: MCPError) -> None:
        self._span.add_event("resilient_mcp.session.renew", {"error.type": _error_type(error)})

    def end(self, result: Any) -> None:
        failed = getattr(result, "isError", None) is True or (
            isinstance(result, Mapping) and result.get("isError") is True
        )
        if failed:
            self._attributes["error.type"] = "tool_error"
        self._finish("executed", "the tool reported an error" if failed else None)

    def fail(self, error: BaseException) -> None:
        executed: str | None = None
        if isinstance(error, MCPError):
            executed = error.execution.value
            if isinstance(error, ServerError):
                self._attributes["rpc.response.status_code"] = str(error.code)
        self._attributes["error.type"] = _error_type(error)
        # (An error answer's message is the JSON-RPC message, as the conventions ask.)
        message = error.message if isinstance(error, MCPError) else type(error).__qualname__
        self._finish(executed, message)

    def _finish(self, executed: str | None, error: str | None) -> None:
        facts = self._owner._facts
        attributes = self._attributes
        transport = facts.transport()
        attributes["network.transport"] = "pipe" if transport == "stdio" else "tcp"
        if transport != "stdio":
            attributes["network.protocol.name"] = "http"
        version = facts.protocol_version()
        if version is not None:
            attributes["mcp.protocol.version"] = version
        session = facts.session_id()
        if session is not None:
            attributes["mcp.session.id"] = session
        span = self._span
        late = {k: v for k, v in attributes.items() if k not in self._given}
        late["resilient_mcp.attempts"] = self._attempts
        if executed is not None:
            late["resilient_mcp.executed"] = executed
        span.set_attributes(late)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        metric = {k: v for k, v in attributes.items() if k not in _SPAN_ONLY}
        self._owner._duration.record(timeit.default_timer() - self._started, metric)
        span.end()
        otel_context.detach(self._token)


def _error_type(error: BaseException) -> str:
    """``error.type``: the JSON-RPC code of an error answer, else the class name."""
    if isinstance(error, ServerError):
        return str(error.code)
    return type(error).__qualname__
