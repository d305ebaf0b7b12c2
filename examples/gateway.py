"""A gateway that proxies MCP tool calls for many users, on resilient-mcp.

Each user (and credential) gets one long-lived MCP session to the upstream server,
shared by all of that user's requests; at most ``--max-clients`` sessions are open at
once (the least recently used idle one is closed to make room, and a request that finds
every session busy waits for one, within its deadline). Every request has a deadline
(``X-Timeout`` header, seconds), and every failure is answered with an HTTP status and a
JSON body that says whether the call ran upstream (``execution``: ``executed``,
``not_executed`` or ``maybe``), so the caller knows whether it may simply try again.

The airis-style gateway this replaces (an agent platform's, on raw httpx) opened a session
per user with ``initialize``, fired ``notifications/initialized``, then did
``await asyncio.sleep(0.15)`` before forwarding the user's call. The sleep papered over
the handshake race: a server that has not finished processing ``initialized`` rejects
the request (the Python SDK with ``-32602``, Go servers with code ``0``, rmcp by ending
the session). It cost 0.15 s on every new session when the server was fast, was still
too short when it was slow (a large tool catalog), and did nothing for the sessions
that expire or vanish with a restart (``404``), nor for answers lost on the way back.
Here the client's gate waits for the server's own confirmation instead, a lost session
is re-established for every waiting caller at once, and a call is re-sent only when it
provably did not run or is safe to repeat.

Serve it in front of a server of yours::

    python examples/gateway.py --upstream http://127.0.0.1:8000/mcp --port 8080
    curl -X POST localhost:8080/users/ada/tools/echo -d '{"arguments": {"text": "hi"}}'

or check it offline: a strict, flaky fault server upstream (rmcp's dialect, slow to
process ``initialized``, expiring sessions, 503s, cut answers, one restart), the
gateway on 127.0.0.1, and many users calling through it at once::

    python examples/gateway.py --self-test
"""

from __future__ import annotations

import argparse
import hashlib
import socket
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import httpx
import uvicorn
from anyio.abc import TaskGroup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import resilient_mcp
from resilient_mcp import Execution, MCPError

DEFAULT_TIMEOUT = 15.0
MAX_TIMEOUT = 60.0
LATECOMERS = 4  # users of the self-test's second wave, who find the pool full


class Busy(Exception):
    """Every upstream session stayed busy until the request's deadline."""


@dataclass(eq=False)
class _Entry:
    client: resilient_mcp.Client
    leases: int = 1
    opened: anyio.Event = field(default_factory=anyio.Event)
    failed: bool = False


class UserClients:
    """One resilient `Client` per user and credential, at most `max_clients` open."""

    def __init__(
        self, upstream: str, http: httpx.AsyncClient, closer: TaskGroup, *, max_clients: int
    ) -> None:
        self._upstream = upstream
        self._http = http
        self._closer = closer
        self._max = max_clients
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._released = anyio.Event()
        self.opened = 0
        self.evicted = 0
        self.peak = 0

    def __len__(self) -> int:
        return len(self._entries)

    @asynccontextmanager
    async def lease(
        self, user: str, authorization: str | None, deadline: float
    ) -> AsyncIterator[resilient_mcp.Client]:
        """The user's client, for the duration of one request.

        Raises:
            Busy: every client stayed busy until `deadline` (nothing was sent).
        """
        # A new credential gets a new session; the key never holds the token itself.
        digest = hashlib.sha256((authorization or "").encode()).hexdigest()[:16]
        entry = None
        with anyio.move_on_at(deadline):
            entry = await self._acquire(f"{user} {digest}", authorization)
        if entry is None:
            raise Busy
        try:
            yield entry.client
        finally:
            entry.leases -= 1
            self._released.set()
            self._released = anyio.Event()

    async def _acquire(self, key: str, authorization: str | None) -> _Entry:
        while True:
            entry = self._entries.get(key)
            if entry is not None:
                entry.leases += 1
                self._entries.move_to_end(key)
                try:
                    await entry.opened.wait()  # another request of this user is opening it
                except BaseException:
                    entry.leases -= 1
                    raise
                if not entry.failed:
                    return entry
                entry.leases -= 1
                continue
            if len(self._entries) >= self._max:
                idle = next((k for k, e in self._entries.items() if e.leases == 0), None)
                if idle is None:
                    await self._released.wait()
                    continue
                # Closing sends the session's DELETE: do it in the background.
                self._closer.start_soon(self._entries.pop(idle).client.aclose)
                self.evicted += 1
            headers = {"Authorization": authorization} if authorization else None
            server = resilient_mcp.HTTPServer(
                self._upstream, headers=headers, http_client=self._http
            )
            # wait_ready=False: entering returns at once; the first call waits in the gate.
            entry = _Entry(resilient_mcp.connect(server, wait_ready=False))
            self._entries[key] = entry
            self.peak = max(self.peak, len(self._entries))
            try:
                with anyio.CancelScope(shield=True):
                    await entry.client.__aenter__()
            except BaseException:
                entry.failed = True
                del self._entries[key]
                raise
            finally:
                entry.opened.set()
            self.opened += 1
            return entry

    async def aclose(self) -> None:
        """Close every client at once (on shutdown)."""
        async with anyio.create_task_group() as group:
            while self._entries:
                group.start_soon(self._entries.popitem()[1].client.aclose)


def error_answer(exc: MCPError) -> JSONResponse:
    """One typed error as an HTTP answer that says whether the call ran upstream."""
    headers = {}
    if isinstance(exc, resilient_mcp.ToolError):
        status = 422  # the tool ran and reported failure
    elif isinstance(exc, resilient_mcp.FateUnknown):
        status = 502  # it may have run: the caller must not repeat it blindly
    elif isinstance(exc, resilient_mcp.RequestTimeout):
        status = 504
    elif isinstance(exc, resilient_mcp.ServerUnavailable | resilient_mcp.QueueFull):
        status = 503
        retry_after = getattr(exc, "retry_after", None)
        headers["Retry-After"] = str(round(retry_after or 1))
    elif isinstance(exc, resilient_mcp.MethodNotFound | resilient_mcp.ResourceNotFound):
        status = 404
    elif isinstance(exc, resilient_mcp.InvalidParams):
        status = 400
    else:
        status = 502
    body = {"error": type(exc).__name__, "message": exc.message, "execution": exc.execution.value}
    return JSONResponse(body, status_code=status, headers=headers)


def busy_answer() -> JSONResponse:
    body = {
        "error": "Busy",
        "message": "no free upstream session in time",
        "execution": "not_executed",
    }
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})


def deadline_of(request: Request) -> float:
    """The request's own budget in seconds (``X-Timeout``), capped."""
    try:
        timeout = float(request.headers.get("x-timeout", DEFAULT_TIMEOUT))
    except ValueError:
        timeout = DEFAULT_TIMEOUT
    return min(max(timeout, 0.1), MAX_TIMEOUT)


def create_app(upstream: str, *, max_clients: int = 64) -> Starlette:
    """The gateway as an ASGI app; its lifespan opens and closes the upstream clients."""
    pool: dict[str, UserClients] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # One connection pool for every user's session; credentials stay per session.
        limits = httpx.Limits(
            max_connections=max_clients * 2, max_keepalive_connections=max_clients
        )
        async with httpx.AsyncClient(limits=limits) as http, anyio.create_task_group() as closer:
            pool["users"] = users = UserClients(upstream, http, closer, max_clients=max_clients)
            try:
                yield
            finally:
                await users.aclose()

    async def forward(request: Request, tool: str | None) -> JSONResponse:
        users: UserClients = pool["users"]
        deadline = anyio.current_time() + deadline_of(request)
        arguments: Any = {}
        if tool is not None and await request.body():
            try:
                arguments = (await request.json()).get("arguments", {})
            except (ValueError, AttributeError):
                arguments = None
            if not isinstance(arguments, dict):
                bad = {"error": "BadRequest", "message": 'expected {"arguments": {...}}'}
                return JSONResponse({**bad, "execution": "not_executed"}, status_code=400)
        user, authorization = request.path_params["user"], request.headers.get("authorization")
        try:
            async with users.lease(user, authorization, deadline) as client:
                # The rest of the request's budget bounds the call, retries and re-handshakes
                # included; running out is a RequestTimeout that says whether it ran.
                timeout = max(deadline - anyio.current_time(), 0.001)
                try:
                    if tool is None:
                        tools = await client.list_tools(timeout=timeout)
                        names = [t.name for t in tools]
                        return JSONResponse({"tools": names, "execution": "executed"})
                    result = (
                        await client.call_tool(tool, arguments, timeout=timeout)
                    ).raise_for_error()
                except MCPError as exc:
                    return error_answer(exc)
        except Busy:
            return busy_answer()
        body: dict[str, Any] = {"text": result.text, "execution": Execution.EXECUTED.value}
        if result.structuredContent is not None:
            body["structured"] = result.structuredContent
        return JSONResponse(body)

    async def list_tools(request: Request) -> JSONResponse:
        return await forward(request, None)

    async def call_tool(request: Request) -> JSONResponse:
        return await forward(request, request.path_params["tool"])

    async def status(request: Request) -> JSONResponse:
        users = pool["users"]
        return JSONResponse({"open": len(users), "opened": users.opened, "evicted": users.evicted})

    routes = [
        Route("/users/{user}/tools", list_tools, methods=["GET"]),
        Route("/users/{user}/tools/{tool}", call_tool, methods=["POST"]),
        Route("/status", status, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.pool = pool
    return app


def listening_socket(port: int) -> socket.socket:
    """Bound and listening before the server starts: connections wait in the backlog."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(512)
    return sock


def uvicorn_server(app: Starlette) -> uvicorn.Server:
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    return uvicorn.Server(config)


async def serve_forever(upstream: str, port: int, max_clients: int) -> None:
    sock = listening_socket(port)
    print(f"gateway on http://127.0.0.1:{sock.getsockname()[1]} -> {upstream}")
    await uvicorn_server(create_app(upstream, max_clients=max_clients)).serve(sockets=[sock])


async def self_test(users: int) -> None:
    """Many users at once through the gateway to a strict, flaky server; check the truth.

    Raises:
        SystemExit: an answer disagreed with what the upstream server counted.
    """
    from resilient_mcp.testing import Chaos, StrictServer, serve

    # rmcp's dialect (an early request ends the session) needing 0.2 s for `initialized`,
    # so the old 0.15 s sleep would lose; sessions expire after 4 requests; 10% of POSTs
    # get a 503 (no Retry-After: the client's own short backoff); 5% of tool answers cut.
    chaos = Chaos(
        seed=14, expire_after_requests=4, reject_rate=0.1, retry_after=None, drop_rate=0.05
    )
    upstream = StrictServer(profile="rmcp-legacy", handshake_delay=0.2, chaos=chaos)
    max_clients = users
    answers: list[tuple[str, str, int, dict[str, Any]]] = []  # (tool, key, status, body)
    async with serve(upstream) as running:
        app = create_app(running.url, max_clients=max_clients)
        sock = listening_socket(0)
        gateway = uvicorn_server(app)
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        print(f"upstream fault server {running.url}; gateway {base}; {users} users")
        half = users * 5 // 2

        def record(tool: str, key: str, response: httpx.Response) -> None:
            answers.append((tool, key, response.status_code, response.json()))
            if len(answers) == half:
                # Mid-run, the upstream restarts: every session is gone at once.
                running.server.restart()

        async def one_user(n: int, http: httpx.AsyncClient) -> None:
            user, headers = f"user{n}", {"Authorization": f"Bearer token-{n}"}
            record("tools/list", user, await http.get(f"/users/{user}/tools", headers=headers))
            echo = {"arguments": {"text": user}}
            record(
                "echo",
                user,
                await http.post(f"/users/{user}/tools/echo", json=echo, headers=headers),
            )
            for i in range(3):
                key = {"arguments": {"key": f"{user}-{i}"}}
                url = f"/users/{user}/tools/increment"
                record("increment", f"{user}-{i}", await http.post(url, json=key, headers=headers))

        async def latecomer(n: int, http: httpx.AsyncClient) -> None:
            user = f"user{n}"
            echo = {"arguments": {"text": user}}
            record("echo", user, await http.post(f"/users/{user}/tools/echo", json=echo))

        with anyio.fail_after(300):
            async with anyio.create_task_group() as group:
                group.start_soon(partial(gateway.serve, sockets=[sock]))
                async with httpx.AsyncClient(base_url=base, timeout=120) as http:
                    async with anyio.create_task_group() as callers:
                        for n in range(users):
                            callers.start_soon(one_user, n, http)
                    # Latecomers: the pool is full of idle sessions, the oldest make room.
                    async with anyio.create_task_group() as callers:
                        for n in range(users, users + LATECOMERS):
                            callers.start_soon(latecomer, n, http)
                    print(f"gateway status: {(await http.get('/status')).json()}")
                gateway.should_exit = True
        stats = running.stats
        pool: UserClients = app.state.pool["users"]
        problems = check(answers, dict(stats.executions), users)
        if stats.early_requests:
            problems.append(f"{stats.early_requests} request(s) reached the server too early")
        if len(pool) or pool.peak > max_clients:
            problems.append(f"{len(pool)} client(s) left open, peak {pool.peak} > {max_clients}")
    outcomes = Counter(f"{tool} {status} {body['execution']}" for tool, _, status, body in answers)
    for outcome, count in sorted(outcomes.items()):
        print(f"  {count:3d} x {outcome}")
    faults = Counter(kind for _, kind in stats.faults)
    print(
        f"upstream: {stats.sessions_created} sessions, {stats.restarts} restart,"
        f" faults {dict(faults)}"
    )
    print(
        f"gateway: {pool.opened} sessions opened, {pool.evicted} evicted, at most {pool.peak} open"
    )
    print("increments: each ran at most once; every answer's execution matches the server's count")
    if problems:
        raise SystemExit("self-test FAILED:\n" + "\n".join(problems))
    print("self-test passed")


def check(
    answers: list[tuple[str, str, int, dict[str, Any]]], executions: dict[str, int], users: int
) -> list[str]:
    """What the gateway said against what the upstream server counted."""
    problems = []
    if len(answers) != users * 5 + LATECOMERS:
        problems.append(f"{len(answers)} answers, expected {users * 5 + LATECOMERS}")
    for tool, key, status, body in answers:
        execution = body.get("execution")
        if tool == "echo" and status == 200 and body["text"] != key:
            problems.append(f"{key} got someone else's echo: {body['text']!r}")
        if tool != "increment":
            continue
        ran = executions.get(key, 0)
        expected = {"executed": {1}, "not_executed": {0}, "maybe": {0, 1}}.get(str(execution))
        if expected is None or ran not in expected:
            problems.append(f"{key}: answered {status} {execution}, but ran {ran} time(s)")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", help="the MCP server's URL")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--max-clients", type=int, default=64)
    parser.add_argument("--self-test", action="store_true", help="run offline and check")
    parser.add_argument("--users", type=int, default=16, help="users in the self-test")
    args = parser.parse_args()
    if args.self_test:
        anyio.run(self_test, args.users)
    elif args.upstream:
        anyio.run(serve_forever, args.upstream, args.port, args.max_clients)
    else:
        parser.error("give --upstream URL, or --self-test")


if __name__ == "__main__":
    main()
