"""A pydantic-ai agent using an MCP server's tools through resilient-mcp, offline.

Starts the in-package strict server (which rejects requests sent before its handshake
finished, as the Python SDK does), and drives pydantic-ai's own FunctionModel: its first
step calls two tools at once, its second step answers with what they returned.

Run: python examples/integrations/pydantic_ai_agent.py
"""

from __future__ import annotations

import asyncio

from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from resilient_mcp.integrations.pydantic_ai import ResilientToolset
from resilient_mcp.testing import StrictServer, serve


def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if len(messages) == 1:  # the user's prompt only: call two tools in parallel
        return ModelResponse(
            parts=[
                ToolCallPart("add", {"a": 2, "b": 3}, tool_call_id="sum"),
                ToolCallPart("echo", {"text": "hello"}, tool_call_id="echo"),
            ]
        )
    returns = [
        f"{part.tool_name} -> {part.content!r}"
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, ToolReturnPart)
    ]
    return ModelResponse(parts=[TextPart("; ".join(returns))])


async def main() -> str:
    with serve(StrictServer(handshake_delay=0.3)) as running:
        # Given a URL, the toolset owns its client and closes it when the run ends.
        agent = Agent(FunctionModel(model), toolsets=[ResilientToolset(running.url)])
        result = await agent.run("Add 2 and 3, and echo hello.")
        print(result.output)
        return result.output


if __name__ == "__main__":
    asyncio.run(main())
