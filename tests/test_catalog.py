"""The tool cache and what calls learn from it: hints that outlive a session."""

from __future__ import annotations

import anyio
import pytest

from resilient_mcp._catalog import Catalog
from resilient_mcp._log import default_logger
from resilient_mcp.types import Tool, ToolAnnotations

pytestmark = pytest.mark.anyio

TOOLS = [
    Tool(name="read", annotations=ToolAnnotations(readOnlyHint=True)),
    Tool(name="write"),
]


class Fetcher:
    def __init__(self) -> None:
        self.calls = 0
        self.release = anyio.Event()

    async def __call__(self) -> list[Tool]:
        self.calls += 1
        await self.release.wait()
        return TOOLS


async def no_listen() -> None:
    return None


async def test_hints_outlive_a_new_session_and_die_with_list_changed() -> None:
    catalog = Catalog(default_logger())
    fetch = Fetcher()
    fetch.release.set()
    catalog.for_session(1)
    await catalog.tools(fetch, modern=lambda: False, cached=no_listen)
    catalog.for_session(2)  # a re-handshake: the cached list is dropped ...
    assert catalog.cached is None
    # ... but what it taught about re-sending still holds, without a fetch.
    assert catalog.hint("read") is True
    assert catalog.hint("write") is False
    assert await catalog.learn("read", fetch) is True
    assert fetch.calls == 1
    catalog.on_notification("notifications/tools/list_changed", {})
    assert catalog.hint("read") is None
    assert await catalog.learn("read", fetch) is True
    assert fetch.calls == 2


async def test_a_burst_of_unknown_fates_waits_for_one_fetch() -> None:
    catalog = Catalog(default_logger())
    fetch = Fetcher()

    async def fetch_via_cache() -> list[Tool]:
        return await catalog.tools(fetch, modern=lambda: False, cached=no_listen)

    results: list[bool] = []

    async def learn(name: str) -> None:
        results.append(await catalog.learn(name, fetch_via_cache))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(learn, "read")
        tg.start_soon(learn, "write")
        await anyio.wait_all_tasks_blocked()
        fetch.release.set()
    assert fetch.calls == 1
    assert sorted(results) == [False] + [True] * 10


async def test_a_list_changed_during_the_fetch_keeps_its_hints_out() -> None:
    catalog = Catalog(default_logger())
    fetch = Fetcher()

    async def fetch_and_change() -> list[Tool]:
        catalog.on_notification("notifications/tools/list_changed", {})
        return await fetch()

    fetch.release.set()
    await catalog.tools(fetch_and_change, modern=lambda: False, cached=no_listen)
    assert catalog.hint("read") is None
