"""The schema under Alembic (issue 10 item 7): an empty database and one created by the
`create_all` of earlier versions both end at the newest revision with exactly the models'
schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
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
from salesflow.store.db import MIGRATIONS, init_db, make_engine, metadata
from tests.store.databases import database

TABLES = {
    "app_token",
    "deal_pipeline",
    "deal_board",
    "deal_deadline",
    "inbox_event",
    "mail_attempt",
    "portal_bucket",
    "portal_bucket_lease",
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


async def test_concurrent_starts_in_one_process_migrate_once(empty: AsyncEngine) -> None:
    """Worker and relay in one process (the local stack) or tests: Alembic's context is global."""
    others = [make_engine(empty.url.render_as_string(hide_password=False)) for _ in range(2)]
    if empty.dialect.name == "postgresql":  # the throw-away schema is the engine's search_path
        for other in others:
            await other.dispose()
        others = [empty, empty]
    try:
        await asyncio.gather(init_db(empty), *(init_db(other) for other in others))
    finally:
        for other in others:
            if other is not empty:
                await other.dispose()
    async with empty.connect() as conn:
        assert (await conn.run_sync(_state))[:2] == (_head(), [])


_CHILD = """
import asyncio, sys
from salesflow.store.db import init_db, make_engine
async def main():
    engine = make_engine(sys.argv[1])
    try:
        await init_db(engine)
    finally:
        await engine.dispose()
asyncio.run(main())
"""


def test_processes_starting_together_on_one_sqlite_file_all_start(tmp_path: Path) -> None:
    """The fault batch starts worker and relay on one SQLite file: the migration takes SQLite's
    write lock, so the second waits (busy timeout) and finds the schema done."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    for round_ in range(2):
        url = f"sqlite+aiosqlite:///{tmp_path}/{round_}/salesflow.db"
        children = [
            subprocess.Popen(
                [sys.executable, "-c", _CHILD, url], env=env, stderr=subprocess.PIPE, text=True
            )
            for _ in range(4)
        ]
        failures = [err for child in children if (err := child.communicate(timeout=60)[1])]
        assert [c.returncode for c in children] == [0] * 4, failures[0][-500:]
