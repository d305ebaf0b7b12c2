"""What a client connects to: an :class:`HTTPServer`, a :class:`StdioServer`, or what
``connect()`` accepts in their place (a URL, a command, an ``mcpServers`` config entry).

Options that only make sense for one kind of server live on its spec: headers, auth and
a shared ``httpx`` client on :class:`HTTPServer`; the command, its environment and its
restart policy on :class:`StdioServer`. Config entries follow the shape shared by Claude
Desktop, Cursor, VS Code and FastMCP configs: ``{"command": ..., "args": [...], "env":
{...}, "cwd": ...}`` for a local server, ``{"url": ..., "headers": {...}, "type"|
"transport": ...}`` for a remote one; a whole config (``{"mcpServers": {"name": {...}}}``)
is accepted when it names exactly one server.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from ._exceptions import UsageError
from ._http_stack import HTTPStackName
from ._http_stack import resolve as resolve_stack
from ._log import redact_url
from .types import HTTPTransportName

if TYPE_CHECKING:
    import httpx2
else:  # the annotations below resolve at run time too, without importing httpx2
    from ._http_stack import httpx2_hints as httpx2

__all__ = ["HTTPServer", "StdioServer", "resolve_target"]


# Spellings of the transport field seen in the wild (configs of Claude Desktop, Cursor,
# VS Code, FastMCP, LangChain).
_TRANSPORT_ALIASES: dict[str, str] = {
    "sse": "sse",
    "http": "streamable-http",
    "streamable-http": "streamable-http",
    "streamable_http": "streamable-http",
    "streamablehttp": "streamable-http",
    "stdio": "stdio",
}

# What `inherit_env=False` passes on, as the MCP SDKs' get_default_environment(): enough
# to find executables, a home and a locale, nothing that usually holds a secret.
_SAFE_ENV_POSIX = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "LC_ALL", "TMPDIR")
_SAFE_ENV_WINDOWS = (
    "APPDATA",
    "HOMEDRIVE",
    "HOMEPATH",
    "LOCALAPPDATA",
    "PATH",
    "PATHEXT",
    "PROCESSOR_ARCHITECTURE",
    "SYSTEMDRIVE",
    "SYSTEMROOT",
    "TEMP",
    "USERNAME",
    "USERPROFILE",
)


@dataclass(frozen=True, slots=True)
class HTTPServer:
    """An MCP server reached over HTTP: ``HTTPServer("https://host/mcp", headers={...})``.

    Attributes:
        url: the endpoint (``http://`` or ``https://``); a legacy HTTP+SSE server's
            ``.../sse`` URL works too.
        headers: extra headers for every request (never logged, never in a repr).
        auth: an ``httpx.Auth`` (an ``httpx2.Auth`` on the httpx2 stack) for every
            request.
        http_client: an ``httpx.AsyncClient`` or an ``httpx2.AsyncClient`` to share
            (connection pool, proxies, TLS); it is used as is and never closed by us.
        transport: ``"auto"`` (default): Streamable HTTP first, and the legacy HTTP+SSE
            transport (MCP 2024-11-05) when the server refuses it, as the spec's
            back-compat rules say. Force one with ``"streamable-http"`` or ``"sse"``.
        http_stack: the HTTP library: ``"httpx"`` or ``"httpx2"`` (pydantic's successor
            of httpx, installed by the ``httpx2`` extra). By default, the library of
            ``http_client`` (or of ``auth``), else httpx; once constructed, the field
            holds the library in use.
        share_pool: True: share the process's connection pools for this origin with
            the other sessions to it on the same event loop with the same headers,
            auth, TLS and proxy settings (up to 16 sessions a pool, closed with its
            last user), so a new client starts on a warm connection. False (default,
            for now: sharing measured slower under 200 concurrent sessions): this
            client's connections are its own. Never applies to an ``http_client`` of
            yours, which is never shared.

    Raises:
        UsageError: a URL that is not ``http(s)://``, headers that are not strings, an
            unknown transport or HTTP stack, ``http_stack="httpx2"`` without httpx2
            installed, an ``http_client`` or ``auth`` that is not httpx's or httpx2's,
            or one of the other library than ``http_stack``.
    """

    url: str
    _: KW_ONLY
    headers: Mapping[str, str] | None = field(default=None, repr=False, hash=False)
    auth: httpx.Auth | httpx2.Auth | None = field(default=None, repr=False, compare=False)
    http_client: httpx.AsyncClient | httpx2.AsyncClient | None = field(
        default=None, repr=False, compare=False
    )
    transport: HTTPTransportName = "auto"
    http_stack: HTTPStackName | None = None
    share_pool: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            shown = redact_url(self.url) if isinstance(self.url, str) else type(self.url).__name__
            raise UsageError(f"HTTPServer needs an http(s):// URL, got {shown!r}")
        if self.transport not in ("auto", "streamable-http", "sse"):
            raise UsageError(
                f"unknown transport {self.transport!r}: expected 'auto', 'streamable-http' or 'sse'"
            )
        if self.headers is not None:
            if not isinstance(self.headers, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()
            ):
                raise UsageError("HTTPServer.headers must map strings to strings")
            object.__setattr__(self, "headers", dict(self.headers))
        stack = resolve_stack(self.http_stack, http_client=self.http_client, auth=self.auth)
        object.__setattr__(self, "http_stack", stack)

    def __repr__(self) -> str:
        # The URL without credentials or query string (API keys like to hide there).
        stack = "" if self.http_stack == "httpx" else f", http_stack={self.http_stack!r}"
        return f"HTTPServer({self.describe()!r}, transport={self.transport!r}{stack})"

    def describe(self) -> str:
        """How logs and errors name this server: the URL without credentials or query."""
        return redact_url(self.url)


@dataclass(frozen=True, slots=True)
class StdioServer:
    """How to start an MCP server that speaks stdio: ``StdioServer("python", args=[...])``.

    Attributes:
        command: the executable (looked up on ``PATH`` like :func:`subprocess.Popen`).
        args: its arguments.
        env: variables added on top of the safe default set (or of our whole
            environment when ``inherit_env`` is true). Never logged nor shown in repr.
        cwd: the working directory (default: ours).
        inherit_env: pass our whole environment on. False (the default, as in the
            MCP SDKs) passes only a small safe set (``PATH``, ``HOME``, ``LANG``,
            ``TERM``, ``SYSTEMROOT``...) plus ``env``: a server we start does not get
            the API keys and tokens our process happens to hold.
        restart: restart a server that exits unexpectedly (a fresh handshake follows).
        max_restarts: restarts allowed over the client's life.
        keep_alive: opt-in warm process: when a client closes, its server process is
            kept this many seconds for the next client of the same command line (same
            command, arguments, working directory and environment), which then skips
            the process start but still does its own handshake. Never shared by two
            clients at once; stopped when idle that long, and at the end of the event
            loop. None (the default): the process is stopped at close.

    Raises:
        UsageError: an empty command, ``args`` given as one string, a negative
            ``max_restarts``, or a ``keep_alive`` that is not a positive number of
            seconds.
    """

    command: str
    _: KW_ONLY
    args: Sequence[str] = ()
    env: Mapping[str, str] | None = field(default=None, repr=False, hash=False)
    cwd: str | os.PathLike[str] | None = None
    inherit_env: bool = False
    restart: bool = True
    max_restarts: int = 3
    keep_alive: float | None = None

    def __post_init__(self) -> None:
        if not self.command or not isinstance(self.command, str):
            raise UsageError("StdioServer.command must be a non-empty string")
        if isinstance(self.args, str | bytes):
            # A string is a sequence too: "-m server" would become nine arguments.
            raise UsageError("StdioServer.args must be a list of arguments, not one string")
        if self.max_restarts < 0:
            raise UsageError("StdioServer.max_restarts must not be negative")
        keep = self.keep_alive
        if keep is not None and (
            isinstance(keep, bool) or not isinstance(keep, int | float) or not keep > 0
        ):
            # (True would silently mean one second.)
            raise UsageError(
                "StdioServer.keep_alive must be a positive number of idle seconds (or None)"
            )
        object.__setattr__(self, "args", tuple(self.args))

    def describe(self) -> str:
        """How logs and errors name this server: the command, never its arguments or
        environment (they may hold tokens)."""
        return f"stdio:{self.command}"

    def environment(self) -> dict[str, str] | None:
        """The environment the server gets (None: exactly ours)."""
        if self.inherit_env:
            return None if self.env is None else {**os.environ, **self.env}
        names = _SAFE_ENV_WINDOWS if sys.platform == "win32" else _SAFE_ENV_POSIX
        base = {
            name: value
            for name in names
            # A value starting with "()" is an exported shell function: code, not data.
            if (value := os.environ.get(name)) is not None and not value.startswith("()")
        }
        return {**base, **(self.env or {})}


def resolve_target(
    target: str | HTTPServer | StdioServer | Sequence[str] | Mapping[str, Any],
) -> HTTPServer | StdioServer:
    """Turn ``connect()``'s first argument into a server spec.

    Raises:
        UsageError: the target is not one of the accepted forms.
    """
    if isinstance(target, HTTPServer | StdioServer):
        return target
    if isinstance(target, str):
        if not target.startswith(("http://", "https://")):
            raise UsageError(
                f"unsupported target {redact_url(target)!r}: expected an http(s):// URL, "
                "a command as a list of strings, an HTTPServer, a StdioServer, or an "
                "mcpServers entry"
            )
        return HTTPServer(target)
    if isinstance(target, Mapping):
        return _from_config(target)
    if isinstance(target, Sequence) and target and all(isinstance(a, str) for a in target):
        command, *args = target
        return StdioServer(command, args=tuple(args))
    raise UsageError(
        f"unsupported target of type {type(target).__name__}: expected an http(s):// URL, "
        "a command as a non-empty list of strings, an HTTPServer, a StdioServer, or an "
        "mcpServers entry"
    )


def _from_config(entry: Mapping[str, Any]) -> HTTPServer | StdioServer:
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
    transport = None
    if declared is not None:
        transport = _TRANSPORT_ALIASES.get(str(declared).lower())
        if transport is None:
            raise UsageError(f"unknown transport {declared!r} in the mcpServers entry")
    if "command" in entry:
        if transport not in (None, "stdio"):
            raise UsageError(f"the entry's transport {declared!r} cannot start a command")
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
        return StdioServer(command, args=tuple(args), env=env, cwd=cwd)
    url = entry.get("url", entry.get("serverUrl"))
    if not isinstance(url, str):
        raise UsageError("an mcpServers entry needs a 'command' or a 'url'")
    if transport == "stdio":
        raise UsageError("the entry's transport 'stdio' needs a 'command', not a 'url'")
    headers = entry.get("headers")
    if headers is not None and not isinstance(headers, Mapping):
        raise UsageError("the entry's 'headers' must map strings to strings")
    if transport == "sse":
        return HTTPServer(url, headers=headers, transport="sse")
    if transport == "streamable-http":
        return HTTPServer(url, headers=headers, transport="streamable-http")
    return HTTPServer(url, headers=headers)
