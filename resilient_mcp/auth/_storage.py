"""Where tokens and client registrations live between requests (and between runs).

:class:`TokenStorage` is the protocol: four async methods, keyed by the protected
resource (tokens) and by the authorization server's issuer (client registrations).
:class:`MemoryTokenStorage` is the default; :class:`FileTokenStorage` keeps one JSON file
written atomically with mode 0600 (a refresh token is a password).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import anyio
import pydantic

from .._exceptions import UsageError
from ._metadata import ClientInfo, Token

__all__ = ["FileTokenStorage", "MemoryTokenStorage", "TokenStorage"]

M = TypeVar("M", bound=pydantic.BaseModel)


@runtime_checkable
class TokenStorage(Protocol):
    """Storage for tokens (per server) and client registrations (per issuer).

    ``server`` is the protected resource's URL (the MCP endpoint, canonical form);
    ``issuer`` the authorization server's identifier. Implementations may raise
    anything: it reaches the caller as a :class:`~resilient_mcp.TransportError`.
    """

    async def get_token(self, server: str) -> Token | None:
        """The stored token for ``server``, None if there is none."""
        ...

    async def set_token(self, server: str, token: Token | None) -> None:
        """Store (None: forget) the token for ``server``."""
        ...

    async def get_client(self, issuer: str) -> ClientInfo | None:
        """The stored registration at ``issuer``, None if there is none."""
        ...

    async def set_client(self, issuer: str, client: ClientInfo | None) -> None:
        """Store (None: forget) the registration at ``issuer``."""
        ...


class MemoryTokenStorage:
    """Tokens and registrations in memory, for the life of the process (the default)."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._clients: dict[str, ClientInfo] = {}

    def __repr__(self) -> str:
        return f"MemoryTokenStorage(tokens={len(self._tokens)}, clients={len(self._clients)})"

    async def get_token(self, server: str) -> Token | None:
        return self._tokens.get(server)

    async def set_token(self, server: str, token: Token | None) -> None:
        if token is None:
            self._tokens.pop(server, None)
        else:
            self._tokens[server] = token

    async def get_client(self, issuer: str) -> ClientInfo | None:
        return self._clients.get(issuer)

    async def set_client(self, issuer: str, client: ClientInfo | None) -> None:
        if client is None:
            self._clients.pop(issuer, None)
        else:
            self._clients[issuer] = client


class FileTokenStorage:
    """Tokens and registrations in one JSON file, readable by its owner only.

    Every write replaces the whole file atomically (a temporary file in the same
    directory, mode 0600, then ``os.replace``): a crash never leaves half a file, and
    the secrets are never readable by others, not even for a moment. One file may serve
    many servers (entries are keyed by server and by issuer).

    Args:
        path: the file (created on the first write; its directory must exist).

    Raises:
        UsageError: (on first use) the file exists but is not a token file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"FileTokenStorage({str(self._path)!r})"

    def _read(self) -> dict[str, Any]:
        try:
            text = self._path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"tokens": {}, "clients": {}}
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError  # noqa: TRY301 - same message as bad JSON
        except (ValueError, TypeError):
            raise UsageError(f"{self._path} is not a resilient-mcp token file") from None
        data.setdefault("tokens", {})
        data.setdefault("clients", {})
        return data

    def _write(self, data: dict[str, Any]) -> None:
        directory = self._path.parent
        fd, temp = tempfile.mkstemp(prefix=f".{self._path.name}.", dir=directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(data, file, indent=1, sort_keys=True)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, self._path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    async def _update(self, section: str, key: str, value: dict[str, Any] | None) -> None:
        async with self._lock:

            def update() -> None:
                data = self._read()
                if value is None:
                    data[section].pop(key, None)
                else:
                    data[section][key] = value
                self._write(data)

            await anyio.to_thread.run_sync(update)

    async def _get(self, section: str, key: str) -> Any:
        async with self._lock:
            data = await anyio.to_thread.run_sync(self._read)
        return data[section].get(key)

    async def get_token(self, server: str) -> Token | None:
        raw = await self._get("tokens", server)
        return _parse(Token, raw)

    async def set_token(self, server: str, token: Token | None) -> None:
        await self._update("tokens", server, None if token is None else token.model_dump())

    async def get_client(self, issuer: str) -> ClientInfo | None:
        raw = await self._get("clients", issuer)
        return _parse(ClientInfo, raw)

    async def set_client(self, issuer: str, client: ClientInfo | None) -> None:
        await self._update("clients", issuer, None if client is None else client.model_dump())


def _parse(model: type[M], raw: Any) -> M | None:
    if raw is None:
        return None
    try:
        return model.model_validate(raw)
    except pydantic.ValidationError:
        return None  # an entry of an older or foreign format: as if absent
