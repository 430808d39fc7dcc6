"""One Bitrix24 REST bucket per portal for every process that calls it (issue 16 item 2).

The portal's leaky bucket (2 requests/s, 50 burst on most plans) is per portal, not per
process: the relay and N workers must take their requests from one budget. Each process's
`Bitrix24Client` asks this row before each HTTP request: a single conditional UPDATE drains the
level by the time elapsed (the database's clock, so hosts need not agree) and admits the
request when one more fits under the capacity — atomic in SQLite and PostgreSQL alike, one
short transaction per request (a few per second at a portal's rate).

Booking follows `integrations.bitrix24.throttle`: a request in flight counts fully (a lease
row, not draining), and once its answer is in it counts as arriving then and drains from
then on; the lease of a process that died mid-request expires. If the
database cannot be reached the process falls back to its own throttle (a warning), so REST
calls never stop for the bucket's sake.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
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
    level: float = Field(sa_type=Float)  # answered requests, draining since `at`
    at: float = Field(sa_type=Float)  # the database's epoch seconds of the last change


class PortalBucketLease(SQLModel, table=True):
    """A request admitted and not answered yet: it counts fully (no drain) until its answer,
    or until `expires` when its process died meanwhile."""

    __tablename__ = "portal_bucket_lease"

    id: str = Field(primary_key=True, sa_type=String(length=32))
    origin: str = Field(sa_type=String(length=200), index=True)
    expires: float = Field(sa_type=Float)


LEASE_SECONDS = 120.0  # longer than any request (the client's timeouts are far shorter)

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
        # The drain first: it also takes the row's lock, so admissions are one at a time.
        "drain": text(
            f"UPDATE portal_bucket SET level = {drained}, at = {now} WHERE origin = :origin"
        ),
        "level": text(
            "SELECT level + (SELECT count(*) FROM portal_bucket_lease"
            f" WHERE origin = :origin AND expires > {now}) FROM portal_bucket"
            " WHERE origin = :origin"
        ),
        "lease": text(
            "INSERT INTO portal_bucket_lease (id, origin, expires)"
            f" VALUES (:id, :origin, {now} + :lease)"
        ),
        "answered": text(
            f"UPDATE portal_bucket SET level = {drained} + 1, at = {now} WHERE origin = :origin"
        ),
        "unlease": text("DELETE FROM portal_bucket_lease WHERE id = :id"),
        "expired": text(
            f"DELETE FROM portal_bucket_lease WHERE origin = :origin AND expires <= {now}"
        ),
    }


class DatabaseThrottle:
    """`acquire()` before a request, `release()` after it, like `PortalThrottle`: the level is
    the answered requests (draining at `rate` since their answer) plus the leases of requests
    in flight (not draining), so the portal's bucket never overflows whatever the network does."""

    def __init__(self, engine: AsyncEngine, origin: str, rate: float, capacity: float) -> None:
        self.engine, self.origin, self.rate, self.capacity = engine, origin, rate, capacity
        self._sql = _statements(engine.dialect.name)
        self._lock = asyncio.Lock()  # FIFO in this process; one admission query at a time
        self._admitted: collections.deque[str | None] = collections.deque()
        self._created = False
        self._fallback = PortalThrottle(rate, capacity)
        self.refused = 0  # admissions refused (the request waited)

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                lease = uuid.uuid4().hex
                try:
                    wait = await self._try_admit(lease)
                except Exception as exc:  # the database: this process's own bucket then
                    log.warning("shared Bitrix24 bucket unavailable, throttling locally: %s", exc)
                    await self._fallback.acquire()
                    self._admitted.append(None)
                    return
                if wait is None:
                    self._admitted.append(lease)
                    return
                self.refused += 1
                await asyncio.sleep(wait)

    async def _try_admit(self, lease: str) -> float | None:
        """None when admitted (under `lease`), else seconds until one more request may fit."""
        params = {"origin": self.origin, "rate": self.rate}
        async with self.engine.begin() as conn:
            if not self._created:
                await conn.execute(self._sql["create"], {"origin": self.origin})
                await conn.execute(self._sql["expired"], {"origin": self.origin})
                self._created = True
            await conn.execute(self._sql["drain"], params)
            level = float((await conn.execute(self._sql["level"], params)).scalar_one())
            if level + 1 <= self.capacity:
                lease_params = {"id": lease, "origin": self.origin, "lease": LEASE_SECONDS}
                await conn.execute(self._sql["lease"], lease_params)
                return None
        excess = level + 1 - self.capacity
        return min(max(excess / self.rate, 0.005), 1.0 / self.rate)

    def release(self) -> None:
        if not self._admitted:
            return
        lease = self._admitted.popleft()  # which one does not matter: each counts 1
        if lease is None:
            self._fallback.release()
            return
        task = asyncio.get_running_loop().create_task(self._answered(lease))
        _PENDING.add(task)
        task.add_done_callback(_PENDING.discard)

    async def _answered(self, lease: str) -> None:
        """The request's answer is in: it drains from now on instead of counting fully."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    self._sql["answered"], {"origin": self.origin, "rate": self.rate}
                )
                await conn.execute(self._sql["unlease"], {"id": lease})
        except Exception as exc:  # the lease expires by itself
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
