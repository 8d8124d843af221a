"""The budget of Temporal calls the linker may make in one namespace: a token bucket."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["DEFAULT_CALLS_PER_SECOND", "TokenBucket"]

DEFAULT_CALLS_PER_SECOND = 20.0
"""Temporal calls a second the linker spends per namespace, beyond what discovery needs."""


class TokenBucket:
    """Tokens that refill at ``rate`` a second, up to one second's worth.

    Every Temporal call of the linker in a namespace spends a token. Calls that discovery
    needs (a run just started or closed) are made at once, even when that overdraws the
    bucket, by at most one second's worth; re-reads for staleness and requests wait for
    tokens. So at idle the calls a second never exceed ``rate``, and after a burst of
    starts stale runs wait until the bucket has refilled.

    Args:
        rate: Tokens a second (calls a second).
        clock: Seconds, monotonic (for tests).
    """

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._rate = 0.0
        self._tokens = 0.0
        self._at = clock()
        self.rate = rate
        self._tokens = self.capacity

    @property
    def rate(self) -> float:
        """Tokens a second."""
        return self._rate

    @rate.setter
    def rate(self, rate: float) -> None:
        self._refill()
        self._rate = max(rate, 0.0)
        self._tokens = min(self._tokens, self.capacity)

    @property
    def capacity(self) -> float:
        """The most tokens the bucket holds: one second's worth (at least one)."""
        return max(self._rate, 1.0)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._tokens + (now - self._at) * self._rate, self.capacity)
        self._at = now

    def available(self) -> int:
        """Whole tokens that may be spent now (0 while overdrawn)."""
        self._refill()
        return max(int(self._tokens), 0)

    def spend(self, tokens: float = 1.0) -> None:
        """Spend ``tokens``, overdrawing by at most the capacity."""
        self._refill()
        self._tokens = max(self._tokens - tokens, -self.capacity)
