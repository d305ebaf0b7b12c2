"""A real `fastmcp` 4.1.2 server over Streamable HTTP, legacy HTTP+SSE or stdio (a child process).

Run it as a script::

    python tests/peers/fastmcp_server_app.py [--transport http|sse|stdio] [--port 0]

Over HTTP it binds 127.0.0.1 (port 0 = ephemeral unless ``--port``), serves FastMCP's
own ASGI app (``http_app()``: ``/mcp``; ``http_app(transport="sse")``: ``GET /sse`` +
``POST /messages/``) with uvicorn on that pre-bound socket and, once accepting,
prints exactly one line on stdout, ``PORT <n>``; then stdout goes to stderr. It exits
when its stdin reaches EOF. With ``--transport stdio`` it is a plain stdio server.

The surface: ``echo(text)``, ``add(a, b)`` (structured ``{"result": a + b}``),
``progress(steps)``; the resource ``resource://static/hello``; the prompt
``greet(name)``. Lists are paginated two items a page (``list_page_size=2``), so
every list call of a client follows ``nextCursor`` against a real server.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import warnings

warnings.simplefilter("ignore")
# No banner, no rich console output on a pipe nobody reads.
os.environ.setdefault("FASTMCP_SHOW_SERVER_BANNER", "false")
os.environ.setdefault("FASTMCP_LOG_LEVEL", "WARNING")
os.environ.setdefault("FASTMCP_CHECK_FOR_UPDATES", "off")

import anyio  # noqa: E402
import uvicorn  # noqa: E402
from fastmcp import Context, FastMCP  # noqa: E402

HOST = "127.0.0.1"
PORT_LINE_PREFIX = "PORT "
PAGE_SIZE = 2


def build_server() -> FastMCP:
    server = FastMCP(
        "resilient-mcp-peer-fastmcp",
        instructions="fastmcp 4 peer for resilient-mcp.",
        version="1.0.0",
        list_page_size=PAGE_SIZE,
    )

    @server.tool
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool
    def add(a: int, b: int) -> int:
        """Add two integers (structured output)."""
        return a + b

    @server.tool
    async def progress(ctx: Context, steps: int = 3) -> str:
        """Report `steps` progress notifications, then return."""
        steps = max(0, min(steps, 100))
        for i in range(1, steps + 1):
            await ctx.report_progress(i, steps, f"step {i}/{steps}")
        return f"done {steps}"

    @server.resource("resource://static/hello", mime_type="text/plain")
    def hello() -> str:
        """A static text resource."""
        return "hello world"

    @server.prompt
    def greet(name: str) -> str:
        """A prompt with one argument."""
        return f"Please greet {name} warmly."

    return server


class _AnnouncingServer(uvicorn.Server):
    """uvicorn server that prints the bound port once startup has completed."""

    def __init__(self, config: uvicorn.Config, port: int) -> None:
        super().__init__(config)
        self._port = port

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.should_exit:  # startup failed; uvicorn will exit non-zero
            return
        sys.stdout.write(f"{PORT_LINE_PREFIX}{self._port}\n")
        sys.stdout.flush()
        # Nothing else may go to the pipe the parent stopped reading.
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--transport", choices=("http", "sse", "stdio"), default="http")
    parser.add_argument("--port", type=int, default=0, help="0 = ephemeral (default)")
    args = parser.parse_args(argv)

    server = build_server()
    if args.transport == "stdio":

        async def run_stdio() -> None:
            await server.run_stdio_async(show_banner=False)

        anyio.run(run_stdio)
        return 0

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((HOST, args.port))
    sock.listen(1024)
    port = sock.getsockname()[1]

    app = server.http_app(transport=args.transport)
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
