"""The deal board (read model) on SQLite and on the real PostgreSQL: rows and the SLA report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from salesflow.store.board import DealBoardRow, list_deals, save_deal, sla
from tests.store.databases import postgresql_database, sqlite_database

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _row(deal_id: int, stage: str, manager: int = 3) -> DealBoardRow:
    return DealBoardRow(
        deal_id=deal_id,
        title=f"Сделка {deal_id}",
        stage=stage,
        manager_id=manager,
        amount=1000.0,
        updated_at=T0,
    )


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_board_rows_and_sla_per_stage_and_manager(database, tmp_path) -> None:
    opened = sqlite_database(tmp_path) if database == "sqlite" else postgresql_database()
    async with opened as engine:
        await save_deal(engine, _row(1, "NEW"), [("take_into_work", T0, False)])
        await save_deal(
            engine, _row(1, "IN_WORK"), [("kp_agreement", T0 + timedelta(days=2), False)]
        )
        await save_deal(engine, _row(2, "NEW", 4), [("take_into_work", T0, True)])
        await save_deal(engine, _row(2, "IN_WORK", 4), [])
        await save_deal(engine, _row(3, "NEW", 4), [("take_into_work", T0, False)])
        rows = await list_deals(engine)
        report = await sla(engine)
        at_new = await list_deals(engine, stage="NEW")
    assert sorted(r.deal_id for r in rows) == [1, 2, 3]
    assert [r.deal_id for r in at_new] == [3]
    by_key = {(e["stage"], e["manager_id"]): e for e in report}
    assert by_key[("NEW", 3)] == {"stage": "NEW", "manager_id": 3, "met": 1, "missed": 0, "open": 0}
    assert by_key[("NEW", 4)]["missed"] == 1 and by_key[("NEW", 4)]["open"] == 1
    assert by_key[("IN_WORK", 3)]["open"] == 1
