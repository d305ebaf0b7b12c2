"""Structured logs carry the session, request, method and attempt, and never a secret."""

from __future__ import annotations

import logging

import pytest
import structlog
from structlog.testing import capture_logs

import resilient_mcp

from .fake import FakeServer

pytestmark = pytest.mark.anyio

SECRET = "Bearer sk-very-secret-token"


class TestStructuredEvents:
    """A user-supplied structlog logger receives bound, structured events."""

    async def test_request_events_are_bound(self) -> None:
        server = FakeServer(session_id="sess-123")
        with capture_logs() as events:
            async with (
                server.client() as http,
                resilient_mcp.connect(
                    resilient_mcp.HTTPServer(
                        "http://user:pw@127.0.0.1:1/mcp?api_key=abc",
                        http_client=http,
                        headers={"Authorization": SECRET},
                    ),
                    logger=structlog.get_logger(),
                ) as client,
            ):
                await client.call_tool("echo", {"x": 1})
        ok = [e for e in events if e["event"] == "request.ok" and e["method"] == "tools/call"]
        assert len(ok) == 1
        assert ok[0]["session_id"] == "sess-123"
        assert isinstance(ok[0]["request_id"], int)
        assert ok[0]["attempt"] == 1
        states = [e["state"] for e in events if e["event"] == "session.state"]
        assert states == ["initializing", "ready", "closing", "closed"]
        text = repr(events)
        assert "sk-very-secret-token" not in text
        assert "api_key" not in text
        assert "pw@" not in text
        assert ok[0]["url"] == "http://127.0.0.1:1/mcp"

    async def test_default_logger_goes_to_stdlib_and_is_silent_by_default(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        server = FakeServer()
        with caplog.at_level(logging.DEBUG, logger="resilient_mcp"):
            async with (
                server.client() as http,
                resilient_mcp.connect(
                    resilient_mcp.HTTPServer(
                        "http://127.0.0.1:1/mcp",
                        http_client=http,
                        headers={"Authorization": SECRET},
                    ),
                ) as client,
            ):
                await client.ping()
        messages = [r.getMessage() for r in caplog.records if r.name == "resilient_mcp"]
        assert any("event='request.ok'" in m and "method='ping'" in m for m in messages)
        assert all("sk-very-secret-token" not in m for m in messages)
        # Without configuration the library prints nothing: the stdlib logger has no
        # handler of its own and propagates at WARNING.
        assert logging.getLogger("resilient_mcp").handlers == []
