"""A 401 on the GET stream and on the session's DELETE, end to end (Streamable HTTP).

The token is revoked at the moment the GET (or the DELETE) arrives at the real server
(tests/auth/_protected.py): the request gets 401, the auth object renews the token once
for everyone who got a 401 (single flight), and replays that request once. Nothing
enters the re-handshake or "not initialized" path (the 401's body says "Server not
initialized" to tempt it), and no tool call runs twice.
"""

from __future__ import annotations

import anyio
import pytest

from resilient_mcp import HTTPServer, connect
from resilient_mcp.auth import HeadlessRedirect, OAuth
from resilient_mcp.testing import serve

from ._fake_as import FakeAS
from ._protected import Protected

pytestmark = pytest.mark.anyio


def oauth(fake: FakeAS) -> OAuth:
    http = fake.client()
    return OAuth(http_client=http, redirect=HeadlessRedirect(http))


async def test_401_on_the_get_stream_renews_once_for_all_and_replays_the_get() -> None:
    fake = FakeAS()
    server = Protected(fake)
    async with serve(server) as running:
        fake.prm_resource = running.url
        auth = oauth(fake)
        target = HTTPServer(running.url, auth=auth)
        # No notification handler: the GET stream opens with the subscription, not at
        # connect, so it is the one request that carries the token when it expires.
        async with connect(target) as client:
            await client.call_tool("increment", {"key": "before"})
            assert auth.authorizations == 1
            # The token expires as the GET arrives; two calls sent meanwhile carry the
            # same stale token, and the three 401s are answered together.
            server.revoke_on = "GET"
            server.hold = 3

            async def calls() -> None:
                await anyio.to_thread.run_sync(server.rejected.wait, abandon_on_cancel=True)
                async with anyio.create_task_group() as tg:
                    for key in ("during-1", "during-2"):
                        tg.start_soon(client.call_tool, "increment", {"key": key})

            with anyio.fail_after(60):  # a bound for a broken client, not a timing check
                async with anyio.create_task_group() as tg:
                    tg.start_soon(calls)
                    await client.subscribe_resource("memo://one")
            await client.call_tool("increment", {"key": "after"})
            assert client.stats.handshakes == 1
        stats = running.stats
    assert sorted(server.held) == ["GET", "POST", "POST"]  # three concurrent 401s ...
    assert fake.counts["grant:refresh_token"] == 1  # ... one renewal
    assert auth.authorizations == 1
    gets = [status for method, status in server.answers if method == "GET"]
    assert gets == [401, 200]  # replayed once
    assert stats.initialize_requests == 1
    assert stats.sessions_created == 1
    assert dict(stats.executions) == {"before": 1, "during-1": 1, "during-2": 1, "after": 1}


async def test_401_on_the_delete_authorizes_and_replays_it_once() -> None:
    fake = FakeAS()
    server = Protected(fake)
    async with serve(server) as running:
        fake.prm_resource = running.url
        auth = oauth(fake)
        async with connect(HTTPServer(running.url, auth=auth)) as client:
            await client.call_tool("increment", {"key": "only"})
            # Revoked with no refresh token left: closing needs a full authorization.
            server.revoke_on = "DELETE"
            server.forget_refresh_tokens = True
        stats = running.stats
        # Read while the server still runs: its shutdown ends sessions too.
        terminated = stats.sessions_terminated
    deletes = [status for method, status in server.answers if method == "DELETE"]
    assert deletes == [401, 200]
    assert terminated == 1  # the replayed DELETE ended the session
    assert auth.authorizations == 2
    assert fake.counts["/authorize"] == 2
    assert fake.counts["grant:refresh_token"] == 1  # tried, refused, then the full flow
    assert stats.initialize_requests == 1
    assert dict(stats.executions) == {"only": 1}
