"""The public client: ``async with resilient_mcp.connect(url) as client: ...``."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar, get_args

import anyio
import anyio.abc
import httpx
import pydantic

from . import _detect, _schema
from ._config import DEFAULT, Limits, Timeouts, _Default
from ._exceptions import (
    ClientClosed,
    Execution,
    MalformedMessage,
    ServerError,
    ToolOutputError,
    UsageError,
)
from ._headers import ParamHeader, param_header_specs
from ._log import Logger, default_logger
from ._retry import RetryPolicy
from ._session import Era, EraMode, Handlers, ProgressCallback, Session, SessionState, SessionStats
from ._sse_transport import LegacySSETransport
from ._stdio_transport import StdioServer, StdioTransport
from ._target import TransportName, resolve_target
from ._transport import HTTPTransportBase, StreamableHTTPTransport, Transport
from .types import (
    CallToolResult,
    CompleteResult,
    GetPromptResult,
    Implementation,
    LoggingLevel,
    Prompt,
    PromptReference,
    ReadResourceResult,
    Resource,
    ResourceTemplate,
    ResourceTemplateReference,
    ServerCapabilities,
    Tool,
)

__all__ = ["Client", "connect"]

_Model = TypeVar("_Model", bound=pydantic.BaseModel)

# A server that never ends its pagination must not spin us for ever.
_MAX_PAGES = 10_000
# 2026-07-28: a routing header (Mcp-Name, Mcp-Param-*) disagreed with the body.
_HEADER_MISMATCH = -32020

try:
    from importlib.metadata import version as _dist_version

    _VERSION = _dist_version("resilient-mcp")
except Exception:  # not installed (running from a source tree)
    _VERSION = "0.0.0"


class _ClientState(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class Client:
    """An MCP client bound to one server. Safe to share between tasks.

    Create it with :func:`connect`. Calls may be made from any task; a call made before
    the session is ready waits for it (see ``wait_ready`` on :func:`connect`). Enter and
    exit the ``async with`` block in the same task. The arguments are those of
    :func:`connect`.

    Every method raises :class:`~resilient_mcp.MCPError` subclasses only; the
    ``Raises`` sections name the ones specific to that method.
    """

    def __init__(
        self,
        target: str | Sequence[str] | StdioServer | Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        http_client: httpx.AsyncClient | None = None,
        timeouts: Timeouts | None = None,
        limits: Limits | None = None,
        handlers: Handlers | None = None,
        client_info: Implementation | None = None,
        wait_ready: bool = True,
        logger: Logger | None = None,
        retry: RetryPolicy | None = None,
        transport: TransportName = "auto",
        era: EraMode = "auto",
    ) -> None:
        resolved = resolve_target(target, transport, headers)
        if era not in ("auto", "modern", "legacy"):
            raise UsageError(f"unknown era {era!r}: expected 'auto', 'modern' or 'legacy'")
        self._target = resolved
        self._timeouts = timeouts or Timeouts()
        self._limits = limits or Limits()
        self._wait_ready = wait_ready
        base_log = logger if logger is not None else default_logger()
        where = resolved.describe()
        self._log = base_log.bind(**{"url" if resolved.url else "server": where})
        self._auth = auth
        self._http_client = http_client
        wire: Transport
        switch = None
        if resolved.stdio is not None:
            if auth is not None or http_client is not None or headers is not None:
                raise UsageError("headers, auth and http_client apply to HTTP servers only")
            wire = StdioTransport(
                resolved.stdio, timeouts=self._timeouts, limits=self._limits, logger=self._log
            )
        else:
            name = resolved.transport
            if name == "auto":
                # Start where detection ended last time for this endpoint, and let the
                # session switch when the server refuses this transport.
                hint = (
                    _detect.cache.get(_detect.http_key(httpx.URL(resolved.url or "")))
                    if era == "auto"  # a forced era neither reads nor writes detections
                    else None
                )
                name = "sse" if hint is not None and hint.transport == "sse" else "streamable-http"
                switch = self._http_transport
            wire = self._http_transport(name)
        self._session = Session(
            wire,
            timeouts=self._timeouts,
            limits=self._limits,
            handlers=handlers or Handlers(),
            client_info=client_info or Implementation(name="resilient-mcp", version=_VERSION),
            logger=self._log,
            retry=retry,
            era=era,
            switch_transport=switch,
        )
        self._session.add_notification_listener(self._on_notification)
        self._state = _ClientState.UNOPENED
        self._task_group: anyio.abc.TaskGroup | None = None
        self._tools: dict[str, Tool] | None = None
        self._param_specs: dict[str, tuple[ParamHeader, ...]] = {}
        self._tools_version = 0
        self._tools_lock = anyio.Lock()

    def _http_transport(self, name: str) -> HTTPTransportBase:
        target = self._target
        assert target.url is not None
        transport_class = LegacySSETransport if name == "sse" else StreamableHTTPTransport
        wire = transport_class(
            target.url,
            headers=target.headers,
            auth=self._auth,
            http_client=self._http_client,
            timeouts=self._timeouts,
            limits=self._limits,
            logger=self._log,
        )
        wire.tool_param_headers = self._tool_param_headers
        return wire

    def _tool_param_headers(self, name: str) -> tuple[ParamHeader, ...]:
        return self._param_specs.get(name, ())

    def __repr__(self) -> str:
        return f"<Client {self._target.describe()} {self._session!r}>"

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is not _ClientState.UNOPENED:
            raise ClientClosed("a Client can be opened only once; create a new one")
        self._state = _ClientState.OPEN
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            await self._session.start(task_group)
            if self._wait_ready:
                # No deadline of our own: the handshake is bounded by Timeouts.initialize
                # and its error (method "initialize") is the one to raise.
                await self._session.establish()
            else:
                self._session.start_handshake()
        except BaseException as exc:
            await self._shutdown(exc)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown(exc)

    async def _shutdown(self, exc: BaseException | None) -> None:
        self._state = _ClientState.CLOSED
        task_group, self._task_group = self._task_group, None
        if task_group is None:
            return
        try:
            with anyio.CancelScope(shield=True):
                await self._session.aclose()
        finally:
            task_group.cancel_scope.cancel()
            try:
                # The caller's own exception (if any) propagates by itself once we return;
                # handing it to the task group would only wrap it in an ExceptionGroup.
                await task_group.__aexit__(None, None, None)
            except BaseExceptionGroup as group:
                # Background workers are written not to fail; if one did anyway, do not
                # hand the caller a raw ExceptionGroup.
                self._log.error("client.worker_failed", error=repr(group))
                if exc is None:
                    raise ClientClosed("a background task failed while closing") from group

    async def aclose(self) -> None:
        """Close the client from any task: pending calls fail with ``RequestCancelled``."""
        if self._state is not _ClientState.OPEN:
            return
        with anyio.CancelScope(shield=True):
            await self._session.aclose()

    # --- session facts --------------------------------------------------------------------

    @property
    def server_info(self) -> Implementation | None:
        """The server's name and version (None before the handshake completed, or when a
        modern server did not say)."""
        return self._session.server_info

    @property
    def capabilities(self) -> ServerCapabilities | None:
        """What the server offers (None before the handshake completed)."""
        return self._session.server_capabilities

    @property
    def instructions(self) -> str | None:
        """The server's usage instructions for the model, if it sent any."""
        return self._session.instructions

    @property
    def era(self) -> Era | None:
        """``"modern"`` (2026-07-28, no handshake) or ``"legacy"`` (``initialize``
        handshake), as detected or forced; None before the session is ready."""
        return self._session.era

    @property
    def transport(self) -> str:
        """The transport in use: ``"streamable-http"``, ``"sse"`` or ``"stdio"`` (with
        ``transport="auto"``, the one detection settled on)."""
        return self._session.transport.name

    @property
    def protocol_version(self) -> str | None:
        """The negotiated protocol version."""
        return self._session.transport.protocol_version

    @property
    def session_id(self) -> str | None:
        """The ``Mcp-Session-Id`` the server assigned, if it uses sessions."""
        return self._session.transport.session_id

    @property
    def state(self) -> SessionState:
        """The session's state (new, initializing, ready, closing, closed)."""
        return self._session.state

    @property
    def stats(self) -> SessionStats:
        """Counters: requests, handshakes, peak queue, time to ready, dropped messages."""
        return self._session.stats

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the handshake completed (starting it if needed).

        Raises:
            RequestTimeout: not ready within ``timeout`` seconds.
            HandshakeError: the handshake failed (transport errors are raised as such).
        """
        self._check_open()
        deadline = math.inf if timeout is None else anyio.current_time() + timeout
        await self._session.wait_ready(deadline)

    # --- requests -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state is not _ClientState.OPEN:
            raise ClientClosed(
                "the client is not open: use `async with resilient_mcp.connect(url) as client`"
            )

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: float | _Default | None = DEFAULT,
        progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        idempotent: bool = False,
    ) -> Any:
        """Send any JSON-RPC request and return its raw ``result``.

        For methods this client has no helper for. ``timeout`` overrides
        :attr:`Timeouts.request` (``None``: no limit) and bounds every attempt and
        backoff together. ``idempotent=True`` allows re-sending it after a failure that
        leaves its fate unknown (reads are always idempotent).

        Raises:
            FateUnknown: a side-effecting ``tools/call`` may have run; not retried.
            MCPError: the request failed (see the error tree).
        """
        self._check_open()
        return await self._session.request(
            method,
            params,
            timeout=timeout,
            progress=progress,
            retry=retry,
            idempotent=idempotent,
        )

    async def _typed(
        self,
        model: type[_Model],
        method: str,
        params: Mapping[str, Any] | None,
        timeout: float | _Default | None,
        progress: ProgressCallback | None = None,
        *,
        retry: RetryPolicy | None = None,
        idempotent: bool = False,
    ) -> _Model:
        result = await self.request(
            method, params, timeout=timeout, progress=progress, retry=retry, idempotent=idempotent
        )
        try:
            return model.model_validate(result)
        except pydantic.ValidationError as exc:
            raise MalformedMessage(
                f"invalid {method} result: {exc.errors(include_url=False)[:3]}",
                method=method,
                session_id=self.session_id,
                execution=Execution.EXECUTED,
            ) from exc

    async def _paginate(
        self, method: str, key: str, timeout: float | _Default | None
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            page = await self.request(
                method, {"cursor": cursor} if cursor is not None else None, timeout=timeout
            )
            if not isinstance(page, dict) or not isinstance(page.get(key, []), list):
                raise MalformedMessage(
                    f"invalid {method} result", method=method, execution=Execution.EXECUTED
                )
            items.extend(page.get(key, []))
            cursor = page.get("nextCursor")
            if cursor is None:
                return items
            if not isinstance(cursor, str) or cursor in seen:
                raise MalformedMessage(
                    f"{method}: the server repeated or mangled a pagination cursor",
                    method=method,
                    execution=Execution.EXECUTED,
                )
            seen.add(cursor)
        raise MalformedMessage(f"{method}: more than {_MAX_PAGES} pages", method=method)

    def _validate_list(self, model: type[_Model], method: str, items: list[Any]) -> list[_Model]:
        try:
            return [model.model_validate(item) for item in items]
        except pydantic.ValidationError as exc:
            raise MalformedMessage(
                f"invalid {method} result: {exc.errors(include_url=False)[:3]}",
                method=method,
                execution=Execution.EXECUTED,
            ) from exc

    async def list_tools(self, *, timeout: float | _Default | None = DEFAULT) -> list[Tool]:
        """All tools, following every pagination cursor.

        The list is cached and dropped when the server sends
        ``notifications/tools/list_changed``.
        """
        self._check_open()  # a closed client refuses, even with the list cached
        if self._tools is not None:
            return list(self._tools.values())
        # Single flight: a burst of first calls must not fetch the catalog once each.
        async with self._tools_lock:
            if self._tools is not None:
                return list(self._tools.values())
            version = self._tools_version
            raw = await self._paginate("tools/list", "tools", timeout)
            tools = self._validate_list(Tool, "tools/list", raw)
            specs = {tool.name: param_header_specs(tool.inputSchema) for tool in tools}
            if self._session.era == "modern":
                # The spec (2026-07-28): a tool whose x-mcp-header annotations are invalid
                # MUST NOT be offered; a call to it could not be routed as declared.
                for tool in tools:
                    if specs[tool.name] is None:
                        self._log.warning("tool.dropped", tool=tool.name, reason="x-mcp-header")
                tools = [tool for tool in tools if specs[tool.name] is not None]
            if version == self._tools_version:
                # Only cache if no list_changed arrived while we were fetching.
                self._tools = {tool.name: tool for tool in tools}
                self._param_specs = {name: spec or () for name, spec in specs.items()}
                # A cache is only as good as its invalidation: hear list_changed.
                await self._session.listen()
            return tools

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: float | _Default | None = DEFAULT,
        progress: ProgressCallback | None = None,
        idempotent: bool | None = None,
        retry: RetryPolicy | None = None,
    ) -> CallToolResult:
        """Call a tool and return its result (also when the tool reports ``isError``).

        If the tool declares an ``outputSchema`` in the tool list this client fetched
        (:meth:`list_tools`, which agents call first), ``structuredContent`` is validated
        against it. A call never adds a hidden ``tools/list`` round trip.

        At most once: after a failure that leaves unknown whether the tool ran (the
        connection dropped after sending, a 5xx), the call is repeated only if it is
        idempotent: ``idempotent=True``, or (when ``idempotent`` is left ``None``) the
        listed tool is annotated ``readOnlyHint`` or ``idempotentHint``. Failures that
        prove it did not run (not initialized, session lost, refused connection, 429/503)
        are always retried, on a new session if needed.

        Raises:
            InvalidParams: the server refused the name or the arguments (the Python SDK
                reports both as an ``isError`` result instead).
            ToolOutputError: the structured result breaks the tool's output schema.
            FateUnknown: the call may have run and was not repeated.
        """
        params: dict[str, Any] = {"name": name, "arguments": dict(arguments or {})}
        if idempotent is None:
            idempotent = self._annotated_idempotent(name)
        relisted = False
        while True:
            try:
                result = await self._typed(
                    CallToolResult,
                    "tools/call",
                    params,
                    timeout,
                    progress,
                    retry=retry,
                    idempotent=idempotent,
                )
                break
            except ServerError as exc:
                if relisted or exc.code != _HEADER_MISMATCH or self._session.era != "modern":
                    raise
                # -32020 (refused before running): our idea of the tool's header
                # annotations is stale. The spec: list the tools again and retry, once.
                self._log.info("tool.headers_stale", tool=name)
                self._tools = None
                self._tools_version += 1
                await self.list_tools(timeout=timeout)
                relisted = True
        if not result.isError:
            self._check_output(name, result)
        return result

    def _annotated_idempotent(self, name: str) -> bool:
        tool = (self._tools or {}).get(name)
        hints = tool.annotations if tool is not None else None
        return hints is not None and bool(hints.readOnlyHint or hints.idempotentHint)

    def _check_output(self, name: str, result: CallToolResult) -> None:
        tool = (self._tools or {}).get(name)
        if tool is None or tool.outputSchema is None:
            return
        if result.structuredContent is None:
            raise ToolOutputError(
                f"tool {name!r} declares an outputSchema but returned no structuredContent",
                result=result,
                method="tools/call",
                session_id=self.session_id,
            )
        problems = _schema.validate(result.structuredContent, tool.outputSchema)
        if problems:
            raise ToolOutputError(
                f"tool {name!r} returned structuredContent that breaks its outputSchema: "
                + "; ".join(problems),
                result=result,
                method="tools/call",
                session_id=self.session_id,
            )

    async def list_resources(self, *, timeout: float | _Default | None = DEFAULT) -> list[Resource]:
        """All resources, following every pagination cursor."""
        raw = await self._paginate("resources/list", "resources", timeout)
        return self._validate_list(Resource, "resources/list", raw)

    async def list_resource_templates(
        self, *, timeout: float | _Default | None = DEFAULT
    ) -> list[ResourceTemplate]:
        """All resource templates, following every pagination cursor."""
        raw = await self._paginate("resources/templates/list", "resourceTemplates", timeout)
        return self._validate_list(ResourceTemplate, "resources/templates/list", raw)

    async def read_resource(
        self, uri: str, *, timeout: float | _Default | None = DEFAULT
    ) -> ReadResourceResult:
        """Read one resource.

        Raises:
            ResourceNotFound: the server has no resource at ``uri`` (-32002).
            InvalidParams: the same from servers that use -32602 for it (the Python SDK).
        """
        return await self._typed(ReadResourceResult, "resources/read", {"uri": uri}, timeout)

    async def subscribe_resource(
        self, uri: str, *, timeout: float | _Default | None = DEFAULT
    ) -> None:
        """Ask for ``notifications/resources/updated`` about ``uri``.

        Updates arrive on the server's stream, which this opens; receive them with
        ``Handlers(notification=...)``.
        """
        await self.request("resources/subscribe", {"uri": uri}, timeout=timeout)
        await self._session.listen()

    async def unsubscribe_resource(
        self, uri: str, *, timeout: float | _Default | None = DEFAULT
    ) -> None:
        """Stop notifications about ``uri``."""
        await self.request("resources/unsubscribe", {"uri": uri}, timeout=timeout)

    async def list_prompts(self, *, timeout: float | _Default | None = DEFAULT) -> list[Prompt]:
        """All prompts, following every pagination cursor."""
        raw = await self._paginate("prompts/list", "prompts", timeout)
        return self._validate_list(Prompt, "prompts/list", raw)

    async def get_prompt(
        self,
        name: str,
        arguments: Mapping[str, str] | None = None,
        *,
        timeout: float | _Default | None = DEFAULT,
    ) -> GetPromptResult:
        """Render a prompt with its arguments.

        Raises:
            ServerError: unknown prompt or missing required arguments: usually
                ``InvalidParams`` (-32602); the Python SDK answers with code 0.
        """
        params: dict[str, Any] = {"name": name}
        if arguments:
            params["arguments"] = dict(arguments)
        return await self._typed(GetPromptResult, "prompts/get", params, timeout)

    async def complete(
        self,
        ref: PromptReference | ResourceTemplateReference,
        argument: Mapping[str, str],
        *,
        context: Mapping[str, str] | None = None,
        timeout: float | _Default | None = DEFAULT,
    ) -> CompleteResult:
        """Ask for completions of a prompt or resource-template argument.

        ``argument`` is ``{"name": ..., "value": ...}``; ``context`` the values of
        arguments already chosen.
        """
        params: dict[str, Any] = {
            "ref": ref.model_dump(exclude_none=True),
            "argument": dict(argument),
        }
        if context:
            params["context"] = {"arguments": dict(context)}
        return await self._typed(CompleteResult, "completion/complete", params, timeout)

    async def set_logging_level(
        self, level: LoggingLevel, *, timeout: float | _Default | None = DEFAULT
    ) -> None:
        """Ask the server to send log messages of ``level`` and above.

        In the modern era the level travels in every later request's ``_meta`` (there is
        no ``logging/setLevel`` there), so it is checked here rather than by the server.

        Raises:
            UsageError: ``level`` is not one of the eight syslog levels.
        """
        if level not in get_args(LoggingLevel):
            raise UsageError(f"unknown logging level {level!r}: expected {get_args(LoggingLevel)}")
        await self.request("logging/setLevel", {"level": level}, timeout=timeout)

    async def ping(self, *, timeout: float | _Default | None = DEFAULT) -> None:
        """Check that the server answers.

        Raises:
            RequestTimeout: no answer in time (the connection is likely dead).
        """
        await self.request("ping", None, timeout=timeout)

    # --- notifications ------------------------------------------------------------------

    def _on_notification(self, method: str, params: Mapping[str, Any]) -> None:
        if method == "notifications/tools/list_changed":
            self._tools = None
            self._tools_version += 1


def connect(
    target: str | Sequence[str] | StdioServer | Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    auth: httpx.Auth | None = None,
    http_client: httpx.AsyncClient | None = None,
    timeouts: Timeouts | None = None,
    limits: Limits | None = None,
    handlers: Handlers | None = None,
    client_info: Implementation | None = None,
    wait_ready: bool = True,
    logger: Logger | None = None,
    retry: RetryPolicy | None = None,
    transport: TransportName = "auto",
    era: EraMode = "auto",
) -> Client:
    """Connect to an MCP server (use as ``async with``).

    Args:
        target: what to connect to, one of

            - a URL (``"http://127.0.0.1:8000/mcp"``, or a legacy ``.../sse`` endpoint);
            - a command to start as a stdio server: ``["uvx", "my-server"]``, or a
              :class:`StdioServer` for its environment, working directory and restart
              policy;
            - an ``mcpServers`` config entry as written for Claude Desktop, Cursor or
              FastMCP: ``{"command": ..., "args": [...], "env": {...}}`` or
              ``{"url": ..., "headers": {...}, "type": "sse"|"http"}`` (or a whole
              config naming exactly one server).
        headers: extra HTTP headers for every request (never logged).
        auth: an ``httpx.Auth`` for every request.
        http_client: an ``httpx.AsyncClient`` to share (connection pool, proxies, TLS);
            the client never closes one it did not create.
        timeouts: see :class:`Timeouts`.
        limits: see :class:`Limits`.
        handlers: callbacks for server requests and notifications; see :class:`Handlers`.
        client_info: the ``clientInfo`` sent in ``initialize`` (or, in the modern era,
            with every request).
        wait_ready: if true (default) entering the block waits for the session and
            raises its failure; if false it returns at once and calls wait in the gate.
        logger: a structlog logger to use instead of the ``resilient_mcp`` stdlib logger.
        retry: how failed requests are retried (only when safe); see :class:`RetryPolicy`.
        transport: ``"auto"`` (default): a command means stdio; for a URL, Streamable
            HTTP is tried first and the legacy HTTP+SSE transport (MCP 2024-11-05) when
            the server refuses it, as the spec's back-compat rules say. Force one with
            ``"streamable-http"``, ``"sse"`` or ``"stdio"``.
        era: ``"auto"`` (default) probes with ``server/discover`` and speaks the
            handshake-free modern era (2026-07-28) to servers that answer it, the
            ``initialize`` handshake to the rest. ``"legacy"`` skips the probe;
            ``"modern"`` refuses servers that do not speak it. Detection results are
            cached per endpoint, so later clients skip the probes.

    Returns:
        A :class:`Client`, to be entered with ``async with``.

    Raises:
        UsageError: on an unsupported target or contradicting options (at once). On
        entering the block: ConnectError (unreachable, or the command could not be
        started), HandshakeError, UnsupportedProtocolVersion (including era="modern"
        against a legacy server), RequestTimeout, ...
    """
    return Client(
        target,
        headers=headers,
        auth=auth,
        http_client=http_client,
        timeouts=timeouts,
        limits=limits,
        handlers=handlers,
        client_info=client_info,
        wait_ready=wait_ready,
        logger=logger,
        retry=retry,
        transport=transport,
        era=era,
    )
