"""The OAuth errors of :mod:`resilient_mcp.auth`: a branch of the one error tree.

::

    MCPError
    └── AuthError                 OAuth failed; .error: the OAuth code
        ├── AuthDiscoveryError    no usable resource / authorization server metadata
        ├── ResourceMismatch      the metadata names another resource: not authorized
        ├── PKCEUnsupported       the authorization server does not offer PKCE S256
        ├── RegistrationError     no client identity: registration refused or unusable
        ├── AuthorizationFailed   the interactive step failed (denied, state mismatch)
        ├── InvalidClient         the token endpoint rejected our client credentials
        ├── InvalidGrant          the code or refresh token was rejected
        └── InsufficientScope     the server still wants more scope after step-up
"""

from __future__ import annotations

from typing import Any

# Defined with the core's errors, so the core can tell an authorization failure from a
# server's refusal (an era probe, say) without importing this package.
from .._exceptions import AuthError

__all__ = [
    "AuthDiscoveryError",
    "AuthError",
    "AuthorizationFailed",
    "InsufficientScope",
    "InvalidClient",
    "InvalidGrant",
    "PKCEUnsupported",
    "RegistrationError",
    "ResourceMismatch",
]


class AuthDiscoveryError(AuthError):
    """No usable resource or authorization server metadata (5xx, unreachable, invalid,
    wrong issuer); ``status_code``: of the failing request, if one answered."""

    def __init__(self, message: str, *, status_code: int | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.status_code = status_code


class ResourceMismatch(AuthError):
    """The metadata names another resource: nothing was sent to any authorization server."""


class PKCEUnsupported(AuthError):
    """The authorization server does not offer PKCE ``S256``: the spec forbids going on."""


class RegistrationError(AuthError):
    """No client identity: registration refused, not offered or unusable; pre-register."""


class AuthorizationFailed(AuthError):
    """The interactive step failed: denied, ``state``/``iss`` mismatch, or the hook failed."""


class InvalidClient(AuthError):
    """The token endpoint rejected the client's credentials (``invalid_client``)."""


class InvalidGrant(AuthError):
    """The code or refresh token was rejected (``invalid_grant``): authorize again."""


class InsufficientScope(AuthError):
    """403 ``insufficient_scope`` after step-up (at most 2 per request, 3 in all), or
    asking for nothing new; ``scopes``: those requested last."""

    def __init__(self, message: str, *, scopes: tuple[str, ...] = (), **context: Any) -> None:
        super().__init__(message, **context)
        self.scopes = scopes
