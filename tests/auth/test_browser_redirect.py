"""BrowserRedirect driven for real: a fake browser, the fake AS, a loopback listener.

The "browser" (the ``open_browser`` seam) runs in the worker thread BrowserRedirect
gives it: it asks the fake authorization server (tests/auth/_fake_as.py, in-process)
for the authorization URL, and follows its redirect over a real socket to the listener
on 127.0.0.1, as a browser would. Nothing waits on a clock except the timeout test,
whose subject is the timeout.
"""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import anyio
import httpx
import pytest

from resilient_mcp._exceptions import UsageError
from resilient_mcp.auth import AuthorizationFailed, BrowserRedirect, OAuth

from ._fake_as import BASE, FakeAS

pytestmark = pytest.mark.anyio

linux_only = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="reads the listening sockets from /proc/net"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def listening_on(port: int) -> set[str]:
    """The local addresses (as /proc/net/tcp spells them) listening on ``port``."""
    found: set[str] = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        table = Path(name)
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            host, _, hex_port = fields[1].rpartition(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(host)
    return found


LOOPBACK_V4 = "0100007F"  # 127.0.0.1, little-endian hex


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
        return True


class FakeBrowser:
    """Opens the authorization URL at the fake AS and follows the redirect to loopback.

    ``before`` runs before the callback (with the port), for stray requests; ``pages``
    records the listener's answer to the callback; ``listening``, the addresses
    listening on the port meanwhile.
    """

    def __init__(
        self,
        fake: FakeAS,
        *,
        before: Callable[[int], None] | None = None,
    ) -> None:
        self.fake = fake
        self.before = before
        self.pages: list[int] = []
        self.listening: set[str] = set()
        self._finished = threading.Event()

    async def finished(self) -> None:
        """Wait until the browser is done (BrowserRedirect does not wait for it)."""
        with anyio.fail_after(60):  # a bound for a hung browser, not a timing check
            await anyio.to_thread.run_sync(self._finished.wait, abandon_on_cancel=True)

    def __call__(self, url: str) -> None:
        try:
            self._browse(url)
        finally:
            self._finished.set()

    def _browse(self, url: str) -> None:
        with httpx.Client(transport=httpx.MockTransport(self.fake.handler)) as idp:
            answer = idp.get(url, follow_redirects=False)
        location = answer.headers["location"]
        port = httpx.URL(location).port
        assert port is not None
        self.listening = listening_on(port) if Path("/proc/net/tcp").exists() else set()
        if self.before is not None:
            self.before(port)
        with httpx.Client(trust_env=False) as browser:
            self.pages.append(browser.get(location).status_code)


def authorization_url(port: int, state: str = "st-1") -> str:
    params = {
        "response_type": "code",
        "client_id": "c",
        "redirect_uri": f"http://127.0.0.1:{port}/callback",
        "state": state,
        "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
    }
    return f"{BASE}/authorize?{urlencode(params)}"


def oauth(fake: FakeAS, redirect: BrowserRedirect, port: int) -> httpx.AsyncClient:
    auth = OAuth(
        http_client=fake.client(),
        redirect=redirect,
        redirect_uri=f"http://127.0.0.1:{port}/callback",
    )
    return httpx.AsyncClient(transport=httpx.MockTransport(fake.handler), auth=auth)


async def test_the_callback_params_come_back_and_the_listener_is_loopback_only() -> None:
    fake = FakeAS()
    port = free_port()
    browser = FakeBrowser(fake)
    params = await BrowserRedirect(open_browser=browser)(authorization_url(port))
    assert params == {"code": "code-0", "state": "st-1"}
    await browser.finished()
    assert browser.pages == [200]
    if sys.platform == "linux":
        assert browser.listening == {LOOPBACK_V4}  # 127.0.0.1, never 0.0.0.0 or ::
    assert not listening_on(port)
    assert port_is_free(port)  # closed afterwards


async def test_the_full_flow_through_the_browser_hook() -> None:
    fake = FakeAS()
    port = free_port()
    browser = FakeBrowser(fake)
    client = oauth(fake, BrowserRedirect(open_browser=browser), port)
    assert (await client.post(f"{BASE}/mcp")).status_code == 200
    await browser.finished()
    assert browser.pages == [200]
    assert fake.counts["grant:authorization_code"] == 1
    assert port_is_free(port)


async def test_state_mismatch_is_authorization_failed_and_nothing_is_exchanged() -> None:
    fake = FakeAS(tamper_state=True)
    port = free_port()
    client = oauth(fake, BrowserRedirect(open_browser=FakeBrowser(fake)), port)
    with pytest.raises(AuthorizationFailed, match="state"):
        await client.post(f"{BASE}/mcp")
    assert fake.counts["/token"] == 0
    assert port_is_free(port)


async def test_access_denied_is_authorization_failed_with_the_oauth_error() -> None:
    fake = FakeAS(deny="access_denied")
    port = free_port()
    browser = FakeBrowser(fake)
    client = oauth(fake, BrowserRedirect(open_browser=browser), port)
    with pytest.raises(AuthorizationFailed) as caught:
        await client.post(f"{BASE}/mcp")
    assert caught.value.error == "access_denied"
    await browser.finished()
    assert browser.pages == [200]  # an error callback is still the callback
    assert fake.counts["/token"] == 0
    assert port_is_free(port)


@linux_only
async def test_no_callback_within_the_timeout_is_authorization_failed() -> None:
    port = free_port()
    seen: list[set[str]] = []

    def nobody_comes(url: str) -> None:
        seen.append(listening_on(port))

    hook = BrowserRedirect(open_browser=nobody_comes, timeout=0.2)
    with pytest.raises(AuthorizationFailed, match="no authorization callback"):
        await hook(authorization_url(port))
    assert seen == [{LOOPBACK_V4}]
    assert not listening_on(port)
    assert port_is_free(port)


async def test_stray_and_broken_requests_do_not_break_the_listener() -> None:
    fake = FakeAS()
    port = free_port()

    def strays(port: int) -> None:
        with httpx.Client(trust_env=False) as other:
            assert other.get(f"http://127.0.0.1:{port}/favicon.ico").status_code == 404
            assert other.get(f"http://127.0.0.1:{port}/callback").status_code == 404
            assert other.post(f"http://127.0.0.1:{port}/callback?code=x").status_code == 404
        with socket.create_connection(("127.0.0.1", port)):
            pass  # connects, sends nothing, leaves
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
            raw.recv(1024)
        raw = socket.create_connection(("127.0.0.1", port))
        raw.sendall(b"GET /callback?code=rst HTTP/1.1\r\n")  # half a head, then a reset
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        raw.close()

    browser = FakeBrowser(fake, before=strays)
    params = await BrowserRedirect(open_browser=browser)(authorization_url(port))
    assert params == {"code": "code-0", "state": "st-1"}
    await browser.finished()
    assert browser.pages == [200]
    assert port_is_free(port)


async def test_a_failing_opener_is_authorization_failed_without_the_url() -> None:
    port = free_port()

    def broken(url: str) -> None:
        raise RuntimeError(f"no display for {url}")

    with pytest.raises(AuthorizationFailed) as caught:
        await BrowserRedirect(open_browser=broken)(authorization_url(port, state="s3cret-state"))
    assert "s3cret-state" not in str(caught.value)
    assert "RuntimeError" in str(caught.value)
    assert port_is_free(port)


async def test_the_default_opener_is_webbrowser_open_looked_up_at_call_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeAS()
    port = free_port()
    browser = FakeBrowser(fake)
    monkeypatch.setattr("webbrowser.open", browser)
    params = await BrowserRedirect()(authorization_url(port))
    assert params["code"] == "code-0"


async def test_a_redirect_uri_off_loopback_is_a_usage_error() -> None:
    url = authorization_url(1).replace("127.0.0.1%3A1", "example.com")
    with pytest.raises(UsageError, match="loopback"):
        await BrowserRedirect(open_browser=print)(url)
