"""The CLI's auth options against a real protected server and the fake authorization
server (tests/auth/_protected.py); the interactive step is a headless hook."""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from resilient_mcp.auth import HeadlessRedirect
from resilient_mcp.cli import _auth, main
from resilient_mcp.cli._exit import Exit
from resilient_mcp.testing import RunningServer, serve
from tests.auth._fake_as import FakeAS
from tests.auth._protected import Protected, attach

SECRET = "svc-secret"


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def protected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[FakeAS, RunningServer]]:
    # Never the user's real config dir, never a real browser.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(_auth, "redirect_handler", HeadlessRedirect)
    for name in _auth.ENV.values():
        monkeypatch.delenv(name, raising=False)
    fake = FakeAS()
    with serve(Protected(fake)) as running:
        attach(fake, running)
        yield fake, running


def tools(output: str) -> list[str]:
    return [tool["name"] for tool in json.loads(output)["tools"]]


def test_auth_oauth_keeps_tokens_in_the_store_so_the_next_run_needs_no_browser(
    protected: tuple[FakeAS, RunningServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, running = protected
    store = tmp_path / "tokens.json"
    argv = ["tools", running.url, "--auth", "oauth", "--token-store", str(store), "--json"]
    code, out, _ = run(argv)
    assert code == Exit.OK
    assert "increment" in tools(out)
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
    assert fake.counts["/authorize"] == 1

    def no_browser() -> Any:
        raise AssertionError("the stored token should have served")

    monkeypatch.setattr(_auth, "redirect_handler", lambda: no_browser)
    fake.revoke_all()  # expired since: the stored refresh token serves
    code, out, _ = run(argv)
    assert code == Exit.OK
    assert fake.counts["/authorize"] == 1
    assert fake.counts["grant:refresh_token"] == 1


def test_the_default_token_store_is_under_the_users_config_dir(
    protected: tuple[FakeAS, RunningServer], tmp_path: Path
) -> None:
    _, running = protected
    code, _, _ = run(["ping", running.url, "--auth", "oauth"])
    assert code == Exit.OK
    store = tmp_path / "config" / "resilient-mcp" / "tokens.json"
    assert store.exists()
    assert stat.S_IMODE(os.stat(store.parent).st_mode) == 0o700


def test_a_denied_authorization_exits_9_with_the_typed_error(
    protected: tuple[FakeAS, RunningServer], tmp_path: Path
) -> None:
    fake, running = protected
    fake.deny = "access_denied"
    store = str(tmp_path / "t.json")
    code, out, _ = run(["tools", running.url, "--auth", "oauth", "--token-store", store, "--json"])
    assert code == Exit.AUTH
    assert json.loads(out)["error"]["class"] == "AuthorizationFailed"
    assert fake.counts["/authorize"] == 1  # once: no second attempt through initialize


def test_client_credentials_from_the_environment_and_the_secret_never_printed(
    protected: tuple[FakeAS, RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, running = protected
    monkeypatch.setenv("RESILIENT_MCP_CLIENT_ID", "svc-id")
    monkeypatch.setenv("RESILIENT_MCP_CLIENT_SECRET", SECRET)
    code, out, err = run(["tools", running.url, "--auth", "client-credentials", "--json"])
    assert code == Exit.OK, err
    assert "increment" in tools(out)
    assert fake.counts["grant:client_credentials"] == 1
    assert fake.counts["/authorize"] == 0
    # A refused secret: exit 9, and the secret is in no output.
    monkeypatch.setenv("RESILIENT_MCP_CLIENT_SECRET", "wrong-" + SECRET)
    for extra in ([], ["--json"]):
        code, out, err = run(["tools", running.url, "--auth", "client-credentials", *extra])
        assert code == Exit.AUTH
        assert SECRET not in out + err
    code, out, err = run(["tools", "--help"])
    assert SECRET not in out + err


def test_bearer_from_the_environment(
    protected: tuple[FakeAS, RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, running = protected
    fake.valid["static-token"] = {"mcp"}
    monkeypatch.setenv("RESILIENT_MCP_BEARER", "static-token")
    code, out, err = run(["ping", running.url, "--json"])
    assert code == Exit.OK
    assert "static-token" not in out + err
    monkeypatch.setenv("RESILIENT_MCP_BEARER", "stale-token")
    code, out, err = run(["ping", running.url, "--json"])
    assert code == Exit.AUTH  # the plain 401: no auth object to renew it
    assert "stale-token" not in out + err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--client-secret", "x"], "needs --auth"),
        (["--auth", "client-credentials", "--client-id", "a"], "--client-secret"),
        (["--auth", "oauth", "--bearer", "t"], "--bearer"),
        (["--auth", "oauth", "--client-secret", "x"], "--client-id"),
    ],
)
def test_auth_options_that_do_not_go_together_are_usage_errors(
    protected: tuple[FakeAS, RunningServer], argv: list[str], message: str
) -> None:
    _, running = protected
    code, out, err = run(["ping", running.url, *argv])
    assert code == Exit.USAGE
    assert message in out + err


def test_auth_with_a_stdio_server_is_a_usage_error(tmp_path: Path) -> None:
    code, out, err = run(
        ["ping", "--auth", "oauth", "--token-store", str(tmp_path / "t.json"), "--", "true"]
    )
    assert code == Exit.USAGE
    assert "HTTP servers only" in out + err
