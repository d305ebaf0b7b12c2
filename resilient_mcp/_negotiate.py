"""Which era and which transport a server speaks: one function, :func:`negotiate`.

The back-compat rules of 2026-07-28, as the spec gives them: probe with a modern request
(``server/discover``); anything but modern evidence means a legacy server (never keyed
to one error code); over HTTP, a legacy ``initialize`` refused with 400/404/405 means
the legacy HTTP+SSE transport. What was found is remembered in a
:class:`~._detection.DetectionCache`, so the next client to the same server (as the same
user) skips the probes it no longer needs; an entry that stops holding is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import httpx

from ._detection import Detection, DetectionCache, http_key
from ._eras.base import EraStrategy, Setup
from ._eras.legacy import LegacyEra
from ._eras.modern import ModernEra, probe
from ._exceptions import HTTPStatusError, MCPError, MethodNotFound, UnsupportedProtocolVersion
from ._log import Logger
from ._recovery import is_outage
from ._targets import HTTPServer
from ._transports.base import Transport
from ._transports.stdio import StdioTransport
from ._versions import MODERN_PROTOCOL_VERSIONS
from .types import EraMode

__all__ = ["first_transport", "negotiate"]

Switch = Callable[[str], Awaitable[Transport]]


def first_transport(
    server: HTTPServer, *, era: EraMode, cache: DetectionCache
) -> tuple[Literal["streamable-http", "sse"], bool]:
    """The HTTP transport to start with, and whether detection may switch it.

    A forced transport is used as is; otherwise we start where detection ended last
    time for this server (and identity), and switch when the server refuses us.
    """
    if server.transport != "auto":
        return server.transport, False
    hint = None
    if era == "auto":  # a forced era neither reads nor writes detections
        key = http_key(
            httpx.URL(server.url),
            headers=server.headers or {},
            auth=server.auth,
            http_client=server.http_client,
        )
        hint = cache.get(key)
    return ("sse" if hint is not None and hint.transport == "sse" else "streamable-http"), True


async def negotiate(
    transport: Transport,
    setup: Setup,
    *,
    mode: EraMode,
    cache: DetectionCache,
    detects: bool,
    switch: Switch | None,
    log: Logger,
) -> EraStrategy:
    """Detect the era (and, with ``switch``, the transport) and establish a session.

    Args:
        transport: the transport to start on (opened).
        mode: ``"auto"``, or a forced era.
        cache: where detections are remembered.
        detects: nothing was forced, so what is found may be read from and written to
            the cache.
        switch: replaces the session's transport by the other HTTP one (and returns it)
            when this one is refused; None when the transport was forced.

    Returns:
        The established strategy; its ``transport`` is the one in use.

    Raises:
        UnsupportedProtocolVersion: ``mode="modern"`` against a legacy server, a
            modern-only server with no version in common, or a legacy version we do not
            speak.
        AuthError: the authorization the first request needed failed (from the
            era probe: the connect ends there, with no legacy attempt).
        MCPError: the handshake failed.
    """
    await transport.reset()
    key = transport.detection_key()
    hint = cache.get(key) if detects else None
    negotiation = _Negotiation(setup, mode=mode, cache=cache, detects=detects, log=log)
    try:
        return await negotiation.run(transport, hint)
    except MCPError as exc:
        if hint is not None and not is_outage(exc):
            cache.forget(key)  # the cached assumption no longer holds
        if switch is None or not _refuses_transport(exc, transport.name):
            raise
        target = "sse" if transport.name == "streamable-http" else "streamable-http"
        log.info(
            "transport.fallback", refused=transport.name, trying=target, error=type(exc).__name__
        )
        return await negotiation.run(await switch(target), None)


class _Negotiation:
    def __init__(
        self, setup: Setup, *, mode: EraMode, cache: DetectionCache, detects: bool, log: Logger
    ) -> None:
        self._setup = setup
        self._mode = mode
        self._cache = cache
        self._detects = detects
        self._log = log

    async def run(self, transport: Transport, hint: Detection | None) -> EraStrategy:
        mode = self._mode
        probed = mode == "modern" or (
            mode == "auto"
            and transport.name != "sse"  # HTTP+SSE predates the modern era
            and (hint is None or hint.era == "modern")
        )
        unanswered = False
        if probed:
            modern = hint if hint is not None and hint.era == "modern" else None
            era = await self._probe(transport, modern)
            if isinstance(era, ModernEra):
                return era
            unanswered = era
            if mode == "modern":
                raise UnsupportedProtocolVersion(
                    "the server does not speak the modern era (2026-07-28); "
                    "connect with era='auto' or era='legacy'",
                    offered=None,
                    supported=(),
                    method="server/discover",
                )
        legacy = LegacyEra(transport, self._setup)
        try:
            await legacy.establish()
        except (UnsupportedProtocolVersion, MethodNotFound) as exc:
            # A cached "legacy" that stopped holding: a modern-only server refuses
            # `initialize` (-32022 naming modern versions, or "method not found").
            # (After a probe that went unanswered, a slow server may have taken it late
            # and settled on the modern era: its -32022 to initialize says so.)
            modern_named = isinstance(exc, MethodNotFound) or any(
                v in MODERN_PROTOCOL_VERSIONS for v in exc.supported
            )
            if (
                (probed and not unanswered)
                or mode == "legacy"
                or not modern_named
                or getattr(exc, "offered", None) is not None
            ):
                raise
            era = await self._probe(transport, None)
            if not isinstance(era, ModernEra):
                raise
            return era
        self._remember(legacy, None)
        return legacy

    async def _probe(self, transport: Transport, hint: Detection | None) -> ModernEra | bool:
        """The modern era, established, if the server speaks it; else whether the probe
        went unanswered."""
        era = ModernEra(transport, self._setup, version=hint.version if hint is not None else None)
        cached = hint.fresh_discover() if hint is not None else None
        stdio = transport if isinstance(transport, StdioTransport) else None
        if stdio is not None:
            stdio.watch_probes()
        abandoned = False
        try:
            # An AuthError ends the connect here (the probe never takes it for "legacy").
            verdict = await probe(
                era,
                silence_is_legacy=stdio is not None,
                cached=cached,
                # A stdio server's silence counts from its first output: starting is
                # not ignoring (an interpreter importing, npx installing a package).
                shows_life=stdio.shows_life if stdio is not None else None,
            )
            abandoned = verdict.unanswered
        finally:
            if stdio is not None:
                stdio.end_probes(abandoned=abandoned)  # a late answer is then expected
        if verdict.discover is None:
            return verdict.unanswered
        if cached is not None:
            self._log.debug("era.cached", era="modern", version=era.protocol_version)
        else:
            self._remember(era, verdict.discover)
        return era

    def _remember(self, era: EraStrategy, discover: Mapping[str, Any] | None) -> None:
        if not self._detects:
            return  # what a forced era or transport found is not a detection to share
        expires = 0.0
        if isinstance(era, ModernEra) and discover is not None:
            result = era.discover_result
            # Only a "public" answer may serve another client.
            if result is not None and result.cacheScope == "public" and result.ttlMs > 0:
                expires = time.monotonic() + result.ttlMs / 1000
            else:
                discover = None
        self._cache.put(
            era.transport.detection_key(),
            Detection(
                era=era.name,
                transport=era.transport.name,
                version=era.protocol_version or "",
                discover=discover,
                discover_expires=expires,
            ),
        )


def _refuses_transport(error: MCPError, transport: str) -> bool:
    """Whether ``error`` from establishing a session says "wrong transport"."""
    if is_outage(error):
        return False  # the server is down or slow: no verdict about its transport
    if transport == "streamable-http":
        # The spec: a legacy initialize refused with 400/404/405 (no modern error body)
        # means a 2024-11-05 HTTP+SSE server.
        return isinstance(error, HTTPStatusError) and error.status_code in (400, 404, 405)
    # A cached HTTP+SSE assumption that fails in any other way: detect from scratch.
    return True
