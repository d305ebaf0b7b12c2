"""Real MCP servers for tests and demos: strict, dialect-faithful and fault-injecting.

`StrictServer` speaks Streamable HTTP: by default the legacy era (protocol 2025-11-25,
`initialize`, stateful sessions); ``era="modern"`` the handshake-free protocol 2026-07-28
(per-request `_meta`, `server/discover`, `input_required`, `subscriptions/listen`), and
``era="dual"`` both, as the mcp 2.3 server does. By default it is as strict as the
Python SDK: requests processed before their session's ``initialize`` get
``-32602 "Invalid request parameters"`` (profiles whose real server gates on
``notifications/initialized`` gate on that instead).
``profile=`` reproduces another real server's answers to early requests and missing
or gone sessions (`PROFILES`), and ``chaos=Chaos(...)`` injects seeded faults: session
expiry, 429/503 with ``Retry-After``, cut response streams (resumable with
``Last-Event-ID``), latency; `StrictServer.restart()` loses every session. `serve()`
runs a server on 127.0.0.1 in a background thread, from sync code or from
asyncio/trio tests::

    from resilient_mcp.testing import Chaos, StrictServer, serve

    server = StrictServer(profile="rmcp-legacy", chaos=Chaos(seed=1, reject_rate=0.1))
    with serve(server) as running:
        ...  # talk MCP to running.url
        assert running.stats.early_requests == 0

Needs the ``testing`` extra (starlette and uvicorn). It never imports the client.
"""

from resilient_mcp.testing._chaos import Chaos
from resilient_mcp.testing._config import ERAS, Era
from resilient_mcp.testing._profiles import PROFILES, Profile
from resilient_mcp.testing._serve import RunningServer, ServerContext, serve
from resilient_mcp.testing._server import StrictServer
from resilient_mcp.testing._stats import ServerStats

__all__ = [
    "ERAS",
    "PROFILES",
    "Chaos",
    "Era",
    "Profile",
    "RunningServer",
    "ServerContext",
    "ServerStats",
    "StrictServer",
    "serve",
]
