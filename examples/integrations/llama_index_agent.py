"""A LlamaIndex agent using an MCP server's tools through resilient-mcp, offline.

Starts the in-package strict server (which rejects requests sent before its handshake
finished, as the Python SDK does), and drives LlamaIndex's own FunctionAgent with its
MockFunctionCallingLLM: the first step calls two tools at once, the second answers with
what they returned.

Run: python examples/integrations/llama_index_agent.py
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from llama_index.core.agent.workflow import AgentOutput, FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
from llama_index.core.llms.mock import MockFunctionCallingLLM

from resilient_mcp.integrations.llama_index import ResilientMCPToolSpec
from resilient_mcp.testing import StrictServer, serve


def model(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
    if not any(message.role == MessageRole.TOOL for message in messages):
        # The user's prompt only: call two tools in parallel.
        return ChatMessage(
            role=MessageRole.ASSISTANT,
            blocks=[
                ToolCallBlock(tool_call_id="sum", tool_name="add", tool_kwargs={"a": 2, "b": 3}),
                ToolCallBlock(tool_call_id="echo", tool_name="echo", tool_kwargs={"text": "hello"}),
            ],
        )
    names = {"sum": "add", "echo": "echo"}
    returns = [
        f"{names[message.additional_kwargs['tool_call_id']]} -> {message.content}"
        for message in messages
        if message.role == MessageRole.TOOL
    ]
    return ChatMessage(role=MessageRole.ASSISTANT, content="; ".join(sorted(returns)))


async def main() -> str:
    with serve(StrictServer(handshake_delay=0.3)) as running:
        # Given a URL, the spec owns its client and closes it on leaving the block.
        async with ResilientMCPToolSpec(running.url) as spec:
            agent = FunctionAgent(
                llm=MockFunctionCallingLLM(response_generator=model),
                tool_retriever=spec.as_retriever(),  # the tools, fresh at every step
            )
            result: object = await agent.run(user_msg="Add 2 and 3, and echo hello.")
    assert isinstance(result, AgentOutput)
    output = str(result.response.content)
    print(output)
    return output


if __name__ == "__main__":
    asyncio.run(main())
