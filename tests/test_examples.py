"""Every example under examples/ runs offline and its output tells the truth.

Each example runs as a user would run it, in a subprocess of its own. They are all
started at once (module fixture) and each test then waits for its own, so the file
costs about as long as the slowest example, not the sum. The framework agents
(examples/integrations/) run in their frameworks' environments instead, with
tests/integrations/<framework>/ (`make integrations`).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from resilient_mcp.testing import ERAS, PROFILES

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
# Generous: five interpreters start together on a machine that may be 3x slower and busy.
TIMEOUT = 240
GATEWAY_USERS = 8
COMMANDS = {
    "demo": [str(EXAMPLES / "demo.py")],
    "script_async": [str(EXAMPLES / "script_async.py")],
    "script_sync": [str(EXAMPLES / "script_sync.py")],
    "gateway": [str(EXAMPLES / "gateway.py"), "--self-test", "--users", str(GATEWAY_USERS)],
    # As a user runs the copied file: plain pytest, none of our tests/conftest.py.
    "user_tests": ["-m", "pytest", "-q", str(EXAMPLES / "testing")],
}


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> str:
        assert self.returncode == 0, f"exit {self.returncode}\n{self.stdout}\n{self.stderr}"
        return self.stdout


class Runs:
    """The examples' processes, started together; output goes to files (no pipe fills)."""

    def __init__(self, where: Path) -> None:
        self._where = where
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        for name, args in COMMANDS.items():
            with (
                (where / f"{name}.out").open("wb") as out,
                (where / f"{name}.err").open("wb") as err,
            ):
                self._procs[name] = subprocess.Popen(
                    [sys.executable, *args], cwd=ROOT, stdout=out, stderr=err
                )

    def result(self, name: str) -> Done:
        returncode = self._procs[name].wait(timeout=TIMEOUT)
        out = (self._where / f"{name}.out").read_text()
        err = (self._where / f"{name}.err").read_text()
        return Done(returncode, out, err)

    def stop(self) -> None:
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    started = Runs(tmp_path_factory.mktemp("examples"))
    try:
        yield started
    finally:
        started.stop()


pytestmark = pytest.mark.timeout(TIMEOUT + 30)


def test_demo_shows_the_failure_and_the_fix(runs: Runs) -> None:
    out = runs.result("demo").check()
    # The naive clients fail (the sleep one only loses its race by 0.15 s, so a very
    # loaded machine may let it through).
    assert out.count("FAILED  HTTP 500 'Encounter an error when get session") >= 1
    assert "ok      20/20 calls succeeded" in out
    assert "requests the server saw too early: 0" in out


def test_async_script_accounts_for_every_increment(runs: Runs) -> None:
    out = runs.result("script_async").check()
    assert "connected to resilient-mcp-strict: legacy era over" in out
    assert "read memo://one: 'First memo.'" in out
    assert "echo: ok 'hello'" in out
    assert "fail: failed, executed (ToolError: The fail tool always fails.)" in out
    known = re.search(r"increments known to have run: (\d) of 5, (\d) unknown", out)
    server = re.search(r"server: increment ran (\d) time", out)
    assert known, out
    assert server, out
    ran, unknown, executed = int(known[1]), int(known[2]), int(server[1])
    # The script's account matches the server's count; a lost answer was checked, not
    # resent (each MAYBE is followed by a check of the counter).
    assert ran <= executed <= ran + unknown <= 5
    maybes = out.count("MAYBE ran (FateUnknown); not repeated")
    assert maybes >= 1, "the seeded chaos should cut at least one answer"
    assert out.count("  checked: counter") + unknown == maybes


def test_sync_script_survives_expiring_sessions_and_503s(runs: Runs) -> None:
    out = runs.result("script_sync").check()
    assert "read memo://two: 'Second memo.'" in out
    assert "echo: ok 'hi'" in out
    assert all(f"increment #{n}: ok '{n}'" in out for n in range(1, 7)), out
    executions = re.search(r"executions by key: (\{.*\})", out)
    recovered = re.search(r"client: (\d+) new handshake\(s\), (\d+) re-send\(s\)", out)
    assert executions, out
    assert recovered, out
    assert ast.literal_eval(executions[1]) == {f"sync-{n}": 1 for n in range(1, 7)}
    assert int(recovered[1]) >= 1
    assert int(recovered[2]) >= 1
    assert "'expired')" in out
    assert "'503')" in out


def test_gateway_self_test_answers_truthfully(runs: Runs) -> None:
    out = runs.result("gateway").check()
    assert "self-test passed" in out
    outcomes = re.findall(r"^\s+(\d+) x (\S+) (\d{3}) (\w+)$", out, re.MULTILINE)
    # Five requests per user, one more from each of four latecomers.
    assert sum(int(count) for count, *_ in outcomes) == GATEWAY_USERS * 5 + 4
    for _, tool, status, execution in outcomes:
        # A success ran; a 502 from a cut answer may have; nothing else shows up here.
        assert (status, execution) in {("200", "executed"), ("502", "maybe")}, (tool, status)
    listed = sum(
        int(c) for c, tool, status, _ in outcomes if (tool, status) == ("tools/list", "200")
    )
    assert listed == GATEWAY_USERS
    pool = re.search(r"gateway: (\d+) sessions opened, (\d+) evicted, at most (\d+) open", out)
    assert pool, out
    assert int(pool[2]) == 4
    assert int(pool[3]) <= GATEWAY_USERS
    assert "1 restart" in out


def test_user_test_file_passes_under_plain_pytest(runs: Runs) -> None:
    out = runs.result("user_tests").check()
    # Each test once: every dialect, every era, the flaky servers, the restart.
    expected = len(PROFILES) + len(ERAS) + 6 + 1
    assert re.search(rf"\b{expected} passed\b", out), out
    assert not re.search(r"\d+ (failed|errors?)\b", out), out
