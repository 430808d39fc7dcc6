"""The inbox table on SQLite and PostgreSQL: dedup under concurrency, claims, retries, counts."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from salesflow.store import inbox
from salesflow.store.db import init_db, make_engine
from salesflow.store.inbox import InboxStatus

PAYLOAD = {"event": "ONCRMDEALADD", "data": {"FIELDS": {"ID": "42"}}, "ts": "1736405807"}


async def _record(engine: AsyncEngine, entity_id: int = 42, **payload: str) -> tuple[int, bool]:
    return await inbox.record(
        engine,
        event="ONCRMDEALADD",
        entity_id=entity_id,
        ts=1736405807,
        payload={**PAYLOAD, **payload},
    )


async def test_record_recognises_a_redelivery(engine: AsyncEngine) -> None:
    first, new = await _record(engine)
    again, new_again = await _record(engine)
    other, other_new = await _record(engine, event_handler_id="7")

    assert (new, new_again, other_new) == (True, False, True)
    assert again == first and other != first
    row = await inbox.get(engine, first)
    assert row is not None
    assert (row.event, row.entity_id, row.ts) == ("ONCRMDEALADD", 42, 1736405807)
    assert row.status == "pending"
    assert row.payload_data() == PAYLOAD
    assert row.received_at.tzinfo is not None
    assert await inbox.counts(engine) == {"pending": 2, "forwarded": 0, "ignored": 0, "failed": 0}


async def test_concurrent_identical_deliveries_make_one_row(engine: AsyncEngine) -> None:
    results = await asyncio.gather(*(_record(engine) for _ in range(25)))

    assert sum(is_new for _, is_new in results) == 1
    assert len({row_id for row_id, _ in results}) == 1
    assert (await inbox.counts(engine))["pending"] == 1


async def test_concurrent_distinct_deliveries_are_all_kept(engine: AsyncEngine) -> None:
    results = await asyncio.gather(*(_record(engine, entity_id=i) for i in range(1, 21)))

    assert all(is_new for _, is_new in results)
    assert len({row_id for row_id, _ in results}) == 20


async def test_a_claimed_row_is_not_claimed_twice(engine: AsyncEngine) -> None:
    row_id, _ = await _record(engine)

    first = await inbox.claim_pending(engine, 10)
    assert [r.id for r in first] == [row_id] and first[0].attempts == 1
    assert await inbox.claim_pending(engine, 10) == []
    assert await inbox.claim(engine, row_id) is None


async def test_concurrent_claimers_get_disjoint_rows(engine: AsyncEngine) -> None:
    for i in range(1, 13):
        await _record(engine, entity_id=i)

    batches = await asyncio.gather(*(inbox.claim_pending(engine, 3) for _ in range(6)))

    claimed = [row.id for batch in batches for row in batch]
    assert len(claimed) == 12 and len(set(claimed)) == 12


async def test_an_expired_lease_lets_another_forwarder_take_the_row(engine: AsyncEngine) -> None:
    row_id, _ = await _record(engine)
    assert await inbox.claim(engine, row_id, lease=timedelta(0)) is not None
    await asyncio.sleep(0.01)

    again = await inbox.claim(engine, row_id)

    assert again is not None and again.attempts == 2


async def test_retry_later_keeps_the_row_pending_until_due(engine: AsyncEngine) -> None:
    row_id, _ = await _record(engine)
    await inbox.claim(engine, row_id)

    await inbox.retry_later(engine, row_id, "Temporal: UNAVAILABLE", timedelta(seconds=60))
    row = await inbox.get(engine, row_id)
    assert row is not None
    assert (row.status, row.attempts, row.reason) == ("pending", 1, "Temporal: UNAVAILABLE")
    assert await inbox.claim_pending(engine, 10) == []

    await inbox.retry_later(engine, row_id, "again", timedelta(0))
    assert [r.id for r in await inbox.claim_pending(engine, 10)] == [row_id]


async def test_mark_settles_rows_and_counts_follow(engine: AsyncEngine) -> None:
    ids = [(await _record(engine, entity_id=i))[0] for i in range(1, 5)]

    await inbox.mark(engine, ids[0], InboxStatus.FORWARDED)
    await inbox.mark(engine, ids[1], "ignored", "deal 2 is in category 0")
    await inbox.mark(engine, ids[2], InboxStatus.FAILED, "x" * 5000)

    forwarded, ignored, failed = [await inbox.get(engine, i) for i in ids[:3]]
    assert forwarded is not None and forwarded.forwarded_at is not None
    assert ignored is not None and ignored.reason == "deal 2 is in category 0"
    assert failed is not None and len(failed.reason or "") == inbox.REASON_MAX_CHARS
    assert await inbox.counts(engine) == {"pending": 1, "forwarded": 1, "ignored": 1, "failed": 1}
    assert [r.id for r in await inbox.claim_pending(engine, 10)] == [ids[3]]
    assert [r.id for r in await inbox.recent(engine, status="ignored")] == [ids[1]]


async def test_init_db_is_idempotent(engine: AsyncEngine) -> None:
    row_id, _ = await _record(engine)
    await init_db(engine)
    assert await inbox.get(engine, row_id) is not None


async def test_sqlite_file_gets_its_folder_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "salesflow.db"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await init_db(engine)
        async with engine.connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
        assert path.exists() and mode == "wal"
    finally:
        await engine.dispose()


async def test_release_gives_rows_back_untried(engine: AsyncEngine) -> None:
    ids = [(await _record(engine, entity_id=i))[0] for i in (1, 2)]
    claimed = await inbox.claim_pending(engine, 10)
    assert [r.attempts for r in claimed] == [1, 1]

    await inbox.release(engine, ids)

    again = await inbox.claim_pending(engine, 10)
    assert [(r.id, r.attempts) for r in again] == [(ids[0], 1), (ids[1], 1)]


async def test_failed_rows_can_be_requeued(engine: AsyncEngine) -> None:
    row_id, _ = await _record(engine)
    await inbox.claim(engine, row_id)
    await inbox.mark(engine, row_id, InboxStatus.FAILED, "Temporal refused: bad input")

    assert await inbox.requeue_failed(engine) == 1

    again = await inbox.claim(engine, row_id)
    assert again is not None and again.status == "pending" and again.attempts == 2
