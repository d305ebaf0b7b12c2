"""What a client group knows of its members: their config, their state, their tools' names.

The members come from a mapping of targets, an ``mcpServers`` config or a JSON file
holding one (:func:`parse_servers`; each entry is parsed by the same code as
``connect()``'s target). Each has a :class:`MemberState` and a :class:`MemberStatus`
snapshot.

Tool names. Model APIs accept tool names of ``[A-Za-z0-9_-]{1,64}`` (OpenAI, Anthropic;
Gemini is laxer), while MCP servers name tools freely (dots, slashes, spaces, any
length) and two servers often offer a tool of the same name. :func:`assign_names` turns
every member's tools into names a model accepts, as a pure function of the members'
order and their tool lists, so the same lists always give the same names:

1. the wanted name (``server__tool`` by default) has every other character replaced by
   ``_``; one longer than 64 characters is cut and given a short hash of the member and
   the tool's original name, so two long names that share a beginning stay apart;
2. names that still coincide are never merged: one keeps the name, ranked by (unchanged
   by step 1 first, then member order, then original name), and every other gets the
   hash suffix (grown with a counter in the unlikely case it is taken too).
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from ._api import Timeout
from ._client import Client
from ._config import UseClientDefault
from ._exceptions import (
    ClientClosed,
    ConnectError,
    Execution,
    HandshakeError,
    InvalidParams,
    MCPError,
    UsageError,
)
from ._log import default_logger
from ._options import ClientOptions, resolve_options
from ._retry import RetryPolicy
from ._session import SessionState
from ._targets import HTTPServer, StdioServer, resolve_target
from ._toolbox import Target
from .types import Era, Tool

__all__ = [
    "DEFAULT_RECONNECT",
    "LOST",
    "MAX_NAME_LENGTH",
    "GroupState",
    "Member",
    "MemberState",
    "MemberStatus",
    "Namer",
    "Servers",
    "assign_names",
    "default_namer",
    "make_members",
    "make_namer",
    "may_offer",
    "parse_servers",
    "sanitise",
    "unknown_tool",
    "unlisted_owner",
]

Servers = Mapping[str, Target] | str | os.PathLike[str]

DEFAULT_RECONNECT = RetryPolicy(wait_initial=0.5, wait_max=30.0, wait_jitter=0.25)
"""The backoff between a member's connection attempts: 0.5 s, doubling up to 30 s."""


# Failures after which a member's client is dropped and a new one made on next use.
LOST = (ConnectError, ClientClosed, HandshakeError)


class GroupState(enum.Enum):
    """A group's own life: opened once, closed once."""

    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class MemberState(enum.Enum):
    """Where a member's connection stands."""

    NEW = "new"
    """The group was not opened yet."""
    CONNECTING = "connecting"
    """A connection attempt is under way."""
    READY = "ready"
    """Connected; its client recovers from lost sessions by itself."""
    FAILED = "failed"
    """The last attempt failed, or the connection was lost; tried again on next use."""
    CLOSED = "closed"
    """The group was closed."""


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """A snapshot of one member.

    Attributes:
        name: the member's name in the group.
        state: see :class:`MemberState`.
        server: what it connects to, as logs name it (a URL without credentials, or a
            command without its arguments).
        transport: the transport in use (``"streamable-http"``, ``"sse"``, ``"stdio"``),
            None while not connected.
        era: ``"modern"`` or ``"legacy"``, None before a session was ready.
        session: the client's session state, None while not connected.
        tools: how many tools it listed last (None before its first listing).
        last_error: the last failure seen (connecting, listing or calling), if any.
        failures: connection failures since it was last connected.
        retry_at: while ``FAILED``, the earliest time (on the group's clock, by
            default ``anyio.current_time()``) of the next connection attempt.
    """

    name: str
    state: MemberState
    server: str
    transport: str | None = None
    era: Era | None = None
    session: SessionState | None = None
    tools: int | None = None
    last_error: MCPError | None = None
    failures: int = 0
    retry_at: float | None = None


class Member:
    """One member's mutable bookkeeping (the group changes it; status() copies it)."""

    def __init__(self, name: str, target: HTTPServer | StdioServer, options: Any) -> None:
        self.name = name
        self.target = target
        self.options: ClientOptions = options
        self.request_timeout = resolve_options(options).timeouts.request
        self.client: Client | None = None
        self.state = MemberState.NEW
        self.attempt: anyio.Event | None = None  # set when the current attempt has ended
        self.tools: list[Tool] | None = None  # the last list, kept while it is down
        self.last_error: MCPError | None = None
        self.failures = 0
        self.retry_at: float | None = None

    def status(self) -> MemberStatus:
        client = self.client
        return MemberStatus(
            name=self.name,
            state=self.state,
            server=self.target.describe(),
            transport=client.transport if client is not None else None,
            era=client.era if client is not None else None,
            session=client.state if client is not None else None,
            tools=len(self.tools) if self.tools is not None else None,
            last_error=self.last_error,
            failures=self.failures,
            retry_at=self.retry_at if self.state is MemberState.FAILED else None,
        )

    def deadline(self, timeout: Timeout) -> float:
        """When a call made now with ``timeout`` must be over (its request timeout by default)."""
        limit = self.request_timeout if isinstance(timeout, UseClientDefault) else timeout
        return math.inf if limit is None else anyio.current_time() + limit

    def connected(self, client: Client) -> None:
        self.client, self.state = client, MemberState.READY
        self.failures, self.retry_at = 0, None

    def fail(self, error: MCPError, retry_at: float) -> None:
        self.state, self.last_error, self.retry_at = MemberState.FAILED, error, retry_at
        self.failures += 1

    def down(self, what: str, clock: Callable[[], float]) -> ConnectError:
        """The not-executed error of a call this member cannot take now."""
        detail = f": {self.last_error.message}" if self.last_error is not None else ""
        when = ""
        if self.state is MemberState.FAILED and self.retry_at is not None:
            wait = max(0.0, self.retry_at - clock())
            when = f"; next connection attempt on its next use after {wait:.1f} s"
        error = ConnectError(
            f"server {self.name!r} {what}{detail}{when}", execution=Execution.NOT_EXECUTED
        )
        error.__cause__ = self.last_error
        return error


def unknown_tool(name: str) -> InvalidParams:
    """The error of a call to a tool no member offers."""
    # InvalidParams is what a single server answers for an unknown tool (-32602): a
    # group behaves as one server here, so adapters map both the same (not executed).
    return InvalidParams(
        f"unknown tool {name!r}: no member of this group offers it",
        method="tools/call",
        data={"name": name},
    )


def may_offer(member: Member, name: str, sep: str | None) -> bool:
    """Whether the group name ``name`` may be one of ``member``'s tools: with prefixed
    names (``sep`` given), only if it starts with the member's sanitised prefix (as far
    as a cut name keeps it); without, any member may."""
    if sep is None:
        return True
    return name.startswith(sanitise(member.name + sep)[: MAX_NAME_LENGTH - _HASH_LENGTH - 1])


def unlisted_owner(members: Mapping[str, Member], name: str, sep: str | None) -> Member | None:
    """The first member that has never listed its tools and may offer ``name``."""
    for member in members.values():
        if member.tools is None and may_offer(member, name, sep):
            return member
    return None


def make_members(
    servers: Servers, options: Mapping[str, Any], overrides: Mapping[str, Any] | None
) -> dict[str, Member]:
    """The members, each with its options (the group's, then its own over them).

    Raises:
        UsageError: a bad config, target or option; overrides for no such member.
    """
    entries = parse_servers(servers)
    unknown = sorted(set(overrides or {}) - set(entries))
    if unknown:
        raise UsageError(f"member_options name no such member: {', '.join(unknown)}")
    members: dict[str, Member] = {}
    for name, target in entries.items():
        merged: dict[str, Any] = {**options, **(overrides or {}).get(name, {})}
        logger = merged.get("logger")
        merged["logger"] = (logger if logger is not None else default_logger()).bind(member=name)
        members[name] = Member(name, resolve_target(target), merged)
    return members


def make_namer(prefix: bool | Namer, separator: str) -> Namer:
    """The wanted-name function of a group's ``prefix=`` and ``separator=``.

    Raises:
        UsageError: a prefix that is not True, False or a function; a bad separator.
    """
    if not isinstance(separator, str):
        raise UsageError("separator must be a string")
    if prefix is True:
        return default_namer(separator)
    if prefix is False:
        return lambda server, tool: tool
    if callable(prefix):
        return prefix
    raise UsageError("prefix must be True, False or a function (server, tool) -> name")


def parse_servers(servers: Servers) -> dict[str, Target]:
    """The members of a group: from a mapping of targets, an ``mcpServers`` config, or
    the path of a JSON file that holds one.

    Raises:
        UsageError: a file that cannot be read or parsed, no members, a bad name.
    """
    if isinstance(servers, str | os.PathLike) and not (
        isinstance(servers, str) and servers.startswith(("http://", "https://"))
    ):
        try:
            with open(servers, encoding="utf-8") as config_file:
                servers = json.load(config_file)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read an mcpServers config from {servers!r}: {exc}") from exc
        if not isinstance(servers, Mapping) or "mcpServers" not in servers:
            raise UsageError("a config file must hold an object with an 'mcpServers' key")
    if not isinstance(servers, Mapping):
        raise UsageError(
            "a group needs a mapping of names to targets, an mcpServers config, or the "
            f"path of a JSON config file; got {type(servers).__name__}"
        )
    inner = servers.get("mcpServers")
    if isinstance(inner, Mapping):
        servers = inner
    if not servers:
        raise UsageError("a group needs at least one server")
    for name in servers:
        if not isinstance(name, str) or not name:
            raise UsageError(f"member names must be non-empty strings, got {name!r}")
    return dict(servers)


MAX_NAME_LENGTH = 64
_HASH_LENGTH = 8
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_-]")

Namer = Callable[[str, str], str]
"""``(server, tool) -> name`` before sanitising."""


def default_namer(separator: str) -> Namer:
    """``server{separator}tool``."""
    return lambda server, tool: f"{server}{separator}{tool}"


def sanitise(name: str) -> str:
    """``name`` with every character outside ``[A-Za-z0-9_-]`` replaced by ``_``."""
    return _NOT_ALLOWED.sub("_", name) or "_"


def _suffix(server: str, tool: str, counter: int) -> str:
    key = f"{server}\x00{tool}" if counter == 0 else f"{server}\x00{tool}\x00{counter}"
    return hashlib.sha256(key.encode()).hexdigest()[:_HASH_LENGTH]


def _with_suffix(base: str, server: str, tool: str, counter: int) -> str:
    room = MAX_NAME_LENGTH - _HASH_LENGTH - 1
    return f"{base[:room]}_{_suffix(server, tool, counter)}"


def assign_names(
    members: Iterable[tuple[str, Iterable[str]]], namer: Namer
) -> dict[str, tuple[str, str]]:
    """Every tool's shown name, mapped to ``(server, original tool name)``.

    Args:
        members: ``(server, tool names)`` in the group's member order.
        namer: the wanted name of a tool, before sanitising.

    Raises:
        UsageError: ``namer`` returned something other than a string.
    """
    # (clean name, unchanged, member index, server, tool), in member order.
    wanted: list[tuple[str, bool, int, str, str]] = []
    for index, (server, tools) in enumerate(members):
        seen: set[str] = set()
        for tool in tools:
            if tool in seen:  # a server that lists a tool twice offers it once
                continue
            seen.add(tool)
            name = namer(server, tool)
            if not isinstance(name, str):
                raise UsageError(f"the tool-name function returned {name!r}, not a string")
            clean = sanitise(name)
            if len(clean) > MAX_NAME_LENGTH:
                clean = _with_suffix(clean, server, tool, 0)
            wanted.append((clean, clean == name, index, server, tool))
    claims: dict[str, list[tuple[str, bool, int, str, str]]] = {}
    for entry in wanted:
        claims.setdefault(entry[0], []).append(entry)
    names: dict[str, tuple[str, str]] = {}
    losers: list[tuple[str, bool, int, str, str]] = []
    for clean, claimants in claims.items():
        ranked = sorted(claimants, key=lambda e: (not e[1], e[2], e[4]))
        names[clean] = (ranked[0][3], ranked[0][4])
        losers.extend(ranked[1:])
    # Suffixes after every kept name is known, in a fixed order, so none takes another's.
    for clean, _unchanged, _index, server, tool in sorted(losers, key=lambda e: (e[2], e[4])):
        counter = 0
        while (name := _with_suffix(clean, server, tool, counter)) in names or name in claims:
            counter += 1
        names[name] = (server, tool)
    return names
