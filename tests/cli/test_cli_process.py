"""The CLI as a subprocess: the console entry point, serve-fault start and Ctrl-C stop."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from resilient_mcp.cli._exit import Exit
from resilient_mcp.testing import StrictServer, serve

_CLI = [sys.executable, "-m", "resilient_mcp.cli"]


def test_probe_as_a_subprocess() -> None:
    with serve(StrictServer(profile="typescript")) as running:
        done = subprocess.run(
            [*_CLI, "probe", running.url, "--json"], capture_output=True, timeout=60, check=False
        )
    assert done.returncode == Exit.OK, done.stderr
    report = json.loads(done.stdout)
    assert report["dialect"]["rows"] == ["typescript"]


def test_serve_fault_starts_serves_and_stops_on_ctrl_c() -> None:
    process = subprocess.Popen(
        [*_CLI, "serve-fault", "--profile", "rmcp-legacy", "--fail-rate", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()  # the server prints its URL first
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/mcp")
        done = subprocess.run(
            [*_CLI, "probe", url, "--json"], capture_output=True, timeout=60, check=False
        )
        assert done.returncode == Exit.OK, done.stderr
        assert json.loads(done.stdout)["dialect"]["rows"] == ["rmcp-legacy"]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
