"""The LlamaIndex example runs offline and prints both tools' results."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[3] / "examples" / "integrations" / "llama_index_agent.py"

# LlamaIndex's agents are workflows on asyncio.
pytestmark = pytest.mark.parametrize("anyio_backend", ["asyncio"])


@pytest.mark.anyio
async def test_example_main_runs() -> None:
    spec = importlib.util.spec_from_file_location("llama_index_agent", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    output = await module.main()
    assert output == 'add -> {"sum": 5}; echo -> hello'
