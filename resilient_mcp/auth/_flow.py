"""OAuth 2.1 authorization code flow with PKCE, as an ``httpx.Auth`` (MCP 2025-11-25).

:class:`OAuth` obtains tokens the interactive way: discovery (:mod:`._discovery`), a
client identity (:mod:`._identity`), the authorization URL handed to a redirect hook
(:mod:`._redirect`), the code exchanged for a token (:mod:`._token`). When and how often
that happens is :class:`~._core.Authorizer`'s business.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import httpx

from .._exceptions import AuthError, AuthorizationFailed, PKCEUnsupported, UsageError
from .._log import Logger, redact_url
from ._core import Authorizer, union_scopes
from ._discovery import Discovery
from ._identity import ClientConfig, resolve_client
from ._metadata import ClientInfo, Token
from ._pkce import PKCE, new_state
from ._redirect import BrowserRedirect, RedirectHandler
from ._storage import TokenStorage
from ._token import request_token

__all__ = ["OAuth", "select_scopes"]

OFFLINE_ACCESS = "offline_access"


def select_scopes(
    challenge: Mapping[str, str], discovery: Discovery, configured: Sequence[str] | None
) -> tuple[str, ...] | None:
    """The scopes to ask for: the caller's, else the challenge's ``scope``, else the
    PRM's ``scopes_supported``, else none (the parameter is omitted). ``offline_access``
    is added when the authorization server lists it (SEP-2207: a refresh token), never
    otherwise."""
    if configured is not None:
        scopes: tuple[str, ...] | None = tuple(configured)
    elif challenge.get("scope"):
        scopes = tuple(challenge["scope"].split())
    elif discovery.scopes_supported:
        scopes = tuple(discovery.scopes_supported)
    else:
        scopes = None
    listed = discovery.metadata.scopes_supported if discovery.metadata else None
    if scopes and listed and OFFLINE_ACCESS in listed:
        scopes = union_scopes(scopes, (OFFLINE_ACCESS,))
    return scopes


class OAuth(Authorizer, httpx.Auth):
    """OAuth 2.1 for a protected MCP server: ``HTTPServer(url, auth=OAuth(...))``.

    Nothing happens until the server answers 401: then the flow discovers the
    authorization server, identifies the client (pre-registered, metadata document, or
    dynamic registration), runs the interactive step through ``redirect`` and replays
    the request with the new token. Tokens are refreshed before they expire and on 401;
    a 403 ``insufficient_scope`` asks for the missing scopes (bounded). One object serves
    one server; concurrent requests share one authorization.

    Args:
        scopes: the scopes to ask for (default: what the server's challenge or metadata
            says, or none).
        client_name: the name shown on the consent screen (dynamic registration).
        redirect_uri: where the authorization server sends the browser back.
        client_id: a pre-registered client's id (skips registration).
        client_secret: a pre-registered confidential client's secret.
        client_metadata_url: the https URL of this client's ID metadata document, used as
            ``client_id`` where the server supports it.
        token_endpoint_auth_method: force one (default: the registration's, else the
            first the server lists).
        redirect: the interactive step (default :class:`BrowserRedirect`).
        storage: where tokens and registrations live (default in memory).
        http_client: the client for discovery, registration and token requests (default:
            a short-lived one per authorization).
        logger: a structlog logger (default: the library's).

    Raises:
        UsageError: a ``client_metadata_url`` that is not https, an unknown auth method,
            or use with a synchronous httpx client.

    The request that triggered an authorization fails with an :class:`AuthError`
    subclass when it cannot complete (see docs/auth.md for the table).
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(
        self,
        *,
        scopes: Sequence[str] | None = None,
        client_name: str = "resilient-mcp",
        redirect_uri: str = "http://127.0.0.1:33418/callback",
        client_id: str | None = None,
        client_secret: str | None = None,
        client_metadata_url: str | None = None,
        token_endpoint_auth_method: str | None = None,
        redirect: RedirectHandler | None = None,
        storage: TokenStorage | None = None,
        http_client: httpx.AsyncClient | None = None,
        logger: Logger | None = None,
    ) -> None:
        super().__init__(scopes=scopes, storage=storage, http_client=http_client, logger=logger)
        self._config = ClientConfig(
            client_name=client_name,
            redirect_uri=redirect_uri,
            client_id=client_id,
            client_secret=client_secret,
            client_metadata_url=client_metadata_url,
            token_endpoint_auth_method=token_endpoint_auth_method,
        )
        self._redirect: RedirectHandler = redirect if redirect is not None else BrowserRedirect()
        self._client: ClientInfo | None = None

    def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        return self.flow(request)

    def sync_auth_flow(self, request: httpx.Request) -> Any:
        raise UsageError("OAuth works with async clients only (resilient-mcp's transports)")

    async def _identity(
        self, http: httpx.AsyncClient, discovery: Discovery, scope: str | None
    ) -> ClientInfo:
        if self._client is None or (
            self._client.issuer is not None and self._client.issuer != discovery.issuer
        ):
            self._client = await resolve_client(
                http, discovery, self._config, self._storage, scope=scope, log=self._log
            )
        return self._client

    async def _obtain(
        self,
        http: httpx.AsyncClient,
        discovery: Discovery,
        challenge: dict[str, str],
        *,
        scopes: tuple[str, ...] | None,
    ) -> Token:
        metadata = discovery.metadata
        if metadata is not None and "S256" not in (metadata.code_challenge_methods_supported or []):
            raise PKCEUnsupported(
                f"the authorization server {redact_url(discovery.issuer)} does not list S256 in "
                "code_challenge_methods_supported: authorizing without PKCE is forbidden; "
                "ask its operator to enable PKCE"
            )
        chosen = select_scopes(challenge, discovery, scopes)
        scope = " ".join(chosen) if chosen else None
        client = await self._identity(http, discovery, scope)
        pkce = PKCE.new()
        state = new_state()
        params = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": self._config.redirect_uri,
            "state": state,
            "code_challenge": pkce.challenge,
            "code_challenge_method": pkce.method,
        }
        if scope:
            params["scope"] = scope
        if discovery.resource:
            params["resource"] = discovery.resource
        endpoint = discovery.authorization_endpoint
        url = f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}"
        self._requested = chosen
        self._log.info("auth.authorize", issuer=redact_url(discovery.issuer), scope=scope)
        try:
            callback = await self._redirect(url)
        except AuthError:
            raise
        except Exception as exc:
            # The hook's own error text may quote the URL (state, challenge): only its type.
            raise AuthorizationFailed(
                f"the redirect hook failed ({type(exc).__name__}); "
                "the authorization did not complete"
            ) from None
        code = self._check_callback(callback, state, discovery)
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self._config.redirect_uri,
            "code_verifier": pkce.verifier,
        }
        if discovery.resource:
            data["resource"] = discovery.resource
        return await request_token(
            http, token_endpoint=discovery.token_endpoint, client=client, data=data, log=self._log
        )

    def _check_callback(self, callback: Mapping[str, str], state: str, discovery: Discovery) -> str:
        error = callback.get("error")
        if error:
            described = " ".join(str(callback.get("error_description", "")).split())[:200]
            raise AuthorizationFailed(
                f"the authorization server refused the authorization ({error}"
                + (f": {described}" if described else "")
                + "): ask for access, or check the scopes asked for",
                error=error,
            )
        if not hmac.compare_digest(str(callback.get("state", "")), state):
            raise AuthorizationFailed(
                "the authorization callback's state does not match the request's: "
                "possible cross-site request forgery, nothing was exchanged; try again"
            )
        metadata = discovery.metadata
        iss = callback.get("iss")
        if metadata is not None and (
            (iss is not None and iss != metadata.issuer)
            or (iss is None and metadata.authorization_response_iss_parameter_supported)
        ):
            raise AuthorizationFailed(
                "the authorization callback's iss does not name the authorization server "
                "asked (RFC 9207): possible mix-up attack, nothing was exchanged"
            )
        code = callback.get("code")
        if not code:
            raise AuthorizationFailed("the authorization callback carried no code")
        return code

    async def _refresh(self, http: httpx.AsyncClient, discovery: Discovery, token: Token) -> Token:
        assert token.refresh_token is not None
        client = await self._identity(http, discovery, token.scope)
        data = {"grant_type": "refresh_token", "refresh_token": token.refresh_token}
        if discovery.resource:
            data["resource"] = discovery.resource
        return await request_token(
            http,
            token_endpoint=discovery.token_endpoint,
            client=client,
            data=data,
            log=self._log,
            previous=token,
        )
