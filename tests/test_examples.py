"""The README's `make demo` keeps telling the truth."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


def test_demo_shows_the_failure_and_the_fix() -> None:
    done = subprocess.run(
        [sys.executable, str(DEMO)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # The naive clients fail (the sleep one only loses its race by 0.15 s, so a very
    # loaded machine may let it through).
    assert out.count("FAILED  HTTP 500 'Encounter an error when get session") >= 1
    assert "ok      20/20 calls succeeded" in out
    assert "requests the server saw too early: 0" in out
