"""The catalog's tools, written once for both eras against `Context`.

`sample`, `list_roots` and `elicit` ask the client through `Context.ask`, so the same
code is a server→client request in the legacy era and an `input_required` round in
the modern one.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio

from resilient_mcp.testing import _catalog
from resilient_mcp.testing._catalog import JSON
from resilient_mcp.testing._context import Context, ToolCall, text_result
from resilient_mcp.testing._state import ServerState

# Contravariant: a tool written for any `Context` serves an era's own context type.
C_contra = TypeVar("C_contra", bound=Context, contravariant=True)


@dataclass(frozen=True, eq=False)
class Tool(Generic[C_contra]):
    """A tool: its definition (as `tools/list` shows it) and how it runs."""

    definition: JSON
    run: Callable[[C_contra, ToolCall], Awaitable[JSON]]
    requires: str | None = None
    """The client capability the tool asks for (see `Context.require`)."""


def _type_ok(expected: Any, value: Any) -> bool:
    if isinstance(value, bool):
        return bool(expected == "boolean")
    match expected:
        case "string":
            return isinstance(value, str)
        case "integer":
            return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        case "number":
            return isinstance(value, int | float)
        case "object":
            return isinstance(value, dict)
        case "array":
            return isinstance(value, list)
        case _:
            return True


def validate_arguments(schema: JSON, arguments: JSON) -> str | None:
    """Check `arguments` against the small JSON Schema subset our tools use."""
    properties: JSON = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in arguments:
            return f"missing required argument '{name}'"
    for name, value in arguments.items():
        spec = properties.get(name)
        if spec is None:
            if schema.get("additionalProperties") is False:
                return f"unexpected argument '{name}'"
            continue
        if not _type_ok(spec.get("type"), value):
            return f"argument '{name}' must be of type {spec.get('type')}"
        if "minimum" in spec and value < spec["minimum"]:
            return f"argument '{name}' must be >= {spec['minimum']}"
        if "maximum" in spec and value > spec["maximum"]:
            return f"argument '{name}' must be <= {spec['maximum']}"
    return None


async def _echo(ctx: Context, call: ToolCall) -> JSON:
    return text_result(call.arguments["text"])


async def _add(ctx: Context, call: ToolCall) -> JSON:
    structured = {"sum": call.arguments["a"] + call.arguments["b"]}
    # Structured content is also serialized into a text block for older clients.
    return {
        "content": [{"type": "text", "text": json.dumps(structured)}],
        "structuredContent": structured,
        "isError": False,
    }


async def _fail(ctx: Context, call: ToolCall) -> JSON:
    return text_result("The fail tool always fails.", is_error=True)


async def _progress(ctx: Context, call: ToolCall) -> JSON:
    steps = int(call.arguments["steps"])
    interval = float(call.arguments.get("interval", 0))
    token = ctx.progress_token
    for step in range(1, steps + 1):
        if interval > 0:
            await anyio.sleep(interval)  # simulated slow work between steps
        if token is not None:
            await ctx.notify(
                "notifications/progress",
                {
                    "progressToken": token,
                    "progress": step,
                    "total": steps,
                    "message": f"step {step} of {steps}",
                },
            )
    return text_result(f"completed {steps} steps")


async def _extra(ctx: Context, call: ToolCall) -> JSON:
    return text_result(str(call.arguments.get("text", "ok")))


async def _sample(ctx: Context, call: ToolCall) -> JSON:
    params = {
        "messages": [
            {"role": "user", "content": {"type": "text", "text": call.arguments["prompt"]}},
        ],
        "maxTokens": 100,
    }
    result = await ctx.ask(call, "sampling", "sampling/createMessage", params, key="sample")
    content = result.get("content")
    # 2025-11-25 allows a list of content blocks as well as a single one.
    blocks = content if isinstance(content, list) else [content]
    texts = [
        block["text"]
        for block in blocks
        if isinstance(block, dict) and isinstance(block.get("text"), str)
    ]
    return text_result("".join(texts) if texts else json.dumps(result))


async def _list_roots(ctx: Context, call: ToolCall) -> JSON:
    result = await ctx.ask(call, "roots", "roots/list", {}, key="roots")
    return text_result(json.dumps(result.get("roots", [])))


async def _elicit(ctx: Context, call: ToolCall) -> JSON:
    params = {
        "message": call.arguments.get("message", "What is your name?"),
        "requestedSchema": _catalog.NAME_SCHEMA,
    }
    result = await ctx.ask(call, "elicitation", "elicitation/create", params, key="elicit")
    return text_result(json.dumps(result))


class CatalogTools:
    """The tools of `_catalog.TOOLS` (and the filler tools) for one server."""

    def __init__(self, state: ServerState) -> None:
        self._state = state

    def tools(self, extra_tools: int) -> dict[str, Tool[Context]]:
        """Every catalog tool by name, then `extra_tools` filler tools."""
        runs: dict[str, Callable[[Context, ToolCall], Awaitable[JSON]]] = {
            "echo": _echo,
            "add": _add,
            "fail": _fail,
            "progress": _progress,
            "increment": self._increment,
            "read_counter": self._read_counter,
            "set_value": self._set_value,
            "sample": _sample,
            "list_roots": _list_roots,
            "elicit": _elicit,
        }
        requires = {"sample": "sampling", "list_roots": "roots", "elicit": "elicitation"}
        tools: dict[str, Tool[Context]] = {}
        for definition in _catalog.TOOLS:
            name = definition["name"]
            tools[name] = Tool(definition, runs[name], requires.get(name))
        for index in range(extra_tools):
            definition = _catalog.extra_tool(index)
            tools[definition["name"]] = Tool(definition, _extra)
        return tools

    async def _increment(self, ctx: Context, call: ToolCall) -> JSON:
        key = call.arguments.get("key")
        if isinstance(key, str):
            self._state.stats.executions[key] += 1
        self._state.counter += 1
        return text_result(str(self._state.counter))

    async def _read_counter(self, ctx: Context, call: ToolCall) -> JSON:
        return text_result(str(self._state.counter))

    async def _set_value(self, ctx: Context, call: ToolCall) -> JSON:
        self._state.counter = int(call.arguments["value"])
        return text_result(str(self._state.counter))
