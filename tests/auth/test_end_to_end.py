"""connect() + call_tool through OAuth against our fault server behind a bearer check.

The MCP server is the real `resilient_mcp.testing.StrictServer` (a real socket on
127.0.0.1), wrapped in an ASGI middleware that answers 401 to any request without a
token the fake authorization server (in-process, tests/auth/_fake_as.py) issued
(tests/auth/_protected.py).
"""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import anyio
import pytest
from structlog.testing import capture_logs

from resilient_mcp import HTTPServer, connect
from resilient_mcp.auth import AuthorizationFailed, HeadlessRedirect, OAuth, _metadata
from resilient_mcp.testing import Chaos, serve

from ._fake_as import FakeAS
from ._protected import Protected, discovery_requests

pytestmark = pytest.mark.anyio


def oauth(fake: FakeAS) -> OAuth:
    http = fake.client()
    return OAuth(http_client=http, redirect=HeadlessRedirect(http))


async def test_revoked_token_never_rehandshakes_nor_repeats_a_call() -> None:
    fake = FakeAS()
    server = Protected(fake)
    async with serve(server) as running:
        fake.prm_resource = running.url
        auth = oauth(fake)
        async with connect(HTTPServer(running.url, auth=auth)) as client:
            await client.call_tool("increment", {"key": "a"})
            fake.revoke_all()
            await client.call_tool("increment", {"key": "b"})
            assert fake.counts["grant:refresh_token"] == 1
            # Revoked, refresh refused and the new authorization fails: a typed error,
            # the call not executed, no new handshake.
            fake.revoke_all()
            fake.refresh_tokens.clear()
            fake.tamper_state = True
            with pytest.raises(AuthorizationFailed):
                await client.call_tool("increment", {"key": "c"})
        stats = running.stats
        assert stats.initialize_requests == 1
        assert stats.executions == {"a": 1, "b": 1}
        assert server.unauthorized >= 3


async def test_token_expiring_mid_chaos_run_fails_no_call_and_repeats_none() -> None:
    fake = FakeAS()
    server = Protected(
        fake, chaos=Chaos(seed=7, reject_rate=0.15, reject_status=503, retry_after=0)
    )
    async with serve(server) as running:
        fake.prm_resource = running.url
        auth = oauth(fake)
        async with connect(HTTPServer(running.url, auth=auth)) as client:
            for n in range(30):
                if n in (10, 20):
                    fake.revoke_all()  # the token expires under the run
                await client.call_tool("increment", {"key": f"k{n}"})
        stats = running.stats
        assert dict(stats.executions) == {f"k{n}": 1 for n in range(30)}
        assert stats.initialize_requests == 1
        assert auth.authorizations == 1
        assert fake.counts["grant:refresh_token"] == 2
        assert stats.faults  # chaos did strike


async def test_tokens_expiring_by_time_under_concurrent_chaos(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The token's lifetime runs out twice while 20 calls are in flight at once on a
    # server that refuses 15 % of requests with 503. The client and the server read
    # one fake clock: calls that start after the jump see the token expired and
    # refresh before sending; calls already on the wire with it meet the server's 401.
    # Every expiry costs one refresh however many calls meet it; nothing fails, nothing
    # runs twice, the session is never renewed.
    now = [time.time()]
    fake = FakeAS(clock=lambda: now[0])
    monkeypatch.setattr(_metadata, "time", SimpleNamespace(time=lambda: now[0]))
    server = Protected(
        fake, chaos=Chaos(seed=11, reject_rate=0.15, reject_status=503, retry_after=0)
    )
    done = 0
    async with serve(server) as running:
        fake.prm_resource = running.url
        auth = oauth(fake)
        async with connect(HTTPServer(running.url, auth=auth)) as client:

            async def call(key: str) -> None:
                nonlocal done
                await client.call_tool("increment", {"key": key})
                done += 1
                if done in (10, 40):
                    now[0] += fake.expires_in + 1  # every token issued so far expires

            for wave in range(3):
                async with anyio.create_task_group() as calls:
                    for n in range(20):
                        calls.start_soon(call, f"w{wave}-{n}")
        stats = running.stats
    assert dict(stats.executions) == {f"w{w}-{n}": 1 for w in range(3) for n in range(20)}
    assert stats.initialize_requests == 1
    assert auth.authorizations == 1
    assert fake.counts["grant:refresh_token"] == 2
    assert stats.faults  # chaos did strike


async def test_an_auth_error_on_the_era_probe_ends_the_connect_once() -> None:
    # The era probe (server/discover) gets the 401; the authorization fails. That is the
    # connect's answer: no legacy initialize, so no second discovery.
    fake = FakeAS(deny="access_denied")
    server = Protected(fake)
    async with serve(server) as running:
        fake.prm_resource = running.url
        with pytest.raises(AuthorizationFailed) as caught:
            async with connect(HTTPServer(running.url, auth=oauth(fake))):
                pass
        stats = running.stats
    assert caught.value.error == "access_denied"
    assert discovery_requests(fake) == 2  # PRM and AS metadata, once each
    assert fake.counts["/authorize"] == 1
    assert server.answers == [("POST", 401)]  # the probe, and nothing after it
    assert stats.initialize_requests == 0


async def test_no_secret_in_logs_reprs_or_errors_across_a_full_flow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A confidential DCR client (a secret), an authorization, a refresh, an expiry and a
    # failed re-authorization, through connect() with the library's own logger (stdlib
    # `resilient_mcp`, at DEBUG) and anything logged through structlog's configuration.
    caplog.set_level(logging.DEBUG, logger="resilient_mcp")
    fake = FakeAS(registration_method="client_secret_post")
    server = Protected(fake)
    failures: list[BaseException] = []
    with capture_logs() as logs:
        async with serve(server) as running:
            fake.prm_resource = running.url
            auth = oauth(fake)
            async with connect(HTTPServer(running.url, auth=auth)) as client:
                await client.call_tool("increment", {"key": "a"})
                fake.revoke_all()
                await client.call_tool("increment", {"key": "b"})
                fake.revoke_all()
                fake.refresh_tokens.clear()
                fake.tamper_state = True
                with pytest.raises(AuthorizationFailed) as caught:
                    await client.call_tool("increment", {"key": "c"})
                failures.append(caught.value)
                texts = [repr(auth), repr(client), repr(auth._storage), repr(auth._client)]
                texts += [repr(await auth._storage.get_token(auth._server or ""))]
    texts += [repr(logs), caplog.text, *(str(e) for e in failures), *(repr(e) for e in failures)]
    texts += [repr(e.__cause__) for e in failures] + [repr(e.__context__) for e in failures]
    secrets = ["s3cr3t-client", *fake.valid, *fake.refresh_tokens, "access-", "refresh-"]
    secrets += [
        form[key]
        for form in fake.form("/token")
        for key in ("code", "code_verifier")
        if key in form
    ]
    for event in ("auth.authorize", "auth.refresh.done", "auth.token.issued"):
        assert event in caplog.text  # the flow did log
    assert len(secrets) >= 5  # the secret, a code, a verifier and the token prefixes
    for text in texts:
        for secret in secrets:
            assert secret not in text, (secret, text)
