"""PKCE (RFC 7636, S256 only) and the ``state`` parameter."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field

__all__ = ["PKCE", "new_state"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class PKCE:
    """One code verifier and its S256 challenge (the verifier never in a repr)."""

    verifier: str = field(repr=False)
    challenge: str
    method: str = "S256"

    @classmethod
    def new(cls) -> PKCE:
        """A fresh pair: 64 random bytes → an 86-character verifier (RFC 7636 §4.1)."""
        verifier = _b64url(secrets.token_bytes(64))
        return cls(verifier, _b64url(hashlib.sha256(verifier.encode("ascii")).digest()))


def new_state() -> str:
    """An unguessable ``state`` value (binds the callback to this authorization)."""
    return secrets.token_urlsafe(32)
