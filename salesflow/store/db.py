"""The database engine: SQLite (a local file, WAL) or PostgreSQL, both through async drivers,
with bounded waits; the schema kept by Alembic migrations (`salesflow/store/migrations/`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, DateTime, MetaData, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from salesflow.config.settings import DatabaseSettings, StartupError

DEFAULTS = DatabaseSettings()
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_SETTING = "database.url (DATABASE_URL)"


class DatabaseUnavailable(StartupError):
    """The database of `database.url` cannot be reached or opened; the message says how to fix."""


class UtcDateTime(TypeDecorator[datetime]):
    """A point in time, stored in UTC and always read back timezone-aware.

    SQLite keeps no zone (it would store an aware time's wall clock as written): values are
    converted to UTC on the way in and marked UTC on the way out; naive values are taken as UTC.
    """

    impl = DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


def as_utc(value: datetime) -> datetime:
    """The same moment in UTC; a naive value is taken as UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def database_engine(settings: DatabaseSettings, **engine_options: Any) -> AsyncEngine:
    """`make_engine` with the configured URL and timeouts."""
    return make_engine(
        settings.url,
        connect_timeout=settings.connect_timeout_seconds,
        statement_timeout=settings.statement_timeout_seconds,
        busy_timeout=settings.sqlite_busy_timeout_seconds,
        **engine_options,
    )


def make_engine(
    url: str,
    *,
    connect_timeout: float = DEFAULTS.connect_timeout_seconds,
    statement_timeout: float = DEFAULTS.statement_timeout_seconds,
    busy_timeout: float = DEFAULTS.sqlite_busy_timeout_seconds,
    **engine_options: Any,
) -> AsyncEngine:
    """An async engine for `sqlite+aiosqlite:///path` or `postgresql+asyncpg://user@host/db`.

    No call waits unbounded: PostgreSQL gets a connect timeout, a server-side statement_timeout
    and a client-side wait for any answer (a server that accepts and never answers); SQLite a
    busy timeout. For a SQLite file the parent folder is created and the file is made readable
    by its owner only (it holds OAuth tokens); every connection turns on WAL, so the relay's
    writers queue instead of failing with "database is locked".
    Extra keyword arguments go to `create_async_engine` (e.g. `connect_args`).
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            _private_file(Path(database).expanduser())
        engine = create_async_engine(url, **engine_options)
        busy_ms = int(busy_timeout * 1000)
        event.listen(
            engine.sync_engine, "connect", lambda conn, _record: _sqlite_pragmas(conn, busy_ms)
        )
        return engine
    if backend == "postgresql":
        connect_args = dict(engine_options.pop("connect_args", {}))
        server_settings = {
            "statement_timeout": str(int(statement_timeout * 1000)),
            **connect_args.get("server_settings", {}),
        }
        connect_args["server_settings"] = server_settings
        connect_args.setdefault("timeout", connect_timeout)
        # the server's statement_timeout ends a slow statement; this ends a wait for a server
        # that does not answer at all
        connect_args.setdefault("command_timeout", statement_timeout + 1)
        engine_options.setdefault("pool_pre_ping", True)
        engine_options.setdefault("pool_timeout", connect_timeout)
        return create_async_engine(url, connect_args=connect_args, **engine_options)
    raise ValueError(f"unsupported database URL {parsed.render_as_string(hide_password=True)}")


def _private_file(path: Path) -> None:
    """Create the SQLite file (and its folder) for the owner only; tighten an existing one."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.exists():
            if not path.is_file():
                raise IsADirectoryError(21, "not a file")
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
            return
        with contextlib.suppress(FileExistsError):  # another process was first, same mode
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise DatabaseUnavailable(
            f"{_SETTING}: cannot create the SQLite file {path} ({exc.strerror or exc}):"
            " point database.url at a writable place"
        ) from None


def _sqlite_pragmas(dbapi_connection: Any, busy_timeout_ms: int) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def metadata() -> MetaData:
    """The metadata of every table (importing the modules registers them)."""
    import salesflow.store.app_tokens
    import salesflow.store.board
    import salesflow.store.cursors
    import salesflow.store.deal_pipelines
    import salesflow.store.inbox
    import salesflow.store.outbox
    import salesflow.store.portal_bucket
    import salesflow.store.signal_marks  # noqa: F401

    return SQLModel.metadata


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection, revision: str = "head") -> None:
    from alembic import command

    # worker and relay starting together migrate one after the other
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(7243061)"))
    elif connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, DDL included
    command.upgrade(_alembic_config(connection), revision)


# Alembic's migration context is process-global: one migration at a time per event loop.
_MIGRATING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _migration_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _MIGRATING.get(loop)
    if lock is None:
        lock = _MIGRATING[loop] = asyncio.Lock()
    return lock


def current_revision(connection: Connection) -> str | None:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


async def init_db(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to the newest migration (idempotent); a database created before the
    migrations is adopted. Raise DatabaseUnavailable when the database cannot be reached."""
    await reachable(engine)
    async with _migration_lock(), engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)


async def reachable(engine: AsyncEngine) -> None:
    """`ping`, with a failure to connect turned into one line naming the setting and the fix."""
    try:
        await ping(engine)
    except (OSError, TimeoutError, DBAPIError, sqlite3.Error) as exc:
        raise DatabaseUnavailable(unavailable(engine, exc)) from None


def unavailable(engine: AsyncEngine, error: BaseException) -> str:
    """One line: which database did not answer, why, and what to do."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        reason = _reason(error)
        return (
            f"{_SETTING}: cannot open the SQLite file {url.database} ({reason}):"
            " point database.url at a writable place"
        )
    where = f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"
    if isinstance(error, TimeoutError) or "timeout" in type(error).__name__.lower():
        return (
            f"{_SETTING}: {where} did not answer in time (database.connect_timeout_seconds,"
            " database.statement_timeout_seconds): check that the server is up and reachable"
        )
    return f"{_SETTING}: {where} is not usable ({_reason(error)}): start it or fix the URL"


def _reason(error: BaseException) -> str:
    if isinstance(error, DBAPIError) and error.orig:
        error = error.orig
    text_ = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text_[:200]


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
