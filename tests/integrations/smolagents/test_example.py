"""The smolagents example runs offline and prints both tools' results."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).parents[3] / "examples" / "integrations" / "smolagents_agent.py"


def test_example_main_runs() -> None:
    spec = importlib.util.spec_from_file_location("smolagents_agent", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    output = module.main()
    assert "add -> {'sum': 5}" in output
    assert "echo -> hello" in output
