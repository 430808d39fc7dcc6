"""A dependency that hangs or is gone (issue 11, findings 7 and 8): the relay answers 503
within its database timeout instead of holding the POST, and `/healthz` names what is down —
the database, Temporal, the portal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.store.db import init_db, make_engine
from tests.relay.conftest import (
    Emulator,
    relay_settings,
    running_relay,
    unreachable_temporal,
)
from tests.store.databases import PG_URL, database

BASE = 7_500_000
HANGS = {"database_timeout_seconds": 0.5, "health_timeout_seconds": 0.5}
PATIENCE = httpx.Timeout(5.0)  # far above the relay's 0.5 s, far below a hang (60 s before)


class BlackHoleProxy:
    """A TCP proxy to PostgreSQL that can stop passing bytes (a hanging server: connections
    are accepted and never answered) and pass them again (nothing lost)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.server: asyncio.Server | None = None
        self.port = 0
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        for pump in (self._pump(reader, up_writer), self._pump(up_reader, writer)):
            task = asyncio.create_task(pump)
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                await self.flowing.wait()
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        self.flowing.set()
        if self.server is not None:
            self.server.close()
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)


@contextlib.asynccontextmanager
async def postgresql_through(proxy: BlackHoleProxy) -> AsyncIterator[AsyncEngine]:
    """A schema of its own on the test server, reached through `proxy`."""
    schema = f"salesflow_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_URL)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OSError as exc:
        await admin.dispose()
        if os.environ.get("CI"):
            raise  # as tests/store/databases.py: in CI PostgreSQL must be there
        pytest.skip(f"PostgreSQL at {PG_URL} is not reachable: {exc}")
    url = make_url_through(proxy)
    engine = make_engine(url, connect_args={"server_settings": {"search_path": schema}})
    try:
        await init_db(engine)
        yield engine
    finally:
        proxy.flowing.set()
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


def make_url_through(proxy: BlackHoleProxy) -> str:
    return make_url(PG_URL).set(host="127.0.0.1", port=proxy.port).render_as_string(False)


async def test_a_hanging_postgresql_gets_503_in_time_and_healthz_names_it(
    emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    pg = make_url(PG_URL)
    proxy = BlackHoleProxy(pg.host or "127.0.0.1", pg.port or 5432)
    await proxy.start()
    settings = relay_settings(emulator.webhook_url, **HANGS)
    try:
        async with (
            postgresql_through(proxy) as engine,
            running_relay(settings, engine, dev_env.client) as relay,
        ):
            emulator.add_deal(BASE + 1)
            before = await relay.post(emulator.body("ONCRMDEALADD", BASE + 1))
            proxy.flowing.clear()  # PostgreSQL stops answering
            emulator.add_deal(BASE + 2)
            hung = await relay.http.post(
                "/bitrix24/events",
                content=emulator.body("ONCRMDEALADD", BASE + 2),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=PATIENCE,
            )
            health = await relay.http.get("/healthz", timeout=PATIENCE)
            proxy.flowing.set()  # back: the stuck write goes through, new ones too
            after = await relay.post(emulator.body("ONCRMDEALADD", BASE + 2))
    finally:
        await proxy.stop()

    assert before.status_code == 200
    assert hung.status_code == 503 and "did not answer within 0.5 s" in hung.json()["detail"]
    assert health.status_code == 503
    assert health.json()["database"].startswith("error: no answer within 0.5 s")
    assert health.json()["status"] == "degraded"
    assert after.status_code == 200


async def test_a_locked_sqlite_file_gets_503_in_time_and_healthz_names_it(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    settings = relay_settings(emulator.webhook_url, **HANGS)
    async with (
        database("sqlite", tmp_path) as engine,
        running_relay(settings, engine, dev_env.client) as relay,
    ):
        path = engine.url.database
        assert path
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            emulator.add_deal(BASE + 10)
            locked = await relay.http.post(
                "/bitrix24/events",
                content=emulator.body("ONCRMDEALADD", BASE + 10),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=PATIENCE,
            )
            health = await relay.http.get("/healthz", timeout=PATIENCE)
        finally:
            locker.execute("ROLLBACK")
            locker.close()

    assert locked.status_code == 503, locked.text
    assert health.status_code == 503
    assert health.json()["database"].startswith("error: no answer within 0.5 s")


async def test_healthz_names_temporal_and_the_portal_when_they_are_down(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    settings = relay_settings(emulator.webhook_url, **HANGS)
    async with (
        database("sqlite", tmp_path) as engine,
        running_relay(settings, engine, dev_env.client) as relay,
        Bitrix24Client("http://127.0.0.1:1/rest/1/s3cr3t/") as gone,
    ):
        healthy = (await relay.http.get("/healthz")).json()
        forwarder = relay.app.state.forwarder
        forwarder.temporal_client = await unreachable_temporal()
        forwarder.bitrix24_client = gone
        answer = await relay.http.get("/healthz")

    assert (healthy["temporal"], healthy["portal"]) == ("ok", "ok")
    down = answer.json()
    assert answer.status_code == 200  # events are still recorded: the relay is up
    assert down["status"] == "degraded" and down["database"] == "ok"
    assert down["temporal"].startswith("error: ") and down["portal"].startswith("error: ")
    assert "s3cr3t" not in answer.text  # the webhook's secret is never shown


async def test_healthz_probes_are_cached_and_shared(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    """A flood of /healthz costs one probe of each dependency per cache period."""
    settings = relay_settings(emulator.webhook_url, health_cache_seconds=60)
    async with (
        database("sqlite", tmp_path) as engine,
        running_relay(settings, engine, dev_env.client) as relay,
    ):
        answers = await asyncio.gather(*(relay.http.get("/healthz") for _ in range(50)))
        probes = relay.app.state.health_probes
        runs = {name: probe.runs for name, probe in probes.items()}

    assert {a.status_code for a in answers} == {200}
    assert runs == {"database": 1, "temporal": 1, "portal": 1}
