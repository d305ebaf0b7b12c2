"""LangChain / LangGraph tools from an MCP server: :func:`load_tools`, :class:`ResilientMCPToolkit`.

Every tool is a :class:`~langchain_core.tools.StructuredTool` (``MCPStructuredTool``)
with the server's name, description and ``inputSchema`` (a dict, passed through as
``args_schema``) and ``response_format="content_and_artifact"``, as LangChain's own MCP
adapters make them: invoked with a ``ToolCall`` it returns a ``ToolMessage`` whose
content is LangChain content blocks and whose artifact is an :class:`MCPToolArtifact`.

Outcomes (:class:`resilient_mcp.ToolOutcome`) map to LangChain's tool-error path: the
tool raises :class:`MCPToolException` (a ``ToolException``) and, with
``handle_tool_error=True``, LangChain turns it into ``ToolMessage(status="error")``
with the text for the model. A call that may have run raises
:class:`ToolEffectUnknown` and its message's artifact says ``terminal``, so a LangGraph
graph can stop (:func:`is_terminal`) instead of letting the model call it again.

LangChain runs its callbacks with ``asyncio.gather``, so these tools run on asyncio only.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Collection, Mapping
from types import TracebackType
from typing import Any, Self, TypedDict

from langchain_core.messages import ToolMessage
from langchain_core.messages.content import (
    FileContentBlock,
    ImageContentBlock,
    TextContentBlock,
    create_file_block,
    create_image_block,
    create_text_block,
)
from langchain_core.tools import BaseTool, BaseToolkit, StructuredTool, ToolException
from pydantic import ConfigDict, PrivateAttr

from .._api import Timeout
from .._config import USE_CLIENT_DEFAULT
from .._exceptions import Execution, MCPError, UsageError
from .._options import ClientOptions, Unpack
from .._outcome import ContentPart, ToolOutcome, ToolStatus
from .._toolbox import Target, Toolbox, ToolSource, ToolSpec

__all__ = [
    "MCPStructuredTool",
    "MCPToolArtifact",
    "MCPToolException",
    "ResilientMCPToolkit",
    "ToolEffectUnknown",
    "ToolFilter",
    "is_terminal",
    "load_tools",
]

ToolFilter = Callable[[ToolSpec], bool] | Collection[str]
"""Which tools to load: a predicate on the spec, or a collection of tool names."""

ContentBlock = TextContentBlock | ImageContentBlock | FileContentBlock


class MCPToolArtifact(TypedDict):
    """The artifact of every ``ToolMessage`` these tools produce (never sent to the model).

    Attributes:
        structured_content: the result's ``structuredContent``, or None.
        status: the :class:`resilient_mcp.ToolOutcome` status (``"ok"``,
            ``"tool_error"``, ``"not_executed"``, ``"maybe_executed"``).
        terminal: true when the call may have run and its effect is unknown: stop,
            do not let the model call the tool again.
    """

    structured_content: Any
    status: ToolStatus
    terminal: bool


class MCPToolException(ToolException, MCPError):
    """A tool call that did not succeed: the server's ``isError`` (``status ==
    "tool_error"``, its text as the message) or a call that certainly did not run
    (``"not_executed"``). It is LangChain's ``ToolException`` and a
    :class:`resilient_mcp.MCPError`.

    Attributes:
        outcome: the outcome of the call.
        status: its status.
        error: the typed error behind it (None for the server's ``isError``).
    """

    def __init__(self, outcome: ToolOutcome) -> None:
        if outcome.status == "not_executed":
            execution = Execution.NOT_EXECUTED
        elif outcome.error is not None and outcome.status == "maybe_executed":
            execution = outcome.error.execution
        else:
            execution = Execution.EXECUTED
        MCPError.__init__(self, outcome.message, method="tools/call", execution=execution)
        self.outcome = outcome
        self.status: ToolStatus = outcome.status
        self.error = outcome.error


class ToolEffectUnknown(MCPToolException):
    """The call may have run and no usable answer came back (``"maybe_executed"``):
    its effect is unknown and it must not be repeated. The message says so and never
    invites a retry; the ``ToolMessage`` artifact has ``terminal=True``."""


def is_terminal(message: object) -> bool:
    """Whether ``message`` is a ``ToolMessage`` of a call whose effect is unknown:
    the point where a graph should stop rather than give the model another turn at it.
    Never raises."""
    if not isinstance(message, ToolMessage):
        return False
    artifact = message.artifact
    return isinstance(artifact, Mapping) and artifact.get("terminal") is True


# The artifact of a failed call, handed from the tool's coroutine to its ``arun``: the
# coroutine runs in a copy of arun's context, so a mutable holder carries it back.
_FAILED: contextvars.ContextVar[list[MCPToolArtifact] | None] = contextvars.ContextVar(
    "resilient_mcp_langchain_failed", default=None
)


class MCPStructuredTool(StructuredTool):
    """A ``StructuredTool`` for one MCP tool: its error ``ToolMessage`` keeps the
    :class:`MCPToolArtifact` that LangChain's error path would otherwise drop."""

    async def arun(self, tool_input: str | dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        """Run the tool (see ``BaseTool.arun``).

        Raises:
            MCPToolException: only when ``handle_tool_error`` was turned off.
            UsageError: a closed client (``ClientClosed``), or a programming error.
        """
        holder: list[MCPToolArtifact] = []
        token = _FAILED.set(holder)
        try:
            output = await super().arun(tool_input, *args, **kwargs)
        finally:
            _FAILED.reset(token)
        failed = isinstance(output, ToolMessage) and output.status == "error"
        if failed and holder and output.artifact is None:
            output.artifact = holder[-1]
        return output


def _artifact(outcome: ToolOutcome) -> MCPToolArtifact:
    return MCPToolArtifact(
        structured_content=outcome.structured,
        status=outcome.status,
        terminal=outcome.terminal,
    )


def _block(part: ContentPart) -> ContentBlock:
    # As LangChain's MCP adapters do: images and blobs as base64 data blocks (files when
    # not images), links as URL blocks. Audio has no tool-message block type in
    # langchain-core, so it travels as a file block with its MIME type.
    mime = part.mime_type or None
    if part.kind == "text":
        return create_text_block(part.text or "")
    data = part.base64
    if part.kind in ("image", "audio", "resource") and data is not None:
        if part.kind == "image" or (mime or "").startswith("image/"):
            return create_image_block(base64=data, mime_type=mime or "image/png")
        return create_file_block(base64=data, mime_type=mime or "application/octet-stream")
    if part.kind == "resource" and part.text is not None:
        return create_text_block(part.text)
    if part.kind == "link" and part.uri:
        if (mime or "").startswith("image/"):
            return create_image_block(url=part.uri, mime_type=mime)
        return create_file_block(url=part.uri, mime_type=mime)
    return create_text_block(part.describe())


def _content(outcome: ToolOutcome) -> list[ContentBlock]:
    blocks = [_block(part) for part in outcome.parts]
    if not blocks and outcome.message:
        blocks.append(create_text_block(outcome.message))  # structured content as JSON
    return blocks


def _metadata(spec: ToolSpec) -> dict[str, Any] | None:
    metadata: dict[str, Any] = {}
    if spec.annotations is not None:
        metadata.update(spec.annotations.model_dump(exclude_none=True))
    if spec.meta is not None:
        metadata["_meta"] = dict(spec.meta)
    if spec.server is not None:
        metadata["server"] = spec.server
    return metadata or None


def _tool(box: Toolbox, spec: ToolSpec, timeout: Timeout) -> MCPStructuredTool:
    name = spec.name

    async def call(**arguments: Any) -> tuple[list[ContentBlock], MCPToolArtifact]:
        outcome = await box.call(name, arguments, timeout=timeout)
        artifact = _artifact(outcome)
        if outcome.ok:
            return _content(outcome), artifact
        holder = _FAILED.get()
        if holder is not None:
            holder.append(artifact)
        if outcome.terminal:
            raise ToolEffectUnknown(outcome)
        raise MCPToolException(outcome)

    return MCPStructuredTool(
        name=name,
        description=spec.description,
        args_schema=dict(spec.input_schema),
        coroutine=call,
        response_format="content_and_artifact",
        handle_tool_error=True,
        metadata=_metadata(spec),
    )


def _accepts(tool_filter: ToolFilter | None) -> Callable[[ToolSpec], bool]:
    if tool_filter is None:
        return lambda spec: True
    if callable(tool_filter):
        return tool_filter
    if isinstance(tool_filter, str):
        raise UsageError("tool_filter is a collection of names, not one name")
    names = frozenset(tool_filter)
    return lambda spec: spec.name in names


def _toolbox(source: ToolSource | Toolbox) -> Toolbox:
    if isinstance(source, Toolbox):
        return source
    if isinstance(source, ToolSource):
        return Toolbox(source)
    raise UsageError(
        "load_tools() takes a connected client, a client group or a Toolbox; "
        "for a target it should own, use `async with ResilientMCPToolkit(target)`"
    )


class _Loader:
    """Builds the tools of a Toolbox, reusing each tool while its spec is unchanged."""

    def __init__(
        self, box: Toolbox, timeout: Timeout, tool_filter: ToolFilter | None = None
    ) -> None:
        self.box = box
        self.timeout = timeout
        self.accepts = _accepts(tool_filter)
        self.built: dict[str, tuple[ToolSpec, MCPStructuredTool]] = {}

    async def load(self) -> list[BaseTool]:
        tools: list[BaseTool] = []
        built: dict[str, tuple[ToolSpec, MCPStructuredTool]] = {}
        for spec in await self.box.specs():
            if not self.accepts(spec):
                continue
            known = self.built.get(spec.name)
            tool = known[1] if known and known[0] == spec else _tool(self.box, spec, self.timeout)
            built[spec.name] = (spec, tool)
            tools.append(tool)
        self.built = built
        return tools


async def load_tools(
    source: ToolSource | Toolbox,
    /,
    *,
    timeout: Timeout = USE_CLIENT_DEFAULT,
    tool_filter: ToolFilter | None = None,
) -> list[BaseTool]:
    """The server's tools as LangChain tools (``MCPStructuredTool``, async only).

    ``source`` is a connected client, a client group or a :class:`~resilient_mcp.Toolbox`;
    it is never closed here. The list is a snapshot: call again (or use
    :meth:`ResilientMCPToolkit.aget_tools`) after the server's tool list changed.

    Args:
        source: where the tools come from.
        timeout: each call's deadline (default: the client's).
        tool_filter: the tools to keep (a predicate on the spec, or names).

    Raises:
        UsageError: a target instead of a client (use :class:`ResilientMCPToolkit`), a
            bad filter; ``ClientClosed`` for a closed client.
        MCPError: the tool list could not be fetched (typed as the failure).
    """
    return await _Loader(_toolbox(source), timeout, tool_filter).load()


class ResilientMCPToolkit(BaseToolkit):
    """The tools of one MCP server (or client group) as a LangChain toolkit.

    Given a connected client, a group or a Toolbox, it never closes it; given a target
    (a URL, a command, an ``mcpServers`` entry, with ``connect()``'s options), it owns
    the client and closes it on exit. Use it as an async context manager, which loads
    the tools::

        async with ResilientMCPToolkit("http://127.0.0.1:8000/mcp") as toolkit:
            tools = toolkit.get_tools()

    :meth:`get_tools` is the list as last loaded; :meth:`aget_tools` reloads it from
    the client's cache (refreshed on ``tools/list_changed``), so calling it before each
    model step shows the model a tool added in between.

    Raises:
        UsageError: (at construction) options given with a client, a bad target or
            filter.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _box: Toolbox = PrivateAttr()
    _loader: _Loader = PrivateAttr()
    _owns_box: bool = PrivateAttr(default=True)
    _tools: list[BaseTool] | None = PrivateAttr(default=None)

    def __init__(
        self,
        source: ToolSource | Toolbox | Target,
        /,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        tool_filter: ToolFilter | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        super().__init__()
        if isinstance(source, Toolbox):
            if options:
                raise UsageError("options are for a target the toolkit connects to itself")
            self._box = source
            self._owns_box = False  # someone else's: never closed here
        else:
            self._box = Toolbox(source, **options)
        self._loader = _Loader(self._box, timeout, tool_filter)

    @property
    def toolbox(self) -> Toolbox:
        """The Toolbox the tools call through."""
        return self._box

    def get_tools(self) -> list[BaseTool]:
        """The tools as last loaded (by entering the toolkit or :meth:`aget_tools`).

        Raises:
            UsageError: they were never loaded.
        """
        if self._tools is None:
            raise UsageError("no tools loaded: `async with` the toolkit or `await aget_tools()`")
        return list(self._tools)

    async def aget_tools(self) -> list[BaseTool]:
        """Reload the tools (from the client's cache, which ``list_changed`` refreshes).

        Raises:
            ClientClosed: the client (or the toolkit) is closed.
            MCPError: the tool list could not be fetched (typed as the failure).
        """
        self._tools = await self._loader.load()
        return list(self._tools)

    async def aclose(self) -> None:
        """Close the client this toolkit made; one given to it (or a Toolbox) stays open."""
        if self._owns_box:
            await self._box.aclose()

    async def __aenter__(self) -> Self:
        try:
            await self.aget_tools()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
