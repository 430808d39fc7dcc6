"""The schema under Alembic (issue 10 item 7): an empty database and one created by the
`create_all` of earlier versions both end at the newest revision with exactly the models'
schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from salesflow.store import inbox
from salesflow.store.db import MIGRATIONS, init_db, metadata
from tests.store.databases import database

TABLES = {
    "app_token",
    "deal_board",
    "deal_deadline",
    "inbox_event",
    "mail_attempt",
    "sent_mail",
    "signal_mark",
    "sync_cursor",
}


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with database(request.param, tmp_path, migrate=False) as engine:
        yield engine


def _head() -> str:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _state(connection: Connection) -> tuple[str | None, list[object], set[str]]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    differences = compare_metadata(context, metadata())
    tables = set(inspect(connection).get_table_names()) - {"alembic_version"}
    return context.get_current_revision(), differences, tables


async def test_an_empty_database_migrates_to_the_models_schema(empty: AsyncEngine) -> None:
    await init_db(empty)
    async with empty.connect() as conn:
        revision, differences, tables = await conn.run_sync(_state)
    assert revision == _head()
    assert differences == []
    assert tables == TABLES
    await init_db(empty)  # again: nothing to do
    async with empty.connect() as conn:
        assert (await conn.run_sync(_state))[0] == _head()


async def test_a_database_of_create_all_is_adopted_with_its_rows(empty: AsyncEngine) -> None:
    metadata()
    async with empty.begin() as conn:  # what init_db did before the migrations
        await conn.run_sync(SQLModel.metadata.create_all)
    row_id, _ = await inbox.record(empty, event="ONCRMDEALUPDATE", entity_id=7, ts=1, payload={})
    await init_db(empty)
    async with empty.connect() as conn:
        revision, differences, tables = await conn.run_sync(_state)
        kept = (await conn.execute(select(inbox._c.entity_id))).scalars().all()
    assert (revision, differences, tables) == (_head(), [], TABLES)
    assert kept == [7]
    assert (await inbox.get(empty, row_id)) is not None


async def test_an_older_database_missing_tables_gets_them(empty: AsyncEngine) -> None:
    metadata()
    async with empty.begin() as conn:
        await conn.run_sync(lambda c: SQLModel.metadata.tables["inbox_event"].create(c))
    await init_db(empty)
    async with empty.connect() as conn:
        revision, differences, tables = await conn.run_sync(_state)
    assert (revision, differences, tables) == (_head(), [], TABLES)


async def test_times_come_back_aware_and_equal_in_any_zone(empty: AsyncEngine) -> None:
    """One UtcDateTime column type: a Moscow time is stored as its UTC instant (SQLite keeps no
    zone, and used to keep the wall clock) and read back timezone-aware."""
    from zoneinfo import ZoneInfo

    await init_db(empty)
    moscow = datetime(2026, 3, 2, 12, 0, tzinfo=ZoneInfo("Europe/Moscow"))
    async with empty.begin() as conn:
        await conn.execute(
            inbox._table.insert().values(
                dedup_key="k",
                event="E",
                entity_id=1,
                ts=1,
                received_at=moscow,
                payload="{}",
                status="pending",
                attempts=0,
                next_attempt_at=moscow,
            )
        )
        due = (
            await conn.execute(
                select(inbox._c.id).where(
                    inbox._c.next_attempt_at <= datetime(2026, 3, 2, 9, 0, 30, tzinfo=UTC)
                )
            )
        ).all()
    [row] = await inbox.recent(empty)
    assert row.received_at == moscow
    assert row.received_at.utcoffset() is not None
    assert len(due) == 1  # 12:00 MSK is 09:00 UTC


def test_the_migrations_are_inside_the_package() -> None:
    import salesflow

    assert MIGRATIONS.is_relative_to(Path(salesflow.__file__).parent)
    assert (MIGRATIONS / "env.py").is_file() and (MIGRATIONS / "script.py.mako").is_file()


async def test_sqlite_file_is_private(tmp_path: Path) -> None:
    """R-11: the SQLite file holds the OAuth tokens (app_token): owner read/write only."""
    async with database("sqlite", tmp_path) as engine:
        await engine.dispose()
        path = Path(str(engine.url.database))
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    assert path.stat().st_mode & 0o777 == 0o600
    for journal in path.parent.glob(path.name + "-*"):
        assert journal.stat().st_mode & 0o077 == 0
