"""An in-process authorization server and protected resource, as one httpx handler.

The resource at ``/mcp`` answers 200 only to a valid bearer token (401 with a
``resource_metadata`` challenge otherwise, 403 ``insufficient_scope`` when a scope it
requires is missing); the authorization server issues codes at ``/authorize`` (a
redirect, as :class:`HeadlessRedirect` expects), tokens at ``/token`` and registrations
at ``/register``. Counters record what each endpoint saw.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

BASE = "http://127.0.0.1:9"


@dataclass
class FakeAS:
    scopes_supported: list[str] | None = field(default_factory=lambda: ["mcp"])
    required: set[str] = field(default_factory=set)
    pkce: list[str] | None = field(default_factory=lambda: ["S256"])
    registration_method: str | None = None  # what /register assigns (None: what was asked)
    prm: bool = True
    prm_resource: str = f"{BASE}/mcp"
    prm_status: int = 200
    as_metadata: bool = True
    refresh_rotates: bool = True
    expires_in: int = 3600
    tamper_state: bool = False
    counts: Counter[str] = field(default_factory=Counter)
    seen: list[httpx.Request] = field(default_factory=list)
    valid: dict[str, set[str]] = field(default_factory=dict)  # token -> scopes
    refresh_tokens: dict[str, set[str]] = field(default_factory=dict)
    codes: dict[str, tuple[str, set[str]]] = field(default_factory=dict)
    _ids: Any = field(default_factory=itertools.count)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        path = request.url.path
        self.counts[path] += 1
        if path == "/mcp":
            return self._resource(request)
        if path == "/.well-known/oauth-protected-resource/mcp" and self.prm:
            if self.prm_status != 200:
                return httpx.Response(self.prm_status)
            doc: dict[str, Any] = {"resource": self.prm_resource, "authorization_servers": [BASE]}
            if self.scopes_supported is not None:
                doc["scopes_supported"] = self.scopes_supported
            return httpx.Response(200, json=doc)
        if path == "/.well-known/oauth-authorization-server" and self.as_metadata:
            meta: dict[str, Any] = {
                "issuer": BASE,
                "authorization_endpoint": f"{BASE}/authorize",
                "token_endpoint": f"{BASE}/token",
                "registration_endpoint": f"{BASE}/register",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "none"],
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
            target = f"{q['redirect_uri']}?{urlencode({'code': code, 'state': state})}"
            return httpx.Response(302, headers={"Location": target})
        if path == "/token":
            return self._token(request)
        return httpx.Response(404)

    def _resource(self, request: httpx.Request) -> httpx.Response:
        header = request.headers.get("authorization", "")
        challenge = f'Bearer resource_metadata="{BASE}/.well-known/oauth-protected-resource/mcp"'
        if not header.startswith("Bearer ") or header[7:] not in self.valid:
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
        return httpx.Response(400, json={"error": "unsupported_grant_type"})

    def revoke_all(self) -> None:
        self.valid.clear()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler), base_url=BASE)

    def form(self, path: str) -> list[dict[str, str]]:
        return [
            dict(parse_qsl(r.content.decode()))
            for r in self.seen
            if urlsplit(str(r.url)).path == path
        ]
