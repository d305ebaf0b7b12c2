"""A real `mcp` 2.3.0 server over Streamable HTTP, legacy HTTP+SSE or stdio, as a child process.

Run it as a script or module::

    python tests/peers/mcp_server_app.py [--stateless] [--json-response] [--port 0]
    python tests/peers/mcp_server_app.py --sse [--port 0]      # GET /sse + POST /messages/
    python tests/peers/mcp_server_app.py --stdio               # a stdio server
    python -m tests.peers.mcp_server_app ...

Over HTTP it binds 127.0.0.1 (port 0 = ephemeral unless ``--port`` says otherwise),
starts uvicorn, and once the app is accepting connections prints exactly one line on
stdout::

    PORT <n>

After that line stdout is redirected to stderr, so the parent may stop reading the
pipe. The child exits when its stdin reaches EOF (the parent closed it or died),
so it never outlives the process that started it. With ``--stdio`` stdin/stdout
carry JSON-RPC instead and nothing else is printed on stdout.

Both protocol eras are served with nothing to enable: over Streamable HTTP a POST
whose ``MCP-Protocol-Version`` header is not a handshake version (e.g. 2026-07-28)
goes to mcp's per-request ("modern") entry, anything else to the legacy
initialize-handshake path; over SSE and stdio the first request of a connection
decides its era (``serve_dual_era_loop``).

The surface, for tests and benchmarks:

tools
    ``echo(text) -> str``; ``add(a: int, b: int) -> int`` (structured output
    ``{"result": a + b}``); ``progress(steps=3, delay=0.0) -> str`` (one
    ``notifications/progress`` per step when the call carries a progress token);
    ``log(message, level="info") -> str`` (``notifications/message`` via ctx,
    filtered by the session's ``logging/setLevel``); ``fail(message) ->`` raises,
    so the result has ``isError: true``; ``sleep(seconds) -> str`` (bounded to 30 s);
    ``bad_output()`` declares ``{"result": integer}`` as its outputSchema but returns
    ``{"result": "forty-two"}`` (a tool breaking its own schema).
resources
    ``resource://static/hello`` (text) and the template ``resource://greeting/{name}``.
prompts
    ``greet(name)``, with ``completion/complete`` for its ``name`` argument.
logging
    ``logging/setLevel`` is served (the capability is advertised).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import warnings
import weakref
from typing import Any

# This is a throwaway peer process: silence deprecation chatter (e.g. about the
# legacy logging capability) before mcp is imported.
warnings.simplefilter("ignore")

import uvicorn  # noqa: E402
from mcp.server.connection import Connection  # noqa: E402
from mcp.server.context import ServerRequestContext  # noqa: E402
from mcp.server.mcpserver import Context, MCPServer  # noqa: E402
from mcp.server.mcpserver.exceptions import ToolError  # noqa: E402
from mcp_types import (  # noqa: E402
    CallToolResult,
    Completion,
    CompletionArgument,
    CompletionContext,
    EmptyResult,
    LoggingLevel,
    PromptReference,
    ResourceTemplateReference,
    SetLevelRequestParams,
    TextContent,
)

HOST = "127.0.0.1"
PORT_LINE_PREFIX = "PORT "
NAMES = ("alice", "albert", "bob", "carol", "dave")

_LEVELS: tuple[LoggingLevel, ...] = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)

# The level each connection (= MCP session) asked for with logging/setLevel; default
# everything. In stateless mode every request is a new connection, so it never sticks.
_session_levels: weakref.WeakKeyDictionary[Connection, LoggingLevel] = weakref.WeakKeyDictionary()


def _connection_of(ctx: ServerRequestContext[Any, Any]) -> Connection:
    # mcp 2.3.0 builds a ServerSession per request; the Connection is the session.
    connection: Connection = ctx.session._connection
    return connection


def build_server() -> MCPServer[Any]:
    """The peer server: the same surface whatever the transport options."""
    server: MCPServer[Any] = MCPServer(
        "resilient-mcp-test-peer",
        version="1.0.0",
        instructions="Test peer for resilient-mcp.",
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
    async def progress(ctx: Context, steps: int = 3, delay: float = 0.0) -> str:
        """Report `steps` progress notifications, then return."""
        import anyio

        steps = max(0, min(steps, 100))
        for i in range(1, steps + 1):
            await ctx.report_progress(i, steps, f"step {i}/{steps}")
            if delay > 0:
                await anyio.sleep(min(delay, 5.0))
        return f"done {steps}"

    @server.tool()
    async def log(ctx: Context, message: str, level: LoggingLevel = "info") -> str:
        """Send `message` as a notifications/message log entry at `level`."""
        wanted = _session_levels.get(_connection_of(ctx.request_context), "debug")
        if _LEVELS.index(level) >= _LEVELS.index(wanted):
            await ctx.log(level, message, logger_name="peer")
            return f"logged {level}"
        return f"filtered {level}"

    @server.tool()
    def fail(message: str = "boom") -> str:
        """Always raise: the result is a tool error (isError: true)."""
        raise ToolError(message)

    @server.tool()
    async def sleep(seconds: float) -> str:
        """Sleep (at most 30 s), then return."""
        import anyio

        await anyio.sleep(max(0.0, min(seconds, 30.0)))
        return f"slept {seconds}"

    def bad_output() -> CallToolResult:
        """Declares an integer `result` in its outputSchema but returns a string."""
        return CallToolResult(
            content=[TextContent(type="text", text="forty-two")],
            structured_content={"result": "forty-two"},
        )

    # A schema set by hand (no output model) is advertised but not enforced by the server:
    # the one way to make an MCPServer tool break its own outputSchema.
    server.add_tool(bad_output)
    bad = server._tool_manager.get_tool("bad_output")
    assert bad is not None
    bad.fn_metadata.output_schema = {
        "type": "object",
        "properties": {"result": {"type": "integer"}},
        "required": ["result"],
    }

    @server.resource("resource://static/hello", mime_type="text/plain")
    def hello() -> str:
        """A static text resource."""
        return "hello world"

    @server.resource("resource://greeting/{name}", mime_type="text/plain")
    def greeting(name: str) -> str:
        """A templated resource."""
        return f"Hello, {name}!"

    @server.prompt()
    def greet(name: str) -> str:
        """A prompt with one argument."""
        return f"Please greet {name} warmly."

    @server.completion()  # type: ignore[no-untyped-call, untyped-decorator]
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        if argument.name == "name":
            values = [n for n in NAMES if n.startswith(argument.value)]
            return Completion(values=values, total=len(values), has_more=False)
        return None

    async def set_level(
        ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams
    ) -> EmptyResult:
        _session_levels[_connection_of(ctx)] = params.level
        return EmptyResult()

    # MCPServer does not serve logging/setLevel on its own; real servers commonly do.
    lowlevel = server._lowlevel_server
    lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
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
    # If graceful shutdown stalls, leave anyway.
    timer = threading.Timer(3.0, os._exit, args=(0,))
    timer.daemon = True
    timer.start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--sse", action="store_true", help="legacy HTTP+SSE (GET /sse)")
    mode.add_argument("--stdio", action="store_true", help="stdio server; no port")
    parser.add_argument("--stateless", action="store_true", help="stateless_http=True")
    parser.add_argument("--json-response", action="store_true", help="json_response=True")
    parser.add_argument("--port", type=int, default=0, help="0 = ephemeral (default)")
    parser.add_argument("--no-stdin-watch", action="store_true", help="do not exit on stdin EOF")
    args = parser.parse_args(argv)
    if args.stdio:
        import anyio

        anyio.run(build_server().run_stdio_async)
        return 0

    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose
    # proto is IPPROTO_TCP. With proto 0, Nagle + delayed ACK add ~40 ms to every
    # response after the first on a keep-alive connection.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets
    sock.bind((HOST, args.port))
    sock.listen(1024)
    port = sock.getsockname()[1]

    server = build_server()
    app = (
        server.sse_app(host=HOST)
        if args.sse
        else server.streamable_http_app(
            json_response=args.json_response,
            stateless_http=args.stateless,
            host=HOST,
        )
    )
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    announcing = _AnnouncingServer(config, port)
    if not args.no_stdin_watch:
        threading.Thread(target=_watch_stdin, args=(announcing,), daemon=True).start()
    announcing.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
