"""smolagents tools from an MCP server: :func:`load_tools`, :class:`ResilientToolCollection`.

smolagents tools are sync: every tool is an :class:`MCPTool` (a ``smolagents.Tool``)
whose ``forward(**kwargs)`` blocks on a :class:`resilient_mcp.SyncClient`, so the
client's recovery and at-most-once rule hold without smolagents' own MCP layer
(mcpadapt, whose ``mcp`` pin conflicts). It keeps mcpadapt's conventions: ``inputs``
are the input schema's properties (each with the ``type`` and ``description`` smolagents
requires), ``output_type="object"``, ``output_schema`` from the tool's ``outputSchema``
and structured content returned as a dict (``structured_output=True``), images as PIL
images. Names and descriptions are the server's; a name that is not a Python identifier
(which smolagents refuses) is made one as mcpadapt does, and the server is called by its
own name.

Outcomes (:class:`resilient_mcp.ToolOutcome`): a tool error (``isError``) and a call
that certainly did not run raise :class:`MCPToolError`, which smolagents feeds back to
the model as a tool error (``AgentToolExecutionError``, "Please try again"). A call that
may have run must not get that invitation, and smolagents has no terminal error for a
tool (every exception a tool raises is fed back as "try again"), so its ``forward``
returns a text that says the effect is unknown and never asks for a retry, and
:meth:`ResilientToolCollection.stop_on_unknown_effect` (a step callback) ends the run
with smolagents' own ``agent.interrupt()`` before the model gets another turn.
"""

from __future__ import annotations

import json
import keyword
import re
import threading
from collections.abc import Callable, Collection, Mapping
from io import BytesIO
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from smolagents import Tool  # type: ignore[import-untyped]

from .._api import Timeout
from .._config import USE_CLIENT_DEFAULT
from .._exceptions import ClientClosed, Execution, MCPError, UsageError
from .._log import default_logger
from .._options import ClientOptions, Unpack
from .._outcome import ContentPart, ToolOutcome, ToolStatus
from .._sync import SyncClient
from .._toolbox import Target, ToolSpec
from ..types import CallToolResult
from ..types import Tool as MCPToolDefinition

__all__ = [
    "MCPTool",
    "MCPToolError",
    "ResilientToolCollection",
    "SyncToolSource",
    "ToolFilter",
    "load_tools",
]

ToolFilter = Callable[[ToolSpec], bool] | Collection[str]
"""Which tools to load: a predicate on the spec, or a collection of (server) tool names."""

# smolagents' AUTHORIZED_TYPES that a JSON Schema can name.
_JSON_TYPES = frozenset({"string", "boolean", "integer", "number", "array", "object", "null"})


@runtime_checkable
class SyncToolSource(Protocol):
    """What the tools call through: a :class:`~resilient_mcp.SyncClient`, or any sync
    object with these two methods (a client group kept on a loop thread, once there is
    one; one with ``origin(name) -> (server, name)`` gets namespaced specs)."""

    def list_tools(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> list[MCPToolDefinition]: ...

    def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> CallToolResult: ...


class MCPToolError(MCPError):
    """A tool call that did not succeed, raised in ``forward`` so that smolagents shows
    it to the model as a tool error: the server's ``isError`` (``status ==
    "tool_error"``, the server's text as the message) or a call that certainly did not
    run (``"not_executed"``: the message says nothing changed).

    Attributes:
        outcome: the outcome of the call.
        status: its status.
        error: the typed error behind it (None for the server's ``isError``).
    """

    def __init__(self, outcome: ToolOutcome) -> None:
        execution = (
            Execution.NOT_EXECUTED if outcome.status == "not_executed" else Execution.EXECUTED
        )
        super().__init__(outcome.message, method="tools/call", execution=execution)
        self.outcome = outcome
        self.status: ToolStatus = outcome.status
        self.error = outcome.error


def _identifier(name: str) -> str:
    # As mcpadapt makes a tool name one smolagents accepts (it refuses non-identifiers).
    if name.isidentifier() and not keyword.iskeyword(name):
        return name
    fixed = re.sub(r"[^\w]", "", name.replace("-", "_")) or "_"
    if fixed[0].isdigit():
        fixed = f"_{fixed}"
    return f"{fixed}_" if keyword.iskeyword(fixed) else fixed


def _resolve(node: Any, defs: Mapping[str, Any], seen: frozenset[str] = frozenset()) -> Any:
    """``node`` with local ``$ref``\\ s inlined: smolagents sends each input's schema on
    its own, without the ``$defs`` it points into. A recursive reference is dropped."""
    if isinstance(node, list):
        return [_resolve(item, defs, seen) for item in node]
    if not isinstance(node, Mapping):
        return node
    out = {key: _resolve(value, defs, seen) for key, value in node.items() if key != "$ref"}
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        target = defs.get(name) if ref.startswith(("#/$defs/", "#/definitions/")) else None
        if isinstance(target, Mapping) and name not in seen:
            return {**_resolve(target, defs, seen | {name}), **out}
    return out


def _type_of(schema: Mapping[str, Any]) -> str | list[str]:
    """The smolagents ``type`` of a property schema: its JSON types, else ``"any"``."""
    declared = schema.get("type")
    if isinstance(declared, str) and declared in _JSON_TYPES:
        return declared
    if isinstance(declared, list) and declared and all(t in _JSON_TYPES for t in declared):
        return list(declared)
    branches = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(branches, list):
        kinds: list[str] = []
        for branch in branches:
            kind = _type_of(branch) if isinstance(branch, Mapping) else "any"
            for one in [kind] if isinstance(kind, str) else kind:
                if one == "any":
                    return "any"
                if one not in kinds:
                    kinds.append(one)
        if kinds:
            return kinds[0] if len(kinds) == 1 else kinds
    values = schema.get("enum", [schema["const"]] if "const" in schema else None)
    if isinstance(values, list) and values:
        found = {_json_type(value) for value in values}
        if len(found) == 1:
            return found.pop()
    return "any"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "string"


def _inputs(schema: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """smolagents ``inputs`` from an input schema: each property's schema as the server
    gave it, with the ``type`` and ``description`` smolagents requires, and ``nullable``
    for an optional one (smolagents requires every input that is not nullable)."""
    defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    resolved = _resolve(schema, defs)
    properties = resolved.get("properties")
    required = set(resolved.get("required") or ())
    inputs: dict[str, dict[str, Any]] = {}
    for key, prop in (properties if isinstance(properties, Mapping) else {}).items():
        entry = dict(prop) if isinstance(prop, Mapping) else {}
        entry["type"] = _type_of(entry)
        for branches in ("anyOf", "oneOf"):
            # smolagents reads each branch's `type` when it builds the model's schema.
            if isinstance(entry.get(branches), list):
                entry[branches] = [
                    {**b, "type": _type_of(b)} if isinstance(b, Mapping) else {"type": "any"}
                    for b in entry[branches]
                ]
        entry.setdefault("description", "")
        if key not in required:
            entry["nullable"] = True
        inputs[str(key)] = entry
    return inputs


def _accepts_null(schema: Mapping[str, Any]) -> bool:
    kind = _type_of(schema)
    return kind == "any" or kind == "null" or (isinstance(kind, list) and "null" in kind)


def _part_value(part: ContentPart, structured_output: bool) -> Any:
    if part.kind == "text":
        text = part.text or ""
        if structured_output and text.startswith(("[", "{")):
            # As mcpadapt's structured_output: JSON text becomes the object it encodes.
            try:
                return json.loads(text)
            except ValueError:
                pass
        return text
    if part.kind == "image" and part.data is not None:
        from PIL import Image  # smolagents' own dependency, for its AgentImage

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
        return _part_value(outcome.parts[0], structured_output)
    return outcome.message


class MCPTool(Tool):  # type: ignore[misc]  # smolagents is untyped
    """One MCP tool as a ``smolagents.Tool``; made by :class:`ResilientToolCollection`.

    Attributes:
        spec: the tool as the server listed it (``spec.name`` is the name it is called
            by on the server).
    """

    skip_forward_signature_validation = True  # forward(**kwargs), as mcpadapt's tools
    output_type = "object"

    def __init__(self, collection: ResilientToolCollection, spec: ToolSpec) -> None:
        self.name = _identifier(spec.name)
        self.description = spec.description
        self.inputs = _inputs(spec.input_schema)
        self.output_schema = (
            dict(spec.output_schema)
            if collection.structured_output and spec.output_schema
            else None
        )
        self.spec = spec
        self._collection = collection
        self._schemas = {
            key: value
            for key, value in (spec.input_schema.get("properties") or {}).items()
            if isinstance(value, Mapping)
        }
        super().__init__()  # then smolagents validates name, inputs and output_type
        self.is_initialized = True

    def __repr__(self) -> str:
        return f"<MCPTool {self.name!r}>"

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Call the tool on the server.

        Raises:
            MCPToolError: the tool reported an error, or certainly did not run.
            TypeError: positional arguments smolagents cannot have meant.
            UsageError: the client is closed (``ClientClosed``).
        """
        if args:
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
            if value is not None or _accepts_null(self._schemas.get(key, {}))
        }
        outcome = self._collection.call(self.spec.name, arguments)
        return result_of(outcome, structured_output=self._collection.structured_output)


def _accepts(tool_filter: ToolFilter | None) -> Callable[[ToolSpec], bool]:
    if tool_filter is None:
        return lambda spec: True
    if callable(tool_filter):
        return tool_filter
    if isinstance(tool_filter, str):
        raise UsageError("tool_filter is a collection of names, not one name")
    names = frozenset(tool_filter)
    return lambda spec: spec.name in names


def _is_async(source: object) -> bool:
    import inspect

    return inspect.iscoroutinefunction(getattr(source, "call_tool", None))


class ResilientToolCollection:
    """The tools of an MCP server as smolagents tools, with smolagents' step callbacks
    that stop a run on an unknown effect and show the model tools added meanwhile.

    ``source`` is a :class:`~resilient_mcp.SyncClient` (or another
    :class:`SyncToolSource`), never closed here; or a target ``connect_sync()`` accepts
    (a URL, a command, an ``mcpServers`` entry; ``**options`` go to the client), whose
    client this collection owns: it connects on first use (or ``with``) and closes on
    :meth:`close` or leaving the block. Use it as :func:`load_tools` makes it::

        with load_tools("http://127.0.0.1:8000/mcp") as mcp:
            agent = ToolCallingAgent(
                tools=mcp.tools, model=model, step_callbacks=mcp.step_callbacks
            )
            agent.run("...")

    Args:
        source: where the tools come from.
        timeout: each call's deadline (default: the client's).
        tool_filter: the tools to keep (a predicate on the spec, or server names).
        structured_output: give each tool its ``output_schema`` and return structured
            content as a dict, as smolagents' ``structured_output=True`` does.

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
        if _is_async(source):
            raise UsageError(
                "smolagents tools are sync: give a resilient_mcp.SyncClient "
                "(connect_sync), or a target for the collection to connect to"
            )
        if isinstance(source, SyncToolSource):
            if options:
                raise UsageError("options are for a target the collection connects to itself")
            self._source: SyncToolSource = source
            self._owned: SyncClient | None = None
        else:
            self._target, self._options = source, options
            self._owned = SyncClient(source, **options)
            self._source = self._owned
        self.timeout = timeout
        self.structured_output = structured_output
        self._accepts = _accepts(tool_filter)
        self._lock = threading.Lock()  # opening, closing, the tool cache, the effects
        self._opened = False
        self._closed = False
        self._built: dict[str, tuple[ToolSpec, MCPTool]] = {}
        self._tools: list[MCPTool] | None = None
        self._unknown: list[ToolOutcome] = []
        self._unreported: list[ToolOutcome] = []

    def __repr__(self) -> str:
        return f"<ResilientToolCollection {self._source!r} owned={self.owns_client}>"

    @property
    def client(self) -> SyncToolSource:
        """The client the tools call through."""
        return self._source

    @property
    def owns_client(self) -> bool:
        """Whether this collection made its client (and so closes it)."""
        return self._owned is not None

    @property
    def tools(self) -> list[MCPTool]:
        """The tools as last loaded (by :func:`load_tools`, ``with`` or :meth:`get_tools`).

        Raises:
            UsageError: they were never loaded.
        """
        if self._tools is None:
            raise UsageError("no tools loaded: use `with` or call get_tools() first")
        return list(self._tools)

    @property
    def unknown_effects(self) -> list[ToolOutcome]:
        """Every ``maybe_executed`` outcome so far: calls that may have run, whose
        effect is unknown (what :meth:`stop_on_unknown_effect` stops a run for)."""
        with self._lock:
            return list(self._unknown)

    # --- lifecycle ---------------------------------------------------------------------------

    def open(self) -> Self:
        """Connect the client this collection owns (nothing for one given to it).

        Raises:
            ClientClosed: the collection was closed.
            MCPError: connecting failed (ConnectError, HandshakeError, ...); the next
                use tries again with a fresh client.
        """
        with self._lock:
            if self._closed:
                raise ClientClosed("this ResilientToolCollection was closed")
            if self._owned is None or self._opened:
                return self
            try:
                self._owned.open()
            except MCPError:
                # A SyncClient opens once: the next use tries again with a fresh one.
                self._owned = SyncClient(self._target, **self._options)
                self._source = self._owned
                raise
            self._opened = True
        return self

    def close(self) -> None:
        """Close the client this collection owns, from any thread; a client given to it
        stays open. Idempotent.

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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- tools ---------------------------------------------------------------------------------

    def get_tools(self) -> list[MCPTool]:
        """Reload the tools from the client's cache (which the server's ``list_changed``
        and every new session refresh); a tool whose spec did not change is the same
        object as before.

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
                if callable(origin):
                    server, original = origin(listed_tool.name)
                    spec = ToolSpec.of(listed_tool, server=server, original_name=original)
                else:
                    spec = ToolSpec.of(listed_tool)
                if not self._accepts(spec):
                    continue
                known = self._built.get(spec.name)
                tool = known[1] if known and known[0] == spec else MCPTool(self, spec)
                if tool.name in names:
                    default_logger().warning(
                        "smolagents.duplicate_tool_name", tool=spec.name, name=tool.name
                    )
                    continue  # smolagents needs unique names: the first one stays
                names.add(tool.name)
                built[spec.name] = (spec, tool)
            self._built = built
            self._tools = [tool for _, tool in built.values()]
            return list(self._tools)

    def call(self, name: str, arguments: Mapping[str, Any] | None = None) -> ToolOutcome:
        """Call the tool ``name`` (its server name) and return its outcome; what the
        server or the network did is in the outcome, never raised.

        Raises:
            UsageError: a programming error, and ClientClosed (a subclass) once the
                client is closed.
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
                self._unreported.append(outcome)
        return outcome

    # --- smolagents step callbacks ---------------------------------------------------------

    @property
    def step_callbacks(self) -> list[Callable[..., None]]:
        """Both step callbacks, for ``ToolCallingAgent(step_callbacks=...)``:
        :meth:`stop_on_unknown_effect`, then :meth:`refresh_agent_tools`."""
        return [self.stop_on_unknown_effect, self.refresh_agent_tools]

    def stop_on_unknown_effect(self, memory_step: Any, agent: Any) -> None:
        """A smolagents step callback: after a step in which a call may have run with no
        usable answer, interrupt the agent (``agent.interrupt()``), so the model gets no
        turn to call it again; ``agent.run()`` then raises smolagents' ``AgentError``
        ("Agent interrupted."), and :attr:`unknown_effects` says which calls. Every
        such outcome of this collection's tools since the last step callback counts, so
        give agents that run at the same time a collection each. Never raises."""
        with self._lock:
            unreported, self._unreported = self._unreported, []
        if unreported:
            default_logger().warning(
                "smolagents.unknown_effect_stops_run", tools=[o.tool for o in unreported]
            )
            agent.interrupt()

    def refresh_agent_tools(self, memory_step: Any, agent: Any) -> None:
        """A smolagents step callback: bring this collection's tools in ``agent.tools``
        up to date with the server's list, so the next step offers the model a tool
        added meanwhile (and no longer one removed). The agent's other tools are left as
        they are. A list that cannot be fetched now leaves the tools as they were (the
        calls report their own failures). Never raises."""
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
    """Connect (for a target) and load the server's tools now, as smolagents'
    ``ToolCollection.from_mcp`` does: ``with load_tools(url) as mcp: ... mcp.tools``.

    Given a :class:`~resilient_mcp.SyncClient`, the collection never closes it; given
    a target, it owns its client and closes it on leaving the ``with`` block (or on
    ``close()``). The arguments are :class:`ResilientToolCollection`'s.

    Raises:
        UsageError: an async client, options with a client, a bad target or filter.
        ConnectError, HandshakeError, ...: connecting failed (nothing is left open).
        MCPError: the tool list could not be fetched (typed as the failure).
    """
    collection = ResilientToolCollection(
        source,
        timeout=timeout,
        tool_filter=tool_filter,
        structured_output=structured_output,
        **options,
    )
    try:
        collection.get_tools()
    except BaseException:
        collection.close()
        raise
    return collection
