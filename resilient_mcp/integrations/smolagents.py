"""smolagents tools from an MCP server: :func:`load_tools`, :class:`ResilientToolCollection`.

Every tool is an :class:`MCPTool` (a ``smolagents.Tool``) whose sync ``forward`` blocks
on a :class:`resilient_mcp.SyncClient` (or a :class:`resilient_mcp.SyncClientGroup`,
whose tools are namespaced ``member__tool``), without smolagents' MCP layer (mcpadapt, whose
``mcp`` pin conflicts), in mcpadapt's conventions: ``inputs`` from the input schema's
properties, ``output_type="object"``, ``output_schema`` and structured content as a dict
(``structured_output=True``), images as PIL images, names made Python identifiers.

A tool error (``isError``) and a call that certainly did not run raise
:class:`MCPToolError`: smolagents' tool-error path, fed back with "Please try again".
smolagents has no terminal error for a tool (every exception gets that invitation), so a
call that may have run returns a text that says its effect is unknown and never asks for
a retry, and the step callback :meth:`ResilientToolCollection.stop_on_unknown_effect`
ends the run with ``agent.interrupt()`` before the model gets another turn.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Collection, Mapping
from io import BytesIO
from typing import Any, Protocol, Self, runtime_checkable

from PIL import Image  # smolagents' own dependency: its AgentImage wraps PIL images
from smolagents import Tool  # type: ignore[import-untyped]

from .. import types
from .._api import Timeout
from .._config import USE_CLIENT_DEFAULT
from .._exceptions import ClientClosed, Execution, MCPError, UsageError
from .._group_sync import SyncClientGroup
from .._log import default_logger
from .._options import ClientOptions, Unpack
from .._outcome import ContentPart, ToolOutcome, ToolStatus
from .._sync import SyncClient
from .._toolbox import Target, ToolSpec
from ._smolagents_inputs import accepts_null, identifier, inputs_of

__all__ = [
    "MCPTool",
    "MCPToolError",
    "ResilientToolCollection",
    "SyncToolSource",
    "ToolFilter",
    "load_tools",
]

ToolFilter = Callable[[ToolSpec], bool] | Collection[str]
"""Which tools to load: a predicate on the spec, or a collection of tool names as the
source lists them (a group's: ``member__tool``)."""


@runtime_checkable
class SyncToolSource(Protocol):
    """What the tools call through: a :class:`~resilient_mcp.SyncClient`, a
    :class:`~resilient_mcp.SyncClientGroup`, or any sync object with these two methods
    (one with ``origin(name) -> (server, name)``, as a group, gets namespaced specs)."""

    def list_tools(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> list[types.Tool]: ...

    def call_tool(
        self, name: str, arguments: Mapping[str, Any] | None = None, *, timeout: Timeout = ...
    ) -> types.CallToolResult: ...


class MCPToolError(MCPError):
    """Raised in ``forward`` for smolagents' tool-error path: the server's ``isError``
    (``status == "tool_error"``, its text) or a call that certainly did not run
    (``"not_executed"``, the message says nothing changed).

    Attributes:
        outcome: the call's outcome (``status``, ``error``: None for ``isError``).
    """

    def __init__(self, outcome: ToolOutcome) -> None:
        not_run = outcome.status == "not_executed"
        execution = Execution.NOT_EXECUTED if not_run else Execution.EXECUTED
        super().__init__(outcome.message, method="tools/call", execution=execution)
        self.outcome = outcome
        self.status: ToolStatus = outcome.status


def _part_value(part: ContentPart) -> Any:
    if part.kind == "text":
        return part.text or ""
    if part.kind == "image" and part.data is not None:
        try:
            image = Image.open(BytesIO(part.data))
            image.load()
        except (OSError, ValueError):
            return part.describe()  # not an image PIL can read: say what it was
        return image
    return part.describe()


def result_of(outcome: ToolOutcome, *, structured_output: bool = True) -> Any:
    """What an :class:`MCPTool` returns for ``outcome`` (see the module docstring).

    Raises:
        MCPToolError: ``tool_error`` (the server's text) or ``not_executed``.
    """
    if outcome.status == "maybe_executed":
        return outcome.message  # an observation that never invites a retry
    if outcome.status != "ok":
        raise MCPToolError(outcome)
    if structured_output and outcome.structured is not None:
        return dict(outcome.structured)
    if len(outcome.parts) == 1:
        return _part_value(outcome.parts[0])
    return outcome.message


class MCPTool(Tool):  # type: ignore[misc]  # smolagents is untyped
    """One MCP tool as a ``smolagents.Tool``, made by :class:`ResilientToolCollection`;
    ``spec`` is the tool as the server listed it (``spec.name``: its name there)."""

    skip_forward_signature_validation = True  # forward(**kwargs), as mcpadapt's tools
    output_type = "object"

    def __init__(self, collection: ResilientToolCollection, spec: ToolSpec) -> None:
        self.name = identifier(spec.name)
        self.description = spec.description
        self.inputs = inputs_of(spec.input_schema)
        output = spec.output_schema if collection.structured_output else None
        self.output_schema = dict(output) if output else None
        self.spec = spec
        self._collection = collection
        self._schemas: Mapping[str, Any] = spec.input_schema.get("properties") or {}
        super().__init__()  # then smolagents validates name, inputs and output_type
        self.is_initialized = True

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Call the tool on the server.

        Raises:
            MCPToolError: the tool reported an error, or certainly did not run.
            TypeError: positional arguments that name no input.
            UsageError: ``ClientClosed``: the client (or group) is closed.
        """
        if args:  # a CodeAgent may pass one dict, or its only input, positionally
            if len(args) == 1 and not kwargs and isinstance(args[0], Mapping):
                kwargs = dict(args[0])
            elif len(args) == 1 and not kwargs and len(self.inputs) == 1:
                kwargs = {next(iter(self.inputs)): args[0]}
            else:
                raise TypeError(f"tool {self.name} takes keyword arguments only")
        # smolagents' "nullable" means optional: an omitted value the model sent as null
        # is left out, unless the server's own schema allows null.
        arguments = {
            key: value
            for key, value in kwargs.items()
            if value is not None or accepts_null(self._schemas.get(key, {}))
        }
        outcome = self._collection.call(self.spec.name, arguments)
        return result_of(outcome, structured_output=self._collection.structured_output)


def _accepts(tool_filter: ToolFilter | None) -> Callable[[ToolSpec], bool]:
    if isinstance(tool_filter, str):
        raise UsageError("tool_filter is a collection of names, not one name")
    if tool_filter is None or callable(tool_filter):
        return tool_filter or (lambda spec: True)
    names = frozenset(tool_filter)
    return lambda spec: spec.name in names


def _connect(target: Target, options: ClientOptions) -> SyncClient | SyncClientGroup:
    """The client a collection makes for a target: a group for an ``mcpServers`` config
    of several servers (``connect_sync`` takes a config of exactly one)."""
    servers = target.get("mcpServers") if isinstance(target, Mapping) else None
    if isinstance(servers, Mapping) and len(servers) > 1:
        return SyncClientGroup(servers, **options)
    return SyncClient(target, **options)


def _left_out(spec: ToolSpec, reason: str) -> None:
    default_logger().warning("smolagents.tool_left_out", tool=spec.name, reason=reason)


class ResilientToolCollection:
    """An MCP server's tools for smolagents, and the step callbacks that stop a run on
    an unknown effect and offer the model tools added meanwhile (see :func:`load_tools`).

    ``source`` is a :class:`~resilient_mcp.SyncClient`, a
    :class:`~resilient_mcp.SyncClientGroup` (or another :class:`SyncToolSource`), never
    closed here; or a target ``connect_sync()`` accepts (with its ``**options``), or an
    ``mcpServers`` config of several servers (a group of them, with ``**options`` for
    every member), whose client this collection owns: it connects on first use (or
    ``with``) and closes on :meth:`close` or leaving the block.

    Args:
        source: where the tools come from.
        timeout: each call's deadline (default: the client's).
        tool_filter: the tools to keep (a predicate on the spec, or listed names).
        structured_output: ``output_schema`` and structured content as a dict, as
            smolagents' ``structured_output=True``.

    Raises:
        UsageError: (at construction) an async client (use ``connect_sync``), options
            given with a client, a bad target or filter.
    """

    def __init__(
        self,
        source: SyncToolSource | Target,
        /,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        tool_filter: ToolFilter | None = None,
        structured_output: bool = True,
        **options: Unpack[ClientOptions],
    ) -> None:
        if inspect.iscoroutinefunction(getattr(source, "call_tool", None)):
            raise UsageError(
                "smolagents tools are sync: give a SyncClient or SyncClientGroup, or a target"
            )
        if isinstance(source, SyncToolSource):
            if options:
                raise UsageError("options are for a target the collection connects to itself")
            self._source: SyncToolSource = source
            self._owned: SyncClient | SyncClientGroup | None = None
        else:
            self._target, self._options = source, options
            self._owned = self._source = _connect(source, options)
        self.timeout = timeout
        self.structured_output = structured_output
        self._accepts = _accepts(tool_filter)
        self._lock = threading.Lock()  # opening, closing, the tool cache, the effects
        self._opened = self._closed = False
        self._built: dict[str, tuple[ToolSpec, MCPTool]] = {}
        self._tools: list[MCPTool] | None = None
        self._unknown: list[ToolOutcome] = []
        self._reported = 0  # how many of them a step callback has seen

    def __repr__(self) -> str:
        return f"<ResilientToolCollection {self._source!r} owned={self._owned is not None}>"

    @property
    def client(self) -> SyncToolSource:
        """The client (or group) the tools call through (made here for a target)."""
        return self._source

    @property
    def tools(self) -> list[MCPTool]:
        """The tools as last loaded (by :func:`load_tools`, ``with`` or :meth:`get_tools`);
        UsageError if they never were."""
        if self._tools is None:
            raise UsageError("no tools loaded: use `with` or call get_tools() first")
        return list(self._tools)

    @property
    def unknown_effects(self) -> list[ToolOutcome]:
        """Every ``maybe_executed`` outcome so far: calls that may have run, effect unknown."""
        with self._lock:
            return list(self._unknown)

    def open(self) -> Self:
        """Connect the client this collection owns (nothing for one given to it).

        Raises:
            ClientClosed: the collection was closed.
            MCPError: connecting failed (ConnectError, ...); the next use tries again.
        """
        with self._lock:
            if self._closed:
                raise ClientClosed("this ResilientToolCollection was closed")
            if self._owned is None or self._opened:
                return self
            try:
                self._owned.open()
            except MCPError:  # a client opens once: the next use gets a fresh one
                self._owned = self._source = _connect(self._target, self._options)
                raise
            self._opened = True
        return self

    def close(self) -> None:
        """Close the client this collection owns, from any thread (one given to it stays
        open). Idempotent.

        Raises:
            ClientClosed: a background task of the client had failed (as its cause).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            owned, opened = self._owned, self._opened
        if owned is not None and opened:
            owned.close()

    def __enter__(self) -> Self:
        try:
            if self._tools is None:
                self.get_tools()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get_tools(self) -> list[MCPTool]:
        """Reload the tools from the client's cache (refreshed by ``list_changed`` and
        every new session); a tool whose spec is unchanged stays the same object.

        Raises:
            ClientClosed: the client (or the collection) is closed.
            MCPError: the list could not be fetched (typed as the failure).
        """
        self.open()
        listed = self._source.list_tools(timeout=self.timeout)
        origin = getattr(self._source, "origin", None)
        with self._lock:
            built: dict[str, tuple[ToolSpec, MCPTool]] = {}
            names: set[str] = set()
            for listed_tool in listed:
                server, original = origin(listed_tool.name) if callable(origin) else (None, None)
                spec = ToolSpec.of(listed_tool, server=server, original_name=original)
                if not self._accepts(spec):
                    continue
                known = self._built.get(spec.name)
                try:
                    tool = known[1] if known and known[0] == spec else MCPTool(self, spec)
                except Exception as exc:  # smolagents' own checks raise bare Exceptions
                    _left_out(spec, repr(exc))
                    continue
                if tool.name in names:  # smolagents needs unique names: the first stays
                    _left_out(spec, f"a tool named {tool.name!r} came first")
                    continue
                names.add(tool.name)
                built[spec.name] = (spec, tool)
            self._built = built
            self._tools = [tool for _, tool in built.values()]
            return list(self._tools)

    def call(self, name: str, arguments: Mapping[str, Any] | None = None) -> ToolOutcome:
        """Call the tool ``name`` (its server name): what the server or the network did
        is in the outcome, never raised.

        Raises:
            UsageError: a programming error; ClientClosed (a subclass) once closed.
        """
        try:
            self.open()
            result = self._source.call_tool(name, arguments, timeout=self.timeout)
        except UsageError:
            raise
        except MCPError as exc:
            outcome = ToolOutcome.of_error(name, exc)
        else:
            outcome = ToolOutcome.of_result(name, result)
        if outcome.terminal:
            with self._lock:
                self._unknown.append(outcome)
        return outcome

    @property
    def step_callbacks(self) -> list[Callable[..., None]]:
        """Both step callbacks, for ``ToolCallingAgent(step_callbacks=...)``:
        :meth:`stop_on_unknown_effect`, then :meth:`refresh_agent_tools`."""
        return [self.stop_on_unknown_effect, self.refresh_agent_tools]

    def stop_on_unknown_effect(self, memory_step: Any, agent: Any) -> None:
        """A step callback: after a step in which a call may have run with no usable
        answer, ``agent.interrupt()``: the model gets no turn to call it again, and
        ``agent.run()`` raises smolagents' ``AgentError`` ("Agent interrupted."). Any such
        outcome since the last callback counts: give agents running at once a collection
        each. Never raises."""
        with self._lock:
            unreported, self._reported = self._unknown[self._reported :], len(self._unknown)
        if unreported:
            default_logger().warning(
                "smolagents.unknown_effect_stops_run", tools=[o.tool for o in unreported]
            )
            agent.interrupt()

    def refresh_agent_tools(self, memory_step: Any, agent: Any) -> None:
        """A step callback: bring this collection's tools in ``agent.tools`` up to date
        with the server's list, so the next step offers a tool added meanwhile (and not
        one removed); other tools stay, and so do these if the list cannot be had now
        (calls report their own failures). Never raises."""
        try:
            current = self.get_tools()
        except ClientClosed:
            return
        except MCPError as exc:
            default_logger().warning("smolagents.refresh_failed", error=repr(exc))
            return
        fresh = {tool.name: tool for tool in current}
        tools: dict[str, Any] = agent.tools
        for name, tool in list(tools.items()):
            if isinstance(tool, MCPTool) and tool._collection is self:
                if name in fresh:
                    tools[name] = fresh[name]  # in place: the model's tool order stays
                else:
                    del tools[name]
        for name, tool in fresh.items():
            tools.setdefault(name, tool)  # never over one of the agent's own tools


def load_tools(
    source: SyncToolSource | Target,
    /,
    *,
    timeout: Timeout = USE_CLIENT_DEFAULT,
    tool_filter: ToolFilter | None = None,
    structured_output: bool = True,
    **options: Unpack[ClientOptions],
) -> ResilientToolCollection:
    """Connect (for a target) and load the tools now, as ``ToolCollection.from_mcp``::

        with load_tools("http://127.0.0.1:8000/mcp") as mcp:
            agent = ToolCallingAgent(tools=mcp.tools, model=..., step_callbacks=mcp.step_callbacks)

    A :class:`~resilient_mcp.SyncClient` or :class:`~resilient_mcp.SyncClientGroup`
    given is never closed; a target's client (a group, for an ``mcpServers`` config of
    several servers) is closed on leaving the block (or ``close()``). Arguments:
    :class:`ResilientToolCollection`.

    Raises:
        UsageError: an async client, options with a client, a bad target or filter.
        ConnectError, HandshakeError, ...: connecting failed (nothing is left open).
        MCPError: the tool list could not be fetched (typed as the failure).
    """
    made = ResilientToolCollection(
        source,
        timeout=timeout,
        tool_filter=tool_filter,
        structured_output=structured_output,
        **options,
    )
    return made.__enter__()  # loads the tools; closes what it opened if that fails
