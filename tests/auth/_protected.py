"""A real MCP server behind a bearer check, with the fake authorization server beside it.

:class:`Protected` is our fault server (`resilient_mcp.testing.StrictServer`, a real
socket on 127.0.0.1) wrapped in an ASGI middleware: ``/mcp`` answers 401 to any request
without a token the fake authorization server (tests/auth/_fake_as.py) issued; every
other path is the fake authorization server itself, so that code which builds its own
HTTP clients (the docs' examples, the CLI) reaches it over a real socket. Call
:func:`attach` once the server runs, to point the fake's URLs at it.

Knobs for the tests: ``revoke_on`` (an HTTP method: the first such request to ``/mcp``
finds every token revoked, as if it expired just then), ``hold`` (keep 401 answers
until that many are waiting, so they are concurrent for certain), and what was
answered (``answers``: (HTTP method, status) per ``/mcp`` request).
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx

from resilient_mcp.testing import RunningServer, StrictServer

from ._fake_as import FakeAS

# A body that would read as "not initialized" if a 401 were classified as a session
# failure: the client must look at the status, never at this.
NOT_INITIALIZED_BODY = (
    b'{"jsonrpc":"2.0","id":null,"error":{"code":-32000,'
    b'"message":"Bad Request: Server not initialized"}}'
)
# Bounds the wait of held 401s if the client never sends the others (a bug): the test
# then fails on ``held`` instead of hanging.
_HOLD_BOUND = 60.0


class Protected(StrictServer):
    """A StrictServer that wants a bearer token the fake AS issued."""

    def __init__(self, fake: FakeAS, **kw: Any) -> None:
        super().__init__(**kw)
        self.fake = fake
        self.unauthorized = 0
        self.answers: list[tuple[str, int]] = []
        self.revoke_on: str | None = None
        self.forget_refresh_tokens = False
        self.hold = 0
        self.held: list[str] = []
        self.rejected = threading.Event()  # set at the first 401 after revoke_on struck
        self._release: anyio.Event | None = None

    def asgi_app(self) -> Any:
        app = super().asgi_app()

        async def protected(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
            elif scope["path"] != "/mcp":
                await self._authorization_server(scope, receive, send)
            else:
                await self._guard(app, scope, receive, send)

        return protected

    async def _guard(self, app: Any, scope: Any, receive: Any, send: Any) -> None:
        fake = self.fake
        method = scope["method"]
        if self.revoke_on == method:
            self.revoke_on = None
            fake.revoke_all()
            if self.forget_refresh_tokens:
                fake.refresh_tokens.clear()
            self._release = anyio.Event() if self.hold else None
        headers = dict(scope["headers"])
        token = headers.get(b"authorization", b"").decode()[len("Bearer ") :]
        if fake.is_valid(token):
            status = 0

            async def recording(message: Any) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    self.answers.append((method, status))
                await send(message)

            await app(scope, receive, recording)
            return
        self.unauthorized += 1
        self.answers.append((method, 401))
        release = self._release
        if release is not None:
            self.held.append(method)
            self.rejected.set()
            if len(self.held) >= self.hold:
                release.set()
            with anyio.move_on_after(_HOLD_BOUND):
                await release.wait()
        metadata = f"{fake.base}/.well-known/oauth-protected-resource/mcp"
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"www-authenticate", f'Bearer resource_metadata="{metadata}"'.encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": NOT_INITIALIZED_BODY})

    async def _authorization_server(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = scope["query_string"].decode()
        url = f"{self.fake.base}{scope['path']}" + (f"?{query}" if query else "")
        request = httpx.Request(
            scope["method"],
            url,
            headers=[(k.decode(), v.decode()) for k, v in scope["headers"]],
            content=body,
        )
        response = self.fake.handler(request)
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [
                    (k.lower().encode(), v.encode())
                    for k, v in response.headers.items()
                    if k.lower() != "content-length"
                ]
                + [(b"content-length", str(len(response.content)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": response.content})


def attach(fake: FakeAS, running: RunningServer) -> None:
    """Point the fake authorization server's URLs at the running server."""
    parts = urlsplit(running.url)
    fake.base = f"{parts.scheme}://{parts.netloc}"
    fake.prm_resource = running.url


def discovery_requests(fake: FakeAS) -> int:
    """Requests for resource or authorization server metadata the fake AS saw."""
    return sum(n for path, n in fake.counts.items() if path.startswith("/.well-known/"))
