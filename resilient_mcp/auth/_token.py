"""Token endpoint requests (RFC 6749 §3.2): client authentication and error mapping.

Every grant (authorization code, refresh, client credentials) goes through
:func:`request_token`, which authenticates the client as its registration says and turns
the endpoint's answer into a :class:`Token` or one typed error. Error messages carry the
endpoint (redacted) and the OAuth error code, never a submitted value.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from urllib.parse import quote

import httpx
import pydantic

from .._exceptions import AuthError, InvalidClient, InvalidGrant, RegistrationError
from .._log import Logger, redact_url
from ._metadata import ClientInfo, Token

__all__ = ["KNOWN_AUTH_METHODS", "Assertion", "client_auth", "request_token"]

KNOWN_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none", "private_key_jwt")
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

Assertion = Callable[[str], str]
"""Makes a signed client assertion (``private_key_jwt``) for the given audience."""

_CLIENT_ERRORS = ("invalid_client", "unauthorized_client")


def client_auth(
    client: ClientInfo,
    data: dict[str, str],
    *,
    audience: str,
    assertion: Assertion | None = None,
) -> dict[str, str]:
    """Authenticate ``client`` on a token request: adds to ``data``, returns headers.

    Raises:
        RegistrationError: the registration's method is unknown, or needs a secret
            (or key) the client does not have.
    """
    method = client.token_endpoint_auth_method or (
        "client_secret_basic" if client.client_secret else "none"
    )
    if method == "client_secret_basic":
        if not client.client_secret:
            raise RegistrationError("client_secret_basic needs a client secret; none is known")
        # RFC 6749 §2.3.1: both parts are form-urlencoded before the Basic encoding.
        pair = f"{quote(client.client_id, safe='')}:{quote(client.client_secret, safe='')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii")}
    if method == "client_secret_post":
        if not client.client_secret:
            raise RegistrationError("client_secret_post needs a client secret; none is known")
        data["client_id"] = client.client_id
        data["client_secret"] = client.client_secret
        return {}
    if method == "none":
        data["client_id"] = client.client_id
        return {}
    if method == "private_key_jwt":
        if assertion is None:
            raise RegistrationError(
                "the client is registered for private_key_jwt: use PrivateKeyJWT with its key"
            )
        data["client_id"] = client.client_id
        data["client_assertion_type"] = JWT_BEARER
        data["client_assertion"] = assertion(audience)
        return {}
    raise RegistrationError(
        f"the client's token_endpoint_auth_method {method!r} is not supported "
        f"(supported: {', '.join(KNOWN_AUTH_METHODS)}): register the client with one of them"
    )


def _oauth_error(response: httpx.Response) -> tuple[str | None, str]:
    try:
        doc = response.json()
    except ValueError:
        return None, ""
    if not isinstance(doc, Mapping):
        return None, ""
    code = doc.get("error")
    # The description is the server's prose about the failure, not a secret of ours;
    # still, only its start, on one line.
    text = doc.get("error_description")
    described = " ".join(str(text).split())[:200] if text else ""
    return (code if isinstance(code, str) else None), described


async def request_token(
    http: httpx.AsyncClient,
    *,
    token_endpoint: str,
    client: ClientInfo,
    data: dict[str, str],
    log: Logger,
    assertion: Assertion | None = None,
    audience: str | None = None,
    previous: Token | None = None,
) -> Token:
    """POST one grant to the token endpoint.

    ``previous``: for a refresh, the token refreshed (its refresh token is kept when the
    server does not rotate it). ``audience``: of a ``private_key_jwt`` assertion (the
    authorization server's issuer; the token endpoint if not given).

    Raises:
        InvalidClient: ``invalid_client`` / ``unauthorized_client``.
        InvalidGrant: ``invalid_grant`` (a used, expired or revoked code or refresh token).
        RegistrationError: the client cannot authenticate as registered.
        AuthError: any other refusal, a 5xx, an unreachable endpoint, or a malformed answer.
    """
    grant = data.get("grant_type", "")
    where = redact_url(token_endpoint)
    form = dict(data)
    headers = {"Accept": "application/json"}
    headers.update(
        client_auth(client, form, audience=audience or token_endpoint, assertion=assertion)
    )
    try:
        response = await http.post(token_endpoint, data=form, headers=headers)
    except httpx.HTTPError as exc:
        raise AuthError(
            f"could not reach the token endpoint {where} ({type(exc).__name__}): retry later"
        ) from None
    log.debug("auth.token.answer", grant=grant, status=response.status_code)
    if response.status_code != 200:
        code, described = _oauth_error(response)
        detail = f"{code}" + (f": {described}" if described else "") if code else "no error code"
        message = (
            f"the token endpoint {where} refused the {grant} grant "
            f"(HTTP {response.status_code}, {detail})"
        )
        if code in _CLIENT_ERRORS:
            raise InvalidClient(message + "; check the client id and credentials", error=code)
        if code == "invalid_grant":
            raise InvalidGrant(message + "; authorize again", error=code)
        if response.status_code >= 500:
            raise AuthError(message + "; retry later", error=code)
        raise AuthError(message, error=code)
    try:
        doc = response.json()
        if not isinstance(doc, dict):
            raise TypeError  # noqa: TRY301 - same message as bad JSON
        token = Token.from_response(doc)
    except (ValueError, TypeError, pydantic.ValidationError):
        raise AuthError(
            f"the token endpoint {where} answered the {grant} grant with something that is "
            "not a token response: the server is misconfigured"
        ) from None
    if token.token_type.lower() != "bearer":
        raise AuthError(
            f"the token endpoint {where} issued a {token.token_type!r} token; only Bearer "
            "tokens are supported"
        )
    if token.refresh_token is None and previous is not None and previous.refresh_token:
        # No rotation: the refresh token stays valid (RFC 6749 §6).
        token = token.model_copy(update={"refresh_token": previous.refresh_token})
    if token.scope is None and previous is not None and grant == "refresh_token":
        token = token.model_copy(update={"scope": previous.scope})
    log.info(
        "auth.token.issued",
        grant=grant,
        expires_in=None if token.expires_at is None else round(token.expires_at - time.time()),
        scope=token.scope,
        refreshable=token.refresh_token is not None,
    )
    return token
