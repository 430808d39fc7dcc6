"""One Bitrix24 bucket per portal in the database (issue 16 item 2): throttles of several
processes (here: several engines on one database) never admit more than the portal's leaky
bucket holds, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from salesflow.integrations.bitrix24.client import shared_throttle
from salesflow.store.db import make_engine
from salesflow.store.portal_bucket import DatabaseThrottle, shared_by_database
from tests.store.databases import PG_URL, database

RATE, CAPACITY = 40.0, 4.0


def overflow(arrivals: list[float], rate: float, capacity: float) -> float:
    """The most a leaky bucket fed at `arrivals` ever held above `capacity` (0: never)."""
    level, last, worst = 0.0, None, 0.0
    for at in sorted(arrivals):
        level = max(0.0, level - (at - last) * rate) if last is not None else 0.0
        level, last = level + 1, at
        worst = max(worst, level - capacity)
    return worst


async def _another(engine: AsyncEngine) -> AsyncEngine:
    """An engine of the same database, as another process has (PostgreSQL: the same schema)."""
    if engine.dialect.name == "sqlite":
        return make_engine(engine.url)
    async with engine.connect() as conn:
        schema = (await conn.execute(text("SHOW search_path"))).scalar_one()
    return make_engine(PG_URL, connect_args={"server_settings": {"search_path": schema}})


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_R16_throttles_of_three_processes_share_one_bucket(kind: str, tmp_path: Path) -> None:
    async with database(kind, tmp_path) as engine:
        engines = [engine, await _another(engine), await _another(engine)]
        throttles = [DatabaseThrottle(e, "https://portal.test", RATE, CAPACITY) for e in engines]
        arrivals: list[float] = []

        async def requests(throttle: DatabaseThrottle, count: int) -> None:
            for _ in range(count):
                await throttle.acquire()
                arrivals.append(time.monotonic())  # the portal sees it no earlier
                await asyncio.sleep(0.005)  # the request in flight
                throttle.release()

        try:
            await asyncio.gather(*(requests(t, 8) for t in throttles))
        finally:
            for other in engines[1:]:
                await other.dispose()

    assert len(arrivals) == 24
    assert overflow(arrivals, RATE, CAPACITY) <= 1e-6
    assert sum(t.refused for t in throttles) > 0  # the bucket, not luck, spaced them


async def test_R16_clients_take_the_installed_bucket(tmp_path: Path) -> None:
    async with database("sqlite", tmp_path) as engine:
        with shared_by_database(engine) as made:
            inside = shared_throttle("https://portal.test", 2.0, 50)
            assert inside is shared_throttle("https://portal.test", 2.0, 50)
        outside = shared_throttle("https://portal.test", 2.0, 50)
    assert isinstance(inside, DatabaseThrottle) and list(made.values()) == [inside]
    assert not isinstance(outside, DatabaseThrottle)
