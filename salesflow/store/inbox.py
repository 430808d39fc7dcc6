"""The relay's inbox: every accepted Bitrix24 event, durably, before anything else happens.

A row is `pending` until the forwarder has passed it to Temporal (`forwarded`) or decided it
does not concern the pipeline (`ignored`) or can never be delivered (`failed`). A pending row is
taken by one forwarder at a time through a short lease (`claimed_until`), so the immediate
forward after a POST and the retry loop never send the same row twice at once, and a row whose
forwarder died is taken again when its lease runs out.
"""

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Text, bindparam, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Field, SQLModel

from salesflow.store.db import UtcDateTime, dialect_insert

REASON_MAX_CHARS = 2000
DEFAULT_LEASE = timedelta(seconds=30)


class InboxStatus(StrEnum):
    PENDING = "pending"
    FORWARDED = "forwarded"
    IGNORED = "ignored"
    FAILED = "failed"


class InboxEvent(SQLModel, table=True):
    __tablename__ = "inbox_event"

    id: int | None = Field(default=None, primary_key=True)
    dedup_key: str = Field(max_length=64, unique=True)
    event: str = Field(max_length=100)
    entity_id: int = Field(sa_type=BigInteger)
    ts: int = Field(sa_type=BigInteger)
    received_at: datetime = Field(sa_type=UtcDateTime())
    payload: str = Field(sa_type=Text)
    status: str = Field(default=InboxStatus.PENDING.value, max_length=16, index=True)
    reason: str | None = Field(default=None, sa_type=Text)
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_type=UtcDateTime())
    claimed_until: datetime | None = Field(default=None, sa_type=UtcDateTime())
    forwarded_at: datetime | None = Field(default=None, sa_type=UtcDateTime())

    def payload_data(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.payload)
        return data


# sqlmodel does not declare `__table__` on table models (a stub gap); it is there at runtime.
_table = InboxEvent.__table__  # type: ignore[attr-defined]
_c = _table.c


def utcnow() -> datetime:
    return datetime.now(UTC)


def canonical_json(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def dedup_key(event: str, entity_id: int, ts: int, payload: Mapping[str, Any]) -> str:
    """Same event, entity, ts and payload ⇒ same key (a re-delivery of the same POST)."""
    text = f"{event}\n{entity_id}\n{ts}\n{canonical_json(payload)}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def change_key(kind: str, entity_id: int, modified: int) -> str:
    """The key of "object `entity_id` of `kind` as modified at `modified` (epoch seconds)".

    The relay's safety nets (offline queue rows, reconciliation scans) report modifications,
    not deliveries: seeing the same modification again, from either of them, is a duplicate.
    """
    text = f"change\n{kind}\n{entity_id}\n{modified}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _row(mapping: Mapping[Any, Any]) -> InboxEvent:
    return InboxEvent(**dict(mapping))


@dataclass(frozen=True)
class NewEvent:
    """An event to record; `key` (default: `dedup_key` of the delivery) says which are the same."""

    event: str
    entity_id: int
    ts: int
    payload: Mapping[str, Any]
    key: str | None = None


@dataclass(frozen=True)
class Recorded:
    id: int
    is_new: bool
    claimed: InboxEvent | None = None  # the new row, claimed for the caller to forward


async def record(
    engine: AsyncEngine,
    *,
    event: str,
    entity_id: int,
    ts: int,
    payload: Mapping[str, Any],
    key: str | None = None,
) -> tuple[int, bool]:
    """Store an event; return `(row id, is_new)`. A repeat of a stored event returns its row.

    `key` (default: `dedup_key` of the delivery) says which events are the same one, e.g.
    `change_key` for the safety nets. The unique key makes concurrent identical deliveries safe:
    one insert wins, the others find its row. The transaction has committed when this returns.
    """
    [done] = await record_many(engine, [NewEvent(event, entity_id, ts, payload, key)])
    return done.id, done.is_new


async def record_many(
    engine: AsyncEngine,
    events: Sequence[NewEvent],
    *,
    claim: int = 0,
    lease: timedelta = DEFAULT_LEASE,
) -> list[Recorded]:
    """Store events in one transaction (group commit); one `Recorded` per event, in order.

    Repeats, stored before or within `events`, get the first one's row. The first `claim` new
    rows are stored already claimed for `lease` (their first attempt), for the caller to forward
    at once without another write. The transaction has committed when this returns.
    """
    now = utcnow()
    keys = [e.key or dedup_key(e.event, e.entity_id, e.ts, e.payload) for e in events]
    values: dict[str, dict[str, Any]] = {}
    for key, e in zip(keys, events, strict=True):
        if key in values:
            continue
        claimed = len(values) < claim
        values[key] = {
            "dedup_key": key,
            "event": e.event,
            "entity_id": e.entity_id,
            "ts": e.ts,
            "received_at": now,
            "payload": canonical_json(e.payload),
            "status": InboxStatus.PENDING.value,
            "attempts": 1 if claimed else 0,
            "next_attempt_at": now,
            "claimed_until": now + lease if claimed else None,
        }
    async with engine.begin() as conn:
        inserted = await conn.execute(_record_statement(engine), list(values.values()))
        new_ids = {key: int(row_id) for row_id, key in inserted.all()}
        old_keys = [key for key in values if key not in new_ids]
        old_ids: dict[str, int] = {}
        if old_keys:
            found = await conn.execute(
                select(_c.dedup_key, _c.id).where(_c.dedup_key.in_(old_keys))
            )
            old_ids = {key: int(row_id) for key, row_id in found.all()}
    done: list[Recorded] = []
    seen: set[str] = set()
    for key in keys:
        if key in new_ids and key not in seen:
            row = values[key]
            taken = InboxEvent(id=new_ids[key], **row) if row["claimed_until"] else None
            done.append(Recorded(new_ids[key], True, taken))
        else:
            done.append(Recorded(new_ids.get(key) or old_ids[key], False))
        seen.add(key)
    return done


_RECORD_STATEMENTS: dict[str, Any] = {}


def _record_statement(engine: AsyncEngine) -> Any:
    """INSERT … ON CONFLICT DO NOTHING RETURNING, built once per dialect and run with many
    parameter sets, so SQLAlchemy compiles it once instead of once per batch size."""
    name = engine.dialect.name
    if name not in _RECORD_STATEMENTS:
        _RECORD_STATEMENTS[name] = (
            dialect_insert(engine, _table)
            .on_conflict_do_nothing(index_elements=["dedup_key"])
            .returning(_c.id, _c.dedup_key)
        )
    return _RECORD_STATEMENTS[name]


def _claimable(now: datetime) -> list[ColumnElement[bool]]:
    return [
        _c.status == InboxStatus.PENDING.value,
        _c.next_attempt_at <= now,
        or_(_c.claimed_until.is_(None), _c.claimed_until < now),
    ]


async def _claim(
    engine: AsyncEngine, extra: Sequence[ColumnElement[bool]], limit: int, lease: timedelta
) -> list[InboxEvent]:
    now = utcnow()
    conditions = [*_claimable(now), *extra]
    due = (
        select(_c.id)
        .where(*conditions)
        .order_by(_c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)  # PostgreSQL; SQLite has a single writer anyway
    )
    claim = (
        update(_table)
        .where(_c.id.in_(due.scalar_subquery()), *conditions)
        .values(claimed_until=now + lease, attempts=_c.attempts + 1)
        .returning(*_c)
    )
    async with engine.begin() as conn:
        rows = (await conn.execute(claim)).mappings().all()
    return sorted((_row(r) for r in rows), key=lambda r: r.id or 0)


async def claim_pending(
    engine: AsyncEngine, limit: int, *, lease: timedelta = DEFAULT_LEASE
) -> list[InboxEvent]:
    """Take up to `limit` due pending rows (oldest first) for `lease`; counts an attempt each."""
    return await _claim(engine, [], limit, lease)


async def claim(
    engine: AsyncEngine, row_id: int, *, lease: timedelta = DEFAULT_LEASE
) -> InboxEvent | None:
    """Take one row if it is pending, due and not taken by someone else."""
    rows = await _claim(engine, [_c.id == row_id], 1, lease)
    return rows[0] if rows else None


def _reason(reason: str | None) -> str | None:
    return None if reason is None else reason[:REASON_MAX_CHARS]


async def mark(
    engine: AsyncEngine, row_id: int, status: InboxStatus | str, reason: str | None = None
) -> None:
    """Settle a row as forwarded, ignored or failed (or put it back to pending, due now)."""
    status = InboxStatus(status)
    now = utcnow()
    values: dict[str, Any] = {"status": status.value, "reason": _reason(reason)}
    values["claimed_until"] = None
    if status is InboxStatus.FORWARDED:
        values["forwarded_at"] = now
    if status is InboxStatus.PENDING:
        values["next_attempt_at"] = now
    async with engine.begin() as conn:
        await conn.execute(update(_table).where(_c.id == row_id).values(**values))


@dataclass(frozen=True)
class Settlement:
    row_id: int
    status: InboxStatus  # forwarded, ignored or failed
    reason: str | None = None


_SETTLE = (
    update(_table)
    .where(_c.id == bindparam("row_id"))
    .values(
        status=bindparam("new_status"),
        reason=bindparam("new_reason"),
        claimed_until=None,
        forwarded_at=func.coalesce(
            bindparam("new_forwarded_at", type_=UtcDateTime()), _c.forwarded_at
        ),
    )
)


async def settle_all(conn: AsyncConnection, settlements: Sequence[Settlement]) -> None:
    """Settle many rows as `mark` does, in the caller's transaction (one statement, many rows)."""
    if not settlements:
        return
    now = utcnow()
    params = [
        {
            "row_id": s.row_id,
            "new_status": s.status.value,
            "new_reason": _reason(s.reason),
            "new_forwarded_at": now if s.status is InboxStatus.FORWARDED else None,
        }
        for s in settlements
    ]
    await conn.execute(_SETTLE, params)


async def retry_later(engine: AsyncEngine, row_id: int, reason: str, delay: timedelta) -> None:
    """Leave a row pending after a transient failure; it is due again after `delay`."""
    values = {
        "status": InboxStatus.PENDING.value,
        "reason": _reason(reason),
        "claimed_until": None,
        "next_attempt_at": utcnow() + delay,
    }
    async with engine.begin() as conn:
        await conn.execute(update(_table).where(_c.id == row_id).values(**values))


async def release(engine: AsyncEngine, row_ids: Sequence[int]) -> None:
    """Give claimed rows back untried (their attempt is not counted); they are due at once."""
    if not row_ids:
        return
    values = {"claimed_until": None, "attempts": case((_c.attempts > 0, _c.attempts - 1), else_=0)}
    query = update(_table).where(_c.id.in_(list(row_ids)), _c.status == InboxStatus.PENDING.value)
    async with engine.begin() as conn:
        await conn.execute(query.values(**values))


async def requeue_failed(engine: AsyncEngine) -> int:
    """Put every failed row back to pending, due now (after the cause was fixed)."""
    query = (
        update(_table)
        .where(_c.status == InboxStatus.FAILED.value)
        .values(status=InboxStatus.PENDING.value, claimed_until=None, next_attempt_at=utcnow())
    )
    async with engine.begin() as conn:
        result = await conn.execute(query)
    return int(result.rowcount or 0)


async def get(engine: AsyncEngine, row_id: int) -> InboxEvent | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(_table).where(_c.id == row_id))).mappings().first()
    return None if row is None else _row(row)


async def recent(
    engine: AsyncEngine, limit: int = 100, status: InboxStatus | str | None = None
) -> list[InboxEvent]:
    """The newest rows first, optionally of one status."""
    query = select(_table).order_by(_c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(_c.status == InboxStatus(status).value)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [_row(r) for r in rows]


async def counts(engine: AsyncEngine) -> dict[str, int]:
    """Rows per status, every status present (zero when none)."""
    query = select(_c.status, func.count()).group_by(_c.status)
    async with engine.connect() as conn:
        found = {status: int(n) for status, n in (await conn.execute(query)).all()}
    return {status.value: found.get(status.value, 0) for status in InboxStatus}
