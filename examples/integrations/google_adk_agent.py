"""A Google ADK agent using an MCP server's tools through resilient-mcp, offline.

Starts the in-package strict server (which rejects requests sent before its handshake
finished, as the Python SDK does) and runs an ``LlmAgent`` on a scripted model, so no
key and no network are needed: its first step calls two tools at once, its second
answers with what they returned. (ADK's own ``MockModel`` lives in its test runner,
which needs pytest; this model is the same idea, reading the function responses it was
sent.)

Run: python examples/integrations/google_adk_agent.py
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from google.adk.agents import LlmAgent
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import InMemoryRunner
from google.genai import types

from resilient_mcp.integrations.google_adk import ResilientToolset
from resilient_mcp.testing import StrictServer, serve


class ScriptedModel(BaseLlm):
    """Calls ``add`` and ``echo`` in parallel, then reports what they returned."""

    model: str = "scripted"

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        returned = [
            part.function_response
            for content in llm_request.contents
            for part in content.parts or []
            if part.function_response is not None
        ]
        if not returned:  # the user's prompt only: call two tools at once
            calls = [
                types.FunctionCall(id="sum", name="add", args={"a": 2, "b": 3}),
                types.FunctionCall(id="echo", name="echo", args={"text": "hello"}),
            ]
            parts = [types.Part(function_call=call) for call in calls]
        else:
            lines = []
            for response in returned:
                result = response.response or {}
                # McpTool's shape: structured content when the tool sent it, else text.
                shown = result.get("structuredContent") or result["content"][0]["text"]
                lines.append(f"{response.name} -> {shown!r}")
            parts = [types.Part(text="; ".join(lines))]
        # No tokens are spent here; saying so keeps ADK's usage metrics from warning.
        usage = types.GenerateContentResponseUsageMetadata(
            prompt_token_count=0, candidates_token_count=0, total_token_count=0
        )
        yield LlmResponse(content=types.Content(role="model", parts=parts), usage_metadata=usage)


async def main() -> str:
    with serve(StrictServer(handshake_delay=0.3)) as running:
        # Given a URL, the toolset owns its client; the runner closes it on exit.
        toolset = ResilientToolset(running.url)
        agent = LlmAgent(name="assistant", model=ScriptedModel(), tools=[toolset])
        async with InMemoryRunner(agent=agent, app_name="example") as runner:
            session = await runner.session_service.create_session(
                app_name="example", user_id="user"
            )
            prompt = types.Content(role="user", parts=[types.Part(text="Add 2 and 3, echo hello.")])
            output = ""
            async for event in runner.run_async(
                user_id="user", session_id=session.id, new_message=prompt
            ):
                if event.is_final_response() and event.content and event.content.parts:
                    output = "".join(part.text or "" for part in event.content.parts)
        print(output)
        return output


if __name__ == "__main__":
    asyncio.run(main())
