"""pydantic-ai adapter: an MCP server's tools as a pydantic-ai toolset.

:class:`ResilientToolset` is a ``pydantic_ai.toolsets.AbstractToolset`` over a
:class:`resilient_mcp.Toolbox`, so an agent gets the client's recovery and its
at-most-once rule without pydantic-ai's own MCP layer (whose ``mcp`` pin conflicts).
It keeps the conventions of pydantic-ai's ``MCPToolset``: ``tool_prefix``, a
``process_tool_call`` hook, ``max_retries``, tool ``metadata`` (``meta``,
``annotations``), ``return_schema`` from the tool's ``outputSchema``, and results mapped
as it maps them (structured content first, JSON text parsed, images and audio as
``BinaryContent``). Outcomes: a tool error (``isError``) and a call that certainly did
not run raise ``ModelRetry`` with the text (as ``MCPToolset`` does for ``isError``); a
call that may have run raises ``ToolFailed``, pydantic-ai's terminal failure, which the
model sees but which never asks it to try again.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Protocol, Self

from pydantic_ai import messages
from pydantic_ai.exceptions import ModelRetry, ToolFailed
from pydantic_ai.tools import AgentDepsT, RunContext, ToolDefinition
from pydantic_ai.toolsets import AbstractToolset, ToolsetTool
from pydantic_core import SchemaValidator, core_schema

from .. import Toolbox, ToolOutcome, ToolSpec
from .._api import Timeout
from .._config import USE_CLIENT_DEFAULT
from .._options import ClientOptions, Unpack
from .._outcome import ContentPart
from .._toolbox import Target, ToolSource

__all__ = ["CallToolFunc", "ProcessToolCallback", "ResilientToolset"]

# Arguments are validated by the server against its own schema, as MCPToolset does.
_ARGS_VALIDATOR = SchemaValidator(
    core_schema.dict_schema(core_schema.str_schema(), core_schema.any_schema())
)


class CallToolFunc(Protocol):
    """The call a :data:`ProcessToolCallback` wraps (pydantic-ai's MCP signature)."""

    async def __call__(
        self, name: str, args: dict[str, Any], *, metadata: dict[str, Any] | None = None
    ) -> Any: ...


ProcessToolCallback = Callable[[RunContext[Any], CallToolFunc, str, dict[str, Any]], Awaitable[Any]]
"""A hook around every call, as ``MCPToolset(process_tool_call=...)`` takes: it gets the
run context, the call to make, the tool's (unprefixed) name and its arguments."""


class ResilientToolset(AbstractToolset[AgentDepsT]):
    """An MCP server's tools for a pydantic-ai ``Agent(toolsets=[...])``.

    ``source`` is a connected :class:`~resilient_mcp.Client`, a client group or a
    :class:`~resilient_mcp.Toolbox` (never closed by this toolset), or a target that
    ``connect()`` accepts (a URL, a command, an ``mcpServers`` entry; ``**options`` go to
    the client, which this toolset then owns and closes when the agent's last run ends,
    or on :meth:`aclose`).

    Args:
        id: the toolset's id (pydantic-ai's; needed for durable execution).
        tool_prefix: prepended as ``f"{tool_prefix}_{name}"`` to every tool's name.
        include: only these (server) tool names, if given.
        exclude: never these (server) tool names.
        timeout: each call's deadline (the client's default if not given).
        max_retries: the retry budget of each tool (the agent's if None).
        process_tool_call: a hook around each call (see :data:`ProcessToolCallback`).

    Raises:
        UsageError: options given with a client, or a bad target.
    """

    def __init__(
        self,
        source: Toolbox | ToolSource | Target,
        /,
        *,
        id: str | None = None,
        tool_prefix: str | None = None,
        include: Collection[str] | None = None,
        exclude: Collection[str] = (),
        timeout: Timeout = USE_CLIENT_DEFAULT,
        max_retries: int | None = None,
        process_tool_call: ProcessToolCallback | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        if isinstance(source, Toolbox):
            self._box = source
            self._owns_box = False
        else:
            self._box = Toolbox(source, **options)
            self._owns_box = self._box.owns_client
        self._id = id
        self.tool_prefix = tool_prefix
        self.include = frozenset(include) if include is not None else None
        self.exclude = frozenset(exclude)
        self.timeout = timeout
        self.max_retries = max_retries
        self.process_tool_call = process_tool_call
        self._entered = 0

    def __repr__(self) -> str:
        return f"<ResilientToolset id={self._id!r} {self._box!r}>"

    @property
    def id(self) -> str | None:
        return self._id

    @property
    def toolbox(self) -> Toolbox:
        """The Toolbox the tools come from."""
        return self._box

    async def __aenter__(self) -> Self:
        # The agent enters its toolsets on every run: connect once, close after the last.
        self._entered += 1
        await self._box.open()
        return self

    async def __aexit__(self, *args: Any) -> bool | None:
        self._entered -= 1
        if self._entered <= 0 and self._owns_box:
            await self._box.aclose()
        return None

    async def aclose(self) -> None:
        """Close the client this toolset owns (a client given to it stays open)."""
        if self._owns_box:
            await self._box.aclose()

    def _name(self, server_name: str) -> str:
        return f"{self.tool_prefix}_{server_name}" if self.tool_prefix else server_name

    def _wanted(self, name: str) -> bool:
        if self.include is not None and name not in self.include:
            return False
        return name not in self.exclude

    async def get_tools(self, ctx: RunContext[AgentDepsT]) -> dict[str, ToolsetTool[AgentDepsT]]:
        """The server's tools (from the client's cache, refreshed on ``list_changed``).

        Raises:
            MCPError: the list could not be fetched (typed as the failure).
        """
        tools: dict[str, ToolsetTool[AgentDepsT]] = {}
        for spec in await self._box.specs():
            if not self._wanted(spec.name):
                continue
            name = self._name(spec.name)
            tools[name] = ToolsetTool(
                toolset=self,
                tool_def=_definition(name, spec),
                max_retries=self.max_retries if self.max_retries is not None else ctx.max_retries,
                args_validator=_ARGS_VALIDATOR,
            )
        return tools

    async def call_tool(
        self,
        name: str,
        tool_args: dict[str, Any],
        ctx: RunContext[AgentDepsT],
        tool: ToolsetTool[AgentDepsT],
    ) -> Any:
        """Call a tool; its result mapped as pydantic-ai's MCP toolset maps it.

        Raises:
            ModelRetry: the tool reported an error (its text), or certainly did not run.
            ToolFailed: the call may have run and its effect is unknown (terminal).
        """
        server_name = name.removeprefix(f"{self.tool_prefix}_") if self.tool_prefix else name
        if self.process_tool_call is not None:
            return await self.process_tool_call(ctx, self._direct_call, server_name, tool_args)
        return await self._direct_call(server_name, tool_args)

    async def _direct_call(
        self, name: str, args: dict[str, Any], *, metadata: dict[str, Any] | None = None
    ) -> Any:
        # `metadata` is the request's `_meta`, as MCPToolset's direct_call_tool sends it
        # (a process_tool_call hook adds it: trace context, tenant ids, ...).
        outcome = await self._box.call(name, args, timeout=self.timeout, meta=metadata)
        return result_of(outcome)


def result_of(outcome: ToolOutcome) -> Any:
    """Map an outcome to what a pydantic-ai tool returns.

    Raises:
        ModelRetry: ``tool_error`` (the server's text) or ``not_executed``.
        ToolFailed: ``maybe_executed``: the terminal path, never a retry.
    """
    if outcome.status == "maybe_executed":
        raise ToolFailed(outcome.message)
    if outcome.status != "ok":
        raise ModelRetry(outcome.message)
    structured = outcome.structured
    if structured is not None and all(part.kind == "text" for part in outcome.parts):
        # As MCPToolset: the SDKs wrap a primitive in {"result": ...}.
        if len(structured) == 1 and "result" in structured:
            return structured["result"]
        return dict(structured)
    mapped = [_part(part) for part in outcome.parts]
    if len(mapped) == 1:
        return mapped[0]
    return mapped


def _part(part: ContentPart) -> Any:
    if part.kind == "text":
        text = part.text or ""
        if text.startswith(("[", "{")):
            try:
                return json.loads(text)
            except ValueError:
                pass
        return text
    if part.kind in ("image", "audio") and part.data is not None:
        return messages.BinaryContent.narrow_type(
            messages.BinaryContent(data=part.data, media_type=part.mime_type or "")
        )
    if part.kind == "resource":
        if part.data is not None:
            return messages.BinaryContent.narrow_type(
                messages.BinaryContent(
                    data=part.data, media_type=part.mime_type or "application/octet-stream"
                )
            )
        return part.text or ""
    if part.kind == "link" and part.uri:
        return part.uri
    return part.describe()


def _definition(name: str, spec: ToolSpec) -> ToolDefinition:
    annotations = (
        spec.annotations.model_dump(by_alias=True, exclude_none=True) if spec.annotations else None
    )
    metadata: dict[str, Any] = {"meta": _plain(spec.meta), "annotations": annotations}
    return ToolDefinition(
        name=name,
        description=spec.description or None,
        parameters_json_schema=dict(spec.input_schema),
        metadata=metadata,
        return_schema=dict(spec.output_schema) if spec.output_schema else None,
    )


def _plain(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(value) if value is not None else None
