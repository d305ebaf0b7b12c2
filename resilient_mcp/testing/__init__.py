"""A real MCP server for tests and demos, as strict as the Python SDK.

`StrictServer` speaks Streamable HTTP (protocol 2025-11-25, stateful sessions) and,
like the Python SDK, rejects requests processed before ``notifications/initialized``
with ``-32602 "Invalid request parameters"``. `serve()` runs it on 127.0.0.1 in a
background thread, from sync code or from asyncio/trio tests::

    from resilient_mcp.testing import StrictServer, serve

    with serve(StrictServer(handshake_delay=0.2)) as running:
        ...  # talk MCP to running.url
        assert running.stats.early_requests == 0

Needs the ``testing`` extra (starlette and uvicorn). It never imports the client.
"""

from resilient_mcp.testing._serve import RunningServer, ServerContext, serve
from resilient_mcp.testing._server import ServerStats, StrictServer

__all__ = ["RunningServer", "ServerContext", "ServerStats", "StrictServer", "serve"]
