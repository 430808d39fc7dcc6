"""The deal board: a read model of every deal (stage, manager, amount, deadlines) for lists and
SLA reports, kept by a short activity on each change of the deal's workflow."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Text, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, SQLModel, col

from salesflow.store.db import UtcDateTime, as_utc, session


class DealBoardRow(SQLModel, table=True):
    __tablename__ = "deal_board"

    deal_id: int = Field(primary_key=True, sa_type=BigInteger)
    title: str = Field(default="", sa_type=Text)
    stage: str = Field(max_length=16, index=True)
    manager_id: int | None = Field(default=None, index=True)
    amount: float = 0.0
    document_set: str | None = Field(default=None, max_length=32)
    deadlines: str = Field(default="[]", sa_type=Text)
    next_due: datetime | None = Field(default=None, sa_type=UtcDateTime())
    overdue: bool = Field(default=False, index=True)
    updated_at: datetime = Field(sa_type=UtcDateTime())


class DeadlineRow(SQLModel, table=True):
    """One deadline of one deal: open until it is cleared; `missed` once it ran out."""

    __tablename__ = "deal_deadline"

    id: int | None = Field(default=None, primary_key=True)
    deal_id: int = Field(index=True, sa_type=BigInteger)
    name: str = Field(max_length=64)
    stage: str = Field(max_length=16)
    manager_id: int | None = None
    due: datetime = Field(sa_type=UtcDateTime())
    missed: bool = False
    closed_at: datetime | None = Field(default=None, sa_type=UtcDateTime())


async def save_deal(
    engine: AsyncEngine,
    row: DealBoardRow,
    deadlines: list[tuple[str, datetime, bool]],
) -> None:
    """Upsert the deal's row; open, update and close its deadline rows to match `deadlines`."""
    now = datetime.now(UTC)
    async with session(engine) as db:
        current = await db.get(DealBoardRow, row.deal_id)
        row.updated_at = now
        row.deadlines = json.dumps(
            [{"name": n, "due": d.isoformat(), "overdue": o} for n, d, o in deadlines],
            ensure_ascii=False,
        )
        row.next_due = min((d for _, d, _ in deadlines), default=None)
        if current is None:
            db.add(row)
        else:
            for name, value in row.model_dump().items():
                setattr(current, name, value)
        # sqlmodel types exec() only for its own select(); this one is SQLAlchemy's.
        found = await db.exec(  # type: ignore[call-overload]
            select(DeadlineRow).where(
                col(DeadlineRow.deal_id) == row.deal_id,
                col(DeadlineRow.closed_at).is_(None),
            )
        )
        open_rows = {(r.name, r.due): r for r in found.scalars()}
        wanted = {(name, as_utc(due)): missed for name, due, missed in deadlines}
        for key, existing in open_rows.items():
            if key in wanted:
                existing.missed = existing.missed or wanted[key]
            else:
                existing.closed_at = now
        for (name, due), missed in wanted.items():
            if (name, due) not in open_rows:
                db.add(
                    DeadlineRow(
                        deal_id=row.deal_id,
                        name=name,
                        stage=row.stage,
                        manager_id=row.manager_id,
                        due=due,
                        missed=missed,
                    )
                )
        await db.commit()


async def list_deals(
    engine: AsyncEngine, stage: str | None = None, limit: int = 100
) -> list[DealBoardRow]:
    query = select(DealBoardRow).order_by(col(DealBoardRow.updated_at).desc()).limit(limit)
    if stage:
        query = query.where(col(DealBoardRow.stage) == stage)
    async with session(engine) as db:
        # sqlmodel types exec() only for its own select(); this one is SQLAlchemy's.
        found = await db.exec(query)  # type: ignore[call-overload]
        return list(found.scalars())


async def sla(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Deadlines met, missed and open per stage and manager."""
    async with session(engine) as db:
        # sqlmodel types exec() only for its own select(); this one is SQLAlchemy's.
        found = await db.exec(select(DeadlineRow))  # type: ignore[call-overload]
        rows = list(found.scalars())
    report: dict[tuple[str, int | None], dict[str, Any]] = {}
    for r in rows:
        entry = report.setdefault(
            (r.stage, r.manager_id),
            {"stage": r.stage, "manager_id": r.manager_id, "met": 0, "missed": 0, "open": 0},
        )
        bucket = "missed" if r.missed else ("met" if r.closed_at is not None else "open")
        entry[bucket] = int(entry[bucket]) + 1
    return sorted(report.values(), key=lambda e: (str(e["stage"]), e["manager_id"] or 0))
