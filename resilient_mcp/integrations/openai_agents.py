"""OpenAI Agents SDK adapter: an MCP server for ``Agent(mcp_servers=[...])``.

:class:`ResilientMCPServer` is an ``agents.mcp.MCPServer`` over a
:class:`resilient_mcp.Toolbox`, so an agent gets the client's recovery and its
at-most-once rule instead of the SDK's own MCP sessions (which retry a call on a fresh
session after any failure when ``max_retry_attempts`` is set, timeouts included). It
works under ``MCPServerManager`` and keeps the conventions of the SDK's servers:
``tool_filter`` (static or callable), ``use_structured_content``, ``cache_tools_list``
with ``invalidate_tools_cache()``, ``require_approval``, ``failure_error_function``,
``tool_meta_resolver``, ``custom_data_extractor`` and tool guardrails. Its interface
returns ``mcp.types`` objects (the ``mcp`` package is a dependency of openai-agents),
converted from ours by validation, never field by field.

Outcomes: the SDK turns an exception from ``call_tool`` into "An error occurred while
running the tool. Please try again.", so no outcome of a call raises. A tool error is
the server's ``isError`` result (the SDK shows its text to the model); a call that
certainly did not run, or that may have run, is an ``isError`` result whose text says
so (:attr:`~resilient_mcp.ToolOutcome.message`: for a call that may have run, that
its effect is unknown, never an invitation to retry). Every such result carries its
status in ``_meta`` and in the output item's ``custom_data``; give the agent
``tool_use_behavior=stop_on_unknown_effect`` to end the run there (the terminal path)
instead of giving the model another turn.

The SDK's run loop is asyncio only, so this server is used on asyncio.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

from agents.agent import ToolsToFinalOutputResult
from agents.exceptions import UserError
from agents.items import ToolCallOutputItem
from agents.mcp import MCPServer, ToolFilter, ToolFilterContext
from agents.mcp.server import RequireApprovalSetting
from agents.mcp.util import (
    MCPToolCustomDataContext,
    MCPToolCustomDataExtractor,
    MCPToolMetaResolver,
)
from agents.run_context import RunContextWrapper
from agents.tool import FunctionToolResult, ToolErrorFunction
from agents.tool_guardrails import ToolInputGuardrail, ToolOutputGuardrail
from mcp import types as mcp_types
from pydantic import BaseModel, TypeAdapter, ValidationError

from .._api import Timeout
from .._client import Client
from .._config import USE_CLIENT_DEFAULT
from .._exceptions import Execution, MalformedMessage, UsageError
from .._log import default_logger
from .._options import ClientOptions, Unpack
from .._outcome import ContentPart, ToolOutcome, ToolStatus
from .._toolbox import Target, Toolbox, ToolSource, ToolSpec

if TYPE_CHECKING:
    from agents.agent import AgentBase

__all__ = [
    "CUSTOM_DATA_KEY",
    "OUTCOME_META_KEY",
    "ResilientMCPServer",
    "call_result",
    "is_terminal",
    "stop_on_unknown_effect",
]

OUTCOME_META_KEY: Final = "resilient-mcp/outcome"
"""The key, in the ``_meta`` of a result this server made up for a failed call, of
``{"status": ..., "terminal": ...}`` (:class:`~resilient_mcp.ToolOutcome`'s)."""
CUSTOM_DATA_KEY: Final = "resilient_mcp"
"""The key, in a tool output item's ``custom_data``, of ``{"status": ..., "terminal": ...}``."""

_log = default_logger()
_M = TypeVar("_M", bound=BaseModel)


class _NotGiven:
    """The default of an argument the SDK's own default (``_UNSET``) must stand for."""


_NOT_GIVEN: Final = _NotGiven()


def _dump(model: Any) -> dict[str, Any]:
    # Wire spelling (camelCase, `_meta`): what both mcp 1.x and 2.x types validate.
    dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def call_result(outcome: ToolOutcome) -> mcp_types.CallToolResult:
    """The ``mcp.types.CallToolResult`` the SDK gets for ``outcome``. Never raises.

    ``ok`` and a server's own ``isError`` are the server's result; a result that broke
    its output schema, and a call that did not run or may have run, become an
    ``isError`` result whose only text is ``outcome.message``, with the status in
    ``_meta[OUTCOME_META_KEY]``.
    """
    if outcome.result is not None and outcome.error is None:
        dumped = _dump(outcome.result)
        try:
            return mcp_types.CallToolResult.model_validate(dumped)
        except ValidationError:
            # A block the installed mcp's types do not know (a newer spec's): each block
            # that does not validate stands as our text placeholder for it.
            dumped["content"] = [_block(part) for part in outcome.parts]
            return mcp_types.CallToolResult.model_validate(dumped)
    return mcp_types.CallToolResult.model_validate(
        {
            "content": [{"type": "text", "text": outcome.message}],
            "isError": True,
            "_meta": {OUTCOME_META_KEY: _status(outcome.status)},
        }
    )


_BLOCK: TypeAdapter[Any] = TypeAdapter(mcp_types.ContentBlock)


def _block(part: ContentPart) -> dict[str, Any]:
    block = _dump(part.block)
    try:
        _BLOCK.validate_python(block)
    except ValidationError:
        return {"type": "text", "text": part.describe()}
    return block


def _status(status: ToolStatus) -> dict[str, Any]:
    return {"status": status, "terminal": status == "maybe_executed"}


def _custom_data(result_meta: Mapping[str, Any] | None, is_error: bool | None) -> dict[str, Any]:
    ours = (result_meta or {}).get(OUTCOME_META_KEY)
    if isinstance(ours, Mapping):
        return dict(ours)
    return _status("tool_error" if is_error else "ok")


def is_terminal(item: object) -> bool:
    """Whether ``item`` (a run item, e.g. from ``RunResult.new_items``) is the output of
    a call that may have run and whose effect is unknown: stop rather than let the
    model call it again. Never raises."""
    if not isinstance(item, ToolCallOutputItem) or not isinstance(item.custom_data, Mapping):
        return False
    ours = item.custom_data.get(CUSTOM_DATA_KEY)
    return isinstance(ours, Mapping) and ours.get("terminal") is True


def stop_on_unknown_effect(
    context: RunContextWrapper[Any], results: list[FunctionToolResult]
) -> ToolsToFinalOutputResult:
    """A ``tool_use_behavior`` that ends the run at a call whose effect is unknown.

    ``Agent(..., tool_use_behavior=stop_on_unknown_effect)``: when any tool call of the
    step may have run without a usable answer, the run ends with that call's text (which
    says so) as its final output, and the model gets no turn in which to
    call it again; otherwise the model runs again, as by default. Never raises.
    """
    for result in results:
        if is_terminal(result.run_item):
            output = result.output
            final = output.get("text") if isinstance(output, Mapping) else output
            return ToolsToFinalOutputResult(is_final_output=True, final_output=str(final))
    return ToolsToFinalOutputResult(is_final_output=False, final_output=None)


class ResilientMCPServer(MCPServer):
    """An MCP server's tools (and prompts) for ``Agent(mcp_servers=[...])``.

    ``source`` is a connected :class:`~resilient_mcp.Client`, a client group or a
    :class:`~resilient_mcp.Toolbox` (never closed by this server), or a target that
    ``connect()`` accepts (a URL, a command, an ``mcpServers`` entry; ``**options`` go
    to the client, which this server then owns: :meth:`connect` opens it, :meth:`cleanup`
    closes it, and a later :meth:`connect` opens a new one).

    Args:
        name: the server's name (the SDK prefixes tools with it when the agent's
            ``mcp_config`` has ``include_server_in_tool_names``).
        timeout: each call's deadline (the client's default if not given).
        cache_tools_list: as in the SDK: list the tools once and keep that list until
            :meth:`invalidate_tools_cache`. Off by default, and no round trip is saved
            by turning it on: the client's own cache answers, and refreshes itself on
            ``notifications/tools/list_changed`` and after every new session.
        tool_filter: the SDK's ``ToolFilter``: ``{"allowed_tool_names": [...],
            "blocked_tool_names": [...]}``, or ``(ToolFilterContext, Tool) -> bool``
            (sync or async; a filter that raises excludes the tool).
        use_structured_content: give the model ``structuredContent`` (as JSON) instead
            of the text content, where a tool sends it.
        require_approval: the SDK's, unchanged (as are ``failure_error_function``,
            which only ever sees programming errors: no outcome of a call raises,
            ``tool_meta_resolver``, ``custom_data_extractor``,
            ``tool_input_guardrails`` and ``tool_output_guardrails``).

    Raises:
        UsageError: options given with a client, or a bad target.
    """

    def __init__(
        self,
        source: Toolbox | ToolSource | Target,
        /,
        *,
        name: str | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        cache_tools_list: bool = False,
        tool_filter: ToolFilter = None,
        use_structured_content: bool = False,
        require_approval: RequireApprovalSetting = None,
        failure_error_function: ToolErrorFunction | _NotGiven | None = _NOT_GIVEN,
        tool_meta_resolver: MCPToolMetaResolver | None = None,
        custom_data_extractor: MCPToolCustomDataExtractor | None = None,
        tool_input_guardrails: list[ToolInputGuardrail[Any]] | None = None,
        tool_output_guardrails: list[ToolOutputGuardrail[Any]] | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        # Left out unless given, so the SDK's own "unset" (the agent's setting) holds.
        extra: dict[str, Any] = {}
        if failure_error_function is not _NOT_GIVEN:
            extra["failure_error_function"] = failure_error_function
        super().__init__(
            use_structured_content=use_structured_content,
            require_approval=require_approval,
            tool_meta_resolver=tool_meta_resolver,
            custom_data_extractor=self._extract_custom_data,
            tool_input_guardrails=tool_input_guardrails,
            tool_output_guardrails=tool_output_guardrails,
            **extra,
        )
        if isinstance(source, Toolbox):
            if options:
                raise UsageError("options are for a target the server connects to itself")
            self._box = source
            self._target: Target | None = None
        else:
            self._box = Toolbox(source, **options)
            self._target = None if isinstance(source, ToolSource) else source
        self._options = options
        self._name = name or "resilient_mcp"
        self.timeout = timeout
        self.cache_tools_list = cache_tools_list
        self.tool_filter = tool_filter
        self._user_extractor = custom_data_extractor
        self._tools_list: list[mcp_types.Tool] | None = None
        self._cache_dirty = True

    def __repr__(self) -> str:
        return f"<ResilientMCPServer name={self._name!r} {self._box!r}>"

    @property
    def name(self) -> str:
        """The server's name, as given (``"resilient_mcp"`` when not)."""
        return self._name

    @property
    def toolbox(self) -> Toolbox:
        """The Toolbox the tools come from."""
        return self._box

    @property
    def owns_client(self) -> bool:
        """Whether this server made its client (and so closes it in :meth:`cleanup`)."""
        return self._box.owns_client

    @property
    def cached_tools(self) -> list[mcp_types.Tool] | None:
        """The tools as last listed (unfiltered copies), or None before the first list."""
        return None if self._tools_list is None else _copies(self._tools_list)

    async def connect(self) -> None:
        """Connect the client this server owns (nothing for a client given to it).

        Raises:
            MCPError: connecting failed (ConnectError, HandshakeError, ...); the next
                call of :meth:`connect` tries again.
        """
        await self._box.open()

    async def cleanup(self) -> None:
        """Close the client this server owns; a client given to it stays open. Never
        raises: the client shields and types its own shutdown."""
        if self._target is None:
            return
        box, self._box = self._box, Toolbox(self._target, **self._options)
        await box.aclose()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.cleanup()

    def invalidate_tools_cache(self) -> None:
        """Make the next :meth:`list_tools` list anew (with ``cache_tools_list``)."""
        self._cache_dirty = True

    async def list_tools(
        self,
        run_context: RunContextWrapper[Any] | None = None,
        agent: AgentBase | None = None,
    ) -> list[mcp_types.Tool]:
        """The server's tools as ``mcp.types.Tool``, filtered by ``tool_filter``.

        Names, descriptions, schemas, annotations and ``_meta`` are the server's
        (a group's tools under their namespaced names). A tool the installed ``mcp``'s
        types cannot hold is left out, and logged (``tool.unrepresentable``).

        Raises:
            UserError: a callable ``tool_filter`` without ``run_context`` and ``agent``.
            ClientClosed: the client is closed.
            MCPError: the list could not be fetched (typed as the failure).
        """
        if self._tools_list is None or self._cache_dirty or not self.cache_tools_list:
            self._tools_list = [
                tool for spec in await self._box.specs() if (tool := _tool(spec)) is not None
            ]
            self._cache_dirty = False
        return _copies(await self._filter(self._tools_list, run_context, agent))

    async def _filter(
        self,
        tools: list[mcp_types.Tool],
        run_context: RunContextWrapper[Any] | None,
        agent: AgentBase | None,
    ) -> list[mcp_types.Tool]:
        wanted = self.tool_filter
        if wanted is None:
            return tools
        if isinstance(wanted, dict):
            allowed = wanted.get("allowed_tool_names")
            blocked = wanted.get("blocked_tool_names") or []
            return [
                tool
                for tool in tools
                if (allowed is None or tool.name in allowed) and tool.name not in blocked
            ]
        if run_context is None or agent is None:
            raise UserError("run_context and agent are required for dynamic tool filtering")
        context = ToolFilterContext(run_context=run_context, agent=agent, server_name=self.name)
        kept: list[mcp_types.Tool] = []
        for tool in tools:
            try:
                verdict = wanted(context, tool.model_copy(deep=True))
                if inspect.isawaitable(verdict):
                    verdict = await verdict
            except Exception as exc:
                # As the SDK does: a filter that fails excludes the tool.
                _log.warning("tool_filter.failed", tool=tool.name, error=repr(exc))
                continue
            if verdict:
                kept.append(tool)
        return kept

    async def call_tool(
        self,
        tool_name: str,
        arguments: dict[str, Any] | None,
        meta: dict[str, Any] | None = None,
    ) -> mcp_types.CallToolResult:
        """Call a tool; its outcome as a ``CallToolResult`` (see :func:`call_result`).

        Request ``meta`` (the SDK's: the tool's ``_meta`` merged with what
        ``tool_meta_resolver`` returns) is sent as the request's ``_meta``.

        Raises:
            UsageError: a programming error, and ClientClosed (a subclass) once the
                client is closed. Nothing the server or the network did raises.
        """
        outcome = await self._box.call(tool_name, arguments or {}, timeout=self.timeout, meta=meta)
        return call_result(outcome)

    async def _extract_custom_data(
        self, context: MCPToolCustomDataContext
    ) -> Mapping[str, Any] | None:
        data: dict[str, Any] = {
            CUSTOM_DATA_KEY: _custom_data(context.result_meta, context.is_error)
        }
        if self._user_extractor is not None:
            theirs = self._user_extractor(context)
            if inspect.isawaitable(theirs):
                theirs = await theirs
            if theirs:
                data = {**theirs, **data}
        return data

    async def _client(self, what: str) -> Client:
        await self._box.open()
        source = self._box.source
        if not isinstance(source, Client):
            raise NotImplementedError(f"{what} needs a single client, not {type(source).__name__}")
        return source

    # Prompts and resources: every page at once (never a next cursor), as mcp.types.
    # Each raises NotImplementedError for a source that is not a single client (a
    # group), UsageError for a cursor (none is handed out), MCPError typed as the failure.

    async def list_prompts(self) -> mcp_types.ListPromptsResult:
        """Every prompt, as ``mcp.types.ListPromptsResult``."""
        prompts = await (await self._client("list_prompts")).list_prompts(timeout=self.timeout)
        data = {"prompts": [_dump(prompt) for prompt in prompts]}
        return _as(mcp_types.ListPromptsResult, data, "prompts/list")

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None
    ) -> mcp_types.GetPromptResult:
        """Render a prompt, as ``mcp.types.GetPromptResult`` (unknown: InvalidParams)."""
        client = await self._client("get_prompt")
        result = await client.get_prompt(name, arguments, timeout=self.timeout)
        return _as(mcp_types.GetPromptResult, _dump(result), "prompts/get")

    async def list_resources(self, cursor: str | None = None) -> mcp_types.ListResourcesResult:
        """Every resource, as ``mcp.types.ListResourcesResult``."""
        _no_cursor(cursor)
        client = await self._client("list_resources")
        resources = await client.list_resources(timeout=self.timeout)
        data = {"resources": [_dump(item) for item in resources]}
        return _as(mcp_types.ListResourcesResult, data, "resources/list")

    async def list_resource_templates(
        self, cursor: str | None = None
    ) -> mcp_types.ListResourceTemplatesResult:
        """Every resource template, as ``mcp.types.ListResourceTemplatesResult``."""
        _no_cursor(cursor)
        client = await self._client("list_resource_templates")
        templates = await client.list_resource_templates(timeout=self.timeout)
        data = {"resourceTemplates": [_dump(item) for item in templates]}
        return _as(mcp_types.ListResourceTemplatesResult, data, "resources/templates/list")

    async def read_resource(self, uri: str) -> mcp_types.ReadResourceResult:
        """Read one resource, as ``mcp.types.ReadResourceResult`` (ResourceNotFound...)."""
        client = await self._client("read_resource")
        result = await client.read_resource(uri, timeout=self.timeout)
        return _as(mcp_types.ReadResourceResult, _dump(result), "resources/read")


def _as(model: type[_M], data: dict[str, Any], method: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise MalformedMessage(
            f"the {method} answer cannot be given as mcp.types.{model.__name__}: {exc}",
            method=method,
            execution=Execution.EXECUTED,
        ) from None


def _no_cursor(cursor: str | None) -> None:
    if cursor is not None:
        raise UsageError("this server lists every page at once and hands out no cursor")


def _tool(spec: ToolSpec) -> mcp_types.Tool | None:
    dumped: dict[str, Any] = (
        _dump(spec.tool) if spec.tool is not None else {"inputSchema": dict(spec.input_schema)}
    )
    dumped["name"] = spec.name  # a group's namespaced name
    try:
        return mcp_types.Tool.model_validate(dumped)
    except ValidationError as exc:
        # One tool the installed mcp's types cannot hold must not hide all the others.
        _log.warning("tool.unrepresentable", tool=spec.name, error=str(exc))
        return None


def _copies(tools: list[mcp_types.Tool]) -> list[mcp_types.Tool]:
    # As the SDK's servers: callers may mutate what they get, never the cache.
    return [copy.deepcopy(tool) for tool in tools]
