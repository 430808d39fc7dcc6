"""A job run at start and then every `interval` seconds inside the relay, never crashing it.

A failed run is logged and reported (`last_error`); the next run comes at the next interval.
`run_once` also serves tests and operators who want a run now; runs never overlap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("salesflow.relay")


class Periodic:
    def __init__(self, name: str, interval: float, job: Callable[[], Awaitable[Any]]) -> None:
        self.name = name
        self.interval = interval
        self.job = job
        self.runs = 0
        self.failures = 0
        self.last_run: datetime | None = None  # when the last run ended, well or not
        self.last_error: str | None = None
        self.last_result: Any = None
        self._lock = asyncio.Lock()

    async def run_once(self) -> Any:
        """Run the job now (after a run in progress); its result, None when it failed."""
        async with self._lock:
            try:
                result = await self.job()
            except Exception as exc:
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.warning(
                    "%s failed, next try in %.0fs: %s", self.name, self.interval, self.last_error
                )
                result = None
            else:
                self.last_error = None
                self.last_result = result
            finally:
                self.runs += 1
                self.last_run = datetime.now(UTC)
            return result

    async def run(self) -> None:
        """Run now and every `interval` seconds until cancelled."""
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval)

    def describe(self) -> dict[str, Any]:
        last = self.last_result
        if is_dataclass(last) and not isinstance(last, type):
            last = asdict(last)
        return {
            "interval_seconds": self.interval,
            "runs": self.runs,
            "failures": self.failures,
            "last_run": self.last_run.isoformat() if self.last_run else None,
            "last_error": self.last_error,
            "last_result": last,
        }
