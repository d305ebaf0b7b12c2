"""The problem and the fix, on one machine, in a few seconds.

A strict MCP server takes 0.3 s to process ``notifications/initialized`` -- think of a
380-tool catalog being built -- and answers the notification's POST only then. It
speaks rmcp's dialect (the Rust SDK's legacy transport): a request that arrives before
``initialized`` is processed does not just fail, it ends the whole session.

1. A naive client fires ``notifications/initialized`` and its first call together.
2. The usual workaround sleeps 0.15 s between the handshake steps: slow, and still
   too short for this server.
3. resilient-mcp issues 20 calls before it is even connected. They wait in its gate
   until the handshake is complete on the server's side, then all go through.

Run it with ``make demo``. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx

import resilient_mcp
from resilient_mcp.testing import StrictServer, serve

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "naive", "version": "0"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
CALL = {
    "jsonrpc": "2.0",
    "id": 2,
    "method": "tools/call",
    "params": {"name": "echo", "arguments": {"text": "hello"}},
}


def describe(response: httpx.Response) -> str:
    if not response.headers.get("content-type", "").startswith("application/json"):
        # rmcp answers an early request in plain text, and the session is gone.
        return f"FAILED  HTTP {response.status_code} {response.text!r}"
    answer: dict[str, Any] = response.json()
    if "error" in answer:
        error = answer["error"]
        return f"FAILED  {error['code']} {error['message']!r}"
    return f"ok      {answer['result']['content'][0]['text']!r}"


async def naive(url: str, *, sleep_between: float | None) -> str:
    """What people write today: no gate, at best a fixed sleep."""
    async with httpx.AsyncClient(headers=HEADERS) as http:
        init = await http.post(url, json=INITIALIZE)
        headers = {"Mcp-Session-Id": init.headers["mcp-session-id"]}
        if sleep_between is None:
            answers: dict[str, httpx.Response] = {}

            async def notify() -> None:
                await http.post(url, json=INITIALIZED, headers=headers)

            async def call() -> None:
                answers["call"] = await http.post(url, json=CALL, headers=headers)

            async with anyio.create_task_group() as tg:
                tg.start_soon(notify)
                tg.start_soon(call)
            return describe(answers["call"])

        async def notify_in_background() -> None:
            await http.post(url, json=INITIALIZED, headers=headers)

        # The seed workaround: fire the notification, sleep, hope the server is done.
        async with anyio.create_task_group() as tg:
            tg.start_soon(notify_in_background)
            await anyio.sleep(sleep_between)
            answer = await http.post(url, json=CALL, headers=headers)
        return describe(answer)


async def resilient(url: str) -> tuple[list[str], float, resilient_mcp.SessionStats, str]:
    texts: list[str] = []
    started = time.perf_counter()
    async with resilient_mcp.connect(url, wait_ready=False) as client:

        async def call(i: int) -> None:
            result = await client.call_tool("echo", {"text": f"call {i}"})
            texts.append(result.text)

        # 20 calls issued before the handshake has even started: they park in the gate.
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(call, i)
        elapsed = time.perf_counter() - started
        detected = f"{client.era} era over {client.transport} (protocol {client.protocol_version})"
        return texts, elapsed, client.stats, detected


async def main() -> None:
    print(
        "A strict MCP server (rmcp's dialect) that needs 0.3 s to process"
        " notifications/initialized.\n"
    )
    async with serve(
        StrictServer(profile="rmcp-legacy", handshake_delay=0.3, extra_tools=380)
    ) as running:
        print(f"strict server on {running.url}\n")

        print("1. naive client (initialized and the first call sent together)")
        print("   ", await naive(running.url, sleep_between=None))
        print("2. naive client with the usual asyncio.sleep(0.15) workaround")
        print("   ", await naive(running.url, sleep_between=0.15))
        rejected = running.stats.early_requests
        print(f"   -> the server rejected {rejected} request(s) as 'not initialized'\n")

        print("3. resilient-mcp: 20 calls issued before connect() finished")
        texts, elapsed, stats, detected = await resilient(running.url)
        ok = len(texts)
        early = running.stats.early_requests - rejected
        ready_ms = (stats.time_to_ready or 0) * 1000
        print(f"    ok      {ok}/20 calls succeeded in {elapsed * 1000:.0f} ms")
        print(f"    session ready after {ready_ms:.0f} ms (one handshake, no sleeps)")
        print(f"    detected: {detected}")
        print(f"    requests the server saw too early: {early}")
        if ok != 20 or early != 0:
            raise SystemExit("demo failed: resilient-mcp should have passed every call")


if __name__ == "__main__":
    anyio.run(main)
