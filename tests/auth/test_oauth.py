"""The OAuth client against an in-process authorization server (tests/auth/_fake_as.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import structlog
from structlog.testing import capture_logs

from resilient_mcp._classify import FailureContext, classify_http
from resilient_mcp._exceptions import HTTPStatusError, NotInitialized, SessionError
from resilient_mcp.auth import (
    AuthDiscoveryError,
    AuthorizationFailed,
    FileTokenStorage,
    HeadlessRedirect,
    InsufficientScope,
    MemoryTokenStorage,
    OAuth,
    PKCEUnsupported,
    RegistrationError,
    ResourceMismatch,
    Token,
)

from ._fake_as import BASE, FakeAS

pytestmark = pytest.mark.anyio


def make(fake: FakeAS, **kw: Any) -> tuple[OAuth, httpx.AsyncClient]:
    http = fake.client()
    kw.setdefault("redirect", HeadlessRedirect(http))
    auth = OAuth(http_client=http, logger=structlog.get_logger(), **kw)
    return auth, httpx.AsyncClient(transport=httpx.MockTransport(fake.handler), auth=auth)


async def test_full_flow_on_401_then_replay_with_resource_everywhere() -> None:
    fake = FakeAS()
    auth, client = make(fake)
    response = await client.post(f"{BASE}/mcp", content=b"{}")
    assert response.status_code == 200
    assert fake.counts["executed"] == 1
    assert auth.authorizations == 1
    authorize = next(r for r in fake.seen if r.url.path == "/authorize")
    assert authorize.url.params["resource"] == f"{BASE}/mcp"
    assert authorize.url.params["scope"] == "mcp"  # PRM scopes_supported
    assert fake.form("/token")[0]["resource"] == f"{BASE}/mcp"
    # Never the root PRM first: the challenge's URL was used, nothing else.
    assert fake.counts["/.well-known/oauth-protected-resource"] == 0


async def test_refresh_before_expiry_keeps_rotation_and_sends_resource() -> None:
    fake = FakeAS(expires_in=10)  # inside the refresh margin: refreshed before each use
    auth, client = make(fake)
    await client.post(f"{BASE}/mcp")
    first = await auth._storage.get_token(f"{BASE}/mcp")
    await client.post(f"{BASE}/mcp")
    second = await auth._storage.get_token(f"{BASE}/mcp")
    assert first is not None
    assert second is not None
    assert fake.counts["grant:refresh_token"] == 1
    assert second.refresh_token != first.refresh_token  # the rotated one is kept
    assert fake.form("/token")[-1]["resource"] == f"{BASE}/mcp"
    assert auth.authorizations == 1


async def test_refresh_without_rotation_keeps_the_old_refresh_token() -> None:
    fake = FakeAS(expires_in=10, refresh_rotates=False)
    auth, client = make(fake)
    await client.post(f"{BASE}/mcp")
    first = await auth._storage.get_token(f"{BASE}/mcp")
    await client.post(f"{BASE}/mcp")
    second = await auth._storage.get_token(f"{BASE}/mcp")
    assert first is not None
    assert second is not None
    assert second.refresh_token == first.refresh_token


async def test_revoked_token_refreshes_on_401_then_falls_back_to_full_flow() -> None:
    fake = FakeAS()
    auth, client = make(fake)
    await client.post(f"{BASE}/mcp")
    fake.revoke_all()
    assert (await client.post(f"{BASE}/mcp")).status_code == 200
    assert fake.counts["grant:refresh_token"] == 1
    assert auth.authorizations == 1
    fake.revoke_all()
    fake.refresh_tokens.clear()  # refresh refused (invalid_grant): a full authorization
    assert (await client.post(f"{BASE}/mcp")).status_code == 200
    assert auth.authorizations == 2
    assert fake.counts["executed"] == 3


async def test_refuses_a_server_without_pkce_s256() -> None:
    for methods in (None, ["plain"]):
        fake = FakeAS(pkce=methods)
        _, client = make(fake)
        with pytest.raises(PKCEUnsupported):
            await client.post(f"{BASE}/mcp")
        assert fake.counts["/authorize"] == 0


async def test_dcr_assigned_method_is_followed() -> None:
    fake = FakeAS(registration_method="client_secret_post")
    _, client = make(fake)
    assert (await client.post(f"{BASE}/mcp")).status_code == 200
    registered = next(r for r in fake.seen if r.url.path == "/register")
    assert b'"token_endpoint_auth_method":"none"' in registered.content.replace(b" ", b"")
    token_form = fake.form("/token")[0]
    assert token_form["client_secret"] == "s3cr3t-client"  # as the registration said


async def test_dcr_assigned_unknown_method_is_a_registration_error() -> None:
    fake = FakeAS(registration_method="tls_client_auth")
    _, client = make(fake)
    with pytest.raises(RegistrationError, match="tls_client_auth"):
        await client.post(f"{BASE}/mcp")
    assert fake.counts["/authorize"] == 0


async def test_state_mismatch_exchanges_nothing() -> None:
    fake = FakeAS(tamper_state=True)
    _, client = make(fake)
    with pytest.raises(AuthorizationFailed, match="state"):
        await client.post(f"{BASE}/mcp")
    assert fake.counts["/token"] == 0


async def test_5xx_during_discovery_is_a_typed_error_not_the_legacy_path() -> None:
    fake = FakeAS(prm_status=503)
    _, client = make(fake)
    with pytest.raises(AuthDiscoveryError) as caught:
        await client.post(f"{BASE}/mcp")
    assert caught.value.status_code == 503
    assert fake.counts["/.well-known/oauth-authorization-server"] == 0
    assert fake.counts["/authorize"] == 0


async def test_5xx_on_the_authorization_server_metadata_is_a_typed_error() -> None:
    fake = FakeAS(as_status=502)
    _, client = make(fake)
    with pytest.raises(AuthDiscoveryError) as caught:
        await client.post(f"{BASE}/mcp")
    assert caught.value.status_code == 502
    # An outage, not "no metadata": no OIDC guess, no 2025-03-26 default endpoints.
    assert fake.counts["/.well-known/openid-configuration"] == 0
    assert fake.counts["/authorize"] == fake.counts["/register"] == fake.counts["/token"] == 0


async def test_resource_mismatch_aborts_before_authorize() -> None:
    fake = FakeAS(prm_resource="https://evil.example.com/mcp")
    _, client = make(fake)
    with pytest.raises(ResourceMismatch):
        await client.post(f"{BASE}/mcp")
    assert fake.counts["/authorize"] == 0
    assert fake.counts["/.well-known/oauth-authorization-server"] == 0


async def test_2025_03_26_fallbacks() -> None:
    fake = FakeAS(prm=False)
    _auth, client = make(fake)
    assert (await client.post(f"{BASE}/mcp")).status_code == 200
    assert fake.counts["/.well-known/oauth-protected-resource"] == 1
    assert "resource" not in fake.form("/token")[0]
    fake2 = FakeAS(prm=False, as_metadata=False)  # no metadata at all: default endpoints
    _, client2 = make(fake2)
    assert (await client2.post(f"{BASE}/mcp")).status_code == 200
    assert fake2.counts["/register"] == fake2.counts["/authorize"] == fake2.counts["/token"] == 1


async def test_100_concurrent_401s_one_authorization_other_traffic_not_serialized() -> None:
    fake = FakeAS()
    auth, client = make(fake)
    statuses: list[int] = []

    async def call() -> None:
        statuses.append((await client.post(f"{BASE}/mcp")).status_code)

    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(call)
    assert statuses == [200] * 100
    assert fake.counts["/mcp"] == 200  # every one got its 401 before the token existed
    assert auth.authorizations == 1
    assert fake.counts["/authorize"] == 1
    assert fake.counts["/register"] == 1
    # With a valid token, requests do not take the lock: one held elsewhere blocks none.
    async with auth._lock:
        with anyio.fail_after(30):
            assert (await client.post(f"{BASE}/mcp")).status_code == 200


async def test_step_up_unions_scopes_and_is_bounded() -> None:
    fake = FakeAS()
    auth, client = make(fake)
    await client.post(f"{BASE}/mcp")
    fake.required = {"write"}
    assert (await client.post(f"{BASE}/mcp")).status_code == 200
    last = [r for r in fake.seen if r.url.path == "/authorize"][-1]
    assert set(last.url.params["scope"].split()) == {"mcp", "write"}
    for extra in ("a", "b"):
        fake.required |= {extra}
        assert (await client.post(f"{BASE}/mcp")).status_code == 200
    fake.required |= {"c"}  # a fourth step-up in all: refused
    with pytest.raises(InsufficientScope):
        await client.post(f"{BASE}/mcp")
    assert auth.authorizations == 4


async def test_step_up_without_new_scope_stops_at_once() -> None:
    fake = FakeAS()
    auth, client = make(fake)
    await client.post(f"{BASE}/mcp")
    fake.required = {"mcp"}
    fake.valid = {token: set() for token in fake.valid}  # granted nothing
    with pytest.raises(InsufficientScope):
        await client.post(f"{BASE}/mcp")
    assert auth.authorizations == 1


async def test_secrets_never_in_logs_reprs_or_errors() -> None:
    fake = FakeAS(registration_method="client_secret_post", tamper_state=False)
    auth, client = make(fake, client_secret=None)
    with capture_logs() as logs:
        await client.post(f"{BASE}/mcp")
        fake.revoke_all()
        await client.post(f"{BASE}/mcp")
        fake.tamper_state = True
        fake.revoke_all()
        fake.refresh_tokens.clear()
        with pytest.raises(AuthorizationFailed) as caught:
            await client.post(f"{BASE}/mcp")
    token = await auth._storage.get_token(f"{BASE}/mcp")
    texts = [repr(logs), repr(auth), str(caught.value), repr(caught.value), repr(token)]
    texts += [repr(auth._client), repr(auth._storage)]
    secrets = [*fake.refresh_tokens, "s3cr3t-client", "access-", "refresh-", "code-"]
    secrets += [form["code_verifier"] for form in fake.form("/token") if "code_verifier" in form]
    assert logs  # the flow did log
    for text in texts:
        for secret in secrets:
            assert secret not in text, (secret, text)


async def test_file_storage_mode_0600_atomic_and_keyed(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    storage = FileTokenStorage(path)
    await storage.set_token("http://a/mcp", Token(access_token="x1", refresh_token="r1"))
    await storage.set_token("http://b/mcp", Token(access_token="x2"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = FileTokenStorage(path)
    a = await again.get_token("http://a/mcp")
    assert a is not None
    assert a.refresh_token == "r1"
    assert (await again.get_token("http://c/mcp")) is None
    await again.set_token("http://a/mcp", None)
    assert (await again.get_token("http://a/mcp")) is None
    assert os.listdir(tmp_path) == ["tokens.json"]  # no temp file left


async def test_stored_refresh_token_serves_a_new_process() -> None:
    fake = FakeAS()
    storage = MemoryTokenStorage()
    _, client = make(fake, storage=storage)
    await client.post(f"{BASE}/mcp")
    fake.revoke_all()
    later, client2 = make(fake, storage=storage, redirect=_no_redirect)
    assert (await client2.post(f"{BASE}/mcp")).status_code == 200
    assert later.authorizations == 0
    assert fake.counts["grant:refresh_token"] == 1


async def _no_redirect(url: str) -> dict[str, str]:
    raise AssertionError("no interactive step expected")


async def test_httpx2_happy_path() -> None:
    httpx2 = pytest.importorskip("httpx2")
    fake = FakeAS()
    auth, _ = make(fake)

    def handler(request: Any) -> Any:
        answer = fake.handler(
            httpx.Request(request.method, str(request.url), headers=dict(request.headers))
        )
        return httpx2.Response(
            answer.status_code, headers=dict(answer.headers), content=answer.content
        )

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler), auth=auth.httpx2())
    assert (await client.post(f"{BASE}/mcp")).status_code == 200
    assert auth.authorizations == 1


def test_401_and_403_never_classify_as_session_failures() -> None:
    ctx = FailureContext(method="tools/call", request_id=1, session_id="s")
    for status in (401, 403):
        for body in (
            b"Session not initialized",
            b'{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"Not initialized"}}',
        ):
            error = classify_http(status, "application/json", body, ctx)
            assert isinstance(error, HTTPStatusError)
            assert not isinstance(error, SessionError | NotInitialized)
