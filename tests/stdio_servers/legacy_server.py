"""A minimal MCP server on stdio (stdlib only) for the stdio transport tests.

Flags: --crash-after N (exit 3 on receiving the Nth tools/call, before answering; with
--crash-marker PATH only if PATH does not exist yet, and it is created, so a restarted
server does not crash again), --record PATH (append "pid method [tool]" for every
message received), --exit-at-start (exit 2 at once), --hang (read, never answer),
--deaf (stop reading stdin once initialized), --ignore-sigterm (SIGTERM and end of
input are ignored: only SIGKILL ends it), --garbage (a non-JSON line, a blank line and
an over-long line before every answer, lines ended by CRLF), --silent-until FIFO (write
nothing, read nothing, until something is written to the named pipe FIFO: a server slow
to start, whatever the machine's speed), --modern (speak the modern era: answer
`server/discover`, refuse `initialize`; with --modern-if PATH only if PATH exists: an
upgrade in place, under the same command line), --late-probe (answer `server/discover`
only after `initialize`: a probe answered after it was given up on).
Exits at end of input otherwise, so it never outlives the test.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Any

TOOLS = [
    {"name": "echo", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": True}},
    {"name": "increment", "inputSchema": {"type": "object"}},
    {"name": "crash", "inputSchema": {"type": "object"}},
]
LONG_LINE = b'{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"%s"}}' % (
    b"x" * 300_000
)


def say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--crash-after", type=int, default=0)
    parser.add_argument("--crash-marker")
    parser.add_argument("--record")
    parser.add_argument("--silent-until")
    parser.add_argument("--modern-if")
    for flag in (
        "--late-probe",
        "--modern",
        "--exit-at-start",
        "--hang",
        "--deaf",
        "--ignore-sigterm",
        "--garbage",
    ):
        parser.add_argument(flag, action="store_true")
    args = parser.parse_args()
    args.modern = args.modern or bool(args.modern_if and os.path.exists(args.modern_if))
    if args.exit_at_start:
        say("fatal: missing configuration, giving up")
        sys.exit(2)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.silent_until:
        # Opening a FIFO for reading blocks until the test opens it for writing.
        with open(args.silent_until) as fifo:
            fifo.read()
    say(f"stdio test server starting (pid {os.getpid()})")
    out = sys.stdout.buffer
    newline = b"\r\n" if args.garbage else b"\n"
    calls = 0
    counter = 0
    held: list[dict[str, Any]] = []

    def answer(message: dict[str, Any], result: Any = None, error: Any = None) -> None:
        if args.garbage:
            out.write(b"this is not JSON" + newline + newline + LONG_LINE + newline)
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"]}
        reply.update({"error": error} if error is not None else {"result": result})
        out.write(json.dumps(reply).encode() + newline)
        out.flush()

    for raw in sys.stdin.buffer:
        message = json.loads(raw)
        method = message.get("method")
        name = (message.get("params") or {}).get("name", "")
        say(f"handling {method}")
        if args.record:
            with open(args.record, "a") as record:
                record.write(f"{os.getpid()} {method} {name}".rstrip() + "\n")
        if args.deaf and method == "notifications/initialized":
            say("not reading any more")
            threading.Event().wait()  # until a signal ends us
        if args.hang or "id" not in message:
            continue
        if args.late_probe and method == "server/discover":
            held.append(message)  # answered after initialize, below
            continue
        if args.modern and method == "server/discover":
            answer(
                message,
                {
                    "supportedVersions": ["2026-07-28"],
                    "capabilities": {"tools": {}},
                    "_meta": {
                        "io.modelcontextprotocol/serverInfo": {"name": "stdio-test", "version": "1"}
                    },
                },
            )
        elif args.modern and method == "initialize":
            answer(message, error={"code": -32601, "message": "Method not found: initialize"})
        elif method == "initialize":
            version = message["params"].get("protocolVersion", "2025-11-25")
            answer(
                message,
                {
                    "protocolVersion": version,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "stdio-test", "version": "1"},
                },
            )
            for late in held:
                answer(late, error={"code": -32601, "message": "Method not found"})
            held.clear()
        elif method == "ping":
            answer(message, {})
        elif method == "tools/list":
            answer(message, {"tools": TOOLS})
        elif method == "tools/call":
            calls += 1
            marker = args.crash_marker
            if name == "crash" or (
                args.crash_after
                and calls >= args.crash_after
                and not (marker and os.path.exists(marker))
            ):
                if marker:
                    open(marker, "w").close()
                say(f"crashing on tools/call #{calls}")
                sys.exit(3)
            if name == "increment":
                counter += 1
                text = str(counter)
            else:
                arguments = message["params"].get("arguments", {})
                text = "y" * int(arguments.get("size", 0)) or str(arguments.get("text", ""))
            answer(message, {"content": [{"type": "text", "text": text}]})
        else:
            answer(message, error={"code": -32601, "message": f"Method not found: {method}"})
    if args.ignore_sigterm:
        say("end of input ignored")
        threading.Event().wait()  # until SIGKILL
    say("end of input, bye")


if __name__ == "__main__":
    main()
