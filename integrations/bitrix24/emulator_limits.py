"""The portal's request-intensity limit: a leaky bucket per portal."""

from __future__ import annotations

import time
from collections.abc import Callable


class LeakyBucket:
    """Drains `rate` requests per second, holds at most `capacity`; off when rate is falsy."""

    def __init__(
        self,
        rate: float | None,
        capacity: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._level = 0.0
        self._last = clock()

    @property
    def enabled(self) -> bool:
        return bool(self.rate) and self.capacity > 0

    @property
    def level(self) -> float:
        self._drain()
        return self._level

    def _drain(self) -> None:
        now = self._clock()
        if self.rate:
            self._level = max(0.0, self._level - (now - self._last) * self.rate)
        self._last = now

    def try_acquire(self, cost: float = 1.0) -> bool:
        """Add `cost` if it fits; False means the request must get QUERY_LIMIT_EXCEEDED."""
        if not self.enabled:
            return True
        self._drain()
        if self._level + cost > self.capacity:
            return False
        self._level += cost
        return True

    def configure(self, rate: float | None, capacity: int) -> None:
        self._drain()
        self.rate = rate
        self.capacity = capacity

    def reset(self) -> None:
        self._level = 0.0
        self._last = self._clock()
