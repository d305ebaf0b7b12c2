"""Who the client is at an authorization server, in the spec's order.

Pre-registered credentials (``client_id=``) first; then a registration stored earlier
for this issuer; then a Client ID Metadata Document (an https URL as ``client_id``) when
the server supports them; then Dynamic Client Registration (RFC 7591); otherwise a
:class:`~resilient_mcp.auth.RegistrationError` saying which options remain.

The token endpoint auth method follows the registration response (what the server
assigned), then the caller's choice, then the server's list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import pydantic

from .._exceptions import RegistrationError, UsageError
from .._log import Logger, redact_url
from ._discovery import Discovery
from ._metadata import AuthServerMetadata, ClientInfo
from ._storage import TokenStorage
from ._token import KNOWN_AUTH_METHODS

__all__ = ["ClientConfig", "choose_auth_method", "resolve_client"]


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """What the caller said about the client (secrets never in the repr)."""

    client_name: str
    redirect_uri: str
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    client_metadata_url: str | None = None
    token_endpoint_auth_method: str | None = None
    grant_types: Sequence[str] = ("authorization_code", "refresh_token")

    def __post_init__(self) -> None:
        if self.client_metadata_url is not None:
            parts = urlsplit(self.client_metadata_url)
            if parts.scheme != "https" or parts.path in ("", "/"):
                raise UsageError(
                    "client_metadata_url must be an https:// URL with a path "
                    "(the client ID metadata document)"
                )
        if (
            self.token_endpoint_auth_method is not None
            and self.token_endpoint_auth_method not in KNOWN_AUTH_METHODS
        ):
            raise UsageError(
                f"unknown token_endpoint_auth_method {self.token_endpoint_auth_method!r}: "
                f"expected one of {KNOWN_AUTH_METHODS}"
            )


def choose_auth_method(
    metadata: AuthServerMetadata | None, *, has_secret: bool, preferred: str | None
) -> str:
    """The token endpoint auth method to use or ask for.

    The caller's preference wins; otherwise the first of ours the server lists (RFC 8414:
    an absent list means ``client_secret_basic``), a public client asking for ``none``.
    """
    if preferred is not None:
        return preferred
    listed = (metadata.token_endpoint_auth_methods_supported if metadata else None) or [
        "client_secret_basic"
    ]
    order = (
        ("client_secret_basic", "client_secret_post", "none")
        if has_secret
        else ("none", "client_secret_basic", "client_secret_post")
    )
    for method in order:
        if method in listed:
            return method
    return order[0]


async def _register(
    http: httpx.AsyncClient,
    discovery: Discovery,
    config: ClientConfig,
    scope: str | None,
    log: Logger,
) -> ClientInfo:
    endpoint = discovery.registration_endpoint
    assert endpoint is not None
    requested = choose_auth_method(
        discovery.metadata, has_secret=False, preferred=config.token_endpoint_auth_method
    )
    body: dict[str, object] = {
        "client_name": config.client_name,
        "redirect_uris": [config.redirect_uri],
        "grant_types": list(config.grant_types),
        "response_types": ["code"],
        "token_endpoint_auth_method": requested,
    }
    if scope:
        body["scope"] = scope
    where = redact_url(endpoint)
    try:
        response = await http.post(endpoint, json=body, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise RegistrationError(
            f"could not reach the registration endpoint {where} ({type(exc).__name__}): retry later"
        ) from None
    if response.status_code not in (200, 201):
        raise RegistrationError(
            f"dynamic client registration at {where} was refused (HTTP {response.status_code}): "
            "pre-register a client and pass client_id=, or use client_metadata_url="
        )
    try:
        info = ClientInfo.model_validate(response.json())
    except (ValueError, pydantic.ValidationError):
        raise RegistrationError(
            f"the registration endpoint {where} answered without a usable client_id: "
            "the server is misconfigured"
        ) from None
    method = info.token_endpoint_auth_method
    if method is None:
        # RFC 7591 §3.2.1 returns what was registered; a server that omits it keeps ours,
        # unless it issued a secret for a public request.
        method = (
            requested
            if not (requested == "none" and info.client_secret)
            else (choose_auth_method(discovery.metadata, has_secret=True, preferred=None))
        )
    if method not in KNOWN_AUTH_METHODS:
        raise RegistrationError(
            f"the registration endpoint {where} assigned token_endpoint_auth_method "
            f"{method!r}, which this client cannot use: pre-register a client with one of "
            f"{', '.join(KNOWN_AUTH_METHODS)}"
        )
    if method in ("client_secret_basic", "client_secret_post") and not info.client_secret:
        raise RegistrationError(
            f"the registration endpoint {where} assigned {method} but issued no client secret"
        )
    if method == "private_key_jwt":
        raise RegistrationError(
            f"the registration endpoint {where} assigned private_key_jwt: use PrivateKeyJWT "
            "with a pre-registered client"
        )
    if method != requested:
        log.info("auth.registration.method_changed", requested=requested, assigned=method)
    log.info("auth.registration.done", issuer=redact_url(discovery.issuer), method=method)
    return info.model_copy(
        update={"token_endpoint_auth_method": method, "issuer": discovery.issuer}
    )


async def resolve_client(
    http: httpx.AsyncClient,
    discovery: Discovery,
    config: ClientConfig,
    storage: TokenStorage,
    *,
    scope: str | None,
    log: Logger,
) -> ClientInfo:
    """The client's identity at ``discovery``'s authorization server.

    Raises:
        RegistrationError: no pre-registration, no usable metadata document, and
            dynamic registration is not offered or was refused.
    """
    if config.client_id is not None:
        method = choose_auth_method(
            discovery.metadata,
            has_secret=config.client_secret is not None,
            preferred=config.token_endpoint_auth_method,
        )
        return ClientInfo(
            client_id=config.client_id,
            client_secret=config.client_secret,
            token_endpoint_auth_method=method,
            redirect_uris=[config.redirect_uri],
        )
    stored = await storage.get_client(discovery.issuer)
    if stored is not None:
        return stored
    metadata = discovery.metadata
    if (
        config.client_metadata_url is not None
        and metadata is not None
        and (metadata.client_id_metadata_document_supported is True)
    ):
        log.info("auth.identity.metadata_document", issuer=redact_url(discovery.issuer))
        return ClientInfo(
            client_id=config.client_metadata_url,
            token_endpoint_auth_method="none",  # noqa: S106 - a method name
            redirect_uris=[config.redirect_uri],
        )
    if discovery.registration_endpoint is None:
        raise RegistrationError(
            f"the authorization server {redact_url(discovery.issuer)} offers no dynamic client "
            "registration"
            + (" and no client ID metadata documents" if config.client_metadata_url else "")
            + ": pre-register a client and pass client_id= (and client_secret=)"
        )
    info = await _register(http, discovery, config, scope, log)
    await storage.set_client(discovery.issuer, info)
    return info
