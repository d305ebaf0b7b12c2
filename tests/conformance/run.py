"""Run the official MCP conformance suite against our client (``make conformance``).

Every client scenario we claim, each as its own ``conformance client --scenario`` run so
that the suite's strictest verdict counts: a failed or *warning* check, a client that
timed out, or a client that exited non-zero where the scenario does not expect it. There
is no expected-failures list: one failure fails the run, naming the checks that failed.

The scenarios are those of ``@modelcontextprotocol/conformance`` 0.1.16 (pinned in
package.json, run with the Node 22 that package.json installs beside it): the core suite
(which holds the whole auth suite), the backcompat suite, two draft scenarios and the
extension suite's two client-credentials scenarios. Every
client scenario the suite lists must be either run here or excluded below with a reason,
so a new version of the suite cannot add a scenario that silently goes unrun.

Results go to a temporary directory, kept (and named) only when something failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CLIENT = Path(__file__).resolve().with_name("client.py")
SUITE_PACKAGE = REPO / "node_modules" / "@modelcontextprotocol" / "conformance"
SUITE = SUITE_PACKAGE / "dist" / "index.js"
# The suite imports fs.globSync (Node >= 22); the system node may be older (Node 20).
NODE = REPO / "node_modules" / ".bin" / "node"
SUITE_VERSION = "0.1.16"

CORE = (
    "initialize",
    "tools_call",
    "elicitation-sep1034-client-defaults",
    "sse-retry",
)
AUTH = (
    "auth/metadata-default",
    "auth/metadata-var1",
    "auth/metadata-var2",
    "auth/metadata-var3",
    "auth/basic-cimd",
    "auth/scope-from-www-authenticate",
    "auth/scope-from-scopes-supported",
    "auth/scope-omitted-when-undefined",
    "auth/scope-step-up",
    "auth/scope-retry-limit",
    "auth/token-endpoint-auth-basic",
    "auth/token-endpoint-auth-post",
    "auth/token-endpoint-auth-none",
    "auth/pre-registration",
)
BACKCOMPAT = (
    "auth/2025-03-26-oauth-metadata-backcompat",
    "auth/2025-03-26-oauth-endpoint-fallback",
)
DRAFT = (
    "auth/resource-mismatch",
    "auth/offline-access-not-supported",
)
# The extension suite's machine-to-machine flows (SEP-1046), which we ship
# (ClientCredentials, PrivateKeyJWT).
EXTENSION = (
    "auth/client-credentials-basic",
    "auth/client-credentials-jwt",
)
SCENARIOS = (*CORE, *AUTH, *BACKCOMPAT, *DRAFT, *EXTENSION)
NOT_RUN = {
    "auth/offline-access-scope": "draft; not claimed (issue 12)",
    "auth/cross-app-access-complete-flow": "extension: SEP-990 token exchange, not built",
}
# Timed alone: it checks that the client reconnects within -50/+200 ms of the server's
# `retry:`, which other scenarios' processes starting at the same moment could disturb.
ALONE = ("sse-retry",)

# Per client run, as the suite counts it (ms). A client takes ~1 s here; the margin is
# for a machine three times slower and loaded with the rest of `make test`.
CLIENT_TIMEOUT_MS = 60_000
# The whole `conformance client` process (its servers, the client, the checks), seconds.
RUN_TIMEOUT_S = 180.0

_running: set[subprocess.Popen[bytes]] = set()
_running_lock = threading.Lock()


@dataclass
class Outcome:
    scenario: str
    passed: bool
    seconds: float
    problems: list[str]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", help="run only these (default: all claimed)")
    parser.add_argument("-j", "--jobs", type=int, default=4, help="scenarios run at once")
    args = parser.parse_args()
    started = time.monotonic()
    problem = check_setup()
    if problem:
        print(f"conformance: {problem}", file=sys.stderr)
        return 2
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        print(f"conformance: not a claimed scenario: {', '.join(unknown)}", file=sys.stderr)
        return 2
    chosen = args.scenarios or list(SCENARIOS)
    results = Path(tempfile.mkdtemp(prefix="mcp-conformance-"))
    outcomes: list[Outcome] = []
    signal.signal(signal.SIGTERM, _terminated)
    try:
        for scenario in (s for s in chosen if s in ALONE):
            outcomes.append(run_scenario(scenario, results))
            report(outcomes[-1])
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            rest = [s for s in chosen if s not in ALONE]
            for outcome in pool.map(lambda s: run_scenario(s, results), rest):
                outcomes.append(outcome)
                report(outcome)
    finally:
        _stop_all()
    failed = [o for o in outcomes if not o.passed]
    took = time.monotonic() - started
    if failed:
        print(
            f"conformance: FAILED {len(failed)} of {len(outcomes)} scenarios "
            f"({', '.join(o.scenario for o in failed)}) in {took:.0f} s; results in {results}"
        )
        return 1
    shutil.rmtree(results, ignore_errors=True)
    print(
        f"conformance: all {len(outcomes)} scenarios of suite {SUITE_VERSION} "
        f"passed in {took:.0f} s"
    )
    return 0


def check_setup() -> str | None:
    """What is missing or out of date, or None."""
    if not SUITE.exists() or not NODE.exists():
        return f"the suite or its Node is not installed in {REPO / 'node_modules'}: run `npm ci`"
    version = json.loads((SUITE_PACKAGE / "package.json").read_text())["version"]
    if version != SUITE_VERSION:
        return (
            f"the suite is {version}, this runner knows the scenarios of {SUITE_VERSION}: "
            "update its lists"
        )
    listed = subprocess.run(
        [str(NODE), str(SUITE), "list"], capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    if listed.returncode != 0:
        return f"`conformance list` failed: {listed.stderr.strip()[-500:]}"
    names = client_scenarios(listed.stdout)
    unclassified = sorted(set(names) - set(SCENARIOS) - set(NOT_RUN))
    gone = sorted(set(SCENARIOS) - set(names))
    if unclassified or gone:
        return f"the suite's client scenarios changed: new {unclassified}, gone {gone}"
    return None


def client_scenarios(listing: str) -> list[str]:
    """The client scenarios of ``conformance list`` ("  - name [versions]" lines)."""
    _, _, section = listing.partition("Client scenarios")
    return [
        line.strip().removeprefix("- ").split(" [")[0]
        for line in section.splitlines()
        if line.strip().startswith("- ")
    ]


def run_scenario(scenario: str, results: Path) -> Outcome:
    out = results / scenario
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(shlex.quote(part) for part in (sys.executable, str(CLIENT)))
    argv = [
        str(NODE),
        str(SUITE),
        "client",
        "--command",
        command,
        "--scenario",
        scenario,
        "--timeout",
        str(CLIENT_TIMEOUT_MS),
        "--output-dir",
        str(out),
    ]
    started = time.monotonic()
    with (out / "suite.log").open("wb") as log:
        # A session of its own: the suite's servers and our client are all ended with it.
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
        with _running_lock:
            _running.add(process)
        try:
            code: int | None = process.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            _stop(process)
    seconds = time.monotonic() - started
    problems = failed_checks(out)
    if code is None:
        problems.append(f"the suite did not finish within {RUN_TIMEOUT_S:.0f} s")
    elif code != 0 and not problems:
        problems.append(f"the suite exited {code}: {verdict(out / 'suite.log')}")
    return Outcome(scenario, code == 0 and not problems, seconds, problems)


def failed_checks(out: Path) -> list[str]:
    """Every check of the run that is a failure or a warning, with its message."""
    problems: list[str] = []
    for checks_file in sorted(out.rglob("checks.json")):
        checks: list[dict[str, Any]] = json.loads(checks_file.read_text())
        for check in checks:
            if check.get("status") in ("FAILURE", "WARNING"):
                message = check.get("errorMessage") or check.get("description", "")
                problems.append(f"{check['status']} {check.get('name')}: {message}")
    return problems


def verdict(log: Path) -> str:
    """Why the suite failed a run whose checks all passed (the client timed out or
    exited with an error): its own words, and our client's last error line."""
    text = log.read_text(errors="replace")
    said = [line.strip() for line in text.splitlines() if "⚠️" in line or "failed:" in line]
    return "; ".join(said[-3:]) or "see suite.log"


def report(outcome: Outcome) -> None:
    mark = "pass" if outcome.passed else "FAIL"
    print(f"  {mark}  {outcome.scenario}  ({outcome.seconds:.1f} s)", flush=True)
    for problem in outcome.problems:
        print(f"        {problem}", flush=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the suite and everything it started (its session), and reap it."""
    with contextlib.suppress(ProcessLookupError):  # the suite left nothing behind
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    with _running_lock:
        _running.discard(process)


def _stop_all() -> None:
    with _running_lock:
        running = list(_running)
    for process in running:
        _stop(process)


def _terminated(signum: int, frame: object) -> None:
    _stop_all()
    sys.exit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
