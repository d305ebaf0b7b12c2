"""probe against real peers: server-everything (stdio and HTTP), mcp 1.26 over SSE."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import pytest

from resilient_mcp.cli import main
from resilient_mcp.cli._exit import Exit
from tests.peers.launcher import (
    EverythingPeer,
    Mcp126Peer,
    PeerUnavailable,
    everything_stdio_command,
    mcp126_stdio_command,
)

pytestmark = pytest.mark.peer


def probe(argv: list[str]) -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["probe", "--json", *argv])
    assert code == Exit.OK, out.getvalue()
    report: dict[str, Any] = json.loads(out.getvalue())
    return report


def test_everything_over_stdio() -> None:
    try:
        command = everything_stdio_command()
    except PeerUnavailable as exc:
        pytest.skip(str(exc))
    report = probe(["--", *command])
    assert report["era"] == "legacy"
    assert report["transport"] == "stdio"
    assert report["unknown_method"]["answered"] == "MethodNotFound"
    # The TypeScript SDK's Server has no gate over stdio: the early request is served.
    assert report["dialect"]["early"]["answer"] == "served"
    assert report["dialect"]["rows"] == ["no gate (TypeScript SDK Server, mcp-go)"]


def test_mcp126_over_stdio_answers_the_early_request_with_its_32602() -> None:
    try:
        command = mcp126_stdio_command()
    except PeerUnavailable as exc:
        pytest.skip(str(exc))
    report = probe(["--", *command])
    assert report["era"] == "legacy"
    assert report["transport"] == "stdio"
    assert report["dialect"]["early"]["code"] == -32602
    assert report["dialect"]["rows"] == ["python-sdk"]


def test_everything_over_http() -> None:
    try:
        peer = EverythingPeer("streamable-http")
    except PeerUnavailable as exc:
        pytest.skip(str(exc))
    with peer:
        report = probe([peer.url])
    assert report["era"] == "legacy"
    assert report["transport"] == "streamable-http"
    # Its own row: the transport's "Server not initialized" for a missing session id, the
    # example apps' 400 for an unknown one (testing profile `server-everything`).
    assert report["dialect"]["rows"] == ["server-everything"]


def test_mcp126_over_sse() -> None:
    try:
        peer = Mcp126Peer("sse")
    except PeerUnavailable as exc:
        pytest.skip(str(exc))
    with peer:
        report = probe([peer.url])
    assert report["era"] == "legacy"
    assert report["transport"] == "sse"
    assert report["dialect"]["rows"] == ["python-sdk-sse"]
