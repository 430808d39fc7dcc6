"""One Bitrix24 REST bucket per portal for every process that calls it (issue 16 item 2).

The portal's leaky bucket (2 requests/s, 50 burst on most plans) is per portal, not per
process: the relay and N workers must take their requests from one budget. Each process's
`Bitrix24Client` asks this row before each HTTP request: a single conditional UPDATE drains the
level by the time elapsed (the database's clock, so hosts need not agree) and admits the
request when one more fits under the capacity — atomic in SQLite and PostgreSQL alike, one
short transaction per request (a few per second at a portal's rate).

Booking follows `integrations.bitrix24.throttle`: a request counts from its admission, and when
its answer is in, the drain it got while in flight is added back (at most 1), as if it had
arrived at the portal only then; a process that dies mid-request leaves nothing stuck. If the
database cannot be reached the process falls back to its own throttle (a warning), so REST
calls never stop for the bucket's sake.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Float, String, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, SQLModel

from salesflow.integrations.bitrix24 import throttle
from salesflow.integrations.bitrix24.throttle import PortalThrottle

log = logging.getLogger("salesflow.bitrix24")


class PortalBucket(SQLModel, table=True):
    __tablename__ = "portal_bucket"

    origin: str = Field(primary_key=True, sa_type=String(length=200))
    level: float = Field(sa_type=Float)  # requests in the bucket at `at`
    at: float = Field(sa_type=Float)  # the database's epoch seconds of the last admission


_NOW = {
    "postgresql": "extract(epoch from clock_timestamp())",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}
_DRAINED = (
    "(CASE WHEN level - ({now} - at) * :rate > 0 THEN level - ({now} - at) * :rate ELSE 0 END)"
)


def _statements(dialect: str) -> dict[str, Any]:
    now = _NOW.get(dialect, _NOW["postgresql"])
    drained = _DRAINED.format(now=now)
    return {
        "create": text(
            f"INSERT INTO portal_bucket (origin, level, at) VALUES (:origin, 0, {now})"
            " ON CONFLICT (origin) DO NOTHING"
        ),
        "admit": text(
            f"UPDATE portal_bucket SET level = {drained} + 1, at = {now}"
            f" WHERE origin = :origin AND {drained} + 1 <= :capacity"
        ),
        "level": text(f"SELECT {drained} FROM portal_bucket WHERE origin = :origin"),
        "answered": text("UPDATE portal_bucket SET level = level + :back WHERE origin = :origin"),
    }


class DatabaseThrottle:
    """`acquire()` before a request, `release()` after it, like `PortalThrottle`."""

    def __init__(self, engine: AsyncEngine, origin: str, rate: float, capacity: float) -> None:
        self.engine, self.origin, self.rate, self.capacity = engine, origin, rate, capacity
        self._sql = _statements(engine.dialect.name)
        self._lock = asyncio.Lock()  # FIFO in this process; one admission query at a time
        self._admitted: collections.deque[tuple[float, bool]] = collections.deque()
        self._created = False
        self._fallback = PortalThrottle(rate, capacity)
        self.refused = 0  # admissions refused (the request waited)

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                try:
                    wait = await self._try_admit()
                except Exception as exc:  # the database: this process's own bucket then
                    log.warning("shared Bitrix24 bucket unavailable, throttling locally: %s", exc)
                    await self._fallback.acquire()
                    self._admitted.append((time.monotonic(), False))
                    return
                if wait is None:
                    self._admitted.append((time.monotonic(), True))
                    return
                self.refused += 1
                await asyncio.sleep(wait)

    async def _try_admit(self) -> float | None:
        """None when admitted, else seconds until one more request fits."""
        params = {"origin": self.origin, "rate": self.rate, "capacity": self.capacity}
        async with self.engine.begin() as conn:
            if not self._created:
                await conn.execute(self._sql["create"], {"origin": self.origin})
                self._created = True
            if (await conn.execute(self._sql["admit"], params)).rowcount == 1:
                return None
            level = (await conn.execute(self._sql["level"], params)).scalar_one_or_none()
        excess = float(level or 0.0) + 1 - self.capacity
        return min(max(excess / self.rate, 0.005), 1.0 / self.rate)

    def release(self) -> None:
        if not self._admitted:
            return
        admitted_at, shared = self._admitted.popleft()  # the oldest: the most drain added back
        if not shared:
            self._fallback.release()
            return
        back = min(1.0, (time.monotonic() - admitted_at) * self.rate)
        task = asyncio.get_running_loop().create_task(self._add_back(back))
        _PENDING.add(task)
        task.add_done_callback(_PENDING.discard)

    async def _add_back(self, back: float) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(self._sql["answered"], {"origin": self.origin, "back": back})
        except Exception as exc:
            log.warning("shared Bitrix24 bucket: could not book an answer: %s", exc)


_PENDING: set[asyncio.Task[None]] = set()


@contextlib.contextmanager
def shared_by_database(
    engine: AsyncEngine,
) -> Iterator[dict[tuple[str, float, float], DatabaseThrottle]]:
    """Inside, this event loop's Bitrix24 clients take their requests from the database's
    bucket of their portal; yields the throttles made (by origin, rate, capacity)."""
    made: dict[tuple[str, float, float], DatabaseThrottle] = {}

    def provider(origin: str, rate: float, capacity: float) -> DatabaseThrottle:
        key = (origin, rate, capacity)
        if key not in made:
            made[key] = DatabaseThrottle(engine, origin, rate, capacity)
        return made[key]

    with throttle.sharing(provider):
        yield made
