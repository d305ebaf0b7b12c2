"""Finding out who authorizes a protected MCP server (MCP authorization 2025-11-25).

Protected Resource Metadata (RFC 9728) first: the URL the 401's ``WWW-Authenticate``
names, then the path-based well-known URL, then the root one (never root first). Its
``resource`` must be this server (same origin, a path prefix), or nothing is sent to
any authorization server. Then the authorization server's metadata, in the spec's order
(RFC 8414 with path insertion, OpenID Connect with path insertion, OpenID Connect
appended; for a root issuer RFC 8414 then OpenID Connect), never the root well-known for
an issuer with a path; its ``issuer`` must be the one asked for.

A server without Protected Resource Metadata is a 2025-03-26 server: its origin is the
authorization server, whose metadata is optional (``/authorize``, ``/token`` and
``/register`` at the origin otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pydantic

from .._exceptions import AuthDiscoveryError, ResourceMismatch
from .._log import Logger, redact_url
from ._metadata import AuthServerMetadata, ProtectedResourceMetadata

__all__ = [
    "Discovery",
    "as_metadata_urls",
    "canonical_resource",
    "discover",
    "parse_challenge",
    "prm_urls",
    "resource_matches",
]

# One auth-param (name=value, value a token or a quoted string) or a bare token, which
# starts a new challenge (RFC 9110 §11.6.1).
_PARAM = re.compile(r"""([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*))?""")
_METADATA_LIMIT = 256 * 1024
# The version of the authorization spec we follow, sent on metadata requests.
_AUTH_SPEC_VERSION = "2025-11-25"


def parse_challenge(headers: Iterable[str]) -> dict[str, str]:
    """The parameters of the ``Bearer`` challenge in ``WWW-Authenticate`` header values.

    Parameter names are lower-cased; quoted values unquoted. Empty if there is none.
    """
    found: dict[str, str] = {}
    for header in headers:
        scheme: str | None = None
        for match in _PARAM.finditer(header):
            name, value = match.group(1), match.group(2)
            if value is None:
                scheme = name.lower()
                continue
            if scheme != "bearer":
                continue
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            found.setdefault(name.lower(), value)
    return found


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), (parts.netloc or "").lower(), "", "", ""))


def canonical_resource(url: str) -> str:
    """The server URL as an RFC 8707 resource: no fragment or query, lower-case origin."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, "", ""))


def prm_urls(server_url: str, resource_metadata: str | None) -> list[str]:
    """Where to look for Protected Resource Metadata, in order."""
    urls = [resource_metadata] if resource_metadata else []
    origin = _origin(server_url)
    path = urlsplit(server_url).path.rstrip("/")
    if path:
        urls.append(f"{origin}/.well-known/oauth-protected-resource{path}")
    urls.append(f"{origin}/.well-known/oauth-protected-resource")
    return list(dict.fromkeys(urls))


def as_metadata_urls(issuer: str) -> list[str]:
    """Where to look for an authorization server's metadata, in the spec's order."""
    origin = _origin(issuer)
    path = urlsplit(issuer).path.rstrip("/")
    if path:
        return [
            f"{origin}/.well-known/oauth-authorization-server{path}",
            f"{origin}/.well-known/openid-configuration{path}",
            f"{origin}{path}/.well-known/openid-configuration",
        ]
    return [
        f"{origin}/.well-known/oauth-authorization-server",
        f"{origin}/.well-known/openid-configuration",
    ]


def _port(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def resource_matches(server_url: str, resource: str) -> bool:
    """Whether ``resource`` covers ``server_url``: same origin, and its path a prefix of
    the server's on a segment boundary (``/mcp`` covers ``/mcp/v1``, not ``/mcpx``)."""
    if _port(server_url) != _port(resource):
        return False
    server_path = urlsplit(server_url).path.rstrip("/") + "/"
    resource_path = urlsplit(resource).path.rstrip("/") + "/"
    return server_path.startswith(resource_path)


def issuers_match(expected: str, found: str) -> bool:
    """RFC 8414 §3.3 string comparison, tolerant of one trailing ``/``."""
    return expected.rstrip("/") == found.rstrip("/")


@dataclass(frozen=True, slots=True)
class Discovery:
    """Where and how to authorize for one server.

    Attributes:
        resource: the RFC 8707 ``resource`` to send (None: a 2025-03-26 server, none sent).
        prm: the server's Protected Resource Metadata (None: 2025-03-26 server).
        metadata: the authorization server's metadata (None: defaults in use).
        issuer: the authorization server's identifier.
        authorization_endpoint, token_endpoint, registration_endpoint: resolved URLs.
    """

    resource: str | None
    prm: ProtectedResourceMetadata | None
    metadata: AuthServerMetadata | None
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    registration_endpoint: str | None

    @property
    def scopes_supported(self) -> list[str] | None:
        """The scopes the server's PRM lists, if any."""
        return self.prm.scopes_supported if self.prm is not None else None


async def _get_json(
    client: httpx.AsyncClient, url: str, log: Logger
) -> tuple[int | None, Mapping[str, Any] | None]:
    """GET a metadata document: (status, JSON object or None). Status None: unreachable."""
    try:
        response = await client.get(
            url,
            headers={"Accept": "application/json", "MCP-Protocol-Version": _AUTH_SPEC_VERSION},
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        log.info("auth.discovery.unreachable", url=redact_url(url), error=type(exc).__name__)
        return None, None
    log.debug("auth.discovery.fetched", url=redact_url(url), status=response.status_code)
    if response.status_code != 200 or len(response.content) > _METADATA_LIMIT:
        return response.status_code, None
    try:
        doc = response.json()
    except ValueError:
        return response.status_code, None
    return response.status_code, doc if isinstance(doc, Mapping) else None


def _failed(status: int | None) -> bool:
    # A server error (or no answer) says nothing about whether the document exists.
    return status is None or status >= 500 or status == 429


async def _find_prm(
    client: httpx.AsyncClient, server_url: str, resource_metadata: str | None, log: Logger
) -> ProtectedResourceMetadata | None:
    failure: int | str | None = "none"
    for url in prm_urls(server_url, resource_metadata):
        status, doc = await _get_json(client, url, log)
        if doc is not None:
            try:
                return ProtectedResourceMetadata.model_validate(doc)
            except pydantic.ValidationError:
                log.info("auth.discovery.invalid_prm", url=redact_url(url))
                continue
        if _failed(status) and failure == "none":
            failure = status
    if failure != "none":
        raise AuthDiscoveryError(
            f"protected resource metadata of {redact_url(server_url)} is unavailable "
            f"({'unreachable' if failure is None else f'HTTP {failure}'}): retry later",
            status_code=failure if isinstance(failure, int) else None,
        )
    return None


async def _find_as_metadata(
    client: httpx.AsyncClient, issuer: str, log: Logger, *, check_issuer: bool = True
) -> AuthServerMetadata | None:
    for url in as_metadata_urls(issuer):
        status, doc = await _get_json(client, url, log)
        if _failed(status):
            raise AuthDiscoveryError(
                f"authorization server metadata at {redact_url(url)} is unavailable "
                f"({'unreachable' if status is None else f'HTTP {status}'}): retry later",
                status_code=status,
            )
        if doc is None:
            continue
        try:
            metadata = AuthServerMetadata.model_validate(doc)
        except pydantic.ValidationError as exc:
            raise AuthDiscoveryError(
                f"authorization server metadata at {redact_url(url)} is invalid "
                f"({exc.error_count()} errors): the server is misconfigured"
            ) from None
        if check_issuer and not issuers_match(issuer, metadata.issuer):
            raise AuthDiscoveryError(
                f"authorization server metadata at {redact_url(url)} names issuer "
                f"{redact_url(metadata.issuer)!r}, not {redact_url(issuer)!r}: refusing it "
                "(RFC 8414 §3.3)"
            )
        return metadata
    return None


async def discover(
    client: httpx.AsyncClient,
    server_url: str,
    *,
    resource_metadata: str | None,
    protocol_version: str | None,
    log: Logger,
) -> Discovery:
    """Everything needed to authorize for ``server_url``.

    Args:
        client: the HTTP client for metadata requests.
        server_url: the MCP endpoint.
        resource_metadata: the URL the 401's ``WWW-Authenticate`` named, if any.
        protocol_version: the request's ``MCP-Protocol-Version``, if it had one (a
            2025-06-18+ server without PRM still gets a ``resource``).
        log: where to log (URLs only, redacted).

    Raises:
        ResourceMismatch: the metadata is for another resource.
        AuthDiscoveryError: metadata unavailable (5xx, unreachable), invalid, with a
            wrong issuer, or naming no authorization server.
    """
    prm = await _find_prm(client, server_url, resource_metadata, log)
    if prm is not None:
        if not resource_matches(server_url, prm.resource):
            raise ResourceMismatch(
                f"the protected resource metadata of {redact_url(server_url)} is for "
                f"{redact_url(prm.resource)!r}: not authorizing (the token would serve another "
                "resource); check the server URL or the server's configuration"
            )
        if not prm.authorization_servers:
            raise AuthDiscoveryError(
                f"the protected resource metadata of {redact_url(server_url)} names no "
                "authorization server: the server is misconfigured"
            )
        issuer = prm.authorization_servers[0]
        metadata = await _find_as_metadata(client, issuer, log)
        if metadata is None:
            raise AuthDiscoveryError(
                f"no metadata found for authorization server {redact_url(issuer)!r}: "
                "the server is misconfigured"
            )
        resource: str | None = prm.resource
        log.debug("auth.discovery.done", issuer=redact_url(issuer), legacy=False)
    else:
        # 2025-03-26: the MCP server's origin is the authorization server.
        issuer = _origin(server_url)
        # No PRM named an issuer to hold the metadata to (2025-03-26 servers often serve
        # an AS under a path from the origin's well-known URL).
        metadata = await _find_as_metadata(client, issuer, log, check_issuer=False)
        resource = (
            canonical_resource(server_url)
            if protocol_version is not None and protocol_version >= "2025-06-18"
            else None
        )
        log.debug("auth.discovery.done", issuer=redact_url(issuer), legacy=True)
    if metadata is not None:
        return Discovery(
            resource=resource,
            prm=prm,
            metadata=metadata,
            issuer=metadata.issuer,
            authorization_endpoint=metadata.authorization_endpoint or f"{issuer}/authorize",
            token_endpoint=metadata.token_endpoint,
            registration_endpoint=metadata.registration_endpoint,
        )
    return Discovery(
        resource=resource,
        prm=None,
        metadata=None,
        issuer=issuer,
        authorization_endpoint=f"{issuer}/authorize",
        token_endpoint=f"{issuer}/token",
        registration_endpoint=f"{issuer}/register",
    )
