"""The fixed configuration of one StrictServer, as its constructor validated it.

Front ends read it; nothing changes it while the server lives.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Final, Literal

from resilient_mcp.testing._chaos import Chaos
from resilient_mcp.testing._profiles import Dialect

Era = Literal["legacy", "modern", "dual"]
"""Which protocol era(s) a `StrictServer` speaks."""
ERAS: Final[tuple[Era, ...]] = ("legacy", "modern", "dual")


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """A `StrictServer`'s parameters (see its docstring), with the chaos in effect."""

    era: Era
    modern_versions: tuple[str, ...]
    ttl_ms: int
    cache_scope: Literal["public", "private"]
    dialect: Dialect
    chaos: Chaos
    """The faults injected; ``Chaos()`` (none) when the server was given None."""
    json_response: bool
    get_stream: bool
    handshake_delay: float
    initialize_delay: float
    extra_tools: int
    page_size: int | None
    version: str
    """The server version reported in `serverInfo`."""


def server_version() -> str:
    """This package's version, which the server reports as its own."""
    try:
        return metadata.version("resilient-mcp")
    except metadata.PackageNotFoundError:
        # Running from a source tree that was never installed.
        return "0.0.0"
