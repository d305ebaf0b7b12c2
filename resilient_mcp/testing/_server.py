"""StrictServer: a Streamable HTTP MCP server that is as strict as a real one.

By default it is a stateful legacy-era server (the `initialize` handshake, sessions) that
behaves like the Python SDK 2.x; `profile=` selects another server's dialect (see
`_profiles`), `chaos=` adds seeded faults (see `_chaos`), and `era=` adds or selects the
handshake-free 2026-07-28 era (see `_modern`).

This module is the facade: it validates the configuration (`_config`), wires the layers
together and offers the public methods; `serve()` hosts it through `_host`. The layers,
bottom up: ASGI and JSON-RPC helpers (`_asgi`, `_jsonrpc`); state and counters
(`_state`, `_stats`); HTTP answers and the chaos gate (`_http`); the MCP features,
written once for both eras against one `Context` (`_context`, `_tools`, `_features`);
then the front ends: the legacy session protocol (`_legacy`) under legacy Streamable
HTTP (`_streamable`, `_responses`) and legacy HTTP+SSE (`_legacy_sse`), and the modern
era (`_envelope`, `_rounds`, `_modern_tools`, `_modern_wire`, `_listen`,
`_modern_answer`, `_modern`).

Everything runs on anyio, so the ASGI app works under any ASGI server (uvicorn on
asyncio in `serve()`, or a trio-based server when mounted elsewhere).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Final, Literal

import anyio
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from resilient_mcp.testing._asgi import Endpoint
from resilient_mcp.testing._catalog import JSON
from resilient_mcp.testing._chaos import Chaos
from resilient_mcp.testing._config import ERAS, Era, ServerConfig, server_version
from resilient_mcp.testing._context import Context, ToolCall, text_result
from resilient_mcp.testing._envelope import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSION
from resilient_mcp.testing._features import Features
from resilient_mcp.testing._host import Host
from resilient_mcp.testing._http import ChaosGate, HttpReplies, ServerParts
from resilient_mcp.testing._jsonrpc import INVALID_PARAMS, RESOURCE_NOT_FOUND, notification
from resilient_mcp.testing._legacy import LegacyContext, LegacyProtocol
from resilient_mcp.testing._legacy_sse import MESSAGES_PATH, SSE_PATH, LegacySse, SsePostCounter
from resilient_mcp.testing._listen import Listeners
from resilient_mcp.testing._modern import ModernEra
from resilient_mcp.testing._modern_tools import modern_tools
from resilient_mcp.testing._modern_wire import Exchanges
from resilient_mcp.testing._profiles import DEFAULT_PROFILE, DIALECTS, PROFILES, Profile
from resilient_mcp.testing._rounds import ModernContext, Rounds
from resilient_mcp.testing._state import ServerState
from resilient_mcp.testing._stats import ServerStats
from resilient_mcp.testing._streamable import VERSION_HEADER, StreamableHttp
from resilient_mcp.testing._tools import CatalogTools, Tool

ENDPOINT_PATH: Final = "/mcp"


class StrictServer:
    """A Streamable HTTP MCP server that is as strict as a real one.

    In the legacy era (the default) it speaks protocol 2025-11-25 (and accepts
    2025-06-18 and 2025-03-26) at the endpoint `/mcp` and issues `Mcp-Session-Id` on
    `initialize`. What opens a session's early-request gate (the `initialize` result,
    as in the Python SDK >= 1.18, go-sdk and the TypeScript transport, or
    `notifications/initialized`, as in rmcp <= 1.3, Java and LSP-style servers), how
    a request processed before that is treated, a POST without a session and a session
    that is gone depend on `profile`; the default, ``"python-sdk-2"`` (mcp 2.3), answers
    early requests with the in-band error ``{"code": -32602, "message": "Invalid
    request parameters", "data": ""}``. `PROFILES` lists every profile and
    docs/testing.md what each one sends.

    With ``era="modern"`` it speaks the handshake-free protocol 2026-07-28 instead (no
    `initialize`, no sessions, per-request `_meta`, `server/discover`, `input_required`
    results, `subscriptions/listen`), as the spec and the `mcp` 2.3 server do; with
    ``era="dual"`` it speaks both, choosing per POST as `mcp` 2.3 does: an
    `MCP-Protocol-Version` header naming anything but a handshake-era version (2024-11-05
    … 2025-11-25) goes to the modern era, everything else (`initialize`, session
    requests, requests without the header) to the legacy era and its profile. A legacy
    server answers a modern probe (a `server/discover` POST without a session) exactly
    as the real server of its profile does.

    All parameters are keyword-only and fixed for the server's lifetime:

    - `era`: ``"legacy"`` (default), ``"modern"`` or ``"dual"``.
    - `modern_versions`: the modern protocol versions served, newest last; a request for
      another one gets -32022 with ``data.supported`` set to these (also the
      ``supportedVersions`` of `server/discover`).
    - `ttl_ms`, `cache_scope`: the caching hints of modern cacheable results
      (`server/discover`, the `*/list` methods and `resources/read`).
    - `profile`: the server dialect to reproduce (a name from `PROFILES`).
    - `chaos`: faults to inject (`Chaos`), None for none.
    - `json_response`: answer requests with `application/json` (default) or, when False,
      with `text/event-stream` (priming event, then `event: message` events).
    - `get_stream`: offer the standalone GET SSE stream; False answers GET with 405.
    - `handshake_delay`: seconds of simulated work before `notifications/initialized`
      marks the session ready. The Python SDK and go-sdk profiles send its 202 first
      and process it afterwards, as the real servers do; the others only afterwards.
    - `initialize_delay`: seconds of simulated work before the `initialize` result.
    - `extra_tools`: number of filler tools `tool_0000`, `tool_0001`, ... to add.
    - `page_size`: page length of every `*/list` method (None: no pagination).

    Serve it with `serve()`, or mount `asgi_app()` in any ASGI server (run its
    lifespan, or dropped streams complete their work before the connection closes). A
    server holds its sessions in memory; serve one `StrictServer` from one place at a
    time.

    Raises:
        ValueError: for an unknown profile or era, an out-of-range parameter, or a modern
            era with the legacy SSE profile.
    """

    def __init__(
        self,
        *,
        era: Era = "legacy",
        modern_versions: tuple[str, ...] = (MODERN_PROTOCOL_VERSION,),
        ttl_ms: int = 0,
        cache_scope: Literal["public", "private"] = "private",
        profile: Profile = DEFAULT_PROFILE,
        chaos: Chaos | None = None,
        json_response: bool = True,
        get_stream: bool = True,
        handshake_delay: float = 0.0,
        initialize_delay: float = 0.0,
        extra_tools: int = 0,
        page_size: int | None = None,
    ) -> None:
        if profile not in DIALECTS:
            raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        if handshake_delay < 0 or initialize_delay < 0:
            raise ValueError("delays must be >= 0")
        if extra_tools < 0:
            raise ValueError("extra_tools must be >= 0")
        if page_size is not None and page_size < 1:
            raise ValueError("page_size must be >= 1 or None")
        if era not in ERAS:
            raise ValueError(f"unknown era {era!r}; choose one of {', '.join(ERAS)}")
        if era != "legacy" and profile == "python-sdk-sse":
            raise ValueError("the python-sdk-sse profile is legacy HTTP+SSE; use era='legacy'")
        modern_versions = tuple(modern_versions)
        if not modern_versions or not all(
            isinstance(v, str) and v and v not in HANDSHAKE_PROTOCOL_VERSIONS
            for v in modern_versions
        ):
            raise ValueError("modern_versions must be non-empty modern (not handshake) versions")
        if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or ttl_ms < 0:
            raise ValueError("ttl_ms must be an int >= 0")
        if cache_scope not in ("public", "private"):
            raise ValueError("cache_scope must be 'public' or 'private'")
        self._profile: Profile = profile
        self._chaos_given = chaos
        self._config = ServerConfig(
            era=era,
            modern_versions=modern_versions,
            ttl_ms=ttl_ms,
            cache_scope=cache_scope,
            dialect=DIALECTS[profile],
            json_response=json_response,
            get_stream=get_stream,
            handshake_delay=handshake_delay,
            initialize_delay=initialize_delay,
            chaos=chaos if chaos is not None else Chaos(),
            extra_tools=extra_tools,
            page_size=page_size,
            version=server_version(),
        )
        config = self._config
        self._state = state = ServerState(config.chaos)
        self._host = Host(self._close_all)
        replies = HttpReplies(state.stats)
        # One gate (one set of dice) for every front end: fates follow arrival order.
        parts = ServerParts(config, state, replies, ChaosGate(config.chaos, state, replies))
        catalog = CatalogTools(state).tools(extra_tools)
        self._legacy_features = Features[LegacyContext](
            catalog,
            state.stats,
            page_size=page_size,
            missing_resource_code=RESOURCE_NOT_FOUND,
        )
        self._legacy = LegacyProtocol(config, state, self._legacy_features)
        self._streamable = StreamableHttp(parts, self._legacy)
        self._legacy_sse = LegacySse(parts, self._legacy)
        modern: dict[str, Tool[ModernContext]] = {**catalog, **modern_tools()}
        self._exchanges = Exchanges()
        self._listeners = Listeners(parts, self._exchanges)
        self._modern_features = Features[ModernContext](
            modern,
            state.stats,
            page_size=page_size,
            # 2026-07-28: an unknown resource is -32602, no longer -32002.
            missing_resource_code=INVALID_PARAMS,
        )
        self._modern = ModernEra(
            parts,
            self._modern_features,
            Rounds(secrets.token_bytes(32), state.stats),
            self._exchanges,
            self._listeners,
        )

    # -- public surface -------------------------------------------------------------

    @property
    def stats(self) -> ServerStats:
        """Counters of what the server saw (see `ServerStats`)."""
        return self._state.stats

    @property
    def counter(self) -> int:
        """The value `increment`, `set_value` and `read_counter` work on."""
        return self._state.counter

    @property
    def profile(self) -> Profile:
        """The server dialect this server reproduces (in its legacy era)."""
        return self._profile

    @property
    def era(self) -> Era:
        """The protocol era(s) this server speaks: "legacy", "modern" or "dual"."""
        return self._config.era

    @property
    def modern_versions(self) -> tuple[str, ...]:
        """The modern protocol versions served (`server/discover` supportedVersions)."""
        return self._config.modern_versions

    @property
    def ttl_ms(self) -> int:
        """`ttlMs` of modern cacheable results."""
        return self._config.ttl_ms

    @property
    def cache_scope(self) -> Literal["public", "private"]:
        """`cacheScope` of modern cacheable results."""
        return self._config.cache_scope

    @property
    def chaos(self) -> Chaos | None:
        """The faults this server injects, as given."""
        return self._chaos_given

    @property
    def endpoint_path(self) -> str:
        """Where a client connects: `/mcp`, or `/sse` for the legacy SSE profile."""
        return SSE_PATH if self._profile == "python-sdk-sse" else ENDPOINT_PATH

    @property
    def json_response(self) -> bool:
        """True: responses are `application/json`; False: `text/event-stream`."""
        return self._config.json_response

    @property
    def get_stream(self) -> bool:
        """Whether GET opens a standalone SSE stream (else 405)."""
        return self._config.get_stream

    @property
    def handshake_delay(self) -> float:
        """Seconds `notifications/initialized` takes to be processed."""
        return self._config.handshake_delay

    @property
    def initialize_delay(self) -> float:
        """Seconds `initialize` takes to be answered."""
        return self._config.initialize_delay

    @property
    def extra_tools(self) -> int:
        """Number of filler tools beyond the built-in ones."""
        return self._config.extra_tools

    @property
    def page_size(self) -> int | None:
        """Page length of the list methods, or None for unpaginated lists."""
        return self._config.page_size

    def asgi_app(self) -> Starlette:
        """A Starlette app serving this server, to mount in any ASGI server.

        The routes are `/mcp` (Streamable HTTP), or `/sse` (GET) and `/messages/`
        (POST) for the legacy SSE profile.
        """
        if self._profile == "python-sdk-sse":
            sse = self._legacy_sse
            routes = [
                Route(SSE_PATH, endpoint=Endpoint(sse.handle_get), methods=["GET"]),
                Route(MESSAGES_PATH, endpoint=Endpoint(sse.handle_post), methods=["POST"]),
            ]
            # A modern probe POSTs to the SSE URL and gets Starlette's own 405 (as from
            # the real server); the middleware only counts it.
            middleware = [Middleware(SsePostCounter, stats=self._state.stats)]
            return Starlette(routes=routes, middleware=middleware, lifespan=self._lifespan)
        routes = [Route(ENDPOINT_PATH, endpoint=Endpoint(self._handle_mcp))]
        return Starlette(routes=routes, lifespan=self._lifespan)

    def wait_for_initialized(self, count: int, timeout: float = 10.0) -> bool:
        """Block until `stats.initialized_notifications` reaches `count`; False on timeout.

        For tests: profiles that acknowledge `notifications/initialized` before they
        process it (the Python SDK, go-sdk) count it a moment after the client saw its
        202. Blocking, as :meth:`wait_for_cancellations`.
        """
        return self._state.wait_for_initialized(count, timeout)

    def wait_for_cancellations(self, count: int, timeout: float = 10.0) -> bool:
        """Block until `stats.modern_cancellations` reaches `count`; False on timeout.

        For tests: the server notices a closed response stream on its own loop, some
        time after the client closed it. Blocking, so call it from a worker thread in
        async code (``await anyio.to_thread.run_sync(server.wait_for_cancellations, 1)``).
        """
        return self._state.wait_for_cancellations(count, timeout)

    def restart(self) -> None:
        """Lose every session at once, as a restarted server process would.

        Open connections (response streams, GET streams, requests in flight) are cut
        without a proper end, every session id answers the profile's "gone" answer
        from now on, and the counters (`stats`, `counter`) are kept. Safe to call from
        any thread while `serve()` runs the server.

        Raises:
            RuntimeError: the server's event loop did not run the restart in time.
        """
        self._host.call(self._restart_now)

    def notify_tools_changed(self) -> None:
        """Announce that the tool list changed: `notifications/tools/list_changed` on
        every modern listen stream that asked for it and every legacy GET stream. Safe
        to call from any thread while `serve()` runs the server."""
        self._host.call(lambda: self._broadcast("notifications/tools/list_changed"))

    def add_tool(self, name: str, *, description: str = "", text: str = "ok") -> None:
        """Add a tool (no arguments; it answers `text`) to both eras' lists, then
        announce it as `notify_tools_changed` does: what an agent's next step must see.
        Safe to call from any thread while `serve()` runs the server.

        Raises:
            ValueError: `name` is empty.
        """
        if not name:
            raise ValueError("a tool needs a name")
        definition: JSON = {
            "name": name,
            "description": description or f"Answers {text!r}.",
            "inputSchema": {"type": "object", "properties": {}},
        }

        async def run(ctx: Context, call: ToolCall) -> JSON:
            return text_result(text)

        def add() -> None:
            self._legacy_features.add_tool(Tool(definition, run))
            self._modern_features.add_tool(Tool(definition, run))
            self._broadcast("notifications/tools/list_changed")

        self._host.call(add)

    def notify_prompts_changed(self) -> None:
        """As `notify_tools_changed`, for `notifications/prompts/list_changed`."""
        self._host.call(lambda: self._broadcast("notifications/prompts/list_changed"))

    def notify_resources_changed(self) -> None:
        """As `notify_tools_changed`, for `notifications/resources/list_changed`."""
        self._host.call(lambda: self._broadcast("notifications/resources/list_changed"))

    def notify_resource_updated(self, uri: str) -> None:
        """Announce that resource `uri` changed: `notifications/resources/updated` on the
        modern listen streams subscribed to `uri` and to the legacy sessions that
        `resources/subscribe`d it. Safe to call from any thread while served."""
        self._host.call(lambda: self._broadcast("notifications/resources/updated", {"uri": uri}))

    def close_subscriptions(self) -> None:
        """End every modern `subscriptions/listen` stream gracefully: each gets its
        listen result (``resultType: "complete"`` with its subscription id), then its
        end, as a server shutting down does. Safe to call from any thread."""
        self._host.call(self._listeners.close)

    # -- routing and lifecycle --------------------------------------------------------

    async def _handle_mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`/mcp`: each HTTP request goes to the modern or the legacy front end."""
        if scope["type"] != "http":
            return
        headers = Headers(scope=scope)
        front = self._modern if self._routes_modern(headers) else self._streamable
        await front.handle(scope, headers, receive, send)

    def _routes_modern(self, headers: Headers) -> bool:
        """Whether this HTTP request is for the modern era (see the class docstring)."""
        if self._config.era == "modern":
            return True
        if self._config.era == "legacy":
            return False
        version = headers.get(VERSION_HEADER)
        return version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            self._state.background = tg
            try:
                yield
            finally:
                self._state.background = None
                tg.cancel_scope.cancel()

    def _restart_now(self) -> None:
        self._state.stats.restarts += 1
        self._state.terminate_all(dropped=True)
        self._state.dead_legacy.clear()  # a new process remembers no session
        self._exchanges.drop_all()

    def _close_all(self) -> None:
        """End every session so open streams finish and the ASGI server can stop."""
        self._state.terminate_all()
        self._listeners.close()

    def _broadcast(self, method: str, params: JSON | None = None) -> None:
        event = notification(method, params)
        self._listeners.publish(event)
        self._legacy.publish(event)


def host_of(server: StrictServer) -> Host:
    """The hosting hooks of `server`, for `serve()` (not part of the public API)."""
    return server._host
