"""OAuth 2.1 for protected MCP servers (MCP authorization 2025-11-25).

Pass one of these as ``HTTPServer(url, auth=...)``::

    from resilient_mcp import HTTPServer, connect
    from resilient_mcp.auth import OAuth, FileTokenStorage

    auth = OAuth(storage=FileTokenStorage("~/.config/me/tokens.json"))
    async with connect(HTTPServer("https://mcp.example.com/mcp", auth=auth)) as client:
        ...

* :class:`OAuth`: the authorization code flow with PKCE, for a person
  (:class:`BrowserRedirect`) or a server that redirects at once (:class:`HeadlessRedirect`).
* :class:`ClientCredentials`, :class:`PrivateKeyJWT`: machine to machine.
* :class:`TokenStorage`: where tokens and registrations live
  (:class:`MemoryTokenStorage`, :class:`FileTokenStorage`, or your own).

Each is an ``httpx.Auth``; ``.httpx2()`` gives the same object for the httpx2 stack.
Failures are :class:`~resilient_mcp.AuthError` subclasses (see docs/auth.md).
"""

from __future__ import annotations

from .._exceptions import (
    AuthDiscoveryError,
    AuthError,
    AuthorizationFailed,
    InsufficientScope,
    InvalidClient,
    InvalidGrant,
    PKCEUnsupported,
    RegistrationError,
    ResourceMismatch,
)
from ._credentials import ClientCredentials, PrivateKeyJWT
from ._flow import OAuth
from ._metadata import AuthServerMetadata, ClientInfo, ProtectedResourceMetadata, Token
from ._redirect import BrowserRedirect, HeadlessRedirect, RedirectHandler
from ._storage import FileTokenStorage, MemoryTokenStorage, TokenStorage

__all__ = [
    "AuthDiscoveryError",
    "AuthError",
    "AuthServerMetadata",
    "AuthorizationFailed",
    "BrowserRedirect",
    "ClientCredentials",
    "ClientInfo",
    "FileTokenStorage",
    "HeadlessRedirect",
    "InsufficientScope",
    "InvalidClient",
    "InvalidGrant",
    "MemoryTokenStorage",
    "OAuth",
    "PKCEUnsupported",
    "PrivateKeyJWT",
    "ProtectedResourceMetadata",
    "RedirectHandler",
    "RegistrationError",
    "ResourceMismatch",
    "Token",
    "TokenStorage",
]
