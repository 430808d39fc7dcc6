"""Database calls are bounded (issue 11): a PostgreSQL that accepts and never answers, a slow
statement, a locked SQLite — each is an error after the configured time, not a hang; start-up
failures are one line naming the setting."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from salesflow.config.settings import DatabaseSettings, StartupError
from salesflow.store.db import DatabaseUnavailable, database_engine, init_db, make_engine
from tests.store.databases import PG_URL, database

# Without the timeouts asyncpg waits 60 s for a connection and forever for an answer; the
# guard is far below that and far above the configured half second.
GUARD_SECONDS = 15


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts every connection, reads, and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(1024):
            pass

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_r_11_a_hanging_postgresql_is_an_error_within_the_connect_timeout(
    silent_server: int,
) -> None:
    settings = DatabaseSettings(
        url=f"postgresql+asyncpg://salesflow:pw@127.0.0.1:{silent_server}/salesflow",
        connect_timeout_seconds=0.5,
        statement_timeout_seconds=0.5,
    )
    engine = database_engine(settings)
    try:
        with pytest.raises(DatabaseUnavailable) as err:
            await asyncio.wait_for(init_db(engine), GUARD_SECONDS)
    finally:
        await engine.dispose()
    message = str(err.value)
    assert message.startswith("database.url (DATABASE_URL): PostgreSQL at 127.0.0.1:")
    assert "did not answer in time" in message and "pw" not in message
    assert "\n" not in message


async def test_r_11_a_slow_statement_is_cancelled_by_statement_timeout(tmp_path: Path) -> None:
    async with database("postgresql", tmp_path, migrate=False):
        pass  # skips when the machine's PostgreSQL is not there
    engine = make_engine(PG_URL, statement_timeout=0.3)
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError, match="statement timeout"):
                await asyncio.wait_for(conn.execute(text("SELECT pg_sleep(5)")), GUARD_SECONDS)
    finally:
        await engine.dispose()


class FreezingProxy:
    """A TCP proxy to the machine's PostgreSQL that stops passing bytes on `freeze()` — a
    server that hangs mid-session (stopped, or its network black-holed)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.frozen = asyncio.Event()
        self.writers: list[asyncio.StreamWriter] = []

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if self.frozen.is_set():
                await asyncio.Event().wait()  # swallow it, answer nothing, ever
            writer.write(data)
            await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_writer]
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        for writer in self.writers:
            writer.close()
        self.server.close()


async def test_r_11_postgresql_hanging_mid_session_is_an_error_after_the_statement_timeout(
    tmp_path: Path,
) -> None:
    """The finding: a hanging PostgreSQL held every POST for 60 s. A pooled connection to a
    server that stops answering is given up after statement_timeout + 1 s."""
    async with database("postgresql", tmp_path, migrate=False):
        pass  # skips when the machine's PostgreSQL is not there
    from sqlalchemy.engine import make_url

    target = make_url(PG_URL)
    proxy = FreezingProxy(target.host or "127.0.0.1", target.port or 5432)
    async with proxy as port:
        engine = make_engine(
            target.set(host="127.0.0.1", port=port).render_as_string(hide_password=False),
            connect_timeout=0.5,
            statement_timeout=0.5,
        )
        try:
            async with engine.connect() as conn:
                assert (await conn.execute(text("SELECT 1"))).scalar() == 1  # pooled now
            proxy.frozen.set()
            with pytest.raises(DatabaseUnavailable, match="did not answer in time"):
                await asyncio.wait_for(init_db(engine), GUARD_SECONDS)
        finally:
            await engine.dispose()


async def test_sqlite_busy_timeout_is_configured(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/x.db"
    engine = database_engine(DatabaseSettings(url=url, sqlite_busy_timeout_seconds=2.5))
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 2500
    finally:
        await engine.dispose()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_r_11_postgresql_down_at_start_is_one_line_naming_the_setting() -> None:
    engine = make_engine(f"postgresql+asyncpg://u:secret@127.0.0.1:{_closed_port()}/salesflow")
    try:
        with pytest.raises(StartupError) as err:
            await init_db(engine)
    finally:
        await engine.dispose()
    message = str(err.value)
    assert message.startswith("database.url (DATABASE_URL): PostgreSQL at 127.0.0.1:")
    assert "start it or fix the URL" in message and "secret" not in message
    assert "\n" not in message


@pytest.mark.parametrize("where", ["file", "directory"])
async def test_r_11_unusable_sqlite_path_is_one_line_naming_the_setting(
    tmp_path: Path, where: str
) -> None:
    if where == "file":  # a folder that is a file
        (tmp_path / "plain").write_text("", encoding="utf-8")
        url = f"sqlite+aiosqlite:///{tmp_path}/plain/salesflow.db"
    else:  # the database file is a folder (root may write anywhere, so no read-only folder)
        (tmp_path / "salesflow.db").mkdir()
        url = f"sqlite+aiosqlite:///{tmp_path}/salesflow.db"
    with pytest.raises(DatabaseUnavailable) as err:
        engine = make_engine(url)
        try:
            await init_db(engine)
        finally:
            await engine.dispose()
    message = str(err.value)
    assert message.startswith("database.url (DATABASE_URL): cannot create the SQLite file ")
    assert "point database.url at a writable place" in message and "\n" not in message
