"""Each deal's pipeline (Bitrix24 CATEGORY_ID) as the relay last learned it, so a deal event is
routed without asking the portal: learned from the relay's own reads of the deal and from
ONCRMDEALMOVETOCATEGORY events (which carry the new CATEGORY_ID). The summary is the Web UI's
static summary of the deal as first read, for a signal-with-start that starts its workflow."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, Text, case, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import Field, SQLModel

from salesflow.store.db import UtcDateTime, dialect_insert


class DealPipeline(SQLModel, table=True):
    __tablename__ = "deal_pipeline"

    deal_id: int = Field(primary_key=True, sa_type=BigInteger)
    category_id: int = Field(sa_type=Integer)
    summary: str = Field(sa_type=Text)
    updated_at: datetime = Field(sa_type=UtcDateTime())


@dataclass(frozen=True)
class Pipeline:
    deal_id: int
    category_id: int
    summary: str  # empty when learned from an event: the stored one is kept


# sqlmodel does not declare `__table__` on table models (a stub gap); it is there at runtime.
_table = DealPipeline.__table__  # type: ignore[attr-defined]
_c = _table.c


async def get(engine: AsyncEngine, deal_id: int) -> Pipeline | None:
    query = select(_c.category_id, _c.summary).where(_c.deal_id == deal_id)
    async with engine.connect() as conn:
        found = (await conn.execute(query)).first()
    if found is None:
        return None
    return Pipeline(deal_id, int(found.category_id), str(found.summary))


_UPSERTS: dict[str, Any] = {}


def _upsert_statement(engine: AsyncEngine) -> Any:
    name = engine.dialect.name
    if name not in _UPSERTS:
        insert = dialect_insert(engine, _table)
        _UPSERTS[name] = insert.on_conflict_do_update(
            index_elements=["deal_id"],
            set_={
                "category_id": insert.excluded.category_id,
                "summary": case(
                    (insert.excluded.summary != "", insert.excluded.summary), else_=_c.summary
                ),
                "updated_at": insert.excluded.updated_at,
            },
        )
    return _UPSERTS[name]


async def note_all(conn: AsyncConnection, pipelines: Sequence[Pipeline]) -> None:
    """Remember the deals' pipelines, in the caller's transaction (an empty summary keeps the
    stored one)."""
    if not pipelines:
        return
    now = datetime.now(UTC)
    await conn.execute(
        _upsert_statement(conn.engine),
        [
            {
                "deal_id": p.deal_id,
                "category_id": p.category_id,
                "summary": p.summary,
                "updated_at": now,
            }
            for p in pipelines
        ],
    )


async def note(engine: AsyncEngine, pipeline: Pipeline) -> None:
    async with engine.begin() as conn:
        await note_all(conn, [pipeline])
