"""Static feature data the strict server offers: tool schemas, resources, prompts.

Shapes follow the MCP 2025-11-25 schema so a client under test sees what a real
server would send (titles, annotations, output schemas, blob resources).
"""

from __future__ import annotations

import base64
from typing import Any, Final

JSON = dict[str, Any]

SERVER_NAME: Final = "resilient-mcp-strict"
SERVER_TITLE: Final = "resilient-mcp strict test server"
INSTRUCTIONS: Final = (
    "A strict MCP test server. Like the Python SDK, it answers every request other than "
    "ping that is processed before its session's initialize with -32602 "
    "'Invalid request parameters'."
)

MODERN_INSTRUCTIONS: Final = (
    "A strict MCP test server speaking protocol 2026-07-28: every request carries its "
    "protocol version and capabilities in _meta; server-to-client requests arrive as "
    "input_required results; change notifications need subscriptions/listen."
)

CAPABILITIES: Final[JSON] = {
    "tools": {"listChanged": True},
    "resources": {"subscribe": True, "listChanged": True},
    "prompts": {"listChanged": True},
    "logging": {},
    "completions": {},
}

_EMPTY_INPUT: Final[JSON] = {"type": "object", "properties": {}, "additionalProperties": False}

TOOLS: Final[list[JSON]] = [
    {
        "name": "echo",
        "title": "Echo",
        "description": "Returns the given text unchanged.",
        "inputSchema": {
            "type": "object",
            "properties": {"text": {"type": "string", "description": "Text to echo back."}},
            "required": ["text"],
        },
    },
    {
        "name": "add",
        "title": "Add",
        "description": "Adds two numbers; the sum is also returned as structured content.",
        "inputSchema": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        },
        "outputSchema": {
            "type": "object",
            "properties": {"sum": {"type": "number"}},
            "required": ["sum"],
        },
    },
    {
        "name": "fail",
        "title": "Fail",
        "description": "Always fails with a tool execution error (isError: true).",
        "inputSchema": _EMPTY_INPUT,
    },
    {
        "name": "progress",
        "title": "Progress",
        "description": (
            "Reports progress 1..steps when the request carries _meta.progressToken; "
            "interval (seconds) simulates slow work between steps."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "steps": {"type": "integer", "minimum": 0, "maximum": 10000},
                "interval": {"type": "number", "minimum": 0, "maximum": 60},
            },
            "required": ["steps"],
        },
    },
    {
        "name": "increment",
        "title": "Increment",
        "description": "Adds one to the server's counter (a side effect); returns the new value.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "key": {
                    "type": "string",
                    "description": "Optional: names this call in ServerStats.executions.",
                }
            },
        },
    },
    {
        "name": "read_counter",
        "title": "Read counter",
        "description": "Returns the server's counter without changing it.",
        "inputSchema": _EMPTY_INPUT,
        "annotations": {"readOnlyHint": True},
    },
    {
        "name": "set_value",
        "title": "Set value",
        "description": "Sets the server's counter to the given value (idempotent).",
        "inputSchema": {
            "type": "object",
            "properties": {"value": {"type": "integer"}},
            "required": ["value"],
        },
        "annotations": {"idempotentHint": True},
    },
    {
        "name": "sample",
        "title": "Sample",
        "description": "Asks the client for an LLM completion (sampling/createMessage).",
        "inputSchema": {
            "type": "object",
            "properties": {"prompt": {"type": "string"}},
            "required": ["prompt"],
        },
    },
    {
        "name": "list_roots",
        "title": "List roots",
        "description": "Asks the client for its roots (roots/list).",
        "inputSchema": _EMPTY_INPUT,
    },
    {
        "name": "elicit",
        "title": "Elicit",
        "description": "Asks the user for their name through the client (elicitation/create).",
        "inputSchema": {
            "type": "object",
            "properties": {"message": {"type": "string"}},
        },
    },
]


def extra_tool(index: int) -> JSON:
    """The definition of filler tool number `index` (used to simulate huge catalogs)."""
    return {
        "name": f"tool_{index:04d}",
        "title": f"Filler tool {index}",
        "description": "Filler tool that makes the catalog large; echoes its optional text.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
    }


BLOB_BYTES: Final = bytes(range(16))

RESOURCES: Final[list[JSON]] = [
    {
        "uri": "memo://one",
        "name": "one",
        "title": "Memo one",
        "description": "The first memo.",
        "mimeType": "text/plain",
    },
    {
        "uri": "memo://two",
        "name": "two",
        "title": "Memo two",
        "description": "The second memo.",
        "mimeType": "text/plain",
    },
    {
        "uri": "memo://blob",
        "name": "blob",
        "title": "Binary memo",
        "description": "Sixteen raw bytes, served as a base64 blob.",
        "mimeType": "application/octet-stream",
        "size": len(BLOB_BYTES),
    },
]

RESOURCE_CONTENTS: Final[dict[str, JSON]] = {
    "memo://one": {"uri": "memo://one", "mimeType": "text/plain", "text": "First memo."},
    "memo://two": {"uri": "memo://two", "mimeType": "text/plain", "text": "Second memo."},
    "memo://blob": {
        "uri": "memo://blob",
        "mimeType": "application/octet-stream",
        "blob": base64.b64encode(BLOB_BYTES).decode("ascii"),
    },
}

RESOURCE_TEMPLATES: Final[list[JSON]] = [
    {
        "uriTemplate": "memo://{name}",
        "name": "memo",
        "title": "Memo by name",
        "description": "A memo addressed by its name.",
        "mimeType": "text/plain",
    },
]

PROMPTS: Final[list[JSON]] = [
    {
        "name": "greet",
        "title": "Greeting",
        "description": "Greets someone by name.",
        "arguments": [{"name": "name", "description": "Who to greet.", "required": True}],
    },
]

# Values offered by completion/complete for the `name` argument of `greet`.
GREET_NAMES: Final = ("Ada", "Alan", "Alice", "Barbara", "Grace", "Linus")

LOG_LEVELS: Final = frozenset(
    {"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"}
)


def server_info(version: str) -> JSON:
    """The server's `serverInfo` (the same in both eras)."""
    return {"name": SERVER_NAME, "title": SERVER_TITLE, "version": version}


NAME_SCHEMA: Final[JSON] = {
    "type": "object",
    "properties": {"name": {"type": "string", "description": "Your name"}},
    "required": ["name"],
}
"""The form the elicitation tools ask the user to fill in."""
