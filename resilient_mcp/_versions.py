"""The protocol versions this client speaks, by era.

The legacy era (2024-11-05 … 2025-11-25) opens a session with the ``initialize``
handshake; the modern era (2026-07-28) has no handshake and no sessions: every request
carries the version, the client's capabilities and its info itself.
"""

from __future__ import annotations

__all__ = [
    "LATEST_PROTOCOL_VERSION",
    "LEGACY_PROTOCOL_VERSIONS",
    "MODERN_PROTOCOL_VERSIONS",
    "SUPPORTED_PROTOCOL_VERSIONS",
]

MODERN_PROTOCOL_VERSIONS = ("2026-07-28",)
"""Versions of the modern era (no handshake, no sessions), newest first."""
LEGACY_PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
"""Versions reached through the ``initialize`` handshake, newest first."""
SUPPORTED_PROTOCOL_VERSIONS = MODERN_PROTOCOL_VERSIONS + LEGACY_PROTOCOL_VERSIONS
"""Every version this client speaks, newest first."""
LATEST_PROTOCOL_VERSION = SUPPORTED_PROTOCOL_VERSIONS[0]
"""The newest version this client speaks."""
