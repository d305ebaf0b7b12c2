"""What connect() accepts as its target, and what it refuses at once."""

from __future__ import annotations

from typing import Any

import pytest

import resilient_mcp
from resilient_mcp import StdioServer, UsageError
from resilient_mcp._target import resolve_target


def test_url() -> None:
    target = resolve_target("http://127.0.0.1:1/mcp", "auto", {"A": "1"})
    assert (target.transport, target.url, target.headers) == (
        "auto",
        "http://127.0.0.1:1/mcp",
        {"A": "1"},
    )
    assert target.describe() == "http://127.0.0.1:1/mcp"


def test_command_list_is_stdio() -> None:
    target = resolve_target(["uvx", "server", "--flag"], "auto", None)
    assert target.transport == "stdio"
    assert target.stdio == StdioServer("uvx", args=("server", "--flag"))
    assert target.describe() == "stdio:uvx"  # never the arguments (they may hold tokens)


@pytest.mark.parametrize(
    ("entry", "transport", "url"),
    [
        ({"url": "http://h/mcp"}, "auto", "http://h/mcp"),
        ({"url": "http://h/sse", "type": "sse"}, "sse", "http://h/sse"),
        ({"url": "http://h/mcp", "transport": "http"}, "streamable-http", "http://h/mcp"),
        ({"url": "http://h/mcp", "type": "streamable_http"}, "streamable-http", "http://h/mcp"),
        ({"url": "http://h/mcp", "type": "streamableHttp"}, "streamable-http", "http://h/mcp"),
        ({"serverUrl": "http://h/mcp"}, "auto", "http://h/mcp"),
    ],
)
def test_remote_config_entries(entry: dict[str, Any], transport: str, url: str) -> None:
    target = resolve_target(entry, "auto", None)
    assert (target.transport, target.url) == (transport, url)


def test_entry_headers_merge_under_explicit_ones() -> None:
    entry = {"url": "http://h/mcp", "headers": {"A": "entry", "B": "entry"}}
    target = resolve_target(entry, "auto", {"B": "explicit"})
    assert target.headers == {"A": "entry", "B": "explicit"}


def test_local_config_entry_and_whole_config() -> None:
    entry = {"command": "npx", "args": ["-y", "srv"], "env": {"K": "v"}, "cwd": "/tmp"}
    expected = StdioServer("npx", args=("-y", "srv"), env={"K": "v"}, cwd="/tmp")
    assert resolve_target(entry, "auto", None).stdio == expected
    whole = {"mcpServers": {"only": entry}}
    assert resolve_target(whole, "auto", None).stdio == expected


@pytest.mark.parametrize(
    ("target", "transport", "match"),
    [
        ("ftp://h/", "auto", "unsupported target"),
        ("uvx server", "auto", "unsupported target"),  # a command must be a list
        ([], "auto", "unsupported target"),
        (["uvx", 3], "auto", "unsupported target"),
        ("http://h/mcp", "stdio", "needs a command"),
        (["uvx"], "sse", "cannot start a command"),
        ("http://h/mcp", "carrier-pigeon", "unknown transport"),
        ({"mcpServers": {"a": {"url": "http://a"}, "b": {"url": "http://b"}}}, "auto", "one"),
        ({"name": "x"}, "auto", "needs a 'command' or a 'url'"),
        ({"url": "http://h", "type": "websocket"}, "auto", "unknown transport"),
        ({"url": "http://h", "type": "sse"}, "streamable-http", "contradicts"),
        ({"command": ""}, "auto", "non-empty string"),
        ({"command": "x", "args": "a b"}, "auto", "list of strings"),
        ({"command": "x", "env": {"K": 1}}, "auto", "map strings"),
        ({"url": "http://h", "headers": {"K": 1}}, "auto", "map strings"),
    ],
)
def test_refused_at_once(target: Any, transport: Any, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        resolve_target(target, transport, None)


def test_http_options_with_a_command_are_refused() -> None:
    with pytest.raises(UsageError, match="HTTP servers only"):
        resilient_mcp.connect(["uvx", "srv"], headers={"Authorization": "x"})


def test_unknown_era_is_refused() -> None:
    with pytest.raises(UsageError, match="unknown era"):
        resilient_mcp.connect("http://h/mcp", era="future")  # type: ignore[arg-type]
