"""The portal's limits: the request-intensity leaky bucket and the per-method operating time.

- `LeakyBucket` / `BucketSet`: every HTTP request costs 1 (a whole `batch` too), counted per
  portal and source IP; overflow is 503 QUERY_LIMIT_EXCEEDED.
- `OperatingLimits`: execution seconds per (app or webhook, method) summed into ten 1-minute
  baskets, each living 10 minutes from its first call; once the sum reaches the limit the
  NEXT call of that method gets 429 OPERATION_TIME_LIMIT (the crossing call finishes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Plans of the cloud: drain per second, bucket size.
BUCKET_PLANS: dict[str, tuple[float, int]] = {"standard": (2.0, 50), "enterprise": (5.0, 250)}

BASKET_SECONDS = 60.0
BASKET_LIFE = 600.0
DEFAULT_OPERATING_LIMIT = 480.0


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


class BucketSet:
    """One leaky bucket per source IP of a portal, all with the same settings."""

    def __init__(
        self,
        rate: float | None,
        capacity: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._buckets: dict[str, LeakyBucket] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.rate) and self.capacity > 0

    @property
    def level(self) -> float:
        """The fullest bucket's level (what a single-client test sees)."""
        return max((b.level for b in self._buckets.values()), default=0.0)

    def bucket(self, source: str = "") -> LeakyBucket:
        if source not in self._buckets:
            self._buckets[source] = LeakyBucket(self.rate, self.capacity, self._clock)
        return self._buckets[source]

    def try_acquire(self, cost: float = 1.0, source: str = "") -> bool:
        return self.bucket(source).try_acquire(cost)

    def configure(self, rate: float | None, capacity: int) -> None:
        self.rate = rate
        self.capacity = capacity
        for bucket in self._buckets.values():
            bucket.configure(rate, capacity)

    def reset(self) -> None:
        self._buckets.clear()


@dataclass
class _Basket:
    started: float
    seconds: float = 0.0


@dataclass
class OperatingState:
    """What the envelope reports for a method: the running sum and when the oldest expires."""

    operating: float
    reset_at: float | None


@dataclass
class OperatingLimits:
    """Per-(caller, method) execution-time accounting; `limit` None or 0 turns it off.

    `costs` injects a cost per method (seconds; key "*" for every method) instead of the
    measured processing time, so tests and benches can reach the limit quickly.
    """

    limit: float | None = DEFAULT_OPERATING_LIMIT
    clock: Callable[[], float] = time.time
    costs: dict[str, float] = field(default_factory=dict)
    _baskets: dict[tuple[str, str], list[_Basket]] = field(default_factory=dict)

    def _live(self, key: tuple[str, str]) -> list[_Basket]:
        now = self.clock()
        baskets = [b for b in self._baskets.get(key, []) if b.started + BASKET_LIFE > now]
        if baskets:
            self._baskets[key] = baskets
        else:
            self._baskets.pop(key, None)
        return baskets

    def state(self, caller: str, method: str) -> OperatingState:
        baskets = self._live((caller, method))
        total = sum(b.seconds for b in baskets)
        reset_at = baskets[0].started + BASKET_LIFE if baskets else None
        return OperatingState(total, reset_at)

    def blocked(self, caller: str, method: str) -> OperatingState | None:
        """The state when the method may not run now (the limit is reached), else None."""
        if not self.limit:
            return None
        current = self.state(caller, method)
        return current if current.operating >= self.limit else None

    def cost(self, method: str, measured: float) -> float:
        if method in self.costs:
            return self.costs[method]
        return self.costs.get("*", measured)

    def record(self, caller: str, method: str, measured: float) -> OperatingState:
        """Add one finished call to the current basket (a new one after a minute)."""
        key = (caller, method)
        baskets = self._live(key)
        now = self.clock()
        if not baskets or now - baskets[-1].started >= BASKET_SECONDS:
            baskets.append(_Basket(now))
            self._baskets[key] = baskets
        baskets[-1].seconds += max(0.0, self.cost(method, measured))
        return self.state(caller, method)

    def reset(self) -> None:
        self._baskets.clear()
