# mypy: ignore-errors
# This file runs in .venv-mcp126 against mcp==1.26.0 (whose API our .venv's mcp 2.3 lacks).
"""A FastMCP server of ``mcp==1.26.0`` with 380 tools, run as a child process.

The setup of a real bug report: a FastMCP 1.x server with hundreds of tools, on which
clients hit ``-32602 Received request before initialization was complete``.

It needs ``mcp==1.26.0`` and so its own virtual environment (ours has mcp 2.3)::

    .venv-mcp126/bin/python tests/peers/mcp126_server.py --transport sse
    .venv-mcp126/bin/python tests/peers/mcp126_server.py --transport streamable-http
    .venv-mcp126/bin/python tests/peers/mcp126_server.py --transport stdio

``make test`` creates ``.venv-mcp126`` from ``tests/peers/requirements-mcp126.txt``.

Over HTTP it binds 127.0.0.1 (port 0 = ephemeral unless ``--port``), serves
FastMCP's own ASGI app (``sse_app()``: ``GET /sse`` + ``POST /messages/``;
``streamable_http_app()``: ``/mcp``) with uvicorn on that pre-bound socket and, once
accepting, prints exactly one line on stdout, ``PORT <n>``; then stdout goes to
stderr. It exits when its stdin reaches EOF. Over stdio it is a plain stdio server.

The surface: ``echo(text)``, ``add(a, b)`` (structured ``{"result": a + b}``),
``progress(steps)`` and 378 generated catalog tools ``<domain>_<verb>_<n>`` (380 in
all); the resource ``resource://static/hello``; the prompt ``greet(name)``.

This file must stay importable with mcp 1.26 only: it imports nothing from the
project and runs under another interpreter.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import warnings

warnings.simplefilter("ignore")

import uvicorn  # noqa: E402
from mcp.server.fastmcp import Context, FastMCP  # noqa: E402

HOST = "127.0.0.1"
PORT_LINE_PREFIX = "PORT "
TOOL_COUNT = 380

_DOMAINS = (
    "billing",
    "calendar",
    "crm",
    "docs",
    "files",
    "inventory",
    "issues",
    "mail",
    "metrics",
    "search",
    "shipping",
    "tickets",
    "users",
    "wiki",
)
_VERBS = ("get", "list", "create", "update", "delete", "search", "export")


def _catalog_tool(name: str, domain: str, verb: str):
    def tool(query: str, limit: int = 10, include_archived: bool = False) -> str:
        return f"{name}: {verb} {domain} query={query!r} limit={limit} archived={include_archived}"

    tool.__name__ = name
    tool.__doc__ = (
        f"{verb.capitalize()} {domain} records matching a free-text query. "
        f"Returns at most `limit` results; archived {domain} records are skipped "
        "unless `include_archived` is true. Part of a large generated catalog that "
        "reproduces servers exposing hundreds of tools."
    )
    return tool


def build_server() -> FastMCP:
    server = FastMCP(
        "resilient-mcp-peer-mcp126",
        instructions="mcp 1.26 FastMCP peer with 380 tools.",
        host=HOST,
        log_level="WARNING",
    )

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers (structured output)."""
        return a + b

    @server.tool()
    async def progress(ctx: Context, steps: int = 3) -> str:
        """Report `steps` progress notifications, then return."""
        steps = max(0, min(steps, 100))
        for i in range(1, steps + 1):
            await ctx.report_progress(i, steps, f"step {i}/{steps}")
        return f"done {steps}"

    index = 0
    while len(server._tool_manager.list_tools()) < TOOL_COUNT:
        domain = _DOMAINS[index % len(_DOMAINS)]
        verb = _VERBS[(index // len(_DOMAINS)) % len(_VERBS)]
        name = f"{domain}_{verb}_{index:03d}"
        server.add_tool(_catalog_tool(name, domain, verb), name=name)
        index += 1

    @server.resource("resource://static/hello", mime_type="text/plain")
    def hello() -> str:
        """A static text resource."""
        return "hello world"

    @server.prompt()
    def greet(name: str) -> str:
        """A prompt with one argument."""
        return f"Please greet {name} warmly."

    return server


class _AnnouncingServer(uvicorn.Server):
    """uvicorn server that prints the bound port once startup has completed."""

    def __init__(self, config: uvicorn.Config, port: int) -> None:
        super().__init__(config)
        self._port = port

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if self.should_exit:
            return
        sys.stdout.write(f"{PORT_LINE_PREFIX}{self._port}\n")
        sys.stdout.flush()
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


def _watch_stdin(server: uvicorn.Server) -> None:
    """Exit when stdin reaches EOF: the parent closed it or died."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    server.should_exit = True
    timer = threading.Timer(3.0, os._exit, args=(0,))
    timer.daemon = True
    timer.start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--transport", choices=("sse", "streamable-http", "stdio"), default="streamable-http"
    )
    parser.add_argument("--port", type=int, default=0, help="0 = ephemeral (default)")
    args = parser.parse_args(argv)

    server = build_server()
    if args.transport == "stdio":
        server.run("stdio")
        return 0

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((HOST, args.port))
    sock.listen(1024)
    port = sock.getsockname()[1]

    app = server.sse_app() if args.transport == "sse" else server.streamable_http_app()
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    announcing = _AnnouncingServer(config, port)
    threading.Thread(target=_watch_stdin, args=(announcing,), daemon=True).start()
    announcing.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
