"""The public client: ``async with resilient_mcp.connect(url) as client: ...``."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import anyio
import anyio.abc
import httpx
import pydantic

from . import _schema
from ._config import DEFAULT, Limits, Timeouts, _Default
from ._exceptions import (
    ClientClosed,
    Execution,
    MalformedMessage,
    ToolOutputError,
    UsageError,
)
from ._log import Logger, default_logger, redact_url
from ._retry import RetryPolicy
from ._session import Handlers, ProgressCallback, Session, SessionState, SessionStats
from ._sse_transport import LegacySSETransport
from ._transport import StreamableHTTPTransport
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
    exit the ``async with`` block in the same task. The keyword arguments are those of
    :func:`connect`; ``transport="sse"`` speaks the legacy HTTP+SSE transport
    (MCP 2024-11-05) instead of Streamable HTTP.

    Every method raises :class:`~resilient_mcp.MCPError` subclasses only; the
    ``Raises`` sections name the ones specific to that method.
    """

    def __init__(
        self,
        url: str,
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
        transport: Literal["streamable-http", "sse"] = "streamable-http",
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"unsupported URL {redact_url(url)!r}: expected http:// or https://")
        self._url = url
        self._timeouts = timeouts or Timeouts()
        self._limits = limits or Limits()
        self._wait_ready = wait_ready
        base_log = logger if logger is not None else default_logger()
        self._log = base_log.bind(url=redact_url(url))
        if transport not in ("streamable-http", "sse"):
            raise UsageError(
                f"unknown transport {transport!r}: expected 'streamable-http' or 'sse'"
            )
        transport_class = LegacySSETransport if transport == "sse" else StreamableHTTPTransport
        wire = transport_class(
            url,
            headers=headers,
            auth=auth,
            http_client=http_client,
            timeouts=self._timeouts,
            limits=self._limits,
            logger=self._log,
        )
        self._session = Session(
            wire,
            timeouts=self._timeouts,
            limits=self._limits,
            handlers=handlers or Handlers(),
            client_info=client_info or Implementation(name="resilient-mcp", version=_VERSION),
            logger=self._log,
            retry=retry,
        )
        self._session.add_notification_listener(self._on_notification)
        self._state = _ClientState.UNOPENED
        self._task_group: anyio.abc.TaskGroup | None = None
        self._tools: dict[str, Tool] | None = None
        self._tools_version = 0
        self._tools_lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"<Client {redact_url(self._url)} {self._session!r}>"

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
        """The server's name and version (None before the handshake completed)."""
        init = self._session.initialize_result
        return init.serverInfo if init else None

    @property
    def capabilities(self) -> ServerCapabilities | None:
        """What the server offers (None before the handshake completed)."""
        init = self._session.initialize_result
        return init.capabilities if init else None

    @property
    def instructions(self) -> str | None:
        """The server's usage instructions for the model, if it sent any."""
        init = self._session.initialize_result
        return init.instructions if init else None

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
            if version == self._tools_version:
                # Only cache if no list_changed arrived while we were fetching.
                self._tools = {tool.name: tool for tool in tools}
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
        result = await self._typed(
            CallToolResult,
            "tools/call",
            params,
            timeout,
            progress,
            retry=retry,
            idempotent=idempotent,
        )
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
        """Ask the server to send log messages of ``level`` and above."""
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
    url: str,
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
    transport: Literal["streamable-http", "sse"] = "streamable-http",
) -> Client:
    """Connect to the MCP server at ``url`` (use as ``async with``).

    Args:
        url: the server's Streamable HTTP endpoint.
        headers: extra HTTP headers for every request (never logged).
        auth: an ``httpx.Auth`` for every request.
        http_client: an ``httpx.AsyncClient`` to share (connection pool, proxies, TLS);
            the client never closes one it did not create.
        timeouts: see :class:`Timeouts`.
        limits: see :class:`Limits`.
        handlers: callbacks for server requests and notifications; see :class:`Handlers`.
        client_info: the ``clientInfo`` sent in ``initialize``.
        wait_ready: if true (default) entering the block waits for the handshake and
            raises its failure; if false it returns at once and calls wait in the gate.
        logger: a structlog logger to use instead of the ``resilient_mcp`` stdlib logger.
        retry: how failed requests are retried (only when safe); see :class:`RetryPolicy`.
        transport: the wire protocol. ``"streamable-http"`` (default) for servers of
            MCP 2025-03-26 and later; ``"sse"`` for the legacy HTTP+SSE transport of
            MCP 2024-11-05 (``url`` is then the SSE endpoint, e.g. ``.../sse``: one GET
            stream per session, messages POSTed to the URL its ``endpoint`` event
            names). There is no automatic detection: pick the one the server speaks.

    Returns:
        A :class:`Client`, to be entered with ``async with``.

    Raises:
        UsageError: on an unsupported URL (at once). On entering the block:
        ConnectError, HandshakeError, UnsupportedProtocolVersion, RequestTimeout, ...
    """
    return Client(
        url,
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
    )
