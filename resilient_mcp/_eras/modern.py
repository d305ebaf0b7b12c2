"""The modern era (protocol 2026-07-28): no handshake, no sessions.

Every request says who we are in its ``_meta`` (protocol version, capabilities, client
info, and the log level once set) and, over HTTP, names its method and target in
routing headers. A ``server/discover`` probe is all the "handshake" there is
(:func:`probe`). The era has no ``ping`` (a discover round trip stands for it), no
``logging/setLevel`` (the level travels in ``_meta``) and no ``resources/subscribe``
(subscriptions are the filter of a ``subscriptions/listen`` stream, which replaces the
legacy GET stream).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import pydantic

from .._deadline import Deadline
from .._exceptions import (
    AuthError,
    ConnectionLost,
    Execution,
    MCPError,
    MethodNotFound,
    RequestTimeout,
    UnsupportedProtocolVersion,
)
from .._headers import ParamHeader, routing_headers
from .._recovery import is_outage
from .._rpc import Cancel, Reply
from .._versions import LEGACY_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from ..types import DiscoverResult, Implementation, ServerCapabilities
from .base import EraStrategy, Outgoing

__all__ = ["ModernEra", "Verdict", "probe"]

# Reserved request `_meta` keys of the modern era.
_META_VERSION = "io.modelcontextprotocol/protocolVersion"
_META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
_META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
_META_LOG_LEVEL = "io.modelcontextprotocol/logLevel"
_META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"
_EMPTY: dict[str, Any] = {}
# A listen stream that lived this long was healthy: its end starts the count afresh.
_HEALTHY_LISTEN_S = 30.0
# Discover results seen, by their canonical JSON: the sessions of a process mostly talk
# to a few servers, and each would keep its own decoded copy (~2 KB) of the same answer.
# Never mutated (the detection cache shares them too). Bounded: emptied when full.
_SEEN_DISCOVER: dict[str, Mapping[str, Any]] = {}
_SEEN_DISCOVER_MAX = 64


class ModernEra(EraStrategy):
    """Speaking 2026-07-28 to one server: its discover result, our envelope."""

    name = "modern"
    resumable = False  # the modern era has no resumption: a broken stream lost the request

    def __init__(self, *args: Any, version: str | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.protocol_version = version
        # The discover result as received (already validated once): its models are
        # built on demand, since a session kept open holds a few KB of them otherwise
        # and the session itself needs none of it.
        self._discover: Mapping[str, Any] | None = None
        self._capabilities = self.setup.handlers.capabilities().model_dump(exclude_none=True)
        self._client_info = self.setup.client_info.model_dump(exclude_none=True)
        self._listen_scope: anyio.CancelScope | None = None
        self._ready = False  # the listen stream opens once the session is in use

    @property
    def discover_result(self) -> DiscoverResult | None:
        raw = self._discover
        return DiscoverResult.model_validate(raw) if raw is not None else None

    @property
    def server_info(self) -> Implementation | None:
        meta = self._discover.get("_meta") if self._discover is not None else None
        info = meta.get(_META_SERVER_INFO) if isinstance(meta, Mapping) else None
        try:
            return Implementation.model_validate(info) if info else None
        except pydantic.ValidationError:
            return None

    @property
    def capabilities(self) -> ServerCapabilities | None:
        result = self.discover_result
        return result.capabilities if result is not None else None

    @property
    def instructions(self) -> str | None:
        result = self.discover_result
        return result.instructions if result is not None else None

    def forgets_detection_on_loss(self) -> bool:
        # A modern server has no session to lose: being told otherwise means our picture
        # of it is stale. Detect again from scratch.
        return True

    def adopt(self, raw: Mapping[str, Any]) -> None:
        """Take a discover result (validated by the caller: a probe's answer, or a
        cached one that was) as what the server said about itself."""
        try:
            key = json.dumps(raw, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            self._discover = raw  # not plain JSON (a test's object): kept as it is
            return
        seen = _SEEN_DISCOVER.get(key)
        if seen is None:
            if len(_SEEN_DISCOVER) >= _SEEN_DISCOVER_MAX:
                _SEEN_DISCOVER.clear()
            _SEEN_DISCOVER[key] = seen = raw
        self._discover = seen

    # --- messages -----------------------------------------------------------------------

    def decorate(
        self, method: str, params: Mapping[str, Any] | None
    ) -> tuple[Mapping[str, Any] | None, Mapping[str, str] | None]:
        # No handshake told the server who we are: every request says it (our keys win
        # over same-named ones the caller put in _meta).
        envelope: dict[str, Any] = {
            _META_VERSION: self.protocol_version,
            _META_CAPABILITIES: self._capabilities,
            _META_CLIENT_INFO: self._client_info,
        }
        level = self.setup.wishes.log_level
        if level is not None:
            envelope[_META_LOG_LEVEL] = level
        decorated = dict(params or _EMPTY)
        decorated["_meta"] = {**decorated.get("_meta", _EMPTY), **envelope}
        if not self.transport.per_request_streams:
            return decorated, None  # routing headers exist on Streamable HTTP only
        specs: tuple[ParamHeader, ...] = ()
        if method == "tools/call":
            name = decorated.get("name")
            specs = self.setup.param_headers(name) if isinstance(name, str) else ()
        return decorated, routing_headers(method, decorated, specs)

    def outgoing(self, method: str, params: Mapping[str, Any] | None) -> Outgoing:
        if method == "ping":
            # The modern era has no ping; the cheapest round trip that proves the server
            # answers is server/discover. Its answer stands for ping's: {}.
            params, headers = self.decorate("server/discover", None)
            return Outgoing("server/discover", params, headers, answer={})
        if method == "logging/setLevel":
            return Outgoing(None, answer={})  # the level goes in every request's _meta
        if method in ("resources/subscribe", "resources/unsubscribe"):
            # Replaced by the filter of the subscriptions/listen stream.
            uri = (params or _EMPTY).get("uri")
            if isinstance(uri, str):
                wishes = self.setup.wishes
                if method == "resources/subscribe":
                    wishes.subscriptions.add(uri)
                else:
                    wishes.subscriptions.discard(uri)
                wishes.stream = wishes.listen = True
                self._restart_listening()
            return Outgoing(None, answer={})
        return super().outgoing(method, params)

    def cancel_hook(self) -> Cancel | None:
        if self.transport.per_request_streams:
            return None  # HTTP: closing the response stream is how the server learns it
        return self.notify_cancelled

    def on_accepted(self) -> Callable[[], Awaitable[None]] | None:
        return None  # modern HTTP has no other channel: a 202 means no answer at all

    # --- subscriptions/listen -------------------------------------------------------------

    async def open_stream(self) -> None:
        if self._listen_scope is None and self.setup.wishes.listen:
            self._restart_listening()

    def _restart_listening(self) -> None:
        """Open the listen stream afresh (its filter changed), once the era is in use."""
        if self._listen_scope is not None:
            self._listen_scope.cancel()
            self._listen_scope = None
        if self.closed or not self._ready:
            return
        scope = anyio.CancelScope()
        self._listen_scope = scope
        self.setup.task_group.start_soon(self._listen, scope)

    async def ready(self, generation: int) -> None:
        self._ready = True
        if self.setup.wishes.listen:
            self._restart_listening()

    async def _listen(self, scope: anyio.CancelScope) -> None:
        setup = self.setup
        failures = 0
        with scope:
            while not self.closed:
                wishes = setup.wishes
                wanted: dict[str, Any] = {
                    "toolsListChanged": True,
                    "promptsListChanged": True,
                    "resourcesListChanged": True,
                }
                if wishes.subscriptions:
                    wanted["resourceSubscriptions"] = sorted(wishes.subscriptions)
                started = anyio.current_time()
                try:
                    await self.request(
                        "subscriptions/listen", {"notifications": wanted}, Deadline.after(None)
                    )
                    reason = "ended by the server"
                except MethodNotFound:
                    setup.log().info("listen.unsupported")
                    return
                except MCPError as exc:
                    reason = type(exc).__name__
                # A stream that ends at once, again and again, is backed off from and
                # finally given up on.
                healthy = anyio.current_time() - started > _HEALTHY_LISTEN_S
                failures = 1 if healthy else failures + 1
                if failures > setup.retry.attempts * 3:
                    setup.log().warning("listen.given_up", reason=reason)
                    return
                delay = setup.retry.backoff(failures, None)
                setup.log().debug("listen.restart", reason=reason, delay_ms=round(delay * 1000))
                await setup.retry.pause(delay)

    def close(self) -> None:
        super().close()
        if self._listen_scope is not None:
            self._listen_scope.cancel()
            self._listen_scope = None


async def probe(
    era: ModernEra,
    *,
    silence_is_legacy: bool,
    cached: Mapping[str, Any] | None,
    shows_life: Callable[[], Awaitable[None]] | None = None,
) -> Verdict:
    """Ask ``server/discover``: does the server speak the modern era?

    ``era`` carries the version to ask in first (it settles on a mutual one). A cached,
    still fresh discover result is adopted without asking. On stdio a legacy server may
    ignore a request before ``initialize``: there silence (``Timeouts.probe``) or a
    closed stdout is an answer; over HTTP every request gets an HTTP answer, so silence
    is a failure (bounded by the handshake's own deadline), not an era. With
    ``shows_life`` (stdio), ``Timeouts.probe`` counts from when it returns (the server's
    first byte), not from the request: a server still starting is not silent, only slow.

    Raises:
        UnsupportedProtocolVersion: a modern-only server with no version in common.
        MCPError: an outage (it says nothing about the era).
    """
    if cached is not None:
        era.adopt(cached)
        return Verdict(cached)
    tried: set[str] = set()
    version = era.protocol_version or MODERN_PROTOCOL_VERSIONS[0]
    timeouts = era.setup.timeouts
    while version not in tried:
        tried.add(version)
        era.protocol_version = version
        patient = silence_is_legacy and shows_life is not None
        try:
            ask = era.request(
                "server/discover",
                None,
                Deadline.after(timeouts.probe if silence_is_legacy and not patient else None),
                ready=False,
                cancellable=False,
            )
            if patient:
                assert shows_life is not None
                reply = await _after_life(ask, shows_life, timeouts.probe)
            else:
                reply = await ask
        except UnsupportedProtocolVersion as exc:
            mutual = [v for v in MODERN_PROTOCOL_VERSIONS if v in exc.supported]
            if mutual:
                version = mutual[0]
                continue  # a version we both speak: ask again in it
            if exc.supported and not any(v in LEGACY_PROTOCOL_VERSIONS for v in exc.supported):
                raise  # modern-only, and no version in common: a real incompatibility
            return Verdict(None)
        except MCPError as exc:
            if silence_is_legacy and isinstance(exc, RequestTimeout):
                return Verdict(None, unanswered=True)  # a legacy server ignoring it
            if silence_is_legacy and isinstance(exc, ConnectionLost):
                return Verdict(None)  # one that ended the connection over it
            if is_outage(exc) or isinstance(exc, AuthError):
                # An outage is never an era verdict; nor is a failed authorization: a
                # legacy `initialize` would meet the same 401 and authorize all over.
                raise
            era.setup.log().debug("era.probe_refused", error=type(exc).__name__)
            return Verdict(None)  # any other refusal: a legacy server (whatever code it used)
        raw = reply.result
        try:
            result = DiscoverResult.model_validate(raw)
        except pydantic.ValidationError:
            return Verdict(None)  # not a discover result: not modern evidence
        mutual = [v for v in MODERN_PROTOCOL_VERSIONS if v in result.supportedVersions]
        if not mutual:
            return Verdict(None)  # it answers discover but offers only handshake versions
        if version not in mutual:
            era.protocol_version = mutual[0]
        era.adopt(raw)
        era.setup.log().debug("era.detected", era="modern", version=era.protocol_version)
        return Verdict(raw)
    return Verdict(None)


async def _after_life(
    ask: Awaitable[Reply], shows_life: Callable[[], Awaitable[None]], patience: float
) -> Reply:
    """``await ask``, given up ``patience`` seconds after ``shows_life()`` returned.

    Raises:
        RequestTimeout: no answer within ``patience`` of the server's first sign of life.
    """
    expired = False
    reply: Reply | None = None
    error: MCPError | None = None
    async with anyio.create_task_group() as tasks:

        async def patience_runs_out() -> None:
            nonlocal expired
            await shows_life()
            await anyio.sleep(patience)  # the probe's timeout itself, not a wait for an event
            expired = True
            tasks.cancel_scope.cancel()

        tasks.start_soon(patience_runs_out)
        try:
            reply = await ask
        except MCPError as exc:  # raised below, not wrapped in an exception group
            error = exc
        tasks.cancel_scope.cancel()
    if error is not None:
        raise error
    if expired or reply is None:
        raise RequestTimeout(
            f"no answer within {patience} s (Timeouts.probe) of the server's first output",
            method="server/discover",
            execution=Execution.MAYBE,
        )
    return reply


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a probe found."""

    discover: Mapping[str, Any] | None
    """The server's discover result: it speaks the modern era (None: legacy)."""
    unanswered: bool = False
    """The probe went unanswered (stdio): a slow modern server may still take it late."""
