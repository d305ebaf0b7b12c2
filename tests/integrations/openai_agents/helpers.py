"""What the openai-agents tests share: running an agent on a ScriptedModel, reading its outputs."""

from __future__ import annotations

from typing import Any

import anyio
from agents import Agent, Runner, RunResult, set_tracing_disabled
from agents.items import ToolCallOutputItem
from agents.mcp import MCPServer
from agents.testing import ModelCall, ScriptedModel

from resilient_mcp.integrations.openai_agents import CUSTOM_DATA_KEY

# Tracing would export to the network.
set_tracing_disabled(True)

LIMIT_S = 60  # a guard against hangs only


def agent(model: ScriptedModel, *servers: MCPServer, **kwargs: Any) -> Agent[Any]:
    return Agent(name="tester", model=model, mcp_servers=list(servers), **kwargs)


async def run(agent: Agent[Any], prompt: str = "go") -> RunResult:
    with anyio.fail_after(LIMIT_S):
        return await Runner.run(agent, prompt)


def outputs(result: RunResult) -> list[ToolCallOutputItem]:
    return [item for item in result.new_items if isinstance(item, ToolCallOutputItem)]


def text(item: ToolCallOutputItem) -> str:
    output = item.output
    if isinstance(output, dict):
        return str(output["text"])
    return str(output)


def status(item: ToolCallOutputItem) -> str:
    assert item.custom_data is not None
    return str(item.custom_data[CUSTOM_DATA_KEY]["status"])


def offered(call: ModelCall) -> set[str]:
    return {tool.name for tool in call.tools}
