"""Named positions the relay keeps between runs: the deal scan's DATE_MODIFY cursor, the
offline-event batch it reserved and has not cleared yet. One row per name, text values."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Text, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, SQLModel

from salesflow.store.db import UtcDateTime, dialect_insert


class SyncCursor(SQLModel, table=True):
    __tablename__ = "sync_cursor"

    name: str = Field(primary_key=True, max_length=100)
    value: str = Field(sa_type=Text)
    updated_at: datetime = Field(sa_type=UtcDateTime())


# sqlmodel does not declare `__table__` on table models (a stub gap); it is there at runtime.
_table = SyncCursor.__table__  # type: ignore[attr-defined]
_c = _table.c


async def get(engine: AsyncEngine, name: str) -> str | None:
    async with engine.connect() as conn:
        found = (await conn.execute(select(_c.value).where(_c.name == name))).scalar_one_or_none()
    return None if found is None else str(found)


async def put(engine: AsyncEngine, name: str, value: str) -> None:
    """Set (insert or replace) the value; committed when this returns."""
    now = datetime.now(UTC)
    insert = dialect_insert(engine, _table).values(name=name, value=value, updated_at=now)
    upsert = insert.on_conflict_do_update(
        index_elements=["name"], set_={"value": value, "updated_at": now}
    )
    async with engine.begin() as conn:
        await conn.execute(upsert)


async def remove(engine: AsyncEngine, name: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(_table).where(_c.name == name))
