"""Turning the command line into what ``connect()`` accepts.

A target is one of: a URL (the first positional argument that starts with ``http://`` or
``https://``), a command after ``--`` (a stdio server), or ``--config FILE --server NAME``
(an entry of an ``mcpServers`` file as Claude Desktop, Cursor or VS Code write them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import click

from resilient_mcp import HTTPServer, StdioServer, Timeouts
from resilient_mcp._targets import resolve_target

from ._auth import AuthOptions, build_auth

TransportChoice = Literal["auto", "streamable-http", "sse", "stdio"]
EraChoice = Literal["auto", "legacy", "modern"]


@dataclass(frozen=True)
class Target:
    """A resolved target plus the options every command shares."""

    server: HTTPServer | StdioServer
    era: EraChoice = "auto"
    timeout: float = 30.0
    label: str = ""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def is_http(self) -> bool:
        return isinstance(self.server, HTTPServer)

    def options(self) -> dict[str, Any]:
        """Keyword options for ``connect()``: one ``--timeout`` bounds every wait."""
        return {
            "era": self.era,
            "timeouts": Timeouts(request=self.timeout, initialize=self.timeout),
        }


def parse_headers(values: Sequence[str]) -> dict[str, str]:
    """``K:V`` (or ``K=V``) pairs into a dict.

    Raises:
        click.BadParameter: a pair without a separator or with an empty name.
    """
    headers: dict[str, str] = {}
    for raw in values:
        name, sep, value = raw.partition(":")
        if not sep:
            name, sep, value = raw.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME:VALUE, got {raw!r}", param_hint="--header")
        headers[name.strip()] = value.strip()
    return headers


def _config_entry(path: str, name: str | None) -> Mapping[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise click.UsageError(f"cannot read --config {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise click.UsageError(f"--config {path} is not JSON: {exc}") from None
    # VS Code spells the key "servers"; everyone else "mcpServers".
    servers = data.get("mcpServers", data.get("servers")) if isinstance(data, dict) else None
    if not isinstance(servers, dict) or not servers:
        raise click.UsageError(f"--config {path} has no mcpServers")
    if name is None:
        if len(servers) != 1:
            raise click.UsageError(
                f"--config names several servers; pick one with --server: "
                f"{', '.join(sorted(servers))}"
            )
        name = next(iter(servers))
    if name not in servers:
        raise click.UsageError(
            f"no server {name!r} in {path} (it has: {', '.join(sorted(servers))})"
        )
    entry = servers[name]
    if not isinstance(entry, dict):
        raise click.UsageError(f"the entry {name!r} in {path} is not an object")
    return entry


def build_target(
    *,
    url: str | None,
    command: Sequence[str],
    config: str | None,
    server: str | None,
    headers: Sequence[str],
    era: EraChoice,
    transport: TransportChoice,
    timeout: float,
    auth: AuthOptions | None = None,
) -> Target:
    """Resolve exactly one target from the command line.

    ``auth`` (the ``--auth`` options, :mod:`._auth`) becomes ``HTTPServer(auth=...)``,
    or an ``Authorization`` header for ``--bearer``.

    Raises:
        click.UsageError: no target, several, or options that do not fit the target
            (``--header`` or auth with a stdio server, ``--transport stdio`` with a
            URL, auth options that do not go together).
    """
    given = [bool(url), bool(command), bool(config)]
    if sum(given) != 1:
        raise click.UsageError(
            "give exactly one target: a URL, a command after `--`, or --config FILE [--server NAME]"
        )
    if server is not None and config is None:
        raise click.UsageError("--server needs --config")
    if timeout <= 0:
        raise click.UsageError("--timeout must be positive")
    extra = parse_headers(headers)
    auth_options = auth if auth is not None else AuthOptions()
    authorizer, auth_headers = build_auth(auth_options)
    authorized = authorizer is not None or bool(auth_headers)
    extra = {**extra, **auth_headers}
    resolved: HTTPServer | StdioServer
    if url:
        if transport == "stdio":
            raise click.UsageError("--transport stdio needs a command after `--`, not a URL")
        resolved = HTTPServer(url, headers=extra or None, transport=transport, auth=authorizer)
        label = url
    elif command:
        if transport not in ("auto", "stdio"):
            raise click.UsageError(f"--transport {transport} needs a URL, not a command")
        if authorized:
            raise click.UsageError("--auth and --bearer apply to HTTP servers only")
        if extra:
            raise click.UsageError("--header applies to HTTP servers only")
        resolved = StdioServer(command[0], args=tuple(command[1:]))
        label = " ".join(command)
    else:
        assert config is not None
        entry = dict(_config_entry(config, server))
        target = resolve_target(entry)
        if isinstance(target, HTTPServer):
            merged = {**(target.headers or {}), **extra}
            chosen = target.transport if transport == "auto" else transport
            if chosen == "stdio":
                raise click.UsageError("--transport stdio does not fit a url entry")
            resolved = HTTPServer(
                target.url,
                headers=merged or None,
                transport=chosen,
                auth=authorizer if authorizer is not None else target.auth,
            )
            label = target.url
        else:
            if authorized:
                raise click.UsageError("--auth and --bearer apply to HTTP servers only")
            if extra:
                raise click.UsageError("--header applies to HTTP servers only")
            resolved = target
            label = f"{config}:{server or 'the only server'}"
    all_headers = dict(resolved.headers or {}) if isinstance(resolved, HTTPServer) else {}
    return Target(resolved, era=era, timeout=timeout, label=label, headers=all_headers)
