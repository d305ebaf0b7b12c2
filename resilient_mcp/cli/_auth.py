"""``--auth``: the command line's way to :mod:`resilient_mcp.auth`.

``--auth oauth`` is the authorization code flow for a person at a terminal (the browser,
a loopback callback, tokens kept in a file under the user's config directory so the next
run needs no browser); ``--auth client-credentials`` is machine to machine; ``--bearer``
is a token you already have. Secrets come from options or, better, environment
variables (see :data:`ENV`), and are never printed.
"""

from __future__ import annotations

import sys
import webbrowser
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import click
import httpx

from resilient_mcp.auth import (
    BrowserRedirect,
    ClientCredentials,
    FileTokenStorage,
    OAuth,
    RedirectHandler,
)

AuthChoice = Literal["none", "oauth", "client-credentials"]

ENV = {
    "auth": "RESILIENT_MCP_AUTH",
    "client_id": "RESILIENT_MCP_CLIENT_ID",
    "client_secret": "RESILIENT_MCP_CLIENT_SECRET",
    "token_store": "RESILIENT_MCP_TOKEN_STORE",
    "bearer": "RESILIENT_MCP_BEARER",
}
"""The environment variable each auth option is also read from."""


@dataclass(frozen=True)
class AuthOptions:
    """What the auth options said (secrets kept out of the repr)."""

    kind: AuthChoice = "none"
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    token_store: str | None = None
    scopes: tuple[str, ...] = ()
    bearer: str | None = field(default=None, repr=False)


def default_token_store() -> Path:
    """``tokens.json`` in the user's config directory for resilient-mcp."""
    return Path(click.get_app_dir("resilient-mcp")) / "tokens.json"


def _show(url: str) -> None:
    # The person needs the URL if no browser opens (SSH, a headless box).
    print(f"Opening the authorization page in your browser:\n  {url}", file=sys.stderr)
    webbrowser.open(url)


def redirect_handler() -> RedirectHandler:
    """The interactive step of ``--auth oauth``; tests replace this function with one
    that returns a headless hook."""
    return BrowserRedirect(open_browser=_show)


def _storage(path: str | None) -> FileTokenStorage:
    target = Path(path).expanduser() if path else default_token_store()
    # A refresh token is a password: the directory we create is the user's only.
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return FileTokenStorage(target)


def build_auth(options: AuthOptions) -> tuple[httpx.Auth | None, dict[str, str]]:
    """The auth object for ``HTTPServer(auth=...)`` and the headers to add.

    Raises:
        click.UsageError: options that do not go together (a secret without
            ``--auth``, client credentials without an id and a secret, ``--bearer``
            with ``--auth``).
    """
    kind = options.kind
    if options.bearer is not None and kind != "none":
        raise click.UsageError("--bearer is a token you already have: leave out --auth")
    if kind == "none":
        extra = [
            name
            for name, value in (
                ("--client-id", options.client_id),
                ("--client-secret", options.client_secret),
                ("--token-store", options.token_store),
                ("--scope", options.scopes),
            )
            if value
        ]
        if extra:
            raise click.UsageError(f"{', '.join(extra)} needs --auth oauth or client-credentials")
        headers = {"Authorization": f"Bearer {options.bearer}"} if options.bearer else {}
        return None, headers
    scopes: Sequence[str] | None = options.scopes or None
    if kind == "oauth":
        if options.client_secret and not options.client_id:
            raise click.UsageError("--client-secret needs --client-id")
        auth: httpx.Auth = OAuth(
            client_id=options.client_id,
            client_secret=options.client_secret,
            scopes=scopes,
            storage=_storage(options.token_store),
            redirect=redirect_handler(),
        )
        return auth, {}
    if not options.client_id or not options.client_secret:
        raise click.UsageError(
            "--auth client-credentials needs --client-id and --client-secret "
            f"(or {ENV['client_id']} and {ENV['client_secret']})"
        )
    auth = ClientCredentials(
        options.client_id,
        options.client_secret,
        scopes=scopes,
        storage=_storage(options.token_store) if options.token_store else None,
    )
    return auth, {}
