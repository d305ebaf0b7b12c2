"""The resilient-mcp CLI in-process (main(argv)) against our fault server."""

from __future__ import annotations

import contextlib
import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from resilient_mcp.cli import main
from resilient_mcp.cli._exit import Exit
from resilient_mcp.testing import PROFILES, StrictServer, serve


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def run_json(argv: list[str]) -> tuple[int, dict[str, Any]]:
    code, out, _ = run(argv)
    return code, json.loads(out)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(StrictServer()) as running:
        yield running.url


@pytest.mark.parametrize("profile", PROFILES)
def test_probe_names_era_transport_and_dialect_row(profile: str) -> None:
    with serve(StrictServer(profile=profile)) as running:  # type: ignore[arg-type]
        code, report = run_json(["probe", running.url, "--json"])
    assert code == Exit.OK
    assert report["era"] == "legacy"
    assert report["transport"] == ("sse" if profile == "python-sdk-sse" else "streamable-http")
    assert profile in report["dialect"]["rows"]
    # lenient is the generic row: its answers are python-sdk-2's, so both match it.
    assert len(report["dialect"]["rows"]) <= 2
    assert report["detection"], "the library's own detection steps are reported"


def test_probe_modern_era_human_output() -> None:
    with serve(StrictServer(era="modern")) as running:
        code, out, _ = run(["probe", running.url])
    assert code == Exit.OK
    assert "modern" in out
    assert "2026-07-28" in out


def test_tools_json_shape(url: str) -> None:
    code, data = run_json(["tools", url, "--json"])
    assert code == Exit.OK
    assert data["ok"] is True
    names = {t["name"] for t in data["tools"]}
    assert {"echo", "add", "fail"} <= names
    assert all("inputSchema" in t for t in data["tools"])


def test_tools_table_and_schema(url: str) -> None:
    code, out, _ = run(["tools", url, "--schema"])
    assert code == Exit.OK
    assert "echo" in out
    assert "properties" in out


def test_call_coerces_per_schema(url: str) -> None:
    code, data = run_json(["call", url, "add", "a=2", "b=3.5", "-o", "json"])
    assert code == Exit.OK
    assert data["result"]["structuredContent"] == {"sum": 5.5}
    # A string property keeps text that looks like JSON as text.
    code, data = run_json(["call", url, "echo", "text=007", "-o", "json"])
    assert code == Exit.OK
    assert data["result"]["content"][0]["text"] == "007"


def test_call_with_json_args(url: str) -> None:
    code, out, _ = run(["call", url, "echo", "--json", '{"text": "hi there"}'])
    assert code == Exit.OK
    assert "hi there" in out


def test_exit_code_tool_error(url: str) -> None:
    code, data = run_json(["call", url, "fail", "-o", "json"])
    assert code == Exit.TOOL_ERROR
    assert data["ok"] is False


def test_exit_code_usage() -> None:
    assert run(["tools"])[0] == Exit.USAGE  # no target
    assert run(["nonsense-command"])[0] == Exit.USAGE
    assert run(["call", "http://127.0.0.1:9/mcp", "add", "a=notjson"])[0] != Exit.OK


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_exit_code_connect_error() -> None:
    code, data = run_json(
        ["ping", f"http://127.0.0.1:{_closed_port()}/mcp", "--json", "--timeout", "3"]
    )
    assert code in (Exit.CONNECT, Exit.TIMEOUT)
    assert data["ok"] is False
    assert data["error"]["exit_code"] == code


def test_exit_code_server_error(url: str) -> None:
    code, data = run_json(["read", url, "test://no-such-resource", "--json"])
    assert code == Exit.SERVER_ERROR
    assert data["error"]["class"] in ("ResourceNotFound", "InvalidParams")


def test_resources_prompts_ping(url: str) -> None:
    code, data = run_json(["resources", url, "--json"])
    assert code == Exit.OK
    assert isinstance(data["resources"], list)
    code, data = run_json(["prompts", url, "--json"])
    assert code == Exit.OK
    assert any(p["name"] == "greet" for p in data["prompts"])
    code, data = run_json(["prompt", url, "greet", "name=Ada", "--json"])
    assert code == Exit.OK
    assert data["result"]["messages"]
    code, data = run_json(["ping", url, "--json"])
    assert code == Exit.OK
    assert data["era"] == "legacy"


def test_config_file_target(url: str, tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"strict": {"url": url}, "other": {"url": url}}}))
    code, _data = run_json(["ping", "--config", str(config), "--server", "strict", "--json"])
    assert code == Exit.OK
    assert run(["ping", "--config", str(config), "--server", "missing"])[0] == Exit.USAGE


def test_load_refuses_a_side_effecting_tool(url: str) -> None:
    code, _, err = run(["load", url, "increment", "-n", "3"])
    assert code == Exit.USAGE
    assert "--allow-side-effects" in err


def test_load_reports_percentiles(url: str) -> None:
    code, data = run_json(["load", url, "read_counter", "-n", "20", "-c", "4", "--json"])
    assert code == Exit.OK
    assert data["requests"] == 20
    assert data["ok"] == 20
    lat = data["latency_ms"]
    assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert set(data["client"]) >= {"retries", "recoveries"}


def test_without_the_extra_it_prints_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "click", None)  # import click fails
    assert main(["tools"]) != 0
    assert "pip install 'resilient-mcp[cli]'" in capsys.readouterr().err


def test_load_counts_recoveries_when_sessions_expire() -> None:
    from resilient_mcp.testing import Chaos

    server = StrictServer(chaos=Chaos(seed=1, expire_after_requests=5))
    with serve(server) as running:
        code, data = run_json(["load", running.url, "ping", "-n", "30", "-c", "3", "--json"])
    assert code == Exit.OK, data
    assert data["ok"] == 30
    assert data["client"]["recoveries"] >= 1


def test_load_for_a_duration(url: str) -> None:
    code, data = run_json(["load", url, "-d", "0.3", "-c", "2", "--json"])
    assert code == Exit.OK
    assert data["requests"] >= 1
    assert data["failed"] == 0
