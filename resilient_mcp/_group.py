"""Many servers as one: ``async with resilient_mcp.connect_group(config) as group: ...``.

A :class:`ClientGroup` holds one :class:`~resilient_mcp.Client` per member server and
shows their tools as one list, namespaced (``server__tool``) and sanitised for model
APIs (:mod:`._group_members`). What it adds to the clients is isolation:

- every member connects in parallel, in the group's own background task (a
  :class:`~resilient_mcp._host.Host`), so no caller's deadline or cancellation cuts a
  connection attempt others wait for, and the group may be left from any task;
- a member that cannot connect does not fail the group (unless ``require_all``); its
  status says why, and it is tried again lazily, on its next use once its not-before
  time has passed (backoff from a :class:`~resilient_mcp.RetryPolicy`); before that,
  calls to it fail at once with a not-executed :class:`~resilient_mcp.ConnectError`;
- a call touches its own member only: one server down, slow or recovering never fails
  or delays a call to another; a listing never waits for a member that is not connected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, Self

import anyio
import anyio.abc

from ._api import Timeout
from ._client import Client
from ._config import USE_CLIENT_DEFAULT
from ._exceptions import (
    ClientClosed,
    ConnectError,
    Execution,
    MCPError,
    RequestTimeout,
    UsageError,
)
from ._group_members import (
    DEFAULT_RECONNECT,
    LOST,
    GroupState,
    Member,
    MemberState,
    MemberStatus,
    Namer,
    Servers,
    assign_names,
    make_members,
    make_namer,
    may_offer,
    unknown_tool,
    unlisted_owner,
)
from ._handlers import ProgressCallback
from ._host import Host
from ._log import default_logger
from ._options import ClientOptions, Unpack, resolve_options
from ._retry import RetryPolicy
from .types import CallToolResult, Tool

__all__ = ["ClientGroup", "MemberState", "MemberStatus", "connect_group"]


class ClientGroup:
    """Several MCP servers as one tool source. Safe to share between tasks.

    Made by :func:`connect_group` (see there for the arguments), entered with ``async
    with`` (or closed with :meth:`aclose`), from any task of one event loop: it may be
    left by another task than the one that entered it.

    It is a :class:`~resilient_mcp.ToolSource` (:meth:`list_tools`, :meth:`call_tool`,
    :meth:`origin`), so ``Toolbox(group)`` and every framework adapter take it.
    ``group["name"]`` is a member's :class:`~resilient_mcp.Client`, for everything else
    MCP offers.
    """

    def __init__(
        self,
        servers: Servers,
        /,
        *,
        separator: str = "__",
        prefix: bool | Namer = True,
        require_all: bool = False,
        member_options: Mapping[str, ClientOptions] | None = None,
        reconnect: RetryPolicy | None = None,
        clock: Callable[[], float] = anyio.current_time,
        **options: Unpack[ClientOptions],
    ) -> None:
        self._members = make_members(servers, options, member_options)
        self._namer = make_namer(prefix, separator)
        self._sep = separator if prefix is True else None  # names start with the member's
        if reconnect is not None and not isinstance(reconnect, RetryPolicy):
            raise UsageError(f"reconnect= must be a RetryPolicy, got {reconnect!r}")
        base = resolve_options(options)
        self._log = (base.logger if base.logger is not None else default_logger()).bind(
            group=list(self._members)
        )
        self._require_all = require_all
        self._reconnect = reconnect or DEFAULT_RECONNECT
        self._clock = clock
        self._state = GroupState.UNOPENED
        self._host: Host | None = None
        self._tasks: anyio.abc.TaskGroup | None = None
        self._closed: anyio.Event | None = None
        self._names: dict[str, tuple[str, str]] = {}
        self._shown: dict[tuple[str, str], str] = {}

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for member in self._members.values():
            counts[member.state.value] = counts.get(member.state.value, 0) + 1
        shown = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        return f"<ClientGroup [{shown}]>"

    # --- members --------------------------------------------------------------------------

    @property
    def members(self) -> tuple[str, ...]:
        """The members' names, in the order given."""
        return tuple(self._members)

    def status(self) -> Mapping[str, MemberStatus]:
        """A read-only snapshot of every member, by name, in member order."""
        return MappingProxyType({name: m.status() for name, m in self._members.items()})

    def __getitem__(self, name: str) -> Client:
        """The member's connected client.

        Raises:
            UsageError: no member has this name.
            ConnectError: the member is not connected (see :meth:`status`).
        """
        member = self._members.get(name)
        if member is None:
            raise UsageError(f"no member named {name!r}; members: {list(self._members)}")
        if member.state is not MemberState.READY or member.client is None:
            raise self._down(member, "is not connected")
        return member.client

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        """Connect every member in parallel; return once each is connected or failed.

        Raises:
            ClientClosed: the group was opened before.
            MCPError: with ``require_all``, the first failed member's error (in member
                order; the others are closed), with a note naming the member.
        """
        if self._state is not GroupState.UNOPENED:
            raise ClientClosed("a ClientGroup can be opened only once; create a new one")
        self._state = GroupState.OPEN
        self._host = Host(self._log)
        try:
            await self._open(self._host)
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def _open(self, host: Host) -> None:
        self._tasks = await host.open()
        for member in self._members.values():
            self._start_attempt(member)
        for member in self._members.values():
            if member.attempt is not None:
                await member.attempt.wait()
        failed = [m for m in self._members.values() if m.state is MemberState.FAILED]
        if self._require_all and failed and failed[0].last_error is not None:
            error = failed[0].last_error
            error.add_note(f"(group member {failed[0].name!r})")
            raise error

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown()

    async def aclose(self) -> None:
        """Close every member (a stdio server is stopped and reaped) from any task; later
        calls raise ``ClientClosed``. Never raises for a member's failure to close."""
        if self._state is not GroupState.UNOPENED:
            await self._shutdown()

    async def _shutdown(self) -> None:
        self._state = GroupState.CLOSED
        if self._closed is not None:
            with anyio.CancelScope(shield=True):
                await self._closed.wait()
            return
        self._closed = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):
                if self._host is not None:
                    # First: attempts under way are cancelled (and clean up after
                    # themselves), so none can hand over a client after the close below.
                    await self._host.close()
                async with anyio.create_task_group() as tasks:
                    for member in self._members.values():
                        client, member.client = member.client, None
                        member.state = MemberState.CLOSED
                        if client is not None:
                            tasks.start_soon(self._close_quietly, client)
        finally:
            self._closed.set()

    async def _close_quietly(self, client: Client) -> None:
        try:
            await client.aclose()
        except MCPError as exc:
            self._log.warning("group.close_failed", error=repr(exc))

    # --- connecting -----------------------------------------------------------------------

    def _start_attempt(self, member: Member) -> None:
        self._check_open()  # (the background task group is gone once the group closed)
        assert self._tasks is not None
        member.state = MemberState.CONNECTING
        member.attempt = done = anyio.Event()
        self._tasks.start_soon(self._connect, member, done)

    async def _connect(self, member: Member, done: anyio.Event) -> None:
        """One connection attempt, in the group's background task."""
        try:
            client = Client(member.target, **member.options)
            try:
                await client.__aenter__()
            except MCPError as exc:
                self._failed(member, exc)
            except Exception as exc:
                # Never expected (a client raises MCPErrors only), but one member's bug
                # must not end the background work of all the others.
                error = ConnectError(f"connecting failed unexpectedly: {exc!r}")
                error.__cause__ = exc
                self._failed(member, error)
            else:
                member.connected(client)
                self._log.info("group.member_ready", member=member.name)
        finally:
            done.set()

    def _failed(self, member: Member, error: MCPError) -> None:
        member.fail(error, self._clock() + self._reconnect.backoff(member.failures + 1))
        self._log.warning(
            "group.member_failed", member=member.name, error=repr(error), failures=member.failures
        )

    def _lost(self, member: Member, client: Client, error: MCPError) -> None:
        """A member's client is unusable: drop it (closed in the background)."""
        if member.client is not client or self._state is not GroupState.OPEN:
            return  # already replaced, or the group is closing anyway
        member.client = None
        self._failed(member, error)
        assert self._tasks is not None
        self._tasks.start_soon(self._close_quietly, client)

    def _due(self, member: Member) -> bool:
        return member.retry_at is None or self._clock() >= member.retry_at

    def _down(self, member: Member, what: str) -> ConnectError:
        return member.down(what, self._clock)

    async def _ready(self, member: Member, at: float) -> Client:
        """The member's client, connecting it first if it is due (waiting until ``at``).

        Raises:
            ConnectError: it is down (not before its next attempt, or this one failed).
            RequestTimeout: (not executed) it was still connecting at ``at``.
        """
        if member.state is MemberState.FAILED and self._due(member):
            self._start_attempt(member)
        if member.state is MemberState.CONNECTING and member.attempt is not None:
            with anyio.CancelScope(deadline=at):
                await member.attempt.wait()
            if not member.attempt.is_set():
                raise RequestTimeout(
                    f"server {member.name!r} was still connecting when the call's time ran out",
                    execution=Execution.NOT_EXECUTED,
                )
        if member.state is MemberState.READY and member.client is not None:
            return member.client
        raise self._down(member, "is down")

    # --- tools --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state is not GroupState.OPEN:
            raise ClientClosed("the group is not open: use `async with connect_group(...)`")

    async def list_tools(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> list[Tool]:
        """Every connected member's tools, under their group names, in member order.

        Members are asked in parallel (each from its client's cache, refreshed on
        ``list_changed``). One that is not connected is left out and, when it is due,
        a connection attempt starts in the background (its tools appear in a later
        listing); one that fails to answer within ``timeout`` is left out too. Either
        way :meth:`status` says why.

        Raises:
            ClientClosed: the group is closed.
            MCPError: no member could list its tools (the first member's failure).
        """
        self._check_open()
        listed = await self._refresh(timeout, connect=False)
        return [
            tool.model_copy(update={"name": self._shown[(member.name, tool.name)]})
            for member in self._members.values()
            if member.name in listed and member.tools is not None
            for tool in member.tools
            if (member.name, tool.name) in self._shown
        ]

    async def _refresh(
        self, timeout: Timeout, *, connect: bool, name: str | None = None
    ) -> set[str]:
        """Fetch every connected member's list (in parallel) and rename; with
        ``connect``, also connect the members due for it first (within ``timeout``);
        with ``name``, only the members that may offer it. Returns the members listed.

        Raises:
            MCPError: no member could list its tools (the first member's failure).
        """
        errors: dict[str, MCPError] = {}
        listed: set[str] = set()

        async def one(member: Member) -> None:
            try:
                if connect:
                    await self._ready(member, member.deadline(timeout))
                elif member.state is MemberState.FAILED and self._due(member):
                    self._start_attempt(member)  # not waited for: a later listing shows it
                client = member.client
                if member.state is not MemberState.READY or client is None:
                    raise self._down(member, "is not connected")
            except MCPError as exc:
                errors[member.name] = exc
                return
            try:
                member.tools = await client.list_tools(timeout=timeout)
            except MCPError as exc:
                member.last_error = errors[member.name] = exc
                self._log.warning("group.list_failed", member=member.name, error=repr(exc))
                if isinstance(exc, LOST):
                    self._lost(member, client, exc)
                if isinstance(exc, ClientClosed):  # the member's client, not the group
                    errors[member.name] = self._down(member, "was closed")
                return
            listed.add(member.name)

        async with anyio.create_task_group() as tasks:
            for member in self._members.values():
                if name is None or may_offer(member, name, self._sep):
                    tasks.start_soon(one, member)
        self._check_open()  # closed meanwhile: say so, not what closing did to members
        self._rename()
        if not listed and errors:
            raise errors[next(name for name in self._members if name in errors)]
        return listed

    def _rename(self) -> None:
        # From every member's last list, including those of members now down: names do
        # not move when a member drops out, and a call to a tool of a down member is a
        # "down" error, not an "unknown tool" one.
        lists = [(m.name, [tool.name for tool in m.tools or ()]) for m in self._members.values()]
        self._names = assign_names(lists, self._namer)
        self._shown = {where: name for name, where in self._names.items()}

    def origin(self, name: str) -> tuple[str, str]:
        """``(member, tool name on that server)`` of a tool's group name.

        Raises:
            InvalidParams: no listed tool has this name (not executed).
        """
        try:
            return self._names[name]
        except KeyError:
            raise unknown_tool(name) from None

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        progress: ProgressCallback | None = None,
        idempotent: bool | None = None,
        retry: RetryPolicy | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> CallToolResult:
        """Call a tool by its group name on its member (see ``Client.call_tool``).

        A member due for reconnection is connected first, within ``timeout`` (the
        member's ``Timeouts.request`` by default), which then covers the call too.

        Raises:
            ClientClosed: the group is closed.
            InvalidParams: no member offers a tool of this name (not executed; also
                after a fresh listing).
            ConnectError: the member is down (not executed); it is tried again on a use
                after its not-before time.
            RequestTimeout: the member was still connecting when ``timeout`` ran out
                (not executed), or the call timed out.
            MCPError: as ``Client.call_tool`` (FateUnknown, ToolOutputError, ...).
        """
        self._check_open()
        if name not in self._names:
            # A tool new since the last listing, or of a member not listed yet: this
            # call waits for the members that may offer it (with prefixed names, the
            # one whose prefix it has), never for the others.
            await self._refresh(timeout, connect=True, name=name)
        unlisted = None if name in self._names else unlisted_owner(self._members, name, self._sep)
        if unlisted is not None:
            raise self._down(unlisted, "is down, and its tools are not known yet")
        server, original = self.origin(name)
        member = self._members[server]
        at = member.deadline(timeout)
        waited = member.state is not MemberState.READY
        client = await self._ready(member, at)
        if waited and math.isfinite(at):
            timeout = at - anyio.current_time()  # what connecting left of the call's time
            if timeout <= 0:
                raise RequestTimeout(
                    f"server {server!r} connected too late for the call",
                    execution=Execution.NOT_EXECUTED,
                )
        try:
            return await client.call_tool(
                original,
                arguments,
                timeout=timeout,
                progress=progress,
                idempotent=idempotent,
                retry=retry,
                meta=meta,
            )
        except LOST as exc:
            self._lost(member, client, exc)
            if isinstance(exc, ClientClosed):
                # The member's client, not the group, was closed: for this caller the
                # server is down, and the call never left.
                self._check_open()
                raise self._down(member, "was closed") from exc
            raise


def connect_group(
    servers: Servers,
    /,
    *,
    separator: str = "__",
    prefix: bool | Namer = True,
    require_all: bool = False,
    member_options: Mapping[str, ClientOptions] | None = None,
    reconnect: RetryPolicy | None = None,
    clock: Callable[[], float] = anyio.current_time,
    **options: Unpack[ClientOptions],
) -> ClientGroup:
    """Connect to several MCP servers as one (use as ``async with``).

    Args:
        servers: the members, by name: a mapping of names to anything ``connect()``
            takes (a URL, a command list, an :class:`~resilient_mcp.HTTPServer` or
            :class:`~resilient_mcp.StdioServer`, an ``mcpServers`` entry); a whole
            config (``{"mcpServers": {...}}``, as Claude Desktop, Cursor and FastMCP
            write it); or the path of a JSON file holding one.
        separator: between the member's name and the tool's in the default names.
        prefix: ``True``: tools are named ``member{separator}tool``; ``False``: their
            own names (for frameworks that add a prefix of their own); or a function
            ``(member, tool) -> name``. Names are then sanitised to what model APIs
            accept (``[A-Za-z0-9_-]``, at most 64 characters, see docs/group.md).
        require_all: entering fails if any member fails to connect (default: such a
            member is reported by :meth:`ClientGroup.status` and tried again later).
        member_options: per-member :class:`~resilient_mcp.ClientOptions`, over
            ``options``.
        reconnect: the backoff between a failed member's connection attempts
            (:data:`DEFAULT_RECONNECT`; ``disable_backoff()`` makes it zero).
        clock: the time the not-before times are on (for tests).
        **options: :class:`~resilient_mcp.ClientOptions` for every member.

    Raises:
        UsageError: (at once) a bad config, target or option. On entering, with
            ``require_all``: the first failed member's error.
    """
    return ClientGroup(
        servers,
        separator=separator,
        prefix=prefix,
        require_all=require_all,
        member_options=member_options,
        reconnect=reconnect,
        clock=clock,
        **options,
    )
