"""Machine-to-machine: the client credentials grant (RFC 6749 §4.4), as ``httpx.Auth``.

No person, no redirect: on the first 401 the flow discovers the authorization server
(as :class:`~resilient_mcp.auth.OAuth` does) and asks its token endpoint for a token
with the client's own credentials: a secret (:class:`ClientCredentials`) or a signed
JWT assertion (:class:`PrivateKeyJWT`, RFC 7523, behind the ``jwt`` extra).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Literal

import httpx

from .._exceptions import UsageError
from .._log import Logger
from ._core import Authorizer
from ._discovery import Discovery
from ._metadata import ClientInfo, Token
from ._storage import TokenStorage
from ._token import Assertion, request_token

__all__ = ["ClientCredentials", "PrivateKeyJWT"]

# An assertion is good for this long (RFC 7523 §3: short-lived).
_ASSERTION_LIFETIME = 300


class _ClientCredentialsBase(Authorizer, httpx.Auth):
    requires_request_body = False
    requires_response_body = False

    def __init__(
        self,
        client: ClientInfo,
        *,
        scopes: Sequence[str] | None,
        storage: TokenStorage | None,
        http_client: httpx.AsyncClient | None,
        logger: Logger | None,
    ) -> None:
        super().__init__(scopes=scopes, storage=storage, http_client=http_client, logger=logger)
        self._client = client

    def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        return self.flow(request)

    def sync_auth_flow(self, request: httpx.Request) -> Any:
        raise UsageError(f"{type(self).__name__} works with async clients only")

    def _assertion(self) -> Assertion | None:
        return None

    async def _obtain(
        self,
        http: httpx.AsyncClient,
        discovery: Discovery,
        challenge: dict[str, str],
        *,
        scopes: tuple[str, ...] | None,
    ) -> Token:
        if scopes is None:
            wanted = challenge.get("scope") or " ".join(discovery.scopes_supported or ())
            scopes = tuple(wanted.split())
        self._requested = scopes
        data = {"grant_type": "client_credentials"}
        if scopes:
            data["scope"] = " ".join(scopes)
        if discovery.resource:
            data["resource"] = discovery.resource
        return await request_token(
            http,
            token_endpoint=discovery.token_endpoint,
            client=self._client,
            data=data,
            log=self._log,
            assertion=self._assertion(),
            audience=discovery.issuer,
        )


class ClientCredentials(_ClientCredentialsBase):
    """Tokens for a service account, with a client id and secret.

    Args:
        client_id: the client's id at the authorization server.
        client_secret: its secret (never logged, never in a repr).
        method: ``"client_secret_basic"`` (an ``Authorization: Basic`` header) or
            ``"client_secret_post"`` (in the form body).
        scopes: the scopes to ask for (default: the server's challenge or metadata).
        storage: where the token lives (default in memory).
        http_client: the client for discovery and token requests.
        logger: a structlog logger.

    Raises:
        UsageError: an unknown ``method``.

    A request fails with :class:`~resilient_mcp.InvalidClient` when the credentials are
    refused, :class:`~resilient_mcp.AuthDiscoveryError` when the authorization server
    cannot be found.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic",
        scopes: Sequence[str] | None = None,
        storage: TokenStorage | None = None,
        http_client: httpx.AsyncClient | None = None,
        logger: Logger | None = None,
    ) -> None:
        if method not in ("client_secret_basic", "client_secret_post"):
            raise UsageError(
                "ClientCredentials method must be client_secret_basic or "
                f"client_secret_post, got {method!r}"
            )
        client = ClientInfo(
            client_id=client_id, client_secret=client_secret, token_endpoint_auth_method=method
        )
        super().__init__(
            client, scopes=scopes, storage=storage, http_client=http_client, logger=logger
        )


class PrivateKeyJWT(_ClientCredentialsBase):
    """Tokens for a service account that authenticates with a private key (RFC 7523).

    Each token request carries a fresh assertion signed with ``private_key``
    (``iss`` = ``sub`` = the client id, ``aud`` = the authorization server's issuer, a
    unique ``jti``, valid five minutes). Needs the ``jwt`` extra
    (``pip install 'resilient-mcp[jwt]'``: PyJWT with cryptography).

    Args:
        client_id: the client's id at the authorization server.
        private_key: the PEM-encoded private key (str or bytes), or a key object PyJWT
            accepts.
        algorithm: the signing algorithm (``"RS256"``, ``"ES256"``, ...).
        scopes, storage, http_client, logger: as for :class:`ClientCredentials`.

    Raises:
        UsageError: PyJWT (with cryptography) is not installed.
    """

    def __init__(
        self,
        client_id: str,
        private_key: str | bytes | Any,
        *,
        algorithm: str = "RS256",
        scopes: Sequence[str] | None = None,
        storage: TokenStorage | None = None,
        http_client: httpx.AsyncClient | None = None,
        logger: Logger | None = None,
    ) -> None:
        try:
            import jwt
            import jwt.algorithms

            if not jwt.algorithms.has_crypto:
                raise ImportError("cryptography")  # noqa: TRY301 - one message for both
        except ImportError:
            raise UsageError(
                "PrivateKeyJWT needs PyJWT with cryptography: pip install 'resilient-mcp[jwt]'"
            ) from None
        self._jwt = jwt
        self._key = private_key
        self._algorithm = algorithm
        client = ClientInfo(client_id=client_id, token_endpoint_auth_method="private_key_jwt")  # noqa: S106
        super().__init__(
            client, scopes=scopes, storage=storage, http_client=http_client, logger=logger
        )

    def _assertion(self) -> Assertion:
        def sign(audience: str) -> str:
            now = int(time.time())
            claims = {
                "iss": self._client.client_id,
                "sub": self._client.client_id,
                "aud": audience,
                "iat": now,
                "exp": now + _ASSERTION_LIFETIME,
                "jti": uuid.uuid4().hex,
            }
            signed: str = self._jwt.encode(claims, self._key, algorithm=self._algorithm)
            return signed

        return sign
