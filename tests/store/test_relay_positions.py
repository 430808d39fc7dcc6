"""The relay's small tables on SQLite and PostgreSQL: named cursors, signal marks, and inbox rows
keyed by modification (the safety nets' identity)."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from salesflow.store import cursors, inbox, signal_marks
from salesflow.store.signal_marks import DEAL, Mark

T = 1_790_000_000  # a DATE_MODIFY, epoch seconds


async def test_a_cursor_is_set_replaced_and_removed(engine: AsyncEngine) -> None:
    assert await cursors.get(engine, "scan") is None

    await cursors.put(engine, "scan", "2026-11-28T08:00:00+03:00")
    await cursors.put(engine, "scan", "2026-11-28T08:05:00+03:00")
    await cursors.put(engine, "other", "x")

    assert await cursors.get(engine, "scan") == "2026-11-28T08:05:00+03:00"
    await cursors.remove(engine, "scan")
    assert await cursors.get(engine, "scan") is None
    assert await cursors.get(engine, "other") == "x"


async def test_concurrent_cursor_writes_leave_one_row(engine: AsyncEngine) -> None:
    await asyncio.gather(*(cursors.put(engine, "scan", f"v{i}") for i in range(10)))
    assert (await cursors.get(engine, "scan") or "").startswith("v")


async def test_a_signal_mark_keeps_the_latest_read(engine: AsyncEngine) -> None:
    assert await signal_marks.get(engine, DEAL, 7) is None

    await signal_marks.note(engine, DEAL, 7, modified=T, read_at=T + 5.0, row_id=1)
    await signal_marks.note(engine, DEAL, 7, modified=T - 9, read_at=T + 1.0, row_id=2)  # slower

    assert await signal_marks.get(engine, DEAL, 7) == Mark(T, T + 5.0, 1)
    await signal_marks.note(engine, DEAL, 7, modified=T + 60, read_at=T + 61.5, row_id=3)
    assert await signal_marks.get(engine, DEAL, 7) == Mark(T + 60, T + 61.5, 3)


def test_a_mark_covers_a_modification_only_after_its_second_has_passed() -> None:
    read_after = Mark(modified=T, read_at=T + 1.0, row_id=1)
    read_within = Mark(modified=T, read_at=T + 0.7, row_id=1)

    assert signal_marks.covers(read_after, T)
    assert signal_marks.covers(read_after, T - 30)
    assert not signal_marks.covers(read_after, T + 1)  # changed again since
    assert not signal_marks.covers(read_within, T)  # a later change may share the second
    assert signal_marks.covers(read_after, T, reported=T - 5)
    assert not signal_marks.covers(read_after, T, reported=T + 3)  # an event after the read


async def test_change_keys_make_one_row_per_modification(engine: AsyncEngine) -> None:
    async def observe(source: str, modified: int) -> tuple[int, bool]:
        return await inbox.record(
            engine,
            event="ONCRMDEALUPDATE",
            entity_id=42,
            ts=modified,
            payload={"source": source, "ts": modified},
            key=inbox.change_key(DEAL, 42, modified),
        )

    first, new = await observe("offline", T)
    same, same_new = await observe("scan", T)
    later, later_new = await observe("scan", T + 1)

    assert (new, same_new, later_new) == (True, False, True)
    assert same == first and later != first
    row = await inbox.get(engine, first)
    assert row is not None and row.payload_data()["source"] == "offline"
