"""The inbox tests run on a SQLite file in tmp_path and on a throw-away PostgreSQL schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.store.databases import database


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """The same tests on both databases."""
    async with database(request.param, tmp_path) as db_engine:
        yield db_engine
