"""LlamaIndex tools from an MCP server: :class:`ResilientMCPToolSpec`, :class:`MCPTool`.

Every tool is an :class:`MCPTool` (a LlamaIndex ``AsyncBaseTool``): its ``ToolMetadata``
has the server's name and description unchanged, a pydantic ``fn_schema`` built from the
``inputSchema`` (as llama-index-tools-mcp builds one), and ``get_parameters_dict()``
returning the server's schema itself. A call returns a ``ToolOutput``: content blocks,
``is_error``, and ``raw_output`` an :class:`MCPRawOutput` (structured content, outcome).
:class:`ResilientMCPToolSpec` has the shape of ``McpToolSpec`` (``to_tool_list_async()``,
``allowed_tools``); :meth:`~ResilientMCPToolSpec.as_retriever` gives an agent the tools
fresh at every step, so the model sees a tool added by ``tools/list_changed``.

Outcomes, and why: LlamaIndex's agents (``FunctionAgent``, ``AgentWorkflow``, 0.14) turn
whatever a tool raises into an error ``ToolOutput`` and give the model another turn, and
``acall_tool`` (behind ``call_tool_with_selection``) calls a one-argument tool *again*,
with keywords, when the first call raised. An exception is no stop there and could repeat
a side effect, so these tools never raise for what the server or the network did: every
failure is an error ``ToolOutput`` with a text for the model. For a call that may have
run (``maybe_executed``) that text says the effect is unknown and never invites a retry,
and ``raw_output["terminal"]`` is true (:func:`is_terminal`): where an application ends
the run. LlamaIndex's own early stop, ``return_direct``, never applies to an error.

LlamaIndex's agents run on asyncio (its workflows), so these tools are used on asyncio.
"""

from __future__ import annotations

import functools
import keyword
import operator
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Optional, Self, TypedDict

import anyio
import anyio.from_thread
import anyio.lowlevel
from llama_index.core.base.llms.types import (
    AudioBlock,
    ContentBlock,
    DocumentBlock,
    ImageBlock,
    TextBlock,
)
from llama_index.core.objects import ObjectRetriever
from llama_index.core.schema import QueryType
from llama_index.core.tools import AsyncBaseTool, BaseTool, ToolMetadata, ToolOutput
from pydantic import BaseModel, ConfigDict, Field, create_model

from .._api import Timeout
from .._config import USE_CLIENT_DEFAULT
from .._exceptions import ClientClosed, UsageError
from .._options import ClientOptions, Unpack
from .._outcome import ContentPart, ToolOutcome, ToolStatus
from .._toolbox import Target, Toolbox, ToolSource, ToolSpec

__all__ = [
    "MCPRawOutput",
    "MCPTool",
    "MCPToolMetadata",
    "MCPToolRetriever",
    "ResilientMCPToolSpec",
    "is_terminal",
    "output_of",
    "schema_model",
]


class MCPRawOutput(TypedDict):
    """The ``raw_output`` of every ``ToolOutput`` these tools return.

    Attributes:
        structured_content: the result's ``structuredContent``, or None.
        status: the :class:`resilient_mcp.ToolOutcome` status.
        terminal: the call may have run and its effect is unknown: end the run there.
        result: the server's ``CallToolResult`` as JSON (None when it did not answer).
    """

    structured_content: Any
    status: ToolStatus
    terminal: bool
    result: dict[str, Any] | None


def is_terminal(value: object) -> bool:
    """Whether ``value`` (a ``ToolOutput``, or anything with a ``tool_output`` such as
    the agent's ``ToolCallResult`` event) is a call whose effect is unknown: where a run
    should end rather than give the model another turn at it. Never raises."""
    output = getattr(value, "tool_output", value)
    if not isinstance(output, ToolOutput):
        return False
    raw = output.raw_output
    return isinstance(raw, Mapping) and raw.get("terminal") is True


_SCALARS: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list[Any],
    "object": dict[str, Any],
    "null": type(None),
}


def _python_type(schema: object) -> Any:
    # Descriptive only: the server validates arguments against its own schema (the
    # model is shown that schema through get_parameters_dict), so anything this mapping
    # cannot express is Any rather than a guess that would reject valid input.
    if not isinstance(schema, Mapping):
        return Any
    if "enum" in schema and isinstance(schema["enum"], list) and schema["enum"]:
        try:
            return Literal[tuple(schema["enum"])]
        except TypeError:  # unhashable members
            return Any
    kind = schema.get("type")
    if isinstance(kind, list):
        types = [_SCALARS[k] for k in kind if isinstance(k, str) and k in _SCALARS]
        return functools.reduce(operator.or_, types) if len(types) == len(kind) > 0 else Any
    if kind == "array" and isinstance(schema.get("items"), Mapping):
        return list[_python_type(schema["items"])]  # type: ignore[misc]
    return _SCALARS.get(kind, Any) if isinstance(kind, str) else Any


def _field_name(name: str, taken: set[str]) -> str:
    safe = name if name.isidentifier() and not keyword.iskeyword(name) else ""
    if not safe or safe.startswith("_") or hasattr(BaseModel, safe) or safe in taken:
        safe = f"field_{len(taken)}"
        while safe in taken:
            safe += "_"
    taken.add(safe)
    return safe


def schema_model(name: str, schema: Mapping[str, Any]) -> type[BaseModel]:
    """A pydantic model for a tool's ``inputSchema`` (LlamaIndex's ``fn_schema``).

    Each property is a field of its JSON type (``Literal`` for an enum, else ``Any``),
    required as the schema says, with its description; a name that cannot be a field's
    is its alias. Extra arguments are allowed (the server judges its own schema). Never
    raises: what cannot be read becomes ``Any``.
    """
    properties = schema.get("properties")
    required = schema.get("required")
    needed = set(required) if isinstance(required, list) else set()
    fields: dict[str, Any] = {}
    taken: set[str] = set()
    if isinstance(properties, Mapping):
        for prop, sub in properties.items():
            if not isinstance(prop, str):
                continue
            kind = _python_type(sub)
            described = sub.get("description") if isinstance(sub, Mapping) else None
            description = str(described) if described is not None else None
            attr = _field_name(prop, taken)
            alias = prop if attr != prop else None
            if prop in needed:
                fields[attr] = (kind, Field(..., description=description, alias=alias))
            else:
                default = sub.get("default") if isinstance(sub, Mapping) else None
                fields[attr] = (
                    Optional[kind],  # noqa: UP045 - a runtime type object, not an annotation
                    Field(default, description=description, alias=alias),
                )
    config = ConfigDict(extra="allow", populate_by_name=True)
    model: type[BaseModel] = create_model(f"{name}_Schema", __config__=config, **fields)
    return model


@dataclass
class MCPToolMetadata(ToolMetadata):
    """``ToolMetadata`` that shows the model the server's ``inputSchema`` itself.

    Attributes:
        input_schema: the tool's ``inputSchema`` exactly as listed.
        spec: the :class:`resilient_mcp.ToolSpec` (annotations, output schema, ``_meta``).
    """

    input_schema: Mapping[str, Any] = field(default_factory=dict)
    spec: ToolSpec | None = None

    def get_parameters_dict(self) -> dict[str, Any]:
        """The server's ``inputSchema`` (a copy), with ``"properties": {}`` added when it
        has none (the same schema; LlamaIndex's callers index ``properties``)."""
        parameters = dict(self.input_schema)
        parameters.setdefault("properties", {})
        return parameters


def _block(part: ContentPart) -> ContentBlock:
    # As llama-index-tools-mcp maps a result: text as text, images as image blocks; audio
    # and blobs as audio and document blocks; links and the unknown as a short text.
    if part.kind == "text":
        return TextBlock(text=part.text or "")
    mime = part.mime_type or None
    if part.data is not None and part.kind in ("image", "audio", "resource"):
        if part.kind == "image" or (mime or "").startswith("image/"):
            return ImageBlock(image=part.data, image_mimetype=mime)
        if part.kind == "audio":
            audio_format = mime.split("/", 1)[1] if mime and "/" in mime else None
            return AudioBlock(audio=part.data, format=audio_format)
        return DocumentBlock(data=part.data, document_mimetype=mime, title=part.uri)
    return TextBlock(text=part.describe())


def output_of(outcome: ToolOutcome, arguments: Mapping[str, Any]) -> ToolOutput:
    """Map an outcome to a LlamaIndex ``ToolOutput`` (never raises).

    ``ok``: the content as blocks (structured content as JSON text if there is none).
    Otherwise ``is_error=True``, the outcome's message for the model (the server's text;
    "did not run, so nothing changed"; "may or may not have run ... not repeated") and
    ``exception`` the typed error behind it, if any.
    """
    result = outcome.result
    raw = MCPRawOutput(
        structured_content=outcome.structured,
        status=outcome.status,
        terminal=outcome.terminal,
        result=result.model_dump(mode="json", by_alias=True, exclude_none=True)
        if result is not None
        else None,
    )
    raw_input = {"args": (), "kwargs": dict(arguments)}
    if outcome.ok:
        blocks = [_block(part) for part in outcome.parts]
        if not blocks and outcome.message:
            blocks.append(TextBlock(text=outcome.message))
        return ToolOutput(
            tool_name=outcome.tool, blocks=blocks, raw_input=raw_input, raw_output=raw
        )
    return ToolOutput(
        tool_name=outcome.tool,
        content=outcome.message,
        raw_input=raw_input,
        raw_output=raw,
        is_error=True,
        exception=outcome.error,
    )


class _Loop:
    """The event loop the tools were loaded in: where a sync call must run."""

    def __init__(self) -> None:
        self.token = anyio.lowlevel.current_token()
        self.thread = threading.get_ident()

    def run(self, function: Callable[[], Any]) -> Any:
        if threading.get_ident() == self.thread:
            # Blocking the loop the client lives on would wait for itself for ever.
            raise UsageError("a sync call cannot block its own event loop: use `await acall()`")
        try:
            return anyio.from_thread.run(function, token=self.token)
        except anyio.RunFinishedError as exc:
            raise ClientClosed("the event loop these tools were loaded in has ended") from exc


class MCPTool(AsyncBaseTool):
    """One MCP tool as a LlamaIndex tool (async: :meth:`acall`).

    Made by :class:`ResilientMCPToolSpec`. Never raises for what the server or the
    network did: every outcome is a ``ToolOutput`` (see :func:`output_of`).
    """

    def __init__(
        self,
        box: Toolbox,
        spec: ToolSpec,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        return_direct: bool = False,
        loop: _Loop | None = None,
    ) -> None:
        self._box = box
        self._spec = spec
        self._timeout = timeout
        self._loop = loop
        self._metadata = MCPToolMetadata(
            name=spec.name,
            description=spec.description,
            fn_schema=schema_model(spec.name, spec.input_schema),
            return_direct=return_direct,
            input_schema=spec.input_schema,
            spec=spec,
        )

    @property
    def metadata(self) -> MCPToolMetadata:
        return self._metadata

    @property
    def spec(self) -> ToolSpec:
        """The tool as the server listed it."""
        return self._spec

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if not args:
            return kwargs
        properties = self._metadata.get_parameters_dict()["properties"]
        # LlamaIndex's acall_tool passes the value alone to a one-property tool.
        one = isinstance(properties, Mapping) and len(properties) == 1
        if len(args) == 1 and not kwargs and one:
            return {next(iter(properties)): args[0]}
        raise UsageError(f"the tool {self._spec.name!r} takes keyword arguments only")

    async def acall(self, *args: Any, **kwargs: Any) -> ToolOutput:
        """Call the tool (keywords; or one value alone for a one-parameter tool).

        Raises:
            UsageError: positional arguments the tool cannot take; ``ClientClosed``
                (a subclass) once the client is closed.
        """
        arguments = self._arguments(args, kwargs)
        outcome = await self._box.call(self._spec.name, arguments, timeout=self._timeout)
        return output_of(outcome, arguments)

    def call(self, *args: Any, **kwargs: Any) -> ToolOutput:
        """The same call, blocking: run on the event loop the tools were loaded in, from
        another thread while that loop runs.

        Raises:
            UsageError: no such loop, or called on that loop's own thread (use
                :meth:`acall`); ``ClientClosed`` once the client or that loop ended.
        """
        if self._loop is None:
            raise UsageError("this tool was not loaded on an event loop: use `await tool.acall()`")

        async def run() -> ToolOutput:
            return await self.acall(*args, **kwargs)

        output: ToolOutput = self._loop.run(run)
        return output


class MCPToolRetriever(ObjectRetriever[BaseTool]):
    """The spec's tools, loaded anew for every agent step (``FunctionAgent(
    tool_retriever=...)``), so the model sees a tool added by ``tools/list_changed`` at
    its next step. The query is ignored: every tool the spec keeps is returned, from the
    client's cache (no request unless the list changed)."""

    def __init__(self, spec: ResilientMCPToolSpec) -> None:
        # Not a node retriever: nothing of ObjectRetriever's index machinery is used.
        self._spec = spec

    async def aretrieve(self, str_or_query_bundle: QueryType) -> list[BaseTool]:
        """The tools now (raises as :meth:`ResilientMCPToolSpec.to_tool_list_async`)."""
        return list(await self._spec.to_tool_list_async())

    def retrieve(self, str_or_query_bundle: QueryType) -> list[BaseTool]:
        """The tools now, blocking (raises as :meth:`ResilientMCPToolSpec.to_tool_list`)."""
        return list(self._spec.to_tool_list())


ToolFilter = Callable[[ToolSpec], bool] | Collection[str]
"""Which tools to keep: a predicate on the spec, or a collection of tool names."""


class ResilientMCPToolSpec:
    """An MCP server's tools for LlamaIndex, in the shape of ``McpToolSpec``.

    ``source`` is a connected :class:`~resilient_mcp.Client`, a client group or a
    :class:`~resilient_mcp.Toolbox` (never closed here), or a target for ``connect()``
    (with its ``**options``), whose client the spec owns: opened on first use, closed by
    :meth:`aclose` or on leaving ``async with``.

    Args:
        allowed_tools: only these tool names (``McpToolSpec``'s filter); None for all.
        include: as ``allowed_tools``, or a predicate on :class:`resilient_mcp.ToolSpec`.
        exclude: never these tool names.
        return_direct: tools whose successful output ends the run (``return_direct``).
        timeout: each call's deadline (default: the client's).

    Raises:
        UsageError: (at construction) options given with a client, a bad target or
            filter.
    """

    def __init__(
        self,
        source: ToolSource | Toolbox | Target,
        /,
        *,
        allowed_tools: Collection[str] | None = None,
        include: ToolFilter | None = None,
        exclude: Collection[str] = (),
        return_direct: Collection[str] = (),
        timeout: Timeout = USE_CLIENT_DEFAULT,
        **options: Unpack[ClientOptions],
    ) -> None:
        if isinstance(source, Toolbox):
            if options:
                raise UsageError("options are for a target the spec connects to itself")
            self._box = source
            self._owns_box = False  # someone else's: never closed here
        else:
            self._box = Toolbox(source, **options)
            self._owns_box = self._box.owns_client
        if any(
            isinstance(names, str) for names in (allowed_tools, include, exclude, return_direct)
        ):
            raise UsageError("tool filters are collections of names, not one name")
        self.allowed_tools = frozenset(allowed_tools) if allowed_tools is not None else None
        self._include = include if callable(include) or include is None else frozenset(include)
        self.exclude = frozenset(exclude)
        self.return_direct = frozenset(return_direct)
        self.timeout = timeout
        self._built: dict[str, tuple[ToolSpec, MCPTool]] = {}
        self._loop: _Loop | None = None

    def __repr__(self) -> str:
        return f"<ResilientMCPToolSpec {self._box!r}>"

    @property
    def toolbox(self) -> Toolbox:
        """The Toolbox the tools call through."""
        return self._box

    def _wanted(self, spec: ToolSpec) -> bool:
        if self.allowed_tools is not None and spec.name not in self.allowed_tools:
            return False
        include = self._include
        if callable(include) and not include(spec):
            return False
        if isinstance(include, frozenset) and spec.name not in include:
            return False
        return spec.name not in self.exclude

    async def to_tool_list_async(self) -> list[MCPTool]:
        """The server's tools (from the client's cache, which ``list_changed`` and every
        new session refresh); a tool whose listing did not change is the same object.

        Raises:
            ClientClosed: the client (or this spec) is closed.
            MCPError: connecting or listing failed (typed as the failure).
        """
        if self._loop is None:
            self._loop = _Loop()
        tools: list[MCPTool] = []
        built: dict[str, tuple[ToolSpec, MCPTool]] = {}
        for spec in await self._box.specs():
            if not self._wanted(spec):
                continue
            known = self._built.get(spec.name)
            if known is not None and known[0] == spec:
                tool = known[1]
            else:
                tool = MCPTool(
                    self._box,
                    spec,
                    timeout=self.timeout,
                    return_direct=spec.name in self.return_direct,
                    loop=self._loop,
                )
            built[spec.name] = (spec, tool)
            tools.append(tool)
        self._built = built
        return tools

    def to_tool_list(self) -> list[MCPTool]:
        """The tools, blocking: from another thread while the loop this spec was first
        used on runs.

        Raises:
            UsageError: the spec was never used on an event loop, or this is that
                loop's own thread (use :meth:`to_tool_list_async`).
            ClientClosed: the client, the spec or that loop ended.
        """
        if self._loop is None:
            raise UsageError("not used on an event loop yet: `await spec.to_tool_list_async()`")
        tools: list[MCPTool] = self._loop.run(self.to_tool_list_async)
        return tools

    def as_retriever(self) -> MCPToolRetriever:
        """The tools as an agent's ``tool_retriever``: listed anew at every step."""
        return MCPToolRetriever(self)

    async def aclose(self) -> None:
        """Close the client this spec made; one given to it (or a Toolbox) stays open."""
        if self._owns_box:
            await self._box.aclose()

    async def __aenter__(self) -> Self:
        try:
            await self.to_tool_list_async()
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
