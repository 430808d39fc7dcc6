"""The client's copy of the portal's leaky bucket, kept so it can never overflow.

The portal adds 1 to its bucket when a request arrives and drains `rate` per second. The
client cannot see arrival times, so it books each request as if it arrived as late as it
possibly could: while the request is in flight it counts fully (no drain at all), and once
the answer is back it counts as arriving at that moment and drains from then on. Booking
arrivals later never lowers the bucket's true level below the client's estimate, whatever
the network does (delays, bunching, reordering), so admitting a request only while
`estimate + 1 <= capacity` keeps the portal's bucket from overflowing — as long as this
throttle is the portal's only client. The cost is a round trip of drain per request, not
throughput: the steady rate is still `rate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Protocol


class PortalThrottle:
    """Admits requests in FIFO order; `acquire()` before sending, `release()` after."""

    def __init__(
        self,
        rate: float,
        capacity: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("a throttle needs a positive rate and a capacity of at least 1")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._level = 0.0  # answered requests, draining since their answer
        self._last = clock()
        self.in_flight = 0
        self._lock = asyncio.Lock()
        self._released = asyncio.Event()

    @property
    def level(self) -> float:
        """The estimate of the portal's bucket: drained answered requests + all in flight."""
        self._drain()
        return self._level + self.in_flight

    def _drain(self) -> None:
        now = self._clock()
        self._level = max(0.0, self._level - (now - self._last) * self.rate)
        self._last = now

    def _wait_time(self) -> float | None:
        """Seconds until one more request fits by draining alone; None: only a release helps."""
        self._drain()
        excess = self._level + self.in_flight + 1 - self.capacity
        if excess <= 0:
            return 0.0
        if excess > self._level:
            return None
        return excess / self.rate

    async def acquire(self) -> None:
        async with self._lock:  # FIFO: asyncio.Lock wakes waiters in order
            while True:
                wait = self._wait_time()
                if wait == 0.0:
                    self.in_flight += 1
                    return
                self._released.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._released.wait(), wait)

    def release(self) -> None:
        """The answer (or the failure) of an admitted request is in: it starts draining."""
        self._drain()
        self.in_flight = max(0, self.in_flight - 1)
        self._level += 1
        self._released.set()


class Throttle(Protocol):
    async def acquire(self) -> None: ...

    def release(self) -> None: ...


# A bucket shared beyond this process (`store.portal_bucket`), installed per event loop by the
# worker and the relay: `shared(origin, rate, capacity)` gives the portal's throttle.
_SHARED: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, Callable[[str, float, float], Throttle]
] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def sharing(provider: Callable[[str, float, float], Throttle]) -> Iterator[None]:
    """Every client of this event loop takes its portal's throttle from `provider` inside."""
    loop = asyncio.get_running_loop()
    previous = _SHARED.get(loop)
    _SHARED[loop] = provider
    try:
        yield
    finally:
        if previous is None:
            _SHARED.pop(loop, None)
        else:
            _SHARED[loop] = previous


def shared(origin: str, rate: float, capacity: float) -> Throttle | None:
    """The installed provider's throttle of the portal, None when none is installed."""
    provider = _SHARED.get(asyncio.get_running_loop())
    return None if provider is None else provider(origin, rate, capacity)
