"""The MCP features both eras serve, written once: tools, resources, prompts, completion.

A front end builds one `Features` with its era's tools and asks `handlers()` for the
method table; everything the era does differently goes through its `Context`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, TypeVar

from resilient_mcp.testing import _catalog
from resilient_mcp.testing._catalog import JSON
from resilient_mcp.testing._context import Context, ToolCall, ToolReturn, text_result
from resilient_mcp.testing._jsonrpc import INVALID_PARAMS, RpcError, page, string_param
from resilient_mcp.testing._stats import ServerStats
from resilient_mcp.testing._tools import Tool, validate_arguments

C = TypeVar("C", bound=Context)

Handler = Callable[[C], Awaitable[JSON]]
"""A method handler: the request's result, or `RpcError`."""


class Features(Generic[C]):
    """The shared method handlers, for one era's tools and context type `C`.

    `missing_resource_code` is the error code of `resources/read` for an unknown URI.
    """

    def __init__(
        self,
        tools: Mapping[str, Tool[C]],
        stats: ServerStats,
        *,
        page_size: int | None,
        missing_resource_code: int,
    ) -> None:
        self.tools: dict[str, Tool[C]] = dict(tools)
        self.tool_list: list[JSON] = [tool.definition for tool in self.tools.values()]
        self._stats = stats
        self._page_size = page_size
        self._missing_resource_code = missing_resource_code

    def add_tool(self, tool: Tool[C]) -> None:
        """Serve `tool` from now on (replacing one of the same name)."""
        name = tool.definition["name"]
        self.tools[name] = tool
        self.tool_list = [t.definition for t in self.tools.values()]

    def handlers(self) -> dict[str, Handler[C]]:
        """The handler of each shared method."""
        return {
            "tools/list": self.list_tools,
            "tools/call": self.call_tool,
            "resources/list": self.list_resources,
            "resources/templates/list": self.list_resource_templates,
            "resources/read": self.read_resource,
            "prompts/list": self.list_prompts,
            "prompts/get": self.get_prompt,
            "completion/complete": self.complete,
        }

    async def list_tools(self, ctx: C) -> JSON:
        """`tools/list`."""
        tools, extra = page("tools", self.tool_list, ctx.params, self._page_size)
        return {"tools": tools, **extra}

    async def call_tool(self, ctx: C) -> JSON:
        """`tools/call`: check the call, count it, run the tool."""
        name = string_param(ctx.params, "name")
        tool = self.tools.get(name)
        if tool is None:
            raise RpcError(INVALID_PARAMS, f"Unknown tool: {name}")
        arguments = ctx.params.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise RpcError(INVALID_PARAMS, "Invalid params: 'arguments' must be an object")
        problem = validate_arguments(tool.definition["inputSchema"], arguments)
        if problem is not None:
            # 2025-11-25: input validation errors are tool execution errors, so a
            # model can read them and correct itself.
            return text_result(f"Input validation error: {problem}", is_error=True)
        if tool.requires is not None:
            ctx.require(tool.requires, name)
        # Counted here, once the tool really runs (see ServerStats.tool_calls).
        self._stats.tool_calls[name] += 1
        try:
            return await tool.run(ctx, ToolCall(name, arguments))
        except ToolReturn as early:
            return early.result

    async def list_resources(self, ctx: C) -> JSON:
        """`resources/list`."""
        resources, extra = page("resources", _catalog.RESOURCES, ctx.params, self._page_size)
        return {"resources": resources, **extra}

    async def list_resource_templates(self, ctx: C) -> JSON:
        """`resources/templates/list`."""
        templates, extra = page(
            "templates", _catalog.RESOURCE_TEMPLATES, ctx.params, self._page_size
        )
        return {"resourceTemplates": templates, **extra}

    async def read_resource(self, ctx: C) -> JSON:
        """`resources/read`."""
        uri = string_param(ctx.params, "uri")
        contents = _catalog.RESOURCE_CONTENTS.get(uri)
        if contents is None:
            raise RpcError(self._missing_resource_code, "Resource not found", {"uri": uri})
        return {"contents": [contents]}

    async def list_prompts(self, ctx: C) -> JSON:
        """`prompts/list`."""
        prompts, extra = page("prompts", _catalog.PROMPTS, ctx.params, self._page_size)
        return {"prompts": prompts, **extra}

    async def get_prompt(self, ctx: C) -> JSON:
        """`prompts/get` of the one prompt, `greet`."""
        name = ctx.params.get("name")
        if name != "greet":
            raise RpcError(INVALID_PARAMS, f"Unknown prompt: {name}")
        arguments = ctx.params.get("arguments") or {}
        who = arguments.get("name") if isinstance(arguments, dict) else None
        if not isinstance(who, str):
            raise RpcError(INVALID_PARAMS, "Missing required argument: name")
        return {
            "description": "Greets someone by name.",
            "messages": [
                {"role": "user", "content": {"type": "text", "text": f"Please greet {who}."}},
            ],
        }

    async def complete(self, ctx: C) -> JSON:
        """`completion/complete` of the `greet` prompt's and `memo://{name}`'s `name`."""
        ref = ctx.params.get("ref")
        argument = ctx.params.get("argument")
        if not isinstance(ref, dict) or not isinstance(argument, dict):
            raise RpcError(INVALID_PARAMS, "Invalid params: 'ref' and 'argument' are required")
        prefix = str(argument.get("value", "")).lower()
        candidates: tuple[str, ...] = ()
        if argument.get("name") == "name":
            if ref.get("type") == "ref/prompt" and ref.get("name") == "greet":
                candidates = _catalog.GREET_NAMES
            elif ref.get("type") == "ref/resource" and ref.get("uri") == "memo://{name}":
                candidates = tuple(str(r["name"]) for r in _catalog.RESOURCES)
        values = [value for value in candidates if value.lower().startswith(prefix)]
        return {"completion": {"values": values, "total": len(values), "hasMore": False}}
