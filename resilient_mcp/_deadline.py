"""One call's deadline, shared by everything the call does.

A call may take several requests: retries, a re-handshake, the ``-32020`` re-list of
the tools, ``input_required`` rounds. They all run under the one :class:`Deadline` made
when the call started, so ``timeout=60`` means sixty seconds for all of it. A progress
notification restarts the clock (if ``Timeouts.reset_on_progress``), never past
``Timeouts.max_total`` since the call started.
"""

from __future__ import annotations

import math

import anyio

__all__ = ["Deadline"]


class Deadline:
    """When a call must be over, and how progress may push that back.

    Attributes:
        at: the deadline, in ``anyio.current_time()`` terms (``math.inf``: none).
    """

    __slots__ = ("_hard", "_reset", "_scope", "at")

    def __init__(
        self,
        timeout: float | None,
        *,
        reset_on_progress: bool = False,
        max_total: float | None = None,
        cap: float | None = None,
    ) -> None:
        """
        Args:
            timeout: seconds from now; ``None`` for no limit (progress then changes nothing).
            reset_on_progress: progress restarts the ``timeout`` clock...
            max_total: ...but never past this many seconds from now.
            cap: a further limit that progress does not extend (``RetryPolicy.timeout``).
        """
        now = anyio.current_time()
        self.at = math.inf if timeout is None else now + timeout
        if cap is not None:
            self.at = min(self.at, now + cap)
        self._reset = timeout if reset_on_progress and timeout is not None else None
        self._hard = now + max_total if max_total is not None else math.inf
        self._scope: anyio.CancelScope | None = None

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        """A plain deadline ``seconds`` from now (``None``: none), not moved by progress."""
        return cls(seconds)

    def __repr__(self) -> str:
        left = self.at - anyio.current_time()
        return f"<Deadline in {left:.3f} s>" if math.isfinite(left) else "<Deadline none>"

    @property
    def expired(self) -> bool:
        return anyio.current_time() >= self.at

    def bind(self, scope: anyio.CancelScope | None) -> anyio.CancelScope | None:
        """Let :meth:`extend` move ``scope`` too (the request in flight); returns the
        previously bound scope, to restore afterwards."""
        previous, self._scope = self._scope, scope
        return previous

    def extend(self) -> None:
        """Progress arrived: restart the clock (when configured), within ``max_total``."""
        if self._reset is None:
            return
        self.at = min(anyio.current_time() + self._reset, self._hard)
        if self._scope is not None:
            self._scope.deadline = self.at
