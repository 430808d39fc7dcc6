"""What `/healthz` reports about the relay's dependencies: the database, Temporal, the portal.

Each probe is bounded by a timeout and its result is reused for `cache_seconds`; concurrent
requests share one probe in flight, so a flood of `/healthz` costs at most one probe of each
dependency at a time (and one per `cache_seconds`), whoever asks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

OK = "ok"


@dataclass
class _Result:
    value: Any
    error: str | None
    at: float


class CachedProbe:
    """`probe()` (a value, or an exception when the dependency is down), cached and bounded."""

    def __init__(
        self,
        probe: Callable[[], Awaitable[Any]],
        *,
        timeout: float,
        cache_seconds: float,
        describe: Callable[[BaseException], str] | None = None,
    ) -> None:
        self._probe = probe
        self._describe = describe or _describe
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.runs = 0  # probes made (each shared by every request that came meanwhile)
        self._last: _Result | None = None
        self._running: asyncio.Task[_Result] | None = None

    async def result(self) -> tuple[Any, str | None]:
        """The probe's value and None, or None and what is wrong. Waits at most `timeout`: a
        probe still running then (a hanging database whose driver cannot be interrupted) is
        left to finish and shared by the callers that come meanwhile."""
        last = self._last
        if last is not None and time.monotonic() - last.at < self.cache_seconds:
            return last.value, last.error
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._run())
        done, _ = await asyncio.wait({self._running}, timeout=self.timeout)
        if not done:
            return None, f"no answer within {self.timeout:g} s"
        self._last = self._running.result()
        return self._last.value, self._last.error

    async def _run(self) -> _Result:
        self.runs += 1
        try:
            value = await self._probe()
        except Exception as exc:
            return _Result(None, self._describe(exc)[:300], time.monotonic())
        return _Result(value, None, time.monotonic())

    async def close(self) -> None:
        if self._running is not None:
            self._running.cancel()
            await asyncio.gather(self._running, return_exceptions=True)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
