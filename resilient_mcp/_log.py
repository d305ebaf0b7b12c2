"""Logging through structlog, silent unless the application asks for it.

A library must not print. By default our events go to the standard library logger
``resilient_mcp`` (which, like httpx's, emits nothing until the application configures
logging). An application that uses structlog end to end passes its own logger with
``connect(..., logger=structlog.get_logger())``. Either way events are structured: the
session id, request id, method and attempt are bound as keys, and no header, token or
URL credential is ever one of them.
"""

from __future__ import annotations

import functools
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import structlog

__all__ = ["Logger", "default_logger", "redact_url"]

Logger = Any  # a structlog BoundLogger-like object: .bind() .debug() .info() .warning()

_stdlib = logging.getLogger("resilient_mcp")


@functools.cache
def default_logger() -> Logger:
    """A structlog logger that renders key=value text into the ``resilient_mcp`` logger.

    One per process: a bound logger is immutable (``bind`` returns a new one), and each
    client building its own processors and renderer cost ~0.6 KB per open session.
    """
    return structlog.wrap_logger(
        _stdlib,
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True),
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    )


def redact_url(url: str) -> str:
    """The URL without credentials or query string (where API keys like to hide)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
