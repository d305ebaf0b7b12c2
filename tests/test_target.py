"""What connect() accepts as its target and options, and what it refuses at once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import resilient_mcp
from resilient_mcp import HTTPServer, StdioServer, UsageError
from resilient_mcp._targets import resolve_target


def test_url_is_an_http_server() -> None:
    target = resolve_target("http://127.0.0.1:1/mcp")
    assert target == HTTPServer("http://127.0.0.1:1/mcp")
    assert isinstance(target, HTTPServer)
    assert target.transport == "auto"
    assert target.describe() == "http://127.0.0.1:1/mcp"


def test_specs_are_taken_as_they_are() -> None:
    http = HTTPServer("http://h/mcp", headers={"A": "1"}, transport="sse")
    stdio = StdioServer("uvx", args=["server"])
    assert resolve_target(http) is http
    assert resolve_target(stdio) is stdio


def test_command_list_is_stdio() -> None:
    target = resolve_target(["uvx", "server", "--flag"])
    assert target == StdioServer("uvx", args=("server", "--flag"))
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
    target = resolve_target(entry)
    assert isinstance(target, HTTPServer)
    assert (target.transport, target.url) == (transport, url)


def test_entry_headers_go_with_the_server() -> None:
    target = resolve_target({"url": "http://h/mcp", "headers": {"A": "entry"}})
    assert isinstance(target, HTTPServer)
    assert target.headers == {"A": "entry"}


def test_local_config_entry_and_whole_config() -> None:
    entry = {"command": "npx", "args": ["-y", "srv"], "env": {"K": "v"}, "cwd": "/tmp"}
    expected = StdioServer("npx", args=("-y", "srv"), env={"K": "v"}, cwd="/tmp")
    assert resolve_target(entry) == expected
    assert resolve_target({"mcpServers": {"only": entry}}) == expected
    assert resolve_target({**entry, "type": "stdio"}) == expected


def test_secrets_stay_out_of_reprs() -> None:
    server = HTTPServer(
        "https://user:pw@h.test/mcp?api_key=k1", headers={"Authorization": "Bearer t1"}
    )
    shown = repr(server)
    assert "pw" not in shown
    assert "k1" not in shown
    assert "t1" not in shown
    assert "h.test/mcp" in shown
    stdio = StdioServer("srv", args=["--token", "t2"], env={"KEY": "t3"})
    assert "t3" not in repr(stdio)


def test_http_server_specs_are_hashable_and_compare_by_value() -> None:
    assert HTTPServer("http://h/mcp", headers={"A": "1"}) == HTTPServer(
        "http://h/mcp", headers={"A": "1"}
    )
    assert len({HTTPServer("http://h/mcp"), HTTPServer("http://h/mcp")}) == 1


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ("ftp://h/", "unsupported target"),
        ("uvx server", "unsupported target"),  # a command must be a list
        ([], "unsupported target"),
        (["uvx", 3], "unsupported target"),
        ({"mcpServers": {"a": {"url": "http://a"}, "b": {"url": "http://b"}}}, "one"),
        ({"name": "x"}, "needs a 'command' or a 'url'"),
        ({"url": "http://h", "type": "websocket"}, "unknown transport"),
        ({"url": "http://h", "type": "stdio"}, "needs a 'command'"),
        ({"command": "x", "type": "sse"}, "cannot start a command"),
        ({"command": ""}, "non-empty string"),
        ({"command": "x", "args": "a b"}, "list of strings"),
        ({"command": "x", "env": {"K": 1}}, "map strings"),
        ({"url": "http://h", "headers": {"K": 1}}, "map strings"),
    ],
)
def test_refused_at_once(target: Any, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        resolve_target(target)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: HTTPServer("ftp://h/"), "http"),
        (lambda: HTTPServer("http://h/mcp", transport="x"), "unknown transport"),  # type: ignore[arg-type]
        (lambda: HTTPServer("http://h/mcp", headers={"K": 1}), "map strings"),  # type: ignore[dict-item]
        (lambda: StdioServer(""), "non-empty"),
        (lambda: StdioServer("x", args="-m server"), "not one string"),
        (lambda: StdioServer("x", max_restarts=-1), "negative"),
    ],
)
def test_specs_refuse_bad_values(make: Any, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        make()


def test_http_options_are_not_client_options() -> None:
    """Headers, auth and a shared client belong to the HTTP server, not to every client."""
    with pytest.raises(UsageError, match="belong to HTTPServer"):
        resilient_mcp.connect(["uvx", "srv"], headers={"Authorization": "x"})  # type: ignore[call-arg]


def test_unknown_and_mistyped_options_are_refused() -> None:
    with pytest.raises(UsageError, match="unknown option"):
        resilient_mcp.connect("http://h/mcp", timeout=5)  # type: ignore[call-arg]
    with pytest.raises(UsageError, match="timeouts= must be a Timeouts"):
        resilient_mcp.connect("http://h/mcp", timeouts=5)  # type: ignore[arg-type]


def test_unknown_era_is_refused() -> None:
    with pytest.raises(UsageError, match="unknown era"):
        resilient_mcp.connect("http://h/mcp", era="future")  # type: ignore[arg-type]


def test_configuration_errors_are_usage_errors_and_value_errors() -> None:
    """One convention for every configuration mistake."""
    for make in (
        lambda: resilient_mcp.Timeouts(request=0),
        lambda: resilient_mcp.Limits(max_queued=0),
        lambda: resilient_mcp.RetryPolicy(attempts=0),
        lambda: resilient_mcp.DetectionCache(max_entries=0),
        lambda: HTTPServer("nope"),
    ):
        with pytest.raises(UsageError) as caught:
            make()
        assert isinstance(caught.value, ValueError)


def test_connect_and_client_take_the_same_options() -> None:
    http = httpx.AsyncClient()
    server = HTTPServer("http://h/mcp", http_client=http)
    for make in (resilient_mcp.connect, resilient_mcp.Client):
        client = make(server, era="legacy", wait_ready=False)
        assert isinstance(client, resilient_mcp.Client)
        assert "h/mcp" in repr(client)
