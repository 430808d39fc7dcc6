"""What the last signal to an object's workflow was based on: the object's modification time
(Bitrix24 DATE_MODIFY, whole seconds) that the forwarder read just before signalling, and the
portal's time of that read.

A signal makes the workflow re-read the object, so a later safety-net observation (an offline
queue row, a reconciliation scan) of the same modification needs no second signal — provided
the read that preceded the signal happened after that modification's whole second had passed:
two changes within one second share a DATE_MODIFY, and the second one may have come after the
read. `covers` says exactly that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Float, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import Field, SQLModel

from salesflow.store.db import UtcDateTime, dialect_insert

DEAL = "deal"
TASK = "task"


class SignalMark(SQLModel, table=True):
    __tablename__ = "signal_mark"

    kind: str = Field(primary_key=True, max_length=20)
    entity_id: int = Field(primary_key=True, sa_type=BigInteger)
    modified: int = Field(sa_type=BigInteger)  # the object's DATE_MODIFY seen, epoch seconds
    read_at: float = Field(sa_type=Float)  # the portal's time of that read, epoch seconds
    row_id: int | None = Field(default=None, sa_type=BigInteger)  # the inbox row signalled
    signalled_at: datetime = Field(sa_type=UtcDateTime())


@dataclass(frozen=True)
class Mark:
    modified: int
    read_at: float
    row_id: int | None


# sqlmodel does not declare `__table__` on table models (a stub gap); it is there at runtime.
_table = SignalMark.__table__  # type: ignore[attr-defined]
_c = _table.c


def covers(mark: Mark, modified: int, reported: int | None = None) -> bool:
    """Whether a signal based on `mark` already reflects the object as modified at `modified`
    (its DATE_MODIFY now) and, if given, an event about it at `reported` (a change that may
    not show in DATE_MODIFY): the read came after both seconds had ended."""
    latest = modified if reported is None else max(modified, reported)
    return mark.modified >= modified and mark.read_at >= latest + 1


async def get(engine: AsyncEngine, kind: str, entity_id: int) -> Mark | None:
    query = select(_c.modified, _c.read_at, _c.row_id).where(
        _c.kind == kind, _c.entity_id == entity_id
    )
    async with engine.connect() as conn:
        found = (await conn.execute(query)).first()
    if found is None:
        return None
    return Mark(int(found.modified), float(found.read_at), found.row_id)


@dataclass(frozen=True)
class NewMark:
    kind: str
    entity_id: int
    modified: int
    read_at: float
    row_id: int | None


async def note(
    engine: AsyncEngine,
    kind: str,
    entity_id: int,
    *,
    modified: int,
    read_at: float,
    row_id: int | None,
) -> None:
    """Remember a signal; an older read (a slower concurrent forward) never replaces a newer."""
    async with engine.begin() as conn:
        await note_all(conn, [NewMark(kind, entity_id, modified, read_at, row_id)])


_UPSERTS: dict[str, Any] = {}


def _upsert_statement(engine: AsyncEngine) -> Any:
    """The marks' upsert, built once per dialect (an older read never replaces a newer)."""
    name = engine.dialect.name
    if name not in _UPSERTS:
        insert = dialect_insert(engine, _table)
        _UPSERTS[name] = insert.on_conflict_do_update(
            index_elements=["kind", "entity_id"],
            set_={
                column: insert.excluded[column]
                for column in ("modified", "read_at", "row_id", "signalled_at")
            },
            where=_c.read_at <= insert.excluded.read_at,
        )
    return _UPSERTS[name]


async def note_all(conn: AsyncConnection, marks: Sequence[NewMark]) -> None:
    """`note` for many signals, in the caller's transaction."""
    if not marks:
        return
    upsert = _upsert_statement(conn.engine)
    now = datetime.now(UTC)
    await conn.execute(
        upsert,
        [
            {
                "kind": m.kind,
                "entity_id": m.entity_id,
                "modified": m.modified,
                "read_at": m.read_at,
                "row_id": m.row_id,
                "signalled_at": now,
            }
            for m in marks
        ],
    )
