"""The relay's memory of each deal's pipeline (issue 16 item 1), on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from salesflow.store import deal_pipelines
from salesflow.store.deal_pipelines import Pipeline
from tests.store.databases import database


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_R16_the_latest_pipeline_wins_and_an_empty_summary_keeps_the_read_one(
    kind: str, tmp_path: Path
) -> None:
    async with database(kind, tmp_path) as engine:
        assert await deal_pipelines.get(engine, 7) is None
        await deal_pipelines.note(engine, Pipeline(7, 2, ""))  # from a move event first
        await deal_pipelines.note(engine, Pipeline(7, 1, "«Заявка» · 1 RUB · «Продажа» №7"))
        await deal_pipelines.note(engine, Pipeline(7, 0, ""))  # moved again
        found = await deal_pipelines.get(engine, 7)
    assert found == Pipeline(7, 0, "«Заявка» · 1 RUB · «Продажа» №7")
