"""The documents OAuth exchanges, as pydantic models.

Protected Resource Metadata (RFC 9728), Authorization Server Metadata (RFC 8414, and
OpenID Connect Discovery, which shares the fields we use), a client's registration
(RFC 7591) and a token (RFC 6749 §5.1). Unknown metadata fields are kept; unknown
token and registration fields are dropped. Secret fields are excluded from ``repr``: a
model printed in a log or a traceback shows that a token exists, never the token.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AuthServerMetadata", "ClientInfo", "ProtectedResourceMetadata", "Token"]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class ProtectedResourceMetadata(_Doc):
    """What the MCP server says about itself (RFC 9728 §2)."""

    resource: str
    authorization_servers: list[str] = Field(default_factory=list)
    scopes_supported: list[str] | None = None
    bearer_methods_supported: list[str] | None = None


class AuthServerMetadata(_Doc):
    """What the authorization server says about itself (RFC 8414 §2)."""

    issuer: str
    authorization_endpoint: str | None = None
    token_endpoint: str
    registration_endpoint: str | None = None
    scopes_supported: list[str] | None = None
    response_types_supported: list[str] | None = None
    grant_types_supported: list[str] | None = None
    token_endpoint_auth_methods_supported: list[str] | None = None
    code_challenge_methods_supported: list[str] | None = None
    client_id_metadata_document_supported: bool | None = None
    authorization_response_iss_parameter_supported: bool | None = None


class _Secretive(BaseModel):
    # Unknown fields are dropped, not kept: an id_token or a registration_access_token
    # would otherwise show in the repr.
    model_config = ConfigDict(extra="ignore", frozen=True)


class ClientInfo(_Secretive):
    """The client's identity at one authorization server.

    Attributes:
        client_id: the id the server knows us by (a URL for a metadata document).
        client_secret: the secret, for confidential clients (never in a repr).
        token_endpoint_auth_method: how the token endpoint authenticates us
            (``client_secret_basic``, ``client_secret_post``, ``none``,
            ``private_key_jwt``).
        issuer: the authorization server this identity belongs to (None: any).
    """

    client_id: str
    client_secret: str | None = Field(default=None, repr=False)
    token_endpoint_auth_method: str | None = None
    redirect_uris: list[str] | None = None
    client_secret_expires_at: int | None = None
    issuer: str | None = None


class Token(_Secretive):
    """An access token, with its absolute expiry.

    Attributes:
        access_token: the bearer token (never in a repr).
        refresh_token: the refresh token, if the server issued one (never in a repr).
        scope: the granted scope (space-separated), if the server said.
        expires_at: when it expires (seconds since the epoch), None if unknown.
    """

    access_token: str = Field(repr=False)
    token_type: str = "Bearer"  # noqa: S105 - a type name
    refresh_token: str | None = Field(default=None, repr=False)
    scope: str | None = None
    expires_at: float | None = None

    @classmethod
    def from_response(cls, data: dict[str, Any], *, now: float | None = None) -> Token:
        """A token from a token endpoint's JSON answer (``expires_in`` made absolute).

        Raises:
            pydantic.ValidationError: the answer is not a token response.
        """
        fields = dict(data)
        expires_in = fields.pop("expires_in", None)
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            fields["expires_at"] = (time.time() if now is None else now) + float(expires_in)
        return cls.model_validate(fields)

    def expires_within(self, seconds: float, *, now: float | None = None) -> bool:
        """Whether the token expires in less than ``seconds`` (False when unknown)."""
        if self.expires_at is None:
            return False
        return self.expires_at - (time.time() if now is None else now) < seconds

    @property
    def scopes(self) -> tuple[str, ...]:
        """The granted scopes, split."""
        return tuple((self.scope or "").split())
