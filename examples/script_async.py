"""A script on the async client: list, call, read, and say whether a failed call ran.

Run it offline, against an embedded fault server that cuts some tool-call responses::

    python examples/script_async.py

or against a server of your own (``resilient-mcp serve-fault --drop-rate 0.3`` prints
one that has the tools the last step uses)::

    python examples/script_async.py http://127.0.0.1:8000/mcp

Nothing here waits with ``sleep``: calls wait for the handshake in the client's gate.
The shape every call is handled in (the error's ``execution`` first) is the one to copy.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable

import anyio

import resilient_mcp
from resilient_mcp.types import CallToolResult, TextResourceContents


async def attempt(what: str, call: Awaitable[CallToolResult]) -> CallToolResult | None:
    """Await one tool call; print what happened, including whether the tool ran."""
    try:
        result = (await call).raise_for_error()
    except resilient_mcp.FateUnknown as exc:
        # The call may have run and was not repeated: it has a side effect. Only the
        # caller can find out (below: by reading the counter) and decide.
        print(f"{what}: MAYBE ran ({type(exc).__name__}); not repeated")
        return None
    except resilient_mcp.MCPError as exc:
        # exc.execution says whether the server acted on it: "not_executed" is safe to
        # send again, "executed" ran and failed (e.g. the tool's own isError).
        print(f"{what}: failed, {exc.execution.value} ({type(exc).__name__}: {exc.message})")
        return None
    print(f"{what}: ok {result.text!r}")
    return result


async def counter(client: resilient_mcp.Client) -> int | None:
    """The server's counter, or None if even that could not be read."""
    # read_counter is annotated readOnlyHint: the client repeats it when its answer is
    # lost, up to RetryPolicy.attempts sends.
    result = await attempt("  read_counter", client.call_tool("read_counter"))
    return int(result.text) if result is not None else None


async def run(url: str) -> tuple[int, int]:
    """Talk to the server at ``url``; return how many increments ran and how many
    may have."""
    async with resilient_mcp.connect(url, timeouts=resilient_mcp.Timeouts(request=20)) as client:
        info = client.server_info
        print(f"connected to {info.name if info else '?'}: {client.era} era over")
        print(f"  {client.transport}, protocol {client.protocol_version}")
        tools = {tool.name for tool in await client.list_tools()}
        print(f"{len(tools)} tools: {', '.join(sorted(tools)[:8])}")

        resources = await client.list_resources()
        if resources:
            contents = (await client.read_resource(resources[0].uri)).contents[0]
            shown = contents.text if isinstance(contents, TextResourceContents) else "(binary)"
            print(f"read {resources[0].uri}: {shown!r}")

        if "echo" in tools:
            # echo has no side effect but no annotation says so: idempotent=True lets the
            # client repeat it if its answer is lost (without it: FateUnknown).
            await attempt("echo", client.call_tool("echo", {"text": "hello"}, idempotent=True))
        if "fail" in tools:
            # A tool that reports failure in its result: it ran, so "executed".
            await attempt("fail", client.call_tool("fail", {}))

        if not {"increment", "read_counter"} <= tools:
            return 0, 0
        # A side effect, five times. A lost answer is not retried behind our back;
        # we check the effect instead, and would repeat the call only if it did not run.
        ran = unknown = 0
        for n in range(1, 6):
            before = await counter(client)
            done = await attempt(f"increment #{n}", client.call_tool("increment"))
            if done is not None:
                ran += 1
                continue
            after = await counter(client)
            if before is None or after is None:
                unknown += 1
                print("  could not check; a real script would stop here")
                continue
            ran += after - before
            verdict = "did" if after > before else "did not"
            print(f"  checked: counter {before} -> {after}, so it {verdict} run")
        print(f"increments known to have run: {ran} of 5, {unknown} unknown, none twice")
        return ran, unknown


async def main() -> None:
    if len(sys.argv) > 1:
        await run(sys.argv[1])
        return
    from resilient_mcp.testing import Chaos, StrictServer, serve

    # The Python SDK's dialect, cutting 30% of tool-call responses. The seed makes the
    # run repeatable: the n-th POST always meets the same fate.
    server = StrictServer(chaos=Chaos(seed=14, drop_rate=0.3))
    async with serve(server) as running:
        print(f"embedded fault server on {running.url}")
        ran, unknown = await run(running.url)
        # The server's own count: five calls, each ran at most once.
        executed = running.stats.tool_calls["increment"]
        print(f"server: increment ran {executed} time(s); faults injected: {running.stats.faults}")
        if not ran <= executed <= ran + unknown or running.stats.early_requests:
            raise SystemExit("the script's account disagrees with the server's")


if __name__ == "__main__":
    anyio.run(main)
