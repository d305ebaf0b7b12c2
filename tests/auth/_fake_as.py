"""An in-process authorization server and protected resource, as one httpx handler.

The resource at ``/mcp`` answers 200 only to a valid bearer token (401 with a
``resource_metadata`` challenge otherwise, 403 ``insufficient_scope`` when a scope it
requires is missing); the authorization server issues codes at ``/authorize`` (a
redirect, as :class:`HeadlessRedirect` expects), tokens at ``/token`` and registrations
at ``/register``. Counters record what each endpoint saw.

``base`` is where it lives: an address nothing listens on for the in-process client
(:meth:`FakeAS.client`), or a real server's origin when tests/auth/_protected.py serves
it next to a real MCP server.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

import httpx

BASE = "http://127.0.0.1:9"


@dataclass
class FakeAS:
    base: str = BASE
    scopes_supported: list[str] | None = field(default_factory=lambda: ["mcp"])
    required: set[str] = field(default_factory=set)
    pkce: list[str] | None = field(default_factory=lambda: ["S256"])
    registration_method: str | None = None  # what /register assigns (None: what was asked)
    prm: bool = True
    prm_resource: str = f"{BASE}/mcp"
    prm_status: int = 200
    as_metadata: bool = True
    as_status: int = 200  # of the authorization server metadata
    refresh_rotates: bool = True
    expires_in: int = 3600
    tamper_state: bool = False
    deny: str | None = None  # /authorize redirects back with this error (access_denied)
    # Confidential clients the token endpoint checks for the client_credentials grant.
    service_clients: dict[str, str] = field(default_factory=lambda: {"svc-id": "svc-secret"})
    counts: Counter[str] = field(default_factory=Counter)
    seen: list[httpx.Request] = field(default_factory=list)
    valid: dict[str, set[str]] = field(default_factory=dict)  # token -> scopes
    refresh_tokens: dict[str, set[str]] = field(default_factory=dict)
    codes: dict[str, tuple[str, set[str]]] = field(default_factory=dict)
    _ids: Any = field(default_factory=itertools.count)
    # When tokens expire, by this clock (the tests share a fake one with the client's).
    clock: Callable[[], float] = time.time
    expiry: dict[str, float] = field(default_factory=dict)  # token -> when it expires

    def is_valid(self, token: str) -> bool:
        """Issued, not revoked, and not expired by :attr:`clock`."""
        return token in self.valid and self.clock() < self.expiry.get(token, float("inf"))

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        path = request.url.path
        self.counts[path] += 1
        if path == "/mcp":
            return self._resource(request)
        if path == "/.well-known/oauth-protected-resource/mcp" and self.prm:
            if self.prm_status != 200:
                return httpx.Response(self.prm_status)
            doc: dict[str, Any] = {
                "resource": self.prm_resource,
                "authorization_servers": [self.base],
            }
            if self.scopes_supported is not None:
                doc["scopes_supported"] = self.scopes_supported
            return httpx.Response(200, json=doc)
        if path == "/.well-known/oauth-authorization-server" and self.as_metadata:
            if self.as_status != 200:
                return httpx.Response(self.as_status)
            meta: dict[str, Any] = {
                "issuer": self.base,
                "authorization_endpoint": f"{self.base}/authorize",
                "token_endpoint": f"{self.base}/token",
                "registration_endpoint": f"{self.base}/register",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                    "none",
                ],
                "grant_types_supported": [
                    "authorization_code",
                    "refresh_token",
                    "client_credentials",
                ],
            }
            if self.pkce is not None:
                meta["code_challenge_methods_supported"] = self.pkce
            return httpx.Response(200, json=meta)
        if path == "/register":
            body = json.loads(request.content)
            method = self.registration_method or body["token_endpoint_auth_method"]
            answer = {"client_id": "dcr-client", "token_endpoint_auth_method": method}
            if method.startswith("client_secret"):
                answer["client_secret"] = "s3cr3t-client"
            return httpx.Response(201, json=answer)
        if path == "/authorize":
            q = dict(parse_qsl(request.url.query.decode()))
            assert q["code_challenge_method"] == "S256"
            code = f"code-{next(self._ids)}"
            self.codes[code] = (q["code_challenge"], set(q.get("scope", "").split()))
            state = "forged" if self.tamper_state else q["state"]
            answer = {"code": code, "state": state}
            if self.deny is not None:
                answer = {"error": self.deny, "state": state}
            target = f"{q['redirect_uri']}?{urlencode(answer)}"
            return httpx.Response(302, headers={"Location": target})
        if path == "/token":
            return self._token(request)
        return httpx.Response(404)

    def _resource(self, request: httpx.Request) -> httpx.Response:
        header = request.headers.get("authorization", "")
        challenge = (
            f'Bearer resource_metadata="{self.base}/.well-known/oauth-protected-resource/mcp"'
        )
        if not header.startswith("Bearer ") or not self.is_valid(header[7:]):
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        granted = self.valid[header[7:]]
        if not self.required <= granted:
            scope = " ".join(sorted(self.required))
            return httpx.Response(
                403,
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
            )
        self.counts["executed"] += 1
        return httpx.Response(200, json={"ok": True})

    def _issue(self, scopes: set[str]) -> dict[str, Any]:
        n = next(self._ids)
        access, refresh = f"access-{n}", f"refresh-{n}"
        self.valid[access] = scopes
        self.expiry[access] = self.clock() + self.expires_in
        self.refresh_tokens[refresh] = scopes
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": refresh,
            "scope": " ".join(sorted(scopes)),
        }

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode()))
        self.counts[f"grant:{form['grant_type']}"] += 1
        if form["grant_type"] == "authorization_code":
            challenge, scopes = self.codes.pop(form["code"], ("", set()))
            digest = hashlib.sha256(form["code_verifier"].encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != challenge:
                return httpx.Response(400, json={"error": "invalid_grant"})
            return httpx.Response(200, json=self._issue(scopes))
        if form["grant_type"] == "refresh_token":
            held = self.refresh_tokens.get(form["refresh_token"])
            if held is None:
                return httpx.Response(400, json={"error": "invalid_grant"})
            issued = self._issue(held)
            if self.refresh_rotates:
                del self.refresh_tokens[form["refresh_token"]]
            else:
                del issued["refresh_token"]
            return httpx.Response(200, json=issued)
        if form["grant_type"] == "client_credentials":
            client_id, secret = _client_auth(request, form)
            if self.service_clients.get(client_id) != secret or not secret:
                return httpx.Response(401, json={"error": "invalid_client"})
            issued = self._issue(set(form.get("scope", "").split()))
            del issued["refresh_token"]  # RFC 6749 §4.4.3: no refresh token here
            return httpx.Response(200, json=issued)
        return httpx.Response(400, json={"error": "unsupported_grant_type"})

    def revoke_all(self) -> None:
        self.valid.clear()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler), base_url=self.base)

    def form(self, path: str) -> list[dict[str, str]]:
        return [
            dict(parse_qsl(r.content.decode()))
            for r in self.seen
            if urlsplit(str(r.url)).path == path
        ]


def _client_auth(request: httpx.Request, form: dict[str, str]) -> tuple[str, str]:
    """The client id and secret of a token request: Basic (RFC 6749 §2.3.1: each part
    form-urlencoded) or in the body."""
    header = request.headers.get("authorization", "")
    if header.startswith("Basic "):
        raw = base64.b64decode(header[6:]).decode()
        client_id, _, secret = raw.partition(":")
        return unquote_plus(client_id), unquote_plus(secret)
    return form.get("client_id", ""), form.get("client_secret", "")
