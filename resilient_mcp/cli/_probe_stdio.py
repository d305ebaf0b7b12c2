"""The early request over stdio: a second start of the server gets a ``tools/list``
before ``initialize`` (and so before ``notifications/initialized``), then ``initialize``;
never a tool call.

Servers differ (docs server-dialects.md): the TypeScript SDK and mcp-go serve it, the
Python SDK answers -32602, Go code 0, LSP-style servers -32002, Java holds it until
``initialized`` (no answer), rmcp ends the process.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import anyio

from resilient_mcp import StdioServer
from resilient_mcp._versions import LEGACY_PROTOCOL_VERSIONS

# How long to wait for the early answer once ``initialize`` (sent after it) is answered:
# servers answer in order, so a server that holds it (Java) is known by then. The wait
# before that is the server's start-up, bounded only by the caller's timeout: a stopwatch
# from spawn fails on a slow machine (a Python server may take seconds to import).
_AFTER_INITIALIZE = 1.0


def _line(message: dict[str, Any]) -> bytes:
    return (json.dumps({"jsonrpc": "2.0", **message}) + "\n").encode()


async def probe_stdio_early(server: StdioServer, timeout: float) -> dict[str, Any]:
    """The early answer: ``{"answer": "served"|"error"|"none"|"exited", ...}``."""
    init = {
        "protocolVersion": LEGACY_PROTOCOL_VERSIONS[0],
        "capabilities": {},
        "clientInfo": {"name": "resilient-mcp-probe", "version": "0"},
    }
    started = time.perf_counter()
    result: dict[str, Any] = {"answer": "none"}
    process = await anyio.open_process(
        [server.command, *server.args],
        env=server.environment(),
        cwd=server.cwd,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        # tools/list first: servers whose gate opens with the initialize *result* (the
        # Python SDK >= 1.18) would serve it after initialize, as they process in order.
        await process.stdin.send(_line({"id": 2, "method": "tools/list"}))
        await process.stdin.send(_line({"id": 1, "method": "initialize", "params": init}))
        buffer = b""
        with anyio.move_on_after(timeout) as scope:
            while True:
                try:
                    chunk = await process.stdout.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    result = {"answer": "exited"}
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                messages = [m for m in map(_parse, lines) if m]
                if any(m.get("id") == 1 for m in messages):
                    scope.deadline = min(scope.deadline, anyio.current_time() + _AFTER_INITIALIZE)
                answer = next((m for m in messages if m.get("id") == 2), None)
                if answer is not None:
                    error = answer.get("error")
                    result = (
                        {
                            "answer": "error",
                            "code": error.get("code"),
                            "message": error.get("message"),
                        }
                        if isinstance(error, dict)
                        else {"answer": "served"}
                    )
                    break
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.terminate()
                with anyio.move_on_after(5):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            await process.aclose()
    result["seconds"] = round(time.perf_counter() - started, 4)
    result["row"] = _row(result)
    return result


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _row(result: dict[str, Any]) -> str | None:
    """The dialect table's stdio row the early answer matches."""
    kind, code = result["answer"], result.get("code")
    if kind == "served":
        return "no gate (TypeScript SDK Server, mcp-go)"
    if kind == "exited":
        return "rmcp (the process ends)"
    if kind == "none":
        return "java or rmcp >= 1.4 (no answer)"
    if code == -32602:
        return "python-sdk"
    if code == 0:
        return "go"
    if code == -32002:
        return "lsp-style"
    return None
