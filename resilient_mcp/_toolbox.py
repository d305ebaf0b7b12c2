"""The framework-neutral tool surface every adapter maps from: :class:`Toolbox`.

An adapter (pydantic-ai, openai-agents, LangChain, ADK, LlamaIndex, smolagents) needs
three things from us: the tools as plain specs (:class:`ToolSpec`), a call that never
raises for what the server did (:class:`~resilient_mcp.ToolOutcome`), and a clear rule
of who closes the client. The Toolbox gives exactly that over a client (or a group of
them), so the adapters hold no MCP logic of their own: recovery, at-most-once and the
tool cache (refreshed on ``list_changed`` and after every new session) stay in the core.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self, cast, runtime_checkable

import anyio

from ._api import Timeout
from ._client import Client
from ._config import USE_CLIENT_DEFAULT
from ._exceptions import ClientClosed, MCPError, UsageError
from ._handlers import ProgressCallback
from ._options import ClientOptions, Unpack
from ._outcome import ToolOutcome
from ._targets import HTTPServer, StdioServer
from .types import CallToolResult, Tool, ToolAnnotations

__all__ = ["ToolSource", "ToolSpec", "Toolbox"]


@runtime_checkable
class ToolSource(Protocol):
    """What a :class:`Toolbox` reads tools from: a :class:`~resilient_mcp.Client`, a
    client group, or anything with these two methods."""

    async def list_tools(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> list[Tool]: ...

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        progress: ProgressCallback | None = None,
    ) -> CallToolResult: ...


class _WithMeta(Protocol):
    """A source whose ``call_tool`` also takes ``meta=`` (Client, ClientGroup)."""

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        progress: ProgressCallback | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> CallToolResult: ...


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool, as an agent framework declares it to a model.

    Names, descriptions and schemas are the server's, unchanged (a group's tools carry
    its namespaced name; ``server`` and ``original_name`` say where they come from).

    Attributes:
        name: the name to call it by (and to show the model).
        description: the server's description ("" when it gave none).
        input_schema: the JSON Schema of the arguments.
        title: a human-readable title, if any (the tool's, else its annotations').
        output_schema: the JSON Schema of ``structuredContent``, if declared.
        annotations: the server's behaviour hints (untrusted unless the server is).
        meta: the tool's ``_meta``, if any.
        server: the group member it comes from (None for a single client).
        original_name: its name on its own server.
        tool: the tool as listed.
    """

    name: str
    description: str
    input_schema: Mapping[str, Any]
    title: str | None = None
    output_schema: Mapping[str, Any] | None = None
    annotations: ToolAnnotations | None = None
    meta: Mapping[str, Any] | None = None
    server: str | None = None
    original_name: str = ""
    tool: Tool | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, tool: Tool, *, server: str | None = None, original_name: str | None = None) -> Self:
        """The spec of a listed tool."""
        extra = tool.model_extra or {}
        meta = extra.get("_meta")
        title = tool.title or (tool.annotations.title if tool.annotations else None)
        return cls(
            name=tool.name,
            description=tool.description or "",
            input_schema=tool.inputSchema,
            title=title,
            output_schema=tool.outputSchema,
            annotations=tool.annotations,
            meta=meta if isinstance(meta, Mapping) else None,
            server=server,
            original_name=original_name or tool.name,
            tool=tool,
        )

    @property
    def read_only(self) -> bool:
        """Annotated ``readOnlyHint``."""
        return bool(self.annotations and self.annotations.readOnlyHint)

    @property
    def idempotent(self) -> bool:
        """Safe to repeat: annotated ``readOnlyHint`` or ``idempotentHint``."""
        hints = self.annotations
        return bool(hints and (hints.readOnlyHint or hints.idempotentHint))

    @property
    def destructive(self) -> bool:
        """May destroy data: ``destructiveHint``, which the spec defaults to true for a
        tool that is not read-only."""
        hints = self.annotations
        if hints is None:
            return True
        if hints.readOnlyHint:
            return False
        return hints.destructiveHint is not False


class _Namespaced(Protocol):
    def origin(self, name: str) -> tuple[str, str]: ...


Target = str | HTTPServer | StdioServer | Sequence[str] | Mapping[str, Any]


class Toolbox:
    """The tools of a client (or a client group), for framework adapters.

    Give it a connected client (``Toolbox(client)``: it never closes it) or a target
    that ``connect()`` accepts (``Toolbox(url, **options)``: it owns the client, opens it
    on first use or on ``async with``, and closes it in :meth:`aclose`).

    :meth:`specs` lists the tools (from the client's cache, which the server's
    ``list_changed`` and every new session refresh); :meth:`call` calls one and returns
    a :class:`~resilient_mcp.ToolOutcome` instead of raising for anything the server or
    the network did.

    Raises:
        UsageError: (at construction) options given with a client, or a bad target.
    """

    def __init__(
        self,
        source: ToolSource | Target,
        /,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        **options: Unpack[ClientOptions],
    ) -> None:
        if isinstance(source, ToolSource):
            if options:
                raise UsageError("options are for a target the Toolbox connects to itself")
            self._source: ToolSource = source
            self._owned: Client | None = None
        else:
            self._owned = Client(source, **options)
            self._source = self._owned
            self._target, self._options = source, options
        self._timeout = timeout
        self._opened = False
        self._closed = False
        self._lock = anyio.Lock()
        self._specs: dict[str, ToolSpec] = {}

    def __repr__(self) -> str:
        return f"<Toolbox {self._source!r} owned={self.owns_client}>"

    @property
    def source(self) -> ToolSource:
        """The client (or group) the tools come from."""
        return self._source

    @property
    def owns_client(self) -> bool:
        """Whether this Toolbox made its client (and so closes it)."""
        return self._owned is not None

    async def open(self) -> None:
        """Connect the client this Toolbox owns (nothing for a client given to it).

        Raises:
            ClientClosed: the Toolbox was closed.
            MCPError: connecting failed (ConnectError, HandshakeError, ...).
        """
        if self._closed:
            raise ClientClosed("this Toolbox was closed")
        if self._owned is None or self._opened:
            return
        async with self._lock:
            if self._opened or self._owned is None:
                return
            try:
                await self._owned.__aenter__()
            except MCPError:
                # A Client opens once: the next use tries again with a fresh one.
                self._owned = Client(self._target, **self._options)
                self._source = self._owned
                raise
            self._opened = True

    async def aclose(self) -> None:
        """Close the client this Toolbox owns; a client given to it stays open."""
        if self._closed:
            return
        self._closed = True
        if self._owned is not None and self._opened:
            # Not under a shield of ours: the client shields its own shutdown, and its
            # task group must be left from the scope it was entered in.
            await self._owned.__aexit__(None, None, None)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def specs(self) -> list[ToolSpec]:
        """Every tool, as specs (cached by the client until the list changes).

        Raises:
            ClientClosed: the client (or this Toolbox) is closed.
            MCPError: the list could not be fetched (typed as the failure).
        """
        await self.open()
        tools = await self._source.list_tools(timeout=self._timeout)
        origin = getattr(self._source, "origin", None)
        specs: list[ToolSpec] = []
        for tool in tools:
            if origin is not None:
                server, original = _origin(self._source, tool.name)
                specs.append(ToolSpec.of(tool, server=server, original_name=original))
            else:
                specs.append(ToolSpec.of(tool))
        self._specs = {spec.name: spec for spec in specs}
        return specs

    def spec(self, name: str) -> ToolSpec | None:
        """The spec of ``name`` from the last :meth:`specs`, if it was there."""
        return self._specs.get(name)

    async def call(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        progress: ProgressCallback | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> ToolOutcome:
        """Call a tool; what the server or the network did is in the outcome.

        ``meta`` is sent as the request's ``_meta`` (a source without a ``meta``
        parameter, e.g. a ToolSource of your own, is called without it only when it is
        empty).

        The client's rules hold: a call that certainly did not run is retried within its
        deadline; one that may have run is repeated only when the tool is read-only or
        idempotent, else it is ``maybe_executed``.

        Raises:
            UsageError: a programming error (bad arguments to this method), and
                ClientClosed (a subclass) once the client is closed.
        """
        if timeout is USE_CLIENT_DEFAULT:
            timeout = self._timeout
        try:
            await self.open()
            if meta:
                source: _WithMeta = cast(_WithMeta, self._source)
                result = await source.call_tool(
                    name, arguments, timeout=timeout, progress=progress, meta=meta
                )
            else:
                result = await self._source.call_tool(
                    name, arguments, timeout=timeout, progress=progress
                )
        except UsageError:
            raise
        except MCPError as exc:
            return ToolOutcome.of_error(name, exc)
        return ToolOutcome.of_result(name, result)


def _origin(source: Any, name: str) -> tuple[str, str]:
    namespaced: _Namespaced = source
    return namespaced.origin(name)
