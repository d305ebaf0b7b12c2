"""An OpenAI Agents SDK agent using an MCP server's tools through resilient-mcp, offline.

Starts the in-package strict server (which rejects requests sent before its handshake
finished, as the Python SDK does), and drives the SDK's own ScriptedModel: its first
step calls two tools at once, its second step answers with what they returned. No API
key and no network: tracing is turned off, and the model is the scripted one.

Run: python examples/integrations/openai_agents_agent.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents import Agent, Runner, set_tracing_disabled
from agents.testing import ModelCall, ScriptedModel, assistant_message, function_call

from resilient_mcp.integrations.openai_agents import ResilientMCPServer, stop_on_unknown_effect
from resilient_mcp.testing import StrictServer, serve


def shown(output: Any) -> str:
    # What the model was given: structured content as JSON text, or content parts.
    if isinstance(output, str):
        return output
    return " ".join(part.get("text", "") for part in output)


def answer(call: ModelCall) -> Any:
    returned = {
        item["call_id"]: shown(item["output"])
        for item in call.input
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    }
    return [assistant_message(f"add -> {returned['add']}; echo -> {returned['echo']}")]


async def main() -> str:
    set_tracing_disabled(True)
    model = ScriptedModel(
        [
            [  # call two tools in parallel
                function_call("add", {"a": 2, "b": 3}, call_id="add"),
                function_call("echo", {"text": "hello"}, call_id="echo"),
            ],
            {"responder": answer},
        ]
    )
    with serve(StrictServer(handshake_delay=0.3)) as running:
        # Given a URL, the server owns its client: connected on entry, closed on exit.
        async with ResilientMCPServer(running.url, use_structured_content=True) as server:
            agent = Agent(
                name="assistant",
                model=model,
                mcp_servers=[server],
                # A call that may have run without an answer ends the run, no retry.
                tool_use_behavior=stop_on_unknown_effect,
            )
            result = await Runner.run(agent, "Add 2 and 3, and echo hello.")
    output = str(result.final_output)
    print(output)
    return output


if __name__ == "__main__":
    asyncio.run(main())
