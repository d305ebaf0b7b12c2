"""Google ADK adapter: an MCP server's tools as an ADK toolset.

:class:`ResilientToolset` is a ``google.adk.tools.base_toolset.BaseToolset`` over a
:class:`resilient_mcp.Toolbox`, so an ``LlmAgent(tools=[...])`` gets the client's
recovery and its at-most-once rule without ADK's own MCP layer (``McpToolset``, behind
``google-adk[mcp]``, which pulls the ``mcp`` SDK). It keeps ``McpToolset``'s
conventions: ``tool_filter`` (a list of names or a ``ToolPredicate``, applied to the
server's names), ``tool_name_prefix`` (``f"{prefix}_{name}"``, applied by ADK),
``require_confirmation`` (a bool or a callable on the call's arguments, answered by
ADK's confirmation gate), the function declaration built from the tool's JSON schemas
unchanged (``parameters_json_schema``, ``response_json_schema``) and results in
``McpTool``'s shape: the ``CallToolResult`` as a dict (``content``, ``structuredContent``,
``isError``, ``meta``).

Outcomes are returned, never raised: ADK hands an exception from a tool to its
``on_tool_error`` callbacks, where ``ReflectAndRetryToolPlugin`` asks the model to try
again, and with no callback to answer it the exception ends the whole invocation
(cancelling the step's parallel calls, whose effects then are unknown too). So a tool
error is ``McpTool``'s ``isError`` dict with the server's text, and a call that did not
run or may have run is ``{"error": ..., "status": ...}``, as ``McpTool`` answers a failed
call; for ``maybe_executed`` the text says the effect is unknown and never invites a
retry, and ``stop_on_unknown_effect=True`` also ends the invocation there (ADK's
``skip_summarization``: the model is not asked again).

ADK runs on asyncio, so these tools do too (the adapter itself is anyio).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, cast

from google.adk.agents.readonly_context import ReadonlyContext
from google.adk.tools.base_tool import BaseTool
from google.adk.tools.base_toolset import BaseToolset, ToolPredicate
from google.adk.tools.tool_context import ToolContext
from google.genai.types import FunctionDeclaration

from .._api import Timeout
from .._config import USE_CLIENT_DEFAULT
from .._exceptions import UsageError
from .._options import ClientOptions, Unpack
from .._outcome import ToolOutcome
from .._toolbox import Target, Toolbox, ToolSource, ToolSpec

__all__ = ["ConfirmationPolicy", "ResilientMCPTool", "ResilientToolset", "response_of"]

ConfirmationPolicy = bool | Callable[..., Any]
"""Whether a call needs a human's confirmation first, as ``McpToolset`` takes it: a bool,
or a callable (sync or async) given the call's arguments by name (and ``tool_context``
if it takes one) that returns True when it does."""

# Names ADK itself puts on the wire (credential, confirmation and input requests, agent
# transfer, structured output): a server tool by one of these names would be dispatched
# in place of ADK's own, so it is skipped, as McpToolset skips it.
_RESERVED_NAMES = frozenset(
    {
        "adk_request_credential",
        "adk_request_confirmation",
        "adk_request_input",
        "transfer_to_agent",
        "set_model_response",
    }
)

# Keys whose values are the server's own JSON, not MCP models: a "_meta" inside them is
# data, not a field to rename.
_OPAQUE_KEYS = frozenset({"_meta", "structuredContent", "inputSchema", "outputSchema"})


def _meta_as_field(value: Any) -> Any:
    # McpTool's dump names `_meta` "meta" (the Python SDK's field name): the same here.
    if isinstance(value, dict):
        renamed: dict[str, Any] = {}
        for key, item in value.items():
            if key in _OPAQUE_KEYS:
                renamed["meta" if key == "_meta" else key] = item
            else:
                renamed[key] = _meta_as_field(item)
        return renamed
    if isinstance(value, list):
        return [_meta_as_field(item) for item in value]
    return value


def response_of(outcome: ToolOutcome) -> dict[str, Any]:
    """What an ADK tool returns for ``outcome``: never raises.

    ``ok`` and ``tool_error`` are the ``CallToolResult`` as ``McpTool`` returns it (a
    dict with ``content``, ``structuredContent``, ``isError``, ``meta``); a tool error
    has ``isError: True`` and the server's text in ``content`` (and, for a result that
    broke its ``outputSchema``, the reason under ``"error"``). ``not_executed`` and
    ``maybe_executed`` are ``{"error": <what happened>, "status": <the status>}``.
    """
    if outcome.result is not None and outcome.status in ("ok", "tool_error"):
        dumped = outcome.result.model_dump(mode="json", exclude_none=True, by_alias=True)
        response = cast(dict[str, Any], _meta_as_field(dumped))
        if outcome.status == "tool_error" and not outcome.result.isError:
            response["isError"] = True
            response["error"] = outcome.message
        return response
    return {"error": outcome.message, "status": outcome.status}


class ResilientMCPTool(BaseTool):
    """One MCP tool as an ADK tool (made by :class:`ResilientToolset`).

    Its declaration carries the server's name, description and schemas unchanged; its
    :meth:`run_async` calls the tool through the Toolbox and returns
    :func:`response_of` the outcome.
    """

    def __init__(
        self,
        box: Toolbox,
        spec: ToolSpec,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        require_confirmation: ConfirmationPolicy = False,
        stop_on_unknown_effect: bool = False,
    ) -> None:
        super().__init__(
            name=spec.name, description=spec.description, custom_metadata=_metadata(spec)
        )
        self._box = box
        self._spec = spec
        # ADK's prefixing renames a copy of this tool; the server knows it by this name.
        self._server_name = spec.name
        self._timeout = timeout
        self._require_confirmation = require_confirmation
        self._stop_on_unknown_effect = stop_on_unknown_effect

    def __repr__(self) -> str:
        return f"<ResilientMCPTool {self.name!r}>"

    @property
    def spec(self) -> ToolSpec:
        """The tool as the server listed it."""
        return self._spec

    def _get_declaration(self) -> FunctionDeclaration:
        # As McpTool does (with ADK's default JSON_SCHEMA_FOR_FUNC_DECL): the server's
        # JSON schemas as they are, no conversion to Gemini's Schema subset.
        output = self._spec.output_schema
        return FunctionDeclaration(
            name=self.name,
            description=self.description,
            parameters_json_schema=dict(self._spec.input_schema),
            response_json_schema=dict(output) if output is not None else None,
        )

    async def check_require_confirmation(
        self, args: dict[str, Any], tool_context: ToolContext
    ) -> bool:
        """Whether this call waits for a human (ADK's gate asks and runs it after).

        Raises:
            Exception: whatever a ``require_confirmation`` callable raises (ADK treats
                it as the tool's failure).
        """
        policy = self._require_confirmation
        if not callable(policy):
            return bool(policy)
        answer = policy(**_arguments_for(policy, args, tool_context))
        if inspect.isawaitable(answer):
            answer = await answer
        return answer is True

    async def run_async(self, *, args: dict[str, Any], tool_context: ToolContext) -> Any:
        """Call the tool; the outcome as ADK's function response (see
        :func:`response_of`).

        Raises:
            UsageError: a programming error, or ``ClientClosed`` once the client is closed.
        """
        outcome = await self._box.call(self._server_name, args, timeout=self._timeout)
        if outcome.terminal and self._stop_on_unknown_effect:
            # The function response ends the invocation: the model gets no turn in
            # which it could call the tool again.
            tool_context.actions.skip_summarization = True
        return response_of(outcome)

    def _detect_error_in_response(self, response: Any) -> str | None:
        # ADK's telemetry hook (as McpTool has it): which responses are errors.
        if not isinstance(response, Mapping):
            return None
        if response.get("isError"):
            return "MCP_TOOL_ERROR"
        status = response.get("status")
        return status.upper() if isinstance(status, str) and "error" in response else None


def _arguments_for(
    policy: Callable[..., Any], args: Mapping[str, Any], tool_context: ToolContext
) -> dict[str, Any]:
    # McpTool's rule: the arguments the callable names (all with **kwargs), plus
    # `tool_context` when it takes one.
    chosen = dict(args)
    try:
        parameters = inspect.signature(policy).parameters
    except (TypeError, ValueError):
        return chosen
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        chosen["tool_context"] = tool_context
        return chosen
    if "tool_context" in parameters:
        chosen["tool_context"] = tool_context
    return {key: value for key, value in chosen.items() if key in parameters}


def _metadata(spec: ToolSpec) -> dict[str, Any] | None:
    metadata: dict[str, Any] = {}
    if spec.annotations is not None:
        metadata["annotations"] = spec.annotations.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
    if spec.meta is not None:
        metadata["_meta"] = dict(spec.meta)
    if spec.server is not None:
        metadata["server"] = spec.server
    return metadata or None


class ResilientToolset(BaseToolset):
    """An MCP server's tools for ``LlmAgent(tools=[...])``.

    ``source`` is a connected :class:`~resilient_mcp.Client`, a client group or a
    :class:`~resilient_mcp.Toolbox` (never closed by this toolset), or a target that
    ``connect()`` accepts (a URL, a command, an ``mcpServers`` entry; ``**options`` go
    to the client, which this toolset then owns, connects on first use and closes in
    :meth:`close`, which ADK's ``Runner.close()`` calls).

    Args:
        tool_filter: the (server) tool names to offer, or a ``ToolPredicate``.
        tool_name_prefix: tools are offered as ``f"{tool_name_prefix}_{name}"``.
        timeout: each call's deadline (the client's default if not given).
        require_confirmation: see :data:`ConfirmationPolicy` (every tool).
        stop_on_unknown_effect: end the invocation at a call whose effect is unknown
            (``maybe_executed``) instead of letting the model read the error and go on.

    Raises:
        UsageError: options given with a client or a Toolbox, or a bad target.
    """

    def __init__(
        self,
        source: Toolbox | ToolSource | Target,
        /,
        *,
        tool_filter: ToolPredicate | list[str] | None = None,
        tool_name_prefix: str | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        require_confirmation: ConfirmationPolicy = False,
        stop_on_unknown_effect: bool = False,
        **options: Unpack[ClientOptions],
    ) -> None:
        super().__init__(tool_filter=tool_filter, tool_name_prefix=tool_name_prefix)
        if isinstance(source, Toolbox):
            if options:
                raise UsageError("options are for a target the toolset connects to itself")
            self._box = source
            self._owns_box = False  # someone else's: never closed here
        else:
            self._box = Toolbox(source, **options)
            self._owns_box = self._box.owns_client
        self._timeout = timeout
        self._require_confirmation = require_confirmation
        self._stop_on_unknown_effect = stop_on_unknown_effect
        self._built: dict[str, ResilientMCPTool] = {}
        # ADK caches a toolset's tools per invocation; ours come from the client's
        # cache (refreshed on list_changed), so every model step reads them anew and
        # sees a tool the server added mid-invocation.
        self._use_invocation_cache = False

    def __repr__(self) -> str:
        return f"<ResilientToolset prefix={self.tool_name_prefix!r} {self._box!r}>"

    @property
    def toolbox(self) -> Toolbox:
        """The Toolbox the tools call through."""
        return self._box

    async def get_tools(self, readonly_context: ReadonlyContext | None = None) -> list[BaseTool]:
        """The server's tools (from the client's cache, refreshed on ``list_changed``),
        sorted by name as ``McpToolset`` sorts them.

        Raises:
            ClientClosed: the client (or this toolset) is closed.
            MCPError: the list could not be fetched (typed as the failure; ADK then
                leaves this toolset's tools out of the step).
        """
        built: dict[str, ResilientMCPTool] = {}
        tools: list[BaseTool] = []
        for spec in await self._box.specs():
            if spec.name in _RESERVED_NAMES:
                continue
            known = self._built.get(spec.name)
            tool = known if known is not None and known.spec == spec else self._tool(spec)
            built[spec.name] = tool
            if self._is_tool_selected(tool, readonly_context):
                tools.append(tool)
        self._built = built
        tools.sort(key=lambda tool: tool.name)
        return tools

    def _tool(self, spec: ToolSpec) -> ResilientMCPTool:
        return ResilientMCPTool(
            self._box,
            spec,
            timeout=self._timeout,
            require_confirmation=self._require_confirmation,
            stop_on_unknown_effect=self._stop_on_unknown_effect,
        )

    async def close(self) -> None:
        """Close the client this toolset made; one given to it (or a Toolbox) stays open."""
        if self._owns_box:
            await self._box.aclose()
