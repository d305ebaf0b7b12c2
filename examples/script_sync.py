"""A script on the sync client: no event loop, no ``async``, the same guarantees.

Run it offline, against an embedded fault server that expires sessions and refuses
some requests with 503::

    python examples/script_sync.py

or against a server of your own (``resilient-mcp serve-fault --expire-every 3`` prints
one that has the tools the last step uses)::

    python examples/script_sync.py http://127.0.0.1:8000/mcp

`connect_sync` runs the async client on a private event-loop thread: every call blocks,
takes ``timeout=``, and raises the same typed errors. It is safe from many threads.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial

import resilient_mcp
from resilient_mcp.types import CallToolResult, TextResourceContents


def attempt(what: str, call: Callable[[], CallToolResult]) -> CallToolResult | None:
    """Make one tool call; print what happened, including whether the tool ran."""
    try:
        result = call().raise_for_error()
    except resilient_mcp.FateUnknown:
        # It may have run, and it has a side effect: it was not repeated. Check the
        # effect before deciding to call again.
        print(f"{what}: MAYBE ran; not repeated")
        return None
    except resilient_mcp.MCPError as exc:
        # "not_executed": safe to send again; "executed": it ran and failed.
        print(f"{what}: failed, {exc.execution.value} ({type(exc).__name__}: {exc.message})")
        return None
    print(f"{what}: ok {result.text!r}")
    return result


def run(url: str) -> int:
    """Talk to the server at ``url``; return how many increments succeeded."""
    with resilient_mcp.connect_sync(url) as client:
        print(f"connected: {client.era} era over {client.transport}")
        tools = {tool.name for tool in client.list_tools(timeout=20)}
        print(f"{len(tools)} tools")
        for resource in client.list_resources(timeout=20)[:2]:
            contents = client.read_resource(resource.uri, timeout=20).contents[0]
            shown = contents.text if isinstance(contents, TextResourceContents) else "(binary)"
            print(f"read {resource.uri}: {shown!r}")
        if "echo" in tools:
            attempt("echo", lambda: client.call_tool("echo", {"text": "hi"}, timeout=20))
        if "increment" not in tools:
            return 0
        # Sessions that expire or a 503 prove the call did not run: the client opens a
        # new session or waits, and sends it again, within the call's timeout.
        succeeded = 0
        for n in range(1, 7):
            call = partial(client.call_tool, "increment", {"key": f"sync-{n}"}, timeout=20)
            if attempt(f"increment #{n}", call):
                succeeded += 1
        stats = client.stats
        print(f"client: {stats.recoveries} new handshake(s), {stats.retries} re-send(s)")
        return succeeded


def main() -> None:
    if len(sys.argv) > 1:
        run(sys.argv[1])
        return
    from resilient_mcp.testing import Chaos, StrictServer, serve

    # TypeScript's dialect; each session answers 3 requests, 20% of POSTs get a 503.
    # retry_after=None: no Retry-After header, so the client's own short backoff applies.
    chaos = Chaos(seed=5, expire_after_requests=3, reject_rate=0.2, retry_after=None)
    with serve(StrictServer(profile="typescript", chaos=chaos)) as running:
        print(f"embedded fault server on {running.url}")
        succeeded = run(running.url)
        stats = running.stats
        executions = dict(stats.executions)
        print(f"server: {stats.sessions_created} sessions, executions by key: {executions}")
        print(f"server: faults injected: {stats.faults}")
        if succeeded != 6 or sorted(executions.values()) != [1] * 6 or stats.early_requests:
            raise SystemExit("every increment should have run exactly once")


if __name__ == "__main__":
    main()
