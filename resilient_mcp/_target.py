"""What ``connect()`` was pointed at: a URL, a command, or an ``mcpServers`` entry.

Config entries follow the shape shared by Claude Desktop, Cursor, VS Code and FastMCP
configs: ``{"command": ..., "args": [...], "env": {...}, "cwd": ...}`` for a local
server, ``{"url": ..., "headers": {...}, "type"|"transport": ...}`` for a remote one.
A whole config (``{"mcpServers": {"name": {...}}}``) is accepted when it names exactly
one server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ._exceptions import UsageError
from ._log import redact_url
from ._stdio_transport import StdioServer

__all__ = ["Target", "TransportName", "resolve_target"]

TransportName = Literal["auto", "streamable-http", "sse", "stdio"]

# Spellings of the transport field seen in the wild (configs of Claude Desktop, Cursor,
# VS Code, FastMCP, LangChain).
_TRANSPORT_ALIASES: dict[str, TransportName] = {
    "sse": "sse",
    "http": "streamable-http",
    "streamable-http": "streamable-http",
    "streamable_http": "streamable-http",
    "streamablehttp": "streamable-http",
    "stdio": "stdio",
}


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved target: either ``url`` (HTTP) or ``stdio`` is set."""

    transport: TransportName
    url: str | None = None
    stdio: StdioServer | None = None
    headers: Mapping[str, str] | None = None

    def describe(self) -> str:
        """For logs and reprs: no credentials, no query, no arguments or environment."""
        if self.url is not None:
            return redact_url(self.url)
        assert self.stdio is not None
        return f"stdio:{self.stdio.command}"


def resolve_target(
    target: str | Sequence[str] | StdioServer | Mapping[str, Any],
    transport: TransportName,
    headers: Mapping[str, str] | None,
) -> Target:
    """Turn ``connect()``'s first argument into a :class:`Target`.

    Raises:
        UsageError: the target is not one of the accepted forms, or contradicts
            ``transport``.
    """
    if transport not in ("auto", "streamable-http", "sse", "stdio"):
        raise UsageError(
            f"unknown transport {transport!r}: expected 'auto', 'streamable-http', 'sse' or 'stdio'"
        )
    if isinstance(target, StdioServer):
        return _stdio(target, transport)
    if isinstance(target, str):
        if not target.startswith(("http://", "https://")):
            raise UsageError(
                f"unsupported target {redact_url(target)!r}: expected an http(s):// URL, "
                "a command as a list of strings, a StdioServer, or an mcpServers entry"
            )
        if transport == "stdio":
            raise UsageError("transport='stdio' needs a command, not a URL")
        return Target(transport=transport, url=target, headers=headers)
    if isinstance(target, Mapping):
        return _from_config(target, transport, headers)
    if isinstance(target, Sequence) and target and all(isinstance(a, str) for a in target):
        command, *args = target
        return _stdio(StdioServer(command, args=tuple(args)), transport)
    raise UsageError(
        f"unsupported target of type {type(target).__name__}: expected an http(s):// URL, "
        "a command as a non-empty list of strings, a StdioServer, or an mcpServers entry"
    )


def _stdio(server: StdioServer, transport: TransportName) -> Target:
    if transport not in ("auto", "stdio"):
        raise UsageError(f"transport={transport!r} cannot start a command; use 'stdio'")
    return Target(transport="stdio", stdio=server)


def _from_config(
    entry: Mapping[str, Any], transport: TransportName, headers: Mapping[str, str] | None
) -> Target:
    if "mcpServers" in entry:
        servers = entry["mcpServers"]
        if not isinstance(servers, Mapping) or len(servers) != 1:
            names = sorted(servers) if isinstance(servers, Mapping) else []
            raise UsageError(
                "an mcpServers config must name exactly one server here; pass the entry "
                f"itself, e.g. config['mcpServers'][name] (names: {names})"
            )
        (entry,) = servers.values()
        if not isinstance(entry, Mapping):
            raise UsageError("an mcpServers entry must be a mapping")
    declared = entry.get("transport", entry.get("type"))
    if declared is not None:
        key = str(declared).lower()
        if key not in _TRANSPORT_ALIASES:
            raise UsageError(f"unknown transport {declared!r} in the mcpServers entry")
        named = _TRANSPORT_ALIASES[key]
        if transport not in ("auto", named):
            raise UsageError(f"transport={transport!r} contradicts the entry's {declared!r}")
        transport = named
    if "command" in entry:
        command = entry["command"]
        args = entry.get("args", ())
        env = entry.get("env")
        cwd = entry.get("cwd")
        if not isinstance(command, str) or not command:
            raise UsageError("the entry's 'command' must be a non-empty string")
        if isinstance(args, str) or not all(isinstance(a, str) for a in args):
            raise UsageError("the entry's 'args' must be a list of strings")
        if env is not None and not (
            isinstance(env, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        ):
            raise UsageError("the entry's 'env' must map strings to strings")
        if cwd is not None and not isinstance(cwd, str):
            raise UsageError("the entry's 'cwd' must be a string")
        return _stdio(StdioServer(command, args=tuple(args), env=env, cwd=cwd), transport)
    url = entry.get("url", entry.get("serverUrl"))
    if not isinstance(url, str):
        raise UsageError("an mcpServers entry needs a 'command' or a 'url'")
    entry_headers = entry.get("headers")
    if entry_headers is not None and not (
        isinstance(entry_headers, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in entry_headers.items())
    ):
        raise UsageError("the entry's 'headers' must map strings to strings")
    merged = {**(entry_headers or {}), **(headers or {})} or None
    return resolve_target(url, transport, merged)
