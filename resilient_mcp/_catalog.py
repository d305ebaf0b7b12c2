"""The client's tool list: fetched once, cached, and what calls learn from it.

The list is cached per session (a burst of first calls fetches it once) and dropped when
the server sends ``notifications/tools/list_changed`` or a new handshake replaces the
session (a new session may serve other tools). Calls read three things from it: whether
a tool is annotated read-only or idempotent (safe to repeat), its ``x-mcp-header``
annotations (the modern era's ``Mcp-Param-*`` headers), and its ``outputSchema`` (to
check ``structuredContent``). A successful call never fetches the list behind your back;
only a tool call whose fate is unknown does, to learn whether it may be re-sent.

What a list taught about re-sending (the ``readOnlyHint``/``idempotentHint`` of each
tool) outlives the session it came from and is dropped only by ``list_changed``: a
server that expires sessions every few dozen requests drops the cached list as often,
and if every call whose fate became unknown had to fetch the list again, under a burst
they would queue behind each other until their deadlines passed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from ._exceptions import ToolOutputError
from ._headers import ParamHeader, param_header_specs
from ._log import Logger
from ._schema import CompiledSchema, Unvalidatable, compile_schema
from .types import CallToolResult, Tool

__all__ = ["Catalog", "hinted_idempotent"]


class _Flight:
    """A lock made on first use and dropped once free again: a session that never (or
    no longer) fetches holds no lock (an ``anyio.Lock`` is ~0.8 KB, most of it its
    waiter deque), and thousands of idle sessions hold thousands of them."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock: anyio.Lock | None = None

    async def __aenter__(self) -> None:
        if self._lock is None:
            self._lock = anyio.Lock()
        await self._lock.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        lock = self._lock
        assert lock is not None  # held by us
        lock.release()  # hands it to the first waiter, if any (then still locked)
        if not lock.locked() and not lock.statistics().tasks_waiting:
            self._lock = None


class Catalog:
    """One client's cached tool list."""

    def __init__(self, logger: Logger) -> None:
        self._log = logger
        self._tools: dict[str, Tool] | None = None
        self._param_specs: dict[str, tuple[ParamHeader, ...]] = {}
        # Tool name → its outputSchema compiled, on the tool's first call (listing 5,000
        # tools compiles nothing); compiled through the process-wide cache, so sessions
        # that list the same tools share one compiled validator per schema.
        self._validators: dict[str, CompiledSchema] = {}
        # Bumped by every invalidation: a fetch that overlapped one is not cached.
        self._version = 0
        self._generation: int | None = None  # the session the cached list came from
        self._lock = _Flight()
        # Tool name → safe to re-send, from the last list fetched on any session; only a
        # list_changed (the server says its tools changed) makes it stale.
        self._hints: dict[str, bool] = {}
        self._hints_version = 0
        # Not self._lock: `learn` fetches through `tools`, which takes that one.
        self._learning = _Flight()

    @property
    def cached(self) -> list[Tool] | None:
        return list(self._tools.values()) if self._tools is not None else None

    def invalidate(self) -> None:
        self._tools = None
        self._version += 1

    def for_session(self, generation: int) -> None:
        """Drop a list cached on an earlier session (a re-handshake replaced it)."""
        if self._generation is not None and self._generation != generation:
            self.invalidate()
        self._generation = generation

    def on_notification(self, method: str, params: Mapping[str, Any]) -> None:
        if method == "notifications/tools/list_changed":
            self.invalidate()
            self._hints = {}
            self._hints_version += 1

    def hint(self, name: str) -> bool | None:
        """Whether ``name`` may be re-sent, as the last list fetched (on any session since
        the last ``list_changed``) annotated it; None if no such list named it."""
        if self._tools is not None and name in self._tools:
            return hinted_idempotent(self._tools[name])
        return self._hints.get(name)

    async def learn(self, name: str, fetch: Callable[[], Awaitable[list[Tool]]]) -> bool:
        """Whether ``name`` may be re-sent, fetching the list only if no list fetched since
        the last ``list_changed`` named it; single flight, so a burst of calls whose fate
        became unknown waits for one fetch instead of queueing one each.

        Raises:
            MCPError: the list could not be fetched.
        """
        known = self.hint(name)
        if known is not None:
            return known
        async with self._learning:
            known = self.hint(name)
            if known is not None:
                return known
            tools = await fetch()
        # From the list fetched, not from the cache: a new session (or a list_changed)
        # during the fetch keeps the list out of the cache, but its hints still hold.
        return hinted_idempotent(next((tool for tool in tools if tool.name == name), None))

    async def tools(
        self,
        fetch: Callable[[], Awaitable[list[Tool]]],
        *,
        modern: Callable[[], bool],
        cached: Callable[[], Awaitable[None]],
    ) -> list[Tool]:
        """The tool list, from the cache or from ``fetch`` (single flight).

        ``cached`` runs once a fetched list went into the cache (to hear list_changed).
        """
        if self._tools is not None:
            return list(self._tools.values())
        async with self._lock:
            if self._tools is not None:
                return list(self._tools.values())
            version, hints_version = self._version, self._hints_version
            tools = await fetch()
            if hints_version == self._hints_version:
                self._hints = {tool.name: hinted_idempotent(tool) for tool in tools}
            specs = {tool.name: param_header_specs(tool.inputSchema) for tool in tools}
            if modern():
                # The spec (2026-07-28): a tool whose x-mcp-header annotations are invalid
                # MUST NOT be offered; a call to it could not be routed as declared.
                for tool in tools:
                    if specs[tool.name] is None:
                        self._log.warning("tool.dropped", tool=tool.name, reason="x-mcp-header")
                tools = [tool for tool in tools if specs[tool.name] is not None]
            if version == self._version:
                # Only cache if no list_changed arrived while we were fetching.
                self._tools = {tool.name: tool for tool in tools}
                self._validators = {}
                self._param_specs = {name: spec or () for name, spec in specs.items()}
                # A cache is only as good as its invalidation: hear list_changed.
                await cached()
            return tools

    def param_headers(self, name: str) -> tuple[ParamHeader, ...]:
        """A tool's ``x-mcp-header`` annotations, as the listed tool declared them."""
        return self._param_specs.get(name, ())

    def annotated_idempotent(self, name: str) -> bool:
        """Whether the tool is known to be annotated ``readOnlyHint`` or
        ``idempotentHint`` (by the cached list, or a list fetched on an earlier session)."""
        return bool(self.hint(name))

    def check_output(self, name: str, result: CallToolResult, session_id: str | None) -> None:
        """Check ``structuredContent`` against the listed tool's ``outputSchema``.

        Raises:
            ToolOutputError: it is missing or breaks the schema.
        """
        tool = (self._tools or {}).get(name)
        if tool is None or tool.outputSchema is None:
            return
        if result.structuredContent is None:
            raise ToolOutputError(
                f"tool {name!r} declares an outputSchema but returned no structuredContent",
                result=result,
                method="tools/call",
                session_id=session_id,
            )
        compiled = self._validators.get(name)
        if compiled is None:
            compiled = self._validators[name] = compile_schema(tool.outputSchema)
            if compiled.unusable is not None:
                # The server's schema is broken, not its result: a warning, once per
                # listed tool, and its results go unchecked rather than all rejected.
                self._log.warning("tool.output_schema_skipped", tool=name, reason=compiled.unusable)
        try:
            problems = compiled.errors(result.structuredContent)
        except Unvalidatable as exc:
            self._log.warning("tool.output_not_validated", tool=name, reason=str(exc))
            return
        if problems:
            raise ToolOutputError(
                f"tool {name!r} returned structuredContent that breaks its outputSchema: "
                + "; ".join(problems),
                result=result,
                method="tools/call",
                session_id=session_id,
            )


def hinted_idempotent(tool: Tool | None) -> bool:
    """Whether ``tool`` is annotated ``readOnlyHint`` or ``idempotentHint`` (safe to repeat)."""
    hints = tool.annotations if tool is not None else None
    return hints is not None and bool(hints.readOnlyHint or hints.idempotentHint)
