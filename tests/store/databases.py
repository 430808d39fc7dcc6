"""Throw-away inbox databases: a SQLite file under a folder, a PostgreSQL schema of its own."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from salesflow.store.db import init_db, make_engine

# The PostgreSQL server of these machines (trust auth); override with SALESFLOW_TEST_PG_URL.
PG_URL = os.environ.get(
    "SALESFLOW_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


@contextlib.asynccontextmanager
async def sqlite_database(folder: Path, migrate: bool = True) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite+aiosqlite:///{folder}/nested/inbox.db")
    try:
        if migrate:
            await init_db(engine)
        yield engine
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def postgresql_database(migrate: bool = True) -> AsyncIterator[AsyncEngine]:
    """An engine whose search_path is a schema made for it and dropped afterwards."""
    schema = f"salesflow_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_URL)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OSError as exc:
        await admin.dispose()
        if os.environ.get("CI"):
            raise  # .ci/run starts PostgreSQL; in CI an unreachable server is a failure
        pytest.skip(f"PostgreSQL at {PG_URL} is not reachable: {exc}")
    engine = make_engine(PG_URL, connect_args={"server_settings": {"search_path": schema}})
    try:
        if migrate:
            await init_db(engine)
        yield engine
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


@contextlib.asynccontextmanager
async def database(kind: str, folder: Path, migrate: bool = True) -> AsyncIterator[AsyncEngine]:
    """`sqlite` or `postgresql`, with the schema migrated to the newest revision (or empty)."""
    chosen = sqlite_database(folder, migrate) if kind == "sqlite" else postgresql_database(migrate)
    async with chosen as engine:
        yield engine
