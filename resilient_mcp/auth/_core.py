"""The request side of every auth object here: bearer tokens, renewal, single flight.

:class:`Authorizer` is stack-neutral: it touches only ``request.headers``,
``response.status_code`` and ``response.headers`` (httpx and httpx2 share them), so one
instance serves as an ``httpx.Auth`` and, through :meth:`Authorizer.httpx2`, as an
``httpx2.Auth``. It never reads a response body: a 200 may be an endless SSE stream, and
the 401/403 challenges are in the headers.

Per request: the current token goes on as ``Authorization: Bearer``; a token about to
expire is refreshed first. A 401 renews the token (refresh, else a full authorization)
and replays the request once; a 403 ``insufficient_scope`` steps up (a new
authorization for the union of scopes) at most twice per request and three times in
all. Concurrent renewals are one: the first request renews under a lock while the others
wait for its outcome (they replay with its token, or fail with its error); requests that
carry a valid token never take the lock, so they are not serialized behind it.
"""

from __future__ import annotations

import abc
import copy
import functools
import sys
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Protocol

import anyio
import httpx

from .._exceptions import AuthError, InsufficientScope, InvalidClient, InvalidGrant, UsageError
from .._log import Logger, default_logger, redact_url
from ._discovery import Discovery, canonical_resource, discover, parse_challenge
from ._metadata import Token
from ._storage import MemoryTokenStorage, TokenStorage

__all__ = ["Authorizer"]

# Refresh a token this long before it expires (a request in flight must not be the one
# that finds it expired).
REFRESH_MARGIN = 60.0
STEP_UPS_PER_REQUEST = 2
STEP_UPS_TOTAL = 3


class _Request(Protocol):
    headers: Any
    url: Any


def union_scopes(*groups: Sequence[str] | None) -> tuple[str, ...]:
    """Scopes in first-seen order, without duplicates."""
    return tuple(dict.fromkeys(scope for group in groups if group for scope in group))


class Authorizer(abc.ABC):
    """Bearer tokens for one protected server, obtained and renewed as needed.

    Subclasses say how a token is obtained (:meth:`_obtain`); this class decides when.
    """

    def __init__(
        self,
        *,
        scopes: Sequence[str] | None,
        storage: TokenStorage | None,
        http_client: httpx.AsyncClient | None,
        logger: Logger | None,
    ) -> None:
        self._scopes = tuple(scopes) if scopes is not None else None
        self._storage: TokenStorage = storage if storage is not None else MemoryTokenStorage()
        self._http = http_client
        self._log: Logger = (logger or default_logger()).bind(component="auth")
        self._server: str | None = None
        self._token: Token | None = None
        self._loaded = False
        self._discovery: Discovery | None = None
        self._requested: tuple[str, ...] | None = None
        self._step_ups = 0
        self._lock = anyio.Lock()
        # Bumped by every renewal attempt; a request that waited for the lock and finds
        # it moved on takes that attempt's outcome instead of starting another.
        self._generation = 0
        self._last_error: AuthError | None = None
        self.authorizations = 0
        """How many times a token was obtained anew (not refreshed), for diagnosis."""

    def __repr__(self) -> str:
        server = redact_url(self._server) if self._server else None
        return f"{type(self).__name__}(server={server!r}, authorized={self._token is not None})"

    # --- how a token is obtained (subclasses) ---------------------------------------------

    @abc.abstractmethod
    async def _obtain(
        self,
        http: httpx.AsyncClient,
        discovery: Discovery,
        challenge: dict[str, str],
        *,
        scopes: tuple[str, ...] | None,
    ) -> Token:
        """A new token for ``scopes`` (None: as the spec's selection says)."""

    async def _refresh(self, http: httpx.AsyncClient, discovery: Discovery, token: Token) -> Token:
        """A refreshed token (only called when ``token.refresh_token`` is set)."""
        raise InvalidGrant("this client cannot refresh tokens")

    # --- plumbing --------------------------------------------------------------------------

    async def _with_http(self, work: Any) -> Any:
        if self._http is not None:
            return await work(self._http)
        async with httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as http:
            return await work(http)

    async def _discover(
        self, http: httpx.AsyncClient, challenge: dict[str, str], protocol_version: str | None
    ) -> Discovery:
        assert self._server is not None
        discovery = await discover(
            http,
            self._server,
            resource_metadata=challenge.get("resource_metadata"),
            protocol_version=protocol_version,
            log=self._log,
        )
        self._discovery = discovery
        return discovery

    async def _store(self, token: Token | None) -> None:
        self._token = token
        assert self._server is not None
        await self._storage.set_token(self._server, token)

    async def _current(self) -> Token | None:
        if not self._loaded:
            assert self._server is not None
            self._token = await self._storage.get_token(self._server)
            self._loaded = True
        return self._token

    def _set_bearer(self, request: _Request, token: Token | None) -> None:
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token.access_token}"
        elif "authorization" in request.headers:
            del request.headers["Authorization"]

    # --- the flow ----------------------------------------------------------------------------

    async def flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        """The auth flow of one request (drives httpx's and httpx2's ``async_auth_flow``).

        Raises:
            AuthError: (a subclass of it) authorization failed; the request was not
                executed.
        """
        if self._server is None:
            self._server = canonical_resource(str(request.url))
        version = request.headers.get("mcp-protocol-version")
        token = await self._current()
        if token is not None and token.expires_within(REFRESH_MARGIN):
            token = await self._renew(token, {}, version, proactive=True)
        self._set_bearer(request, token)
        response = yield request
        renewed = False
        step_ups = 0
        while True:
            status = response.status_code
            if status == 401:
                if renewed:
                    raise AuthError(
                        f"{redact_url(self._server)} rejected a token it was just issued "
                        "(HTTP 401): the server and its authorization server disagree; "
                        "check their configuration"
                    )
                challenge = parse_challenge(response.headers.get_list("www-authenticate"))
                renewed = True
                token = await self._renew(token, challenge, version, proactive=False)
            elif status == 403:
                challenge = parse_challenge(response.headers.get_list("www-authenticate"))
                if challenge.get("error") != "insufficient_scope":
                    return
                if step_ups >= STEP_UPS_PER_REQUEST:
                    raise InsufficientScope(
                        f"{redact_url(self._server)} still wants more scope after "
                        f"{step_ups} step-ups for this request: the account may lack the "
                        "permission",
                        error="insufficient_scope",
                        scopes=self._requested or (),
                    )
                step_ups += 1
                token = await self._step_up(token, challenge, version)
            else:
                return
            self._set_bearer(request, token)
            response = yield request

    async def _single_flight(self, stale: Token | None, work: Any) -> Token | None:
        """Run ``work`` under the lock unless another request already renewed ``stale``."""
        generation = self._generation
        async with self._lock:
            # Someone renewed meanwhile: take its outcome (its token, or its failure:
            # a hundred requests waiting on one failed authorization fail once, together).
            if self._token is not None and self._token is not stale:
                return self._token
            if self._generation != generation and self._last_error is not None:
                raise copy.copy(self._last_error)
            try:
                token: Token | None = await self._with_http(work)
            except AuthError as exc:
                self._last_error = exc
                raise
            else:
                self._last_error = None
                return token
            finally:
                self._generation += 1

    async def _renew(
        self,
        stale: Token | None,
        challenge: dict[str, str],
        version: str | None,
        *,
        proactive: bool,
    ) -> Token | None:
        async def work(http: httpx.AsyncClient) -> Token | None:
            discovery = self._discovery
            if stale is not None and stale.refresh_token:
                if discovery is None:
                    discovery = await self._discover(http, challenge, version)
                try:
                    token = await self._refresh(http, discovery, stale)
                except (InvalidGrant, InvalidClient) as exc:
                    self._log.info("auth.refresh.refused", error=exc.error)
                else:
                    self._log.info("auth.refresh.done", proactive=proactive)
                    await self._store(token)
                    return token
            if proactive:
                # Let the request go without a token: its 401 starts a full authorization
                # with the server's challenge (scope, metadata URL).
                await self._store(None)
                return None
            discovery = await self._discover(http, challenge, version)
            token = await self._obtain(http, discovery, challenge, scopes=self._scopes)
            self.authorizations += 1
            await self._store(token)
            return token

        return await self._single_flight(stale, work)

    async def _step_up(
        self, stale: Token | None, challenge: dict[str, str], version: str | None
    ) -> Token | None:
        wanted = tuple(challenge.get("scope", "").split())

        async def work(http: httpx.AsyncClient) -> Token | None:
            before = union_scopes(self._requested, stale.scopes if stale is not None else None)
            if not set(wanted) - set(before):
                raise InsufficientScope(
                    f"{redact_url(self._server or '')} answered 403 insufficient_scope without "
                    "asking for a scope not already requested: the account may lack the permission",
                    error="insufficient_scope",
                    scopes=before,
                )
            if self._step_ups >= STEP_UPS_TOTAL:
                raise InsufficientScope(
                    f"{redact_url(self._server or '')} asked for more scope {STEP_UPS_TOTAL + 1} "
                    "times: giving up (create a new auth object to start over)",
                    error="insufficient_scope",
                    scopes=before,
                )
            self._step_ups += 1
            self._log.info("auth.step_up", scope=" ".join(wanted), count=self._step_ups)
            discovery = self._discovery or await self._discover(http, challenge, version)
            token = await self._obtain(
                http, discovery, challenge, scopes=union_scopes(before, wanted)
            )
            self.authorizations += 1
            await self._store(token)
            return token

        return await self._single_flight(stale, work)

    # --- as an httpx / httpx2 Auth ---------------------------------------------------------

    def httpx2(self) -> Any:
        """This auth object as an ``httpx2.Auth`` (sharing its tokens), for
        ``HTTPServer(url, auth=oauth.httpx2())`` on the httpx2 stack.

        Raises:
            UsageError: httpx2 is not installed.
        """
        return _httpx2_class()(self)


@functools.cache
def _httpx2_class() -> type:
    try:
        import httpx2
    except ImportError:
        raise UsageError(
            "auth.httpx2() needs httpx2: pip install 'resilient-mcp[httpx2]'"
        ) from None

    class Httpx2Auth(httpx2.Auth):
        """An ``httpx2.Auth`` view of a resilient-mcp auth object."""

        requires_request_body = False
        requires_response_body = False

        def __init__(self, core: Authorizer) -> None:
            self.core = core

        def __repr__(self) -> str:
            return f"{self.core!r}.httpx2()"

        def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
            return self.core.flow(request)

        def sync_auth_flow(self, request: Any) -> Any:
            raise UsageError(f"{type(self.core).__name__} works with async clients only")

    assert "httpx2" in sys.modules
    return Httpx2Auth
