"""How many short exchanges admission lets through at once: a limit that adapts.

A fixed limit caps throughput at ``limit / latency``: 8 slots and a server that takes
20 ms per answer make 400 calls/s at most, however much more the server could take. So
the limit follows the exchanges' latency, in the manner of the gradient limiters of
Netflix's concurrency-limits (Gradient2) and Envoy's adaptive concurrency filter:

- Samples are gathered in windows of ``max(limit, MIN_WINDOW)`` exchanges (about one
  round trip of the whole limit), so that one slow answer decides nothing and the
  arithmetic costs nothing per call. A window's figure is its median latency.
- The *baseline* is the lowest window median seen, allowed to creep up slowly (a fraction of
  the gap per window, 0.2 %) so that a server that became slower for good is not held to its
  best day for ever (Envoy re-measures its minimum by stopping traffic; creeping costs
  nothing).
- While a window's median stays within ``TOLERANCE`` times the baseline, the server is
  not queueing our exchanges: the limit grows by ``sqrt(limit)`` (Gradient2's queue
  allowance), but only if the window actually used at least half of it (a client with
  two callers does not earn a limit of 64).
- Past that, the limit moves a fifth of the way towards ``limit * TOLERANCE *
  baseline / median + sqrt(limit)`` (Gradient2's update and smoothing; the gradient
  halves at most): the exchanges queue somewhere, in the server or in our own event
  loop, and more of them would only wait longer. Growth is not smoothed.
- An explicit overload signal (429, 503, a refused connection) halves the limit at
  once, as TCP does on a loss, but once per window: a burst of refusals of exchanges
  that were all sent under the old limit is one signal, not thirty.

The limit stays within ``[floor, ceiling]``. Why not plain AIMD (Netflix's AIMDLimit)?
It reacts to losses only: against a server that slows down without refusing anything
it grows to the ceiling and queues there. Why not Vegas? Its queue estimate
``limit * (1 - baseline / latency)`` needs a baseline measured without load, which a
busy client never sees. (Vegas was reasoned about, not measured.)

This module is arithmetic only (no clock, no I/O): :class:`~.admission.Admission`
measures the latencies and feeds them in, so tests drive it with synthetic samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._config import Limits

__all__ = [
    "MIN_WINDOW",
    "START_LIMIT",
    "TOLERANCE",
    "GradientLimit",
    "LimiterStats",
    "limiter_for",
]

# Where the limit starts (the fixed limit of earlier releases: measured best at no
# added latency on 2 cores).
START_LIMIT = 8
# A window holds at least this many samples, so that a small limit still decides on
# more than a handful.
MIN_WINDOW = 8
# How much slower than the baseline a window may be before the limit stops growing.
TOLERANCE = 1.5
# How fast the baseline follows windows slower than itself.
_BASELINE_CREEP = 0.002
# What an overload signal multiplies the limit by.
_BACKOFF = 0.5
# The smallest gradient one slow window applies.
_MAX_SHRINK = 0.5
# How far one window moves the limit towards its target.
_SMOOTHING = 0.2


@dataclass(slots=True)
class LimiterStats:
    """What the limiter did, for tests, logs and benchmarks.

    Attributes:
        limit: the current limit.
        peak: the highest limit reached.
        lowest: the lowest limit reached.
        samples: latency samples taken.
        windows: windows closed.
        increases: windows that grew the limit.
        decreases: windows that shrank it for latency.
        overloads: overload signals received (429, 503, refused connections).
        backoffs: overload signals that shrank the limit (at most one per window).
        baseline: the latency baseline in seconds (None before the first window).
    """

    limit: int
    peak: int
    lowest: int
    samples: int = 0
    windows: int = 0
    increases: int = 0
    decreases: int = 0
    overloads: int = 0
    backoffs: int = 0
    baseline: float | None = None


class GradientLimit:
    """An adaptive concurrency limit between ``floor`` and ``ceiling``.

    Feed it with :meth:`sample` (one exchange's latency, and how many were in flight
    when it was admitted) and :meth:`overload`; read :attr:`limit`. With
    ``adaptive=False`` it is the fixed limit ``ceiling`` and ignores its input.
    """

    __slots__ = (
        "_baseline",
        "_ceiling",
        "_floor",
        "_limit",
        "_signalled",
        "_window",
        "_window_used",
        "adaptive",
        "epoch",
        "stats",
    )

    def __init__(self, *, floor: int, ceiling: int, adaptive: bool = True) -> None:
        if not 1 <= floor <= ceiling:
            raise ValueError(f"need 1 <= floor <= ceiling, got {floor} and {ceiling}")
        self._floor = floor
        self._ceiling = ceiling
        self.adaptive = adaptive
        start = min(max(START_LIMIT, floor), ceiling) if adaptive else ceiling
        self._limit = float(start)
        self._baseline: float | None = None
        self._window: list[float] = []
        self._window_used = 0
        # Bumped whenever the limit shrinks: an exchange admitted before that (under the
        # old limit) cannot make it shrink again.
        self.epoch = 0
        self._signalled = False
        self.stats = LimiterStats(limit=start, peak=start, lowest=start)

    def __repr__(self) -> str:
        return f"<GradientLimit {self.limit} in [{self._floor}, {self._ceiling}]>"

    @property
    def limit(self) -> int:
        """Exchanges that may be in flight now."""
        return self.stats.limit

    @property
    def floor(self) -> int:
        return self._floor

    @property
    def ceiling(self) -> int:
        return self._ceiling

    def sample(self, latency: float, in_flight: int) -> None:
        """One short exchange answered after ``latency`` seconds; ``in_flight`` exchanges
        (itself included) held a slot when it was admitted."""
        if not self.adaptive:
            return
        self.stats.samples += 1
        window = self._window
        window.append(latency)
        self._window_used = max(self._window_used, in_flight)
        if len(window) >= max(self.stats.limit, MIN_WINDOW):
            self._close_window()

    def overload(self, epoch: int) -> None:
        """The server refused an exchange admitted in ``epoch`` (429, 503, a refused
        connection): halve the limit, unless it already shrank since that exchange
        was admitted or already did in this window."""
        if not self.adaptive:
            return
        self.stats.overloads += 1
        if epoch != self.epoch or self._signalled:
            return
        self._signalled = True
        self.stats.backoffs += 1
        self._set(self._limit * _BACKOFF, shrink=True)

    def _close_window(self) -> None:
        window = sorted(self._window)
        median = window[len(window) // 2]
        used = self._window_used
        self._window = []
        self._window_used = 0
        stats = self.stats
        stats.windows += 1
        signalled, self._signalled = self._signalled, False
        baseline = self._baseline
        if baseline is None or median < baseline:
            baseline = median
        else:
            baseline += (median - baseline) * _BASELINE_CREEP
        self._baseline = stats.baseline = baseline
        if signalled:
            return  # this window already shrank for an overload
        limit = self._limit
        # Gradient2's update: the gradient is 1 while the window is within tolerance of
        # the baseline, smaller as it gets slower (by half at most); the queue allowance
        # sqrt(limit) is what lets the limit grow, and what it settles on when latency
        # grows with it (limit * gradient + sqrt(limit) == limit). Smoothed, so that one
        # window moves the limit by a fifth of the way only.
        gradient = max(_MAX_SHRINK, min(1.0, TOLERANCE * baseline / median)) if median else 1.0
        if gradient == 1.0 and 2 * used < stats.limit:
            return  # the callers did not use the limit: nothing learnt about more
        target = limit * gradient + math.sqrt(limit)
        # Growth is not smoothed: from 8 to 32 in about seven windows (round trips).
        new = target if gradient == 1.0 else limit + (target - limit) * _SMOOTHING
        if int(new) > stats.limit:
            stats.increases += 1
        elif int(new) < stats.limit:
            stats.decreases += 1
        self._set(new, shrink=new < limit)

    def _set(self, value: float, *, shrink: bool) -> None:
        self._limit = min(max(value, float(self._floor)), float(self._ceiling))
        stats = self.stats
        limit = int(self._limit)
        if shrink and limit < stats.limit:
            self.epoch += 1
        stats.limit = limit
        stats.peak = max(stats.peak, limit)
        stats.lowest = min(stats.lowest, limit)


def limiter_for(limits: Limits) -> GradientLimit:
    """The limiter ``limits`` asks for: adaptive between ``min_connections`` (at most
    ``max_connections``) and ``max_connections``, or fixed at ``max_connections`` when
    the two are equal."""
    ceiling = limits.max_connections
    floor = min(limits.min_connections, ceiling)
    return GradientLimit(floor=floor, ceiling=ceiling, adaptive=floor < ceiling)
