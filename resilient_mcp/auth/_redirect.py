"""The interactive step of the authorization code flow, as a pluggable hook.

A :data:`RedirectHandler` takes the authorization URL and returns the query parameters
the authorization server put on its redirect back to us (``code``, ``state``, or
``error``). Two are shipped: :class:`HeadlessRedirect` for servers that redirect at once
(tests, services, pre-consented clients) and :class:`BrowserRedirect` for a person at a
terminal (the system browser, and a one-shot listener on the loopback redirect URI).
"""

from __future__ import annotations

import contextlib
import webbrowser
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qsl, urlsplit

import anyio
import anyio.abc
import httpx

from .._exceptions import UsageError
from .._log import redact_url
from ._errors import AuthorizationFailed

__all__ = ["BrowserRedirect", "HeadlessRedirect", "RedirectHandler"]

RedirectHandler = Callable[[str], Awaitable[Mapping[str, str]]]
"""``async (authorization_url) -> callback query parameters`` (``code``, ``state``, ...)."""

_HEAD_LIMIT = 16 * 1024
# A connection that sends no request head within this long is dropped.
_HEAD_TIMEOUT = 30.0


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


class HeadlessRedirect:
    """Follows the authorization URL without a browser and reads the redirect's query.

    For authorization servers that redirect to the client at once (no login page): test
    servers, pre-consented service accounts. The ``Location`` of the answer is not
    followed (nothing needs to listen on the redirect URI).

    Args:
        http_client: the client for the request (one of its own otherwise).

    Raises:
        AuthorizationFailed: (when called) the server did not answer with a redirect.
    """

    def __init__(self, http_client: httpx.AsyncClient | None = None) -> None:
        self._client = http_client

    def __repr__(self) -> str:
        return "HeadlessRedirect()"

    async def __call__(self, authorization_url: str) -> Mapping[str, str]:
        where = redact_url(authorization_url)
        try:
            if self._client is not None:
                response = await self._client.get(authorization_url, follow_redirects=False)
            else:
                async with httpx.AsyncClient() as client:
                    response = await client.get(authorization_url, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise AuthorizationFailed(
                f"could not reach the authorization endpoint {where} ({type(exc).__name__})"
            ) from None
        location = response.headers.get("location")
        if not response.is_redirect or not location:
            raise AuthorizationFailed(
                f"the authorization endpoint {where} answered HTTP {response.status_code} "
                "instead of redirecting: it needs a person (use BrowserRedirect)"
            )
        return _query(location)


class BrowserRedirect:
    """Opens the authorization URL in a browser and waits for the redirect on loopback.

    A listener on ``host:port`` (by default 127.0.0.1 and the port of the
    ``redirect_uri`` in the authorization URL) takes the browser's callback, answers it
    with a short page, and returns its query parameters. Other requests to it (a
    favicon, a stray or broken connection) get a 404 or are dropped, and it keeps
    waiting; it is closed before the call returns, whatever happened.

    Args:
        open_browser: called (in a worker thread) with the authorization URL to show it
            to the person: the seam for "open this URL". Default: ``webbrowser.open``,
            looked up at call time. Pass e.g. ``print`` to show the URL instead (over
            SSH), or a function that drives a browser in tests.
        host: the address to listen on (keep it loopback: the callback carries the code).
        port: the port to listen on (default: the redirect URI's).
        timeout: how long to wait for the person, in seconds.

    Raises:
        AuthorizationFailed: (when called) no callback within ``timeout``, or
            ``open_browser`` failed.
        UsageError: (when called) the redirect URI is not a loopback ``http://`` URI.
        OSError: (when called) the port cannot be listened on (it is taken).
    """

    def __init__(
        self,
        open_browser: Callable[[str], object] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        timeout: float = 300.0,
    ) -> None:
        self._open = open_browser
        self._host = host
        self._port = port
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"BrowserRedirect(host={self._host!r}, port={self._port!r})"

    async def __call__(self, authorization_url: str) -> Mapping[str, str]:
        redirect_uri = _query(authorization_url).get("redirect_uri", "")
        target = urlsplit(redirect_uri)
        if target.scheme != "http" or target.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise UsageError(
                "BrowserRedirect listens on loopback: the redirect_uri must be "
                "http://127.0.0.1:<port>/<path> (or localhost)"
            )
        port = self._port if self._port is not None else (target.port or 80)
        path = target.path or "/"
        opener = self._open if self._open is not None else webbrowser.open
        result: dict[str, str] = {}
        done = anyio.Event()
        failed: list[BaseException] = []
        listener = await anyio.create_tcp_listener(local_host=self._host, local_port=port)

        async def handle(stream: anyio.abc.SocketStream) -> None:
            # A connection that breaks (a browser giving up, a port scanner) must not
            # end the wait: only this connection is dropped.
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                async with stream:
                    params = await _read_callback(stream, path)
                    if params is None:
                        await stream.send(_page(404, "Not the authorization callback."))
                        return
                    await stream.send(_page(200, "Authorization complete: you can close this tab."))
                    if not done.is_set():  # the first callback wins; a repeat changes nothing
                        result.update(params)
                        done.set()

        async def show() -> None:
            try:
                # Abandoned once the callback came: an opener that blocks (a browser
                # kept in the foreground) must not hold the flow.
                await anyio.to_thread.run_sync(opener, authorization_url, abandon_on_cancel=True)
            except Exception as exc:  # reported below, as a typed error
                failed.append(exc)
                done.set()

        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle, tg)
            tg.start_soon(show)
            with anyio.move_on_after(self._timeout):
                await done.wait()
            tg.cancel_scope.cancel()
        if result:
            return result
        if failed:
            # Its text may quote the URL (state, challenge): only the type.
            raise AuthorizationFailed(
                f"could not show the authorization URL ({type(failed[0]).__name__}): "
                "pass BrowserRedirect(open_browser=print) to print it instead"
            )
        raise AuthorizationFailed(
            f"no authorization callback within {self._timeout:g} s: open the URL "
            "yourself, or raise BrowserRedirect(timeout=...)"
        )


async def _read_callback(stream: anyio.abc.SocketStream, path: str) -> dict[str, str] | None:
    """The callback's query parameters, or None for any other request."""
    head = b""
    with anyio.move_on_after(_HEAD_TIMEOUT):
        while b"\r\n\r\n" not in head and len(head) < _HEAD_LIMIT:
            try:
                head += await stream.receive(4096)
            except anyio.EndOfStream:
                break
    line = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    url = line[1] if len(line) >= 2 else ""
    params = _query(url)
    if line[0] != "GET" or urlsplit(url).path != path or not ({"code", "error"} & params.keys()):
        return None
    return params


def _page(status: int, text: str) -> bytes:
    body = f"<!doctype html><title>resilient-mcp</title><p>{text}</p>".encode()
    reason = "OK" if status == 200 else "Not Found"
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
