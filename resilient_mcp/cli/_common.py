"""What every command shares: the target options, the `--` split, and running a body
with a connected client (an MCPError becomes its exit code)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import click

import resilient_mcp
from resilient_mcp import Client, MCPError

from . import _render as render
from ._auth import ENV, AuthOptions
from ._exit import exit_code
from ._target import Target, build_target

F = TypeVar("F", bound=Callable[..., Any])
Body = Callable[[Client], Awaitable[int]]


class Split:
    """The argv around ``--``: what follows it is a stdio server's command line."""

    command: tuple[str, ...] = ()


def target_options(func: F) -> F:
    """The options every command that talks to a server shares."""
    options = [
        click.option("--config", type=click.Path(dir_okay=False), help="An mcpServers JSON file."),
        click.option("--server", help="The server's name in --config."),
        click.option(
            "--header",
            "headers",
            multiple=True,
            metavar="K:V",
            help="Extra HTTP header (repeatable).",
        ),
        click.option(
            "--era",
            type=click.Choice(["auto", "legacy", "modern"]),
            default="auto",
            show_default=True,
            help="Protocol era to speak.",
        ),
        click.option(
            "--transport",
            type=click.Choice(["auto", "streamable-http", "sse", "stdio"]),
            default="auto",
            show_default=True,
        ),
        click.option(
            "--timeout",
            type=float,
            default=30.0,
            show_default=True,
            help="Seconds for the handshake and for each request.",
        ),
        click.option(
            "--auth",
            "auth_kind",
            type=click.Choice(["none", "oauth", "client-credentials"]),
            default="none",
            show_default=True,
            envvar=ENV["auth"],
            help="OAuth for a protected HTTP server: oauth (a browser, tokens kept in "
            "--token-store) or client-credentials (machine to machine).",
        ),
        click.option(
            "--client-id", envvar=ENV["client_id"], help="A pre-registered OAuth client id."
        ),
        click.option(
            "--client-secret",
            envvar=ENV["client_secret"],
            show_envvar=True,
            help="Its secret (prefer the environment variable; never printed).",
        ),
        click.option(
            "--token-store",
            type=click.Path(dir_okay=False),
            envvar=ENV["token_store"],
            help="The token file (mode 0600) [default: tokens.json in the user's "
            "config dir for resilient-mcp].",
        ),
        click.option(
            "--scope", "scopes", multiple=True, help="An OAuth scope to ask for (repeatable)."
        ),
        click.option(
            "--bearer",
            envvar=ENV["bearer"],
            show_envvar=True,
            help="A bearer token you already have (never printed).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def json_flag(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(func)


def make_target(params: dict[str, Any], url: str | None) -> Target:
    return build_target(
        url=url,
        command=Split.command,
        config=params.pop("config"),
        server=params.pop("server"),
        headers=params.pop("headers"),
        era=params.pop("era"),
        transport=params.pop("transport"),
        timeout=params.pop("timeout"),
        auth=AuthOptions(
            kind=params.pop("auth_kind"),
            client_id=params.pop("client_id"),
            client_secret=params.pop("client_secret"),
            token_store=params.pop("token_store"),
            scopes=tuple(params.pop("scopes")),
            bearer=params.pop("bearer"),
        ),
    )


def split_url(words: Sequence[str]) -> tuple[str | None, list[str]]:
    """The URL, if the first positional is one, and the rest."""
    if words and words[0].startswith(("http://", "https://")):
        return words[0], list(words[1:])
    return None, list(words)


async def with_client(target: Target, body: Body) -> int:
    async with resilient_mcp.connect(target.server, **target.options()) as client:
        return await body(client)


def execute(target: Target, body: Body, *, as_json: bool) -> int:
    """Run ``body`` with a connected client; an MCPError becomes its exit code."""
    try:
        return anyio.run(with_client, target, body)
    except MCPError as exc:
        render.report_error(exc, as_json=as_json)
        return int(exit_code(exc))
