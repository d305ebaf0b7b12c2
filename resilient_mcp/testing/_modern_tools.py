"""The tools only the modern era lists: multi round-trip, header-routed and logging tools.

They are written against `ModernContext`, which they need: `input_required` rounds with
their own state (`ask_user`, `retry_later`), `Mcp-Param-*` routing (`route`) and the
request's log level (`log`).
"""

from __future__ import annotations

import json
from typing import Any, Final

from resilient_mcp.testing._catalog import JSON, NAME_SCHEMA
from resilient_mcp.testing._context import ToolCall, text_result
from resilient_mcp.testing._envelope import LEVELS
from resilient_mcp.testing._rounds import ModernContext, input_request
from resilient_mcp.testing._tools import Tool

# Upper bound of `ask_user.rounds` and `retry_later.times`.
MAX_ROUNDS: Final = 5

MODERN_TOOLS: Final[list[JSON]] = [
    {
        "name": "ask_user",
        "title": "Ask the user",
        "description": (
            "Asks the user `rounds` questions (1-5), one elicitation per input_required "
            "round; completes with every answer once the last one is re-sent."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "rounds": {"type": "integer", "minimum": 1, "maximum": MAX_ROUNDS},
                "question": {"type": "string"},
            },
        },
    },
    {
        "name": "retry_later",
        "title": "Retry later",
        "description": (
            "Answers input_required with only a requestState `times` times (1-5, load "
            "shedding); completes on the next retry."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {"times": {"type": "integer", "minimum": 1, "maximum": MAX_ROUNDS}},
        },
    },
    {
        "name": "route",
        "title": "Route",
        "description": "Echoes text; `region` is mirrored in the Mcp-Param-Region header.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "text": {"type": "string"},
            },
            "required": ["region"],
        },
    },
    {
        "name": "log",
        "title": "Log",
        "description": (
            "Emits one notifications/message at `level` on this request's stream when "
            "the request's _meta asks for that level (io.modelcontextprotocol/logLevel)."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "level": {"type": "string", "enum": list(LEVELS)},
            },
            "required": ["message"],
        },
    },
]


async def _ask_user(ctx: ModernContext, call: ToolCall) -> JSON:
    arguments = call.arguments
    rounds = int(arguments.get("rounds", 1))
    question = str(arguments.get("question", "What is your name?"))
    state = ctx.rounds.verify(ctx.params, call)
    answers: list[Any] = list(state.get("answers", [])) if state is not None else []
    asked = int(state.get("asked", 0)) if state is not None else 0
    if asked:
        response = ctx.rounds.response(ctx.params, f"q{asked}")
        if response is not None:
            if response.get("action") != "accept":
                return text_result(
                    json.dumps({"action": response.get("action"), "answers": answers})
                )
            answers.append(response.get("content"))
        else:
            asked -= 1  # not answered: ask the same question again
    if len(answers) >= rounds:
        return text_result(json.dumps({"action": "accept", "answers": answers}))
    number = len(answers) + 1
    request = input_request(
        "elicitation/create",
        {"message": f"Question {number} of {rounds}: {question}", "requestedSchema": NAME_SCHEMA},
    )
    return ctx.rounds.input_required(
        call, {f"q{number}": request}, {"answers": answers, "asked": number}
    )


async def _retry_later(ctx: ModernContext, call: ToolCall) -> JSON:
    times = int(call.arguments.get("times", 1))
    state = ctx.rounds.verify(ctx.params, call)
    shed = int(state.get("shed", 0)) if state is not None else 0
    if shed >= times:
        return text_result(f"completed after {shed} retries")
    return ctx.rounds.input_required(call, None, {"shed": shed + 1})


async def _route(ctx: ModernContext, call: ToolCall) -> JSON:
    return text_result(f"{call.arguments['region']}: {call.arguments.get('text', '')}")


async def _log(ctx: ModernContext, call: ToolCall) -> JSON:
    level = call.arguments.get("level", "info")
    wanted = ctx.envelope.log_level
    # Only when the request opted in, at or above its level, on its own stream.
    if wanted is not None and LEVELS.index(level) >= LEVELS.index(wanted):
        await ctx.notify(
            "notifications/message",
            {"level": level, "logger": "strict", "data": call.arguments["message"]},
        )
    return text_result(f"logged at {level}")


def modern_tools() -> dict[str, Tool[ModernContext]]:
    """The modern-only tools by name, in `MODERN_TOOLS` order."""
    runs = {"ask_user": _ask_user, "retry_later": _retry_later, "route": _route, "log": _log}
    requires = {"ask_user": "elicitation"}
    return {
        definition["name"]: Tool(
            definition, runs[definition["name"]], requires.get(definition["name"])
        )
        for definition in MODERN_TOOLS
    }
