"""The database engine: SQLite (a local file, WAL) or PostgreSQL, both through async drivers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

SQLITE_BUSY_TIMEOUT_MS = 10_000


def make_engine(url: str, **engine_options: Any) -> AsyncEngine:
    """An async engine for `sqlite+aiosqlite:///path` or `postgresql+asyncpg://user@host/db`.

    For a SQLite file the parent folder is created and every connection turns on WAL and a busy
    timeout, so the relay's writers queue instead of failing with "database is locked".
    Extra keyword arguments go to `create_async_engine` (e.g. `connect_args`).
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, **engine_options)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    if backend == "postgresql":
        engine_options.setdefault("pool_pre_ping", True)
        return create_async_engine(url, **engine_options)
    raise ValueError(f"unsupported database URL {parsed.render_as_string(hide_password=True)}")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


async def init_db(engine: AsyncEngine) -> None:
    """Create the tables that do not exist yet (idempotent)."""
    import salesflow.store.app_tokens
    import salesflow.store.board
    import salesflow.store.cursors
    import salesflow.store.inbox
    import salesflow.store.outbox
    import salesflow.store.signal_marks  # noqa: F401  (importing registers the tables in the metadata)

    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)


@asynccontextmanager
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session whose objects stay readable after commit; the caller commits."""
    async with AsyncSession(engine, expire_on_commit=False) as db_session:
        yield db_session


def dialect_insert(engine: AsyncEngine, table: Any) -> Any:
    """INSERT for `table` in the engine's dialect (both have ON CONFLICT … DO NOTHING/UPDATE)."""
    name = engine.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise ValueError(f"unsupported database dialect {name}")


async def ping(engine: AsyncEngine) -> None:
    """Raise if the database cannot answer a trivial query."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
