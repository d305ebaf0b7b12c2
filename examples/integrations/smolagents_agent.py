"""A smolagents agent using an MCP server's tools through resilient-mcp, offline.

Starts the in-package strict server (which rejects requests sent before its handshake
finished, as the Python SDK does), and drives smolagents' ToolCallingAgent with a
scripted model (smolagents ships no test model): its first step calls two tools at
once, which the agent runs in parallel threads; its second step gives the final answer
and the script prints what the tools returned.

Run: python examples/integrations/smolagents_agent.py
"""

from __future__ import annotations

from typing import Any

from smolagents import ToolCallingAgent  # type: ignore[import-untyped]
from smolagents.memory import ActionStep  # type: ignore[import-untyped]
from smolagents.models import (  # type: ignore[import-untyped]
    ChatMessage,
    ChatMessageToolCall,
    ChatMessageToolCallFunction,
    MessageRole,
    Model,
)
from smolagents.monitoring import LogLevel  # type: ignore[import-untyped]

from resilient_mcp.integrations.smolagents import load_tools
from resilient_mcp.testing import StrictServer, serve


def call(name: str, arguments: dict[str, Any], call_id: str) -> ChatMessageToolCall:
    return ChatMessageToolCall(
        function=ChatMessageToolCallFunction(name=name, arguments=arguments),
        id=call_id,
        type="function",
    )


class ScriptedModel(Model):  # type: ignore[misc]  # smolagents is untyped
    """Step 1: add and echo in parallel. Step 2: the final answer."""

    def __init__(self) -> None:
        super().__init__(model_id="scripted")
        self.step = 0

    def generate(self, messages: list[Any], **kwargs: Any) -> ChatMessage:
        self.step += 1
        if self.step == 1:
            calls = [call("add", {"a": 2, "b": 3}, "sum"), call("echo", {"text": "hello"}, "echo")]
        else:
            calls = [call("final_answer", {"answer": "done"}, "answer")]
        return ChatMessage(role=MessageRole.ASSISTANT, content="", tool_calls=calls)


def main() -> str:
    # Given a URL, the collection owns its client and closes it at the end of the block.
    with serve(StrictServer(handshake_delay=0.3)) as running, load_tools(running.url) as mcp:
        agent = ToolCallingAgent(
            tools=mcp.tools,
            model=ScriptedModel(),
            # Stop the run after a call whose effect is unknown, and offer the model
            # tools the server added (notifications/tools/list_changed) at its next step.
            step_callbacks=mcp.step_callbacks,
            verbosity_level=LogLevel.OFF,
        )
        agent.run("Add 2 and 3, and echo hello.")
        (first, *_) = [step for step in agent.memory.steps if isinstance(step, ActionStep)]
        output = "; ".join(
            f"{tool_call.name} -> {observation}"
            for tool_call, observation in zip(
                first.tool_calls, first.observations.splitlines(), strict=True
            )
        )
    print(output)
    return output


if __name__ == "__main__":
    main()
