"""The sync client group: ``with resilient_mcp.connect_group_sync(config) as group: ...``.

For scripts and sync frameworks that use several servers. A :class:`SyncClientGroup` is
an async :class:`~resilient_mcp.ClientGroup` kept open on a private event-loop thread
(:class:`~resilient_mcp._loop_thread.LoopThread`, as a :class:`~resilient_mcp.SyncClient`
keeps its client); its methods block the calling thread until the call ends. The
arguments, options, results, errors and isolation rules are the async group's: one
loop runs every member, so one member down, slow or recovering never delays a call to
another, as in the async group.

``group["name"]`` is the member's current client seen from sync code: a
:class:`~resilient_mcp.SyncClient` whose calls run on the group's loop thread. Its life
is the group's, so it cannot be opened or closed by itself.
"""

from __future__ import annotations

import enum
import functools
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio

from ._api import Timeout
from ._callbacks import SyncProgressCallback, async_progress
from ._client import Client
from ._config import USE_CLIENT_DEFAULT
from ._exceptions import ClientClosed, UsageError
from ._group import ClientGroup
from ._group_members import MemberStatus, Namer, Servers
from ._handlers import ProgressCallback
from ._loop_thread import LoopThread
from ._options import ClientOptions, Unpack
from ._retry import RetryPolicy
from ._sync import SyncClient, _State, _stop_quietly
from ._telemetry import carried
from .types import CallToolResult, Tool

__all__ = ["SyncClientGroup", "connect_group_sync"]

T = TypeVar("T")


class _GroupState(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class _MemberClient(SyncClient):
    """A member's client as a :class:`SyncClient`: every method of one, run on the
    group's loop thread; opened and closed by the group only."""

    def __init__(self, client: Client, loop: LoopThread, member: str) -> None:
        # Not SyncClient.__init__: the client exists already, open, on the group's loop;
        # the view only lends it SyncClient's blocking methods (which all go through
        # self._run, and so through the group's loop).
        self._client = client
        self._loop = loop
        self._state = _State.OPEN
        self._lock = threading.Lock()
        self._finalizer = None
        self._member = member

    def __repr__(self) -> str:
        return f"<SyncClient of group member {self._member!r} {self._client!r}>"

    def open(self) -> Self:
        """Refused: a member's client is opened by its group.

        Raises:
            UsageError: always.
        """
        raise UsageError(
            f"the client of group member {self._member!r} opens and closes with its group"
        )

    def close(self) -> None:
        """Refused: a member's client is closed by its group (close the group).

        Raises:
            UsageError: always.
        """
        raise UsageError(
            f"the client of group member {self._member!r} opens and closes with its group"
        )


class SyncClientGroup:
    """Several MCP servers as one sync tool source. Safe to call from many threads.

    Made by :func:`connect_group_sync` (``SyncClientGroup(servers, **options)`` is the
    same; the arguments are :func:`~resilient_mcp.connect_group`'s); opened by ``with``
    or :meth:`open`, closed by leaving the block or :meth:`close`, from any thread. The
    methods are :class:`~resilient_mcp.ClientGroup`'s, blocking, with the same
    arguments (``timeout=`` on every call), results and errors.

    It runs an async group on an event-loop thread of its own (one thread for all its
    members, started by opening and joined by closing). A group never closed is closed
    when it is garbage collected, or at the latest when the interpreter exits.

    ``handlers`` and ``progress=`` callbacks may be plain functions (run in a worker
    thread) or async ones (run in the loop), as for :class:`~resilient_mcp.SyncClient`.

    Raises:
        UsageError: (at construction) a bad config, target or option.
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
        # Made here, outside any loop (as connect_group() allows): config errors raise
        # at once, and members and status are readable before opening.
        self._group = ClientGroup(
            servers,
            separator=separator,
            prefix=prefix,
            require_all=require_all,
            member_options=member_options,
            reconnect=reconnect,
            clock=clock,
            **options,
        )
        self._loop = LoopThread(
            self._group,
            name=f"resilient-mcp-group-{id(self):x}",
            noun="group",
            sync_name="SyncClientGroup",
            async_name="ClientGroup",
        )
        self._state = _GroupState.UNOPENED
        self._lock = threading.Lock()  # opening and closing; the member views
        self._finalizer: weakref.finalize[[LoopThread], SyncClientGroup] | None = None
        self._views: dict[str, _MemberClient] = {}

    def __repr__(self) -> str:
        # ClientGroup's repr counts members by state: read without the loop, a count
        # seen mid-change is at worst one step old.
        return f"<Sync{repr(self._group)[1:]}"  # <SyncClientGroup [2 ready]>

    # --- lifecycle -----------------------------------------------------------------------

    def open(self) -> Self:
        """Open the group: start its loop thread and connect every member in parallel;
        return once each is connected or failed. Returns the group itself.

        Raises:
            ClientClosed: it was opened (or closed) before; create a new one.
            MCPError: with ``require_all``, the first failed member's error (nothing is
                left running).
        """
        with self._lock:
            if self._state is not _GroupState.UNOPENED:
                raise ClientClosed("a SyncClientGroup can be opened only once; create a new one")
            self._state = _GroupState.OPEN
            try:
                self._loop.start()
            except BaseException:
                self._state = _GroupState.CLOSED
                raise
            self._finalizer = weakref.finalize(self, _stop_quietly, self._loop)
        return self

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every member (a stdio server is stopped and reaped) from any thread:
        pending calls fail with ``RequestCancelled``, later calls raise
        ``ClientClosed``. Returns once the loop thread is gone. Idempotent; never raises
        for a member's failure to close."""
        with self._lock:
            self._state = _GroupState.CLOSED
        self._loop.stop()
        if self._finalizer is not None:
            self._finalizer.detach()

    def _run(self, function: Callable[[], Awaitable[T]]) -> T:
        if self._state is not _GroupState.OPEN:
            raise ClientClosed(
                "the group is not open: use `with resilient_mcp.connect_group_sync(...) as "
                "group` or `group = resilient_mcp.connect_group_sync(...).open()`"
            )
        return self._loop.run(carried(function))

    # --- members ---------------------------------------------------------------------------

    @property
    def members(self) -> tuple[str, ...]:
        """The members' names, in the order given."""
        return self._group.members

    def status(self) -> Mapping[str, MemberStatus]:
        """A read-only snapshot of every member, by name, in member order (taken in the
        group's loop while it runs, so never of a member halfway through a change)."""
        return self._loop.read(self._group.status)

    def __getitem__(self, name: str) -> SyncClient:
        """The member's connected client, as a :class:`SyncClient` whose calls run on
        this group's loop thread. It is the member's current client: after the member
        was reconnected, ask again (the old one raises ``ClientClosed``). Its
        ``open()`` and ``close()`` raise ``UsageError``: it lives as long as the group.

        Raises:
            UsageError: no member has this name.
            ConnectError: the member is not connected (see :meth:`status`).
        """
        client = self._loop.read(lambda: self._group[name])
        with self._lock:
            view = self._views.get(name)
            if view is None or view._client is not client:
                view = self._views[name] = _MemberClient(client, self._loop, name)
            return view

    # --- tools -------------------------------------------------------------------------------

    def origin(self, name: str) -> tuple[str, str]:
        """``(member, tool name on that server)`` of a tool's group name.

        Raises:
            InvalidParams: no listed tool has this name (not executed).
        """
        # Read here, without the loop: the group replaces its name table whole, never
        # changes one in place, so any thread sees the last one or the one before.
        return self._group.origin(name)

    def list_tools(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> list[Tool]:
        """Every connected member's tools, under their group names, in member order
        (:meth:`ClientGroup.list_tools <resilient_mcp.ClientGroup.list_tools>`: never
        waits for a member that is not connected).

        Raises:
            ClientClosed: the group is not open.
            MCPError: no member could list its tools (the first member's failure).
        """
        return self._run(functools.partial(self._group.list_tools, timeout=timeout))

    def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        progress: ProgressCallback | SyncProgressCallback | None = None,
        idempotent: bool | None = None,
        retry: RetryPolicy | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> CallToolResult:
        """Call a tool by its group name on its member
        (:meth:`ClientGroup.call_tool <resilient_mcp.ClientGroup.call_tool>`).

        Raises:
            ClientClosed: the group is not open.
            InvalidParams: no member offers a tool of this name (not executed).
            ConnectError: the member is down (not executed).
            RequestTimeout: the member was still connecting when ``timeout`` ran out
                (not executed), or the call timed out.
            MCPError: as ``Client.call_tool`` (FateUnknown, ToolOutputError, ...).
        """
        return self._run(
            functools.partial(
                self._group.call_tool,
                name,
                arguments,
                timeout=timeout,
                progress=async_progress(progress),
                idempotent=idempotent,
                retry=retry,
                meta=meta,
            )
        )


def connect_group_sync(
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
) -> SyncClientGroup:
    """Connect to several MCP servers as one from sync code (use as ``with``, or call
    ``.open()``). The arguments are :func:`~resilient_mcp.connect_group`'s.

    Returns:
        A :class:`SyncClientGroup`, not yet open.

    Raises:
        UsageError: (at once) a bad config, target or option. On opening, with
            ``require_all``: the first failed member's error.
    """
    return SyncClientGroup(
        servers,
        separator=separator,
        prefix=prefix,
        require_all=require_all,
        member_options=member_options,
        reconnect=reconnect,
        clock=clock,
        **options,
    )
