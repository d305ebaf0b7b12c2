"""Chaos: seeded fault injection that works with every profile."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, kw_only=True, slots=True)
class Chaos:
    """Faults `StrictServer(chaos=...)` injects, on top of what its profile does.

    All randomness comes from one ``random.Random(seed)``, and every POST draws the same
    number of values in arrival order, so for a given seed the n-th POST always meets
    the same fate: a run is reproducible from its seed (send requests one at a time
    when the order matters). `ServerStats.faults` records what was injected.

    Attributes:
        seed: seed of the random generator (None: a random seed).
        expire_after_requests: a session answers this many requests (any method but
            `initialize`); the next message naming it gets the profile's "gone" answer.
        expire_after_seconds: a session is gone this long after it was created.
        reject_rate: probability that a POST is refused with `reject_status` before
            the server looks at it (nothing is processed, nothing counted).
        reject_status: 429 (Too Many Requests) or 503 (Service Unavailable).
        retry_after: whole seconds sent in the `Retry-After` header of a refusal
            (None: no header).
        drop_rate: probability that a `tools/call` response is cut: with SSE answers
            the connection is closed after the priming event or after the first
            progress event (`drop_after`), and the tool keeps running so the client can
            resume with GET + `Last-Event-ID`; with JSON answers the tool runs and the
            connection closes in the middle of the response body.
        drop_after: where an SSE response is cut: "priming" or "progress" (responses
            without progress then complete normally).
        latency: (low, high) seconds of extra simulated work added to every POST,
            drawn uniformly.
    """

    seed: int | None = None
    expire_after_requests: int | None = None
    expire_after_seconds: float | None = None
    reject_rate: float = 0.0
    reject_status: Literal[429, 503] = 503
    retry_after: int | None = 1
    drop_rate: float = 0.0
    drop_after: Literal["priming", "progress"] = "priming"
    latency: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if self.expire_after_requests is not None and self.expire_after_requests < 0:
            raise ValueError("expire_after_requests must be >= 0 or None")
        if self.expire_after_seconds is not None and not (
            math.isfinite(self.expire_after_seconds) and self.expire_after_seconds >= 0
        ):
            raise ValueError("expire_after_seconds must be a finite number >= 0 or None")
        for name in ("reject_rate", "drop_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.reject_status not in (429, 503):
            raise ValueError("reject_status must be 429 or 503")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0 or None")
        if self.drop_after not in ("priming", "progress"):
            raise ValueError("drop_after must be 'priming' or 'progress'")
        low, high = self.latency
        if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
            raise ValueError("latency must be (low, high) with 0 <= low <= high")


@dataclass(frozen=True, slots=True)
class Fate:
    """What happens to one POST, drawn when it arrives."""

    number: int
    latency: float
    reject: bool
    drop: bool
    jitter: float
    """Queueing delay after the 202 of the legacy SSE transport."""

    def drop_number(self, method: str) -> int | None:
        """This POST's number if chaos cuts its response, else None: only `tools/call`
        responses are cut."""
        return self.number if self.drop and method == "tools/call" else None


# The legacy SSE transport queues a message after its 202; two POSTs in flight can be
# processed in either order. This much random delay reproduces that race.
_MAX_JITTER = 0.005


class Dice:
    """The server's single source of randomness."""

    def __init__(self, chaos: Chaos) -> None:
        self._chaos = chaos
        self._random = random.Random(chaos.seed)  # noqa: S311 - simulation, not security
        self._count = 0

    def roll(self) -> Fate:
        """The fate of the next POST; always draws four values, in the same order."""
        chaos = self._chaos
        self._count += 1
        latency = self._random.uniform(*chaos.latency)
        reject = self._random.random() < chaos.reject_rate
        drop = self._random.random() < chaos.drop_rate
        jitter = self._random.uniform(0.0, _MAX_JITTER)
        return Fate(self._count, latency, reject, drop, jitter)
