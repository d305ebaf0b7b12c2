"""The HTTP stack: httpx by default, httpx2 when asked for or when the user's client is
one; each stack's own exceptions become our typed errors; secrets stay out of what either
shows; and a user of plain httpx never imports httpx2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from structlog.testing import capture_logs

import resilient_mcp
from resilient_mcp import HTTPServer, RetryPolicy, UsageError
from resilient_mcp._http_stack import HTTPX, HTTPStackName, load, stack_for
from resilient_mcp._transports.http import HTTPTransportBase
from resilient_mcp.testing import StrictServer, serve

URL = "http://127.0.0.1:1/mcp"
SECRET = "Bearer sk-very-secret-token"
LIMIT_S = 20
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback port with no listener (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class TestChoosingTheStack:
    """The stack is the one asked for, else the one of the user's client or auth, else
    httpx; every mismatch is a UsageError at construction, never a failure later."""

    def test_httpx_is_the_default(self) -> None:
        server = HTTPServer(URL)
        assert server.http_stack == "httpx"
        assert stack_for(server) is HTTPX
        assert repr(server) == "HTTPServer('http://127.0.0.1:1/mcp', transport='auto')"

    def test_asked_for_by_name(self) -> None:
        server = HTTPServer(URL, http_stack="httpx2")
        assert server.http_stack == "httpx2"
        assert stack_for(server).module is httpx2
        assert "http_stack='httpx2'" in repr(server)

    @pytest.mark.anyio
    async def test_an_httpx2_client_or_auth_selects_httpx2(self) -> None:
        async with httpx2.AsyncClient() as users:
            assert HTTPServer(URL, http_client=users).http_stack == "httpx2"
        assert HTTPServer(URL, auth=httpx2.BasicAuth("u", "p")).http_stack == "httpx2"
        assert HTTPServer(URL, auth=httpx.BasicAuth("u", "p")).http_stack == "httpx"

    def test_specs_on_different_stacks_differ(self) -> None:
        assert HTTPServer(URL) == HTTPServer(URL, http_stack="httpx")
        assert HTTPServer(URL) != HTTPServer(URL, http_stack="httpx2")

    @pytest.mark.anyio
    async def test_a_client_of_the_other_library_is_refused(self) -> None:
        async with httpx.AsyncClient() as users:
            with pytest.raises(UsageError, match="http_client is an httpx object"):
                HTTPServer(URL, http_client=users, http_stack="httpx2")
        async with httpx2.AsyncClient() as users2:
            with pytest.raises(UsageError, match="http_client is an httpx2 object"):
                HTTPServer(URL, http_client=users2, http_stack="httpx")
            with pytest.raises(UsageError, match="auth is an httpx object"):
                HTTPServer(URL, http_client=users2, auth=httpx.BasicAuth("u", "p"))

    @pytest.mark.parametrize(
        ("options", "match"),
        [
            ({"http_stack": "requests"}, "unknown http_stack"),
            ({"http_client": httpx.Client}, "must be an httpx.AsyncClient or an httpx2"),
            ({"http_client": object}, "must be an httpx.AsyncClient or an httpx2"),
            ({"auth": ("user", "password")}, "must be an httpx.Auth or an httpx2.Auth"),
        ],
        ids=["unknown-name", "sync-client", "not-a-client", "tuple-auth"],
    )
    def test_what_is_neither_library_s_is_refused(self, options: Any, match: str) -> None:
        made = {k: v() if isinstance(v, type) else v for k, v in options.items()}
        with pytest.raises(UsageError, match=match) as info:
            HTTPServer(URL, **made)
        assert "password" not in str(info.value)

    def test_httpx2_missing_is_a_usage_error_that_names_the_extra(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "httpx2", None)  # what `import` finds uninstalled
        with pytest.raises(UsageError, match=r"resilient-mcp\[httpx2\]"):
            HTTPServer(URL, http_stack="httpx2")
        assert HTTPServer(URL).http_stack == "httpx"

    def test_the_httpx2_stack_translates_both_libraries_exceptions(self) -> None:
        stack = load("httpx2")
        assert {httpx2.ConnectError, httpx.ConnectError} <= set(stack.connect_errors)
        assert {httpx2.TransportError, httpx.TransportError} <= set(stack.transport_errors)
        assert not any(cls.__module__.startswith("httpx2") for cls in HTTPX.lost_errors)


@pytest.mark.anyio
class TestOnARealServer:
    """httpx2 end to end against the fault server: our own client and the user's."""

    async def test_our_own_client_is_an_httpx2_client(self) -> None:
        with anyio.fail_after(LIMIT_S):
            async with (
                serve(StrictServer()) as running,
                resilient_mcp.connect(HTTPServer(running.url, http_stack="httpx2")) as client,
            ):
                assert (await client.call_tool("echo", {"text": "hi"})).text == "hi"
                transport = client._session.transport
                assert isinstance(transport, HTTPTransportBase)
                assert isinstance(transport._client, httpx2.AsyncClient)

    async def test_the_users_httpx2_client_is_used_and_never_closed(self) -> None:
        seen: list[str] = []

        async def hook(request: httpx2.Request) -> None:
            seen.append(request.method)

        with anyio.fail_after(LIMIT_S):
            async with (
                serve(StrictServer()) as running,
                httpx2.AsyncClient(event_hooks={"request": [hook]}) as users,
            ):
                async with resilient_mcp.connect(
                    HTTPServer(running.url, http_client=users)
                ) as client:
                    assert (await client.call_tool("echo", {"text": "hi"})).text == "hi"
                assert not users.is_closed
        assert seen.count("POST") >= 3, "initialize, initialized, tools/call"

    async def test_a_lost_session_is_recovered_on_httpx2(self) -> None:
        server = StrictServer(json_response=False)
        with anyio.fail_after(LIMIT_S), resilient_mcp.disable_backoff():
            async with (
                serve(server) as running,
                resilient_mcp.connect(HTTPServer(running.url, http_stack="httpx2")) as client,
            ):
                await client.call_tool("increment", {"key": "before"})
                first = client.session_id
                await anyio.to_thread.run_sync(running.server.restart)
                assert (await client.call_tool("echo", {"text": "again"})).text == "again"
                assert client.session_id != first
                assert client.stats.recoveries == 1
                stats = running.stats
        assert stats.executions["before"] == 1

    async def test_refused_connection_is_a_typed_error_that_shows_no_secret(
        self, http_stack: HTTPStackName
    ) -> None:
        """The stack's ConnectError becomes ours (retried as never sent); neither the
        error, its causes nor the logs show the header or the URL's query."""
        delays: list[float] = []

        async def sleep(delay: float) -> None:
            delays.append(delay)

        server = HTTPServer(
            f"http://user:pw@127.0.0.1:{free_port()}/mcp?api_key=k1",
            headers={"Authorization": SECRET},
            http_stack=http_stack,
        )
        with anyio.fail_after(LIMIT_S), capture_logs() as events:
            async with resilient_mcp.connect(
                server, wait_ready=False, retry=RetryPolicy(sleep=sleep)
            ) as client:
                with pytest.raises(resilient_mcp.ConnectError) as info:
                    await client.ping(timeout=None)
        error: BaseException | None = info.value
        assert info.value.execution is resilient_mcp.Execution.NOT_EXECUTED
        assert delays, "refused: retried as never sent"
        shown = [repr(events), repr(server)]
        while error is not None:
            shown += [str(error), repr(error)]
            error = error.__cause__ or error.__context__
        assert type(info.value.__cause__).__module__ == http_stack
        for text in shown:
            assert "sk-very-secret-token" not in text
            assert "k1" not in text
            assert "pw@" not in text


def test_a_plain_httpx_user_never_imports_httpx2() -> None:
    """In a fresh interpreter (the tests' own has httpx2 loaded), our own client and a
    user's httpx client both work, and HTTPServer's type hints resolve, without httpx2
    being imported; asking for it does import it."""
    script = textwrap.dedent(
        """
        import sys

        import anyio
        import httpx

        import resilient_mcp
        from resilient_mcp.testing import StrictServer, serve

        assert "httpx2" not in sys.modules, "imported by resilient_mcp itself"
        # Public annotations name httpx2's classes, and still resolve without it.
        import typing
        typing.get_type_hints(resilient_mcp.HTTPServer)

        async def main() -> None:
            async with serve(StrictServer()) as running:
                async with resilient_mcp.connect(running.url) as client:
                    assert (await client.call_tool("echo", {"text": "a"})).text == "a"
                async with httpx.AsyncClient() as http:
                    server = resilient_mcp.HTTPServer(running.url, http_client=http)
                    async with resilient_mcp.connect(server) as client:
                        assert (await client.call_tool("echo", {"text": "b"})).text == "b"
            assert "httpx2" not in sys.modules, "imported on the way"
            resilient_mcp.HTTPServer(running.url, http_stack="httpx2")
            assert "httpx2" in sys.modules, "the check above could not fail"
            print("ok")

        anyio.run(main)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
