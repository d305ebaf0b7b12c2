"""The options of a client, defined once: :class:`ClientOptions`.

``connect(target, **options)`` and ``Client(target, **options)`` take exactly these
keywords (and so will every other way of making clients); options that belong to one
kind of server live on its spec instead (:class:`~resilient_mcp.HTTPServer`,
:class:`~resilient_mcp.StdioServer`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, get_args

from ._config import Limits, Timeouts
from ._detection import DetectionCache, default_cache
from ._exceptions import UsageError
from ._handlers import Handlers
from ._log import Logger
from ._retry import RetryPolicy
from ._telemetry import Telemetry
from .types import EraMode, Implementation

if sys.version_info >= (3, 12):  # pragma: no cover - depends on the interpreter
    from typing import Unpack
else:  # pragma: no cover
    from typing_extensions import Unpack

__all__ = ["ClientOptions", "Options", "Unpack", "resolve_options"]


class ClientOptions(TypedDict, total=False):
    """Keyword options of :func:`~resilient_mcp.connect` and :class:`~resilient_mcp.Client`.

    Every one is optional; ``None`` means the default, as leaving it out does.
    """

    timeouts: Timeouts | None
    """How long to wait for what (:class:`~resilient_mcp.Timeouts`)."""
    limits: Limits | None
    """Bounds on queues, messages and connections (:class:`~resilient_mcp.Limits`)."""
    retry: RetryPolicy | None
    """How failed requests are retried, only when safe (:class:`~resilient_mcp.RetryPolicy`)."""
    handlers: Handlers | None
    """Callbacks for what the server sends on its own (:class:`~resilient_mcp.Handlers`)."""
    client_info: Implementation | None
    """The ``clientInfo`` sent in ``initialize`` (in the modern era, with every request)."""
    wait_ready: bool
    """True (default): entering the client waits for the session and raises its failure;
    False: it returns at once and calls wait in the gate."""
    logger: Logger | None
    """A structlog logger to use instead of the ``resilient_mcp`` standard-library logger."""
    era: EraMode
    """``"auto"`` (default) probes with ``server/discover`` and speaks the handshake-free
    modern era (2026-07-28) to servers that answer it, the ``initialize`` handshake to
    the rest; ``"legacy"`` skips the probe; ``"modern"`` refuses servers that do not
    speak it."""
    detection_cache: DetectionCache | None
    """Where detected eras and transports are remembered (default: the process-wide
    cache)."""
    telemetry: Telemetry | None
    """Traces and metrics of every call: ``resilient_mcp.otel.OpenTelemetry()`` (the
    ``otel`` extra; see docs/telemetry.md). None (default): none, and nothing imported."""


@dataclass(frozen=True, slots=True)
class Options:
    """:class:`ClientOptions` with every default filled in, checked."""

    timeouts: Timeouts
    limits: Limits
    retry: RetryPolicy
    handlers: Handlers
    client_info: Implementation | None
    wait_ready: bool
    logger: Logger | None
    era: EraMode
    detection_cache: DetectionCache
    telemetry: Telemetry | None = None


_CHECKS: dict[str, type | tuple[type, ...]] = {
    "timeouts": Timeouts,
    "limits": Limits,
    "retry": RetryPolicy,
    "handlers": Handlers,
    "client_info": Implementation,
    "wait_ready": bool,
    "detection_cache": DetectionCache,
    "telemetry": Telemetry,
}


def resolve_options(options: Mapping[str, Any]) -> Options:
    """Check the options given and fill in the defaults.

    Raises:
        UsageError: an unknown option, or a value of the wrong kind.
    """
    unknown = sorted(set(options) - set(ClientOptions.__annotations__))
    if unknown:
        raise UsageError(
            f"unknown option(s) {', '.join(map(repr, unknown))}; the options are "
            f"{', '.join(ClientOptions.__annotations__)} (headers, auth and http_client "
            "belong to HTTPServer)"
        )
    for name, kind in _CHECKS.items():
        value = options.get(name)
        if value is not None and not isinstance(value, kind):
            raise UsageError(f"{name}= must be a {getattr(kind, '__name__', kind)}, got {value!r}")
    era = options.get("era", "auto")
    if era not in get_args(EraMode):
        raise UsageError(f"unknown era {era!r}: expected 'auto', 'modern' or 'legacy'")

    def given(name: str, default: Any) -> Any:
        value = options.get(name)
        return default if value is None else value

    return Options(
        timeouts=given("timeouts", Timeouts()),
        limits=given("limits", Limits()),
        retry=given("retry", RetryPolicy()),
        handlers=given("handlers", Handlers()),
        client_info=options.get("client_info"),
        wait_ready=given("wait_ready", True),
        logger=options.get("logger"),
        era=era,
        # (An empty cache is falsy: never `or` it away.)
        detection_cache=given("detection_cache", default_cache),
        telemetry=options.get("telemetry"),
    )
