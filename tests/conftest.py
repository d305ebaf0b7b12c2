"""Shared fixtures: every async test runs on asyncio and on trio."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from resilient_mcp._detection import default_cache
from resilient_mcp._http_stack import HTTPStackName

# Framework adapters are tested in one environment per framework (`make integrations`
# sets RESILIENT_MCP_FRAMEWORK and runs tests/integrations/<framework>); the main
# environment has none of the frameworks installed.
collect_ignore_glob = [] if os.environ.get("RESILIENT_MCP_FRAMEWORK") else ["integrations/*"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["httpx", "httpx2"])
def http_stack(request: pytest.FixtureRequest) -> HTTPStackName:
    """The HTTP library under test: tests of the HTTP transports run on both stacks."""
    name: HTTPStackName = request.param
    return name


@pytest.fixture(autouse=True)
def _fresh_detections() -> Iterator[None]:
    # Era/transport detection is cached process-wide per endpoint; tests that reuse a
    # fake URL must not inherit another test's findings (tests of the cache opt in).
    default_cache.clear()
    yield
    default_cache.clear()
