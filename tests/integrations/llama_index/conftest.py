"""llama-index-workflows looks its steps up with ``inspect.getmembers`` on the agent,
which touches the agent's deprecated pydantic attributes (hundreds of warnings per run,
none of them ours): silenced for this directory only."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning:inspect"))
