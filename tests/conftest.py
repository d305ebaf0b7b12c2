"""Shared fixtures: every async test runs on asyncio and on trio."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from resilient_mcp._detection import default_cache


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _fresh_detections() -> Iterator[None]:
    # Era/transport detection is cached process-wide per endpoint; tests that reuse a
    # fake URL must not inherit another test's findings (tests of the cache opt in).
    default_cache.clear()
    yield
    default_cache.clear()
