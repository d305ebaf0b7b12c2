"""docs/auth.md's examples, run as written against a protected local server.

Every ```python block after a ``<!-- example: NAME -->`` line is executed as a script
(``__name__ == "__main__"``) with only its URL changed: to a real StrictServer behind
our bearer check, with the fake authorization server on the same origin
(tests/auth/_protected.py). The terminal example's browser is a fake one, put where
``BrowserRedirect`` looks for it (``webbrowser.open``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from resilient_mcp import HTTPServer, connect
from resilient_mcp.auth import FileTokenStorage, HeadlessRedirect, OAuth, TokenStorage
from resilient_mcp.testing import RunningServer, serve

from ._fake_as import FakeAS
from ._protected import Protected, attach

DOC = Path(__file__).parents[2] / "docs" / "auth.md"
PLACEHOLDER = "https://mcp.example.com/mcp"
_BLOCK = re.compile(r"<!-- example: (?P<name>[\w-]+) -->\n```python\n(?P<code>.*?)```", re.S)


def examples() -> dict[str, str]:
    return {m["name"]: m["code"] for m in _BLOCK.finditer(DOC.read_text(encoding="utf-8"))}


def run_example(name: str, url: str) -> dict[str, Any]:
    code = examples()[name]
    namespace: dict[str, Any] = {"__name__": "__main__"}
    source = compile(code.replace(PLACEHOLDER, url), f"docs/auth.md:{name}", "exec")
    exec(source, namespace)  # our own docs, as a reader would run them
    return namespace


@pytest.fixture
def protected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FakeAS, RunningServer]]:
    monkeypatch.chdir(tmp_path)
    fake = FakeAS()
    with serve(Protected(fake)) as running:
        attach(fake, running)
        yield fake, running


def test_every_setup_has_a_marked_example() -> None:
    found = examples()
    assert set(found) == {"terminal", "service", "token-store", "machine-to-machine"}
    assert all(PLACEHOLDER in code for name, code in found.items() if name != "token-store")


def fake_browser(url: str) -> None:
    """What a person's browser does: the AS redirects at once to the loopback callback."""
    with httpx.Client(trust_env=False) as browser:
        answer = browser.get(url, follow_redirects=False)
        assert browser.get(answer.headers["location"]).status_code == 200


def test_a_person_at_a_terminal(
    protected: tuple[FakeAS, RunningServer],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake, running = protected
    monkeypatch.setattr("webbrowser.open", fake_browser)
    run_example("terminal", running.url)
    assert "increment" in capsys.readouterr().out
    assert fake.counts["/authorize"] == 1
    assert Path("tokens.json").exists()
    # The next run needs no browser: the stored token serves it.
    monkeypatch.setattr("webbrowser.open", _no_browser)
    run_example("terminal", running.url)
    assert fake.counts["/authorize"] == 1


def _no_browser(url: str) -> None:
    raise AssertionError("the stored token should have served")


def test_a_service_with_a_stored_refresh_token(
    protected: tuple[FakeAS, RunningServer],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    fake, running = protected
    monkeypatch.setenv("CLIENT_SECRET", "service-secret")
    monkeypatch.setenv("MCP_TOKEN_FILE", str(tmp_path / "mcp-tokens.json"))
    # Authorized once, by someone, into the same file with the same client.
    once = OAuth(
        client_id="my-service",
        client_secret="service-secret",
        storage=FileTokenStorage(tmp_path / "mcp-tokens.json"),
        redirect=HeadlessRedirect(),
    )
    anyio.run(_list_tools, running.url, once)
    fake.revoke_all()  # the access token has expired since
    run_example("service", running.url)
    assert "increment" in capsys.readouterr().out
    assert fake.counts["/authorize"] == 1  # no person: the refresh token served
    assert fake.counts["grant:refresh_token"] == 1


async def _list_tools(url: str, auth: Any) -> None:
    async with connect(HTTPServer(url, auth=auth)) as client:
        await client.list_tools()


def test_your_own_token_store(protected: tuple[FakeAS, RunningServer], tmp_path: Path) -> None:
    fake, running = protected
    storage_class = run_example("token-store", running.url)["SQLiteStorage"]
    storage = storage_class(str(tmp_path / "auth.db"))
    assert isinstance(storage, TokenStorage)
    anyio.run(_list_tools, running.url, OAuth(storage=storage, redirect=HeadlessRedirect()))
    assert fake.counts["/register"] == fake.counts["/authorize"] == 1
    # A new process on the same database: the registration and the token are found.
    again = storage_class(str(tmp_path / "auth.db"))
    fake.revoke_all()
    anyio.run(_list_tools, running.url, OAuth(storage=again, redirect=HeadlessRedirect()))
    assert fake.counts["/register"] == fake.counts["/authorize"] == 1
    assert fake.counts["grant:refresh_token"] == 1


def test_machine_to_machine(
    protected: tuple[FakeAS, RunningServer],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake, running = protected
    monkeypatch.setenv("SVC_SECRET", "svc-secret")
    run_example("machine-to-machine", running.url)
    assert "increment" in capsys.readouterr().out
    assert fake.counts["grant:client_credentials"] == 1
    assert fake.counts["/authorize"] == 0
    assert fake.seen[-1].headers["authorization"].startswith("Basic ")
