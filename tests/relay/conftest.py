"""The relay between the Bitrix24 emulator and the shared Temporal dev server, over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from emulators.asgi_server import BackgroundServer, serve
from emulators.bitrix24 import deals as emulator_deals
from emulators.bitrix24 import tasks as emulator_tasks
from emulators.bitrix24.app import create_app as create_emulator
from emulators.bitrix24.events import Origin, event_body
from emulators.bitrix24.registry import CallContext, PendingEvent
from emulators.bitrix24.state import Portal
from salesflow.config.settings import Bitrix24Settings, RelaySettings, Settings
from salesflow.relay.app import EVENTS_PATH, create_app
from salesflow.relay.forwarder import ForwarderOptions
from salesflow.relay.server import uvicorn_config
from salesflow.store import inbox
from salesflow.store.inbox import InboxEvent
from salesflow.workflows.names import SIGNAL_BITRIX24_EVENT, deal_workflow_id
from tests.store.databases import database

TOKEN = "relay-test-token"
SECRET = "relaysecret"
SALES_CATEGORY = 1
FAST = ForwarderOptions(
    poll_interval=0.1, backoff_base=0.1, backoff_cap=0.5, rpc_timeout=timedelta(seconds=5)
)


@dataclass
class Emulator:
    server: BackgroundServer
    portal: Portal

    @property
    def webhook_url(self) -> str:
        return f"{self.server.url}/rest/1/{SECRET}/"

    def add_deal(self, deal_id: int, category_id: int = SALES_CATEGORY) -> None:
        """A deal put straight into the portal (no outbound event)."""
        ctx = CallContext(self.portal, 1)
        emulator_deals.create_deal(ctx, {"CATEGORY_ID": category_id}, deal_id)

    def add_task(self, task_id: int, bindings: list[str]) -> None:
        ctx = CallContext(self.portal, 1)
        fields = {"TITLE": f"task {task_id}", "RESPONSIBLE_ID": 3, "UF_CRM_TASK": bindings}
        emulator_tasks.create_task(ctx, fields, task_id)

    def body(self, event: str, entity_id: int, ts: int | None = None, token: str = TOKEN) -> bytes:
        """The POST body the portal sends for `event`, with `token` as application token."""
        section = "FIELDS_AFTER" if event.startswith("ONTASK") else "FIELDS"
        pending = PendingEvent(event, {section: {"ID": entity_id}}, entity_id)
        saved, self.portal.application_token = self.portal.application_token, token
        try:
            text = event_body(self.portal, pending, Origin("127.0.0.1"), ts or int(time.time()))
        finally:
            self.portal.application_token = saved
        return text.encode()


@dataclass
class Relay:
    server: BackgroundServer
    app: FastAPI
    engine: AsyncEngine
    http: httpx.AsyncClient

    async def post(self, body: bytes) -> httpx.Response:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return await self.http.post(EVENTS_PATH, content=body, headers=headers)

    async def row(self, row_id: int) -> InboxEvent:
        found = await inbox.get(self.engine, row_id)
        assert found is not None
        return found

    async def settled(self, row_id: int, timeout: float = 10.0) -> InboxEvent:
        """The row once it is no longer pending."""
        await until(lambda: _not_pending(self, row_id), timeout)
        return await self.row(row_id)


async def _not_pending(relay: Relay, row_id: int) -> bool:
    return (await relay.row(row_id)).status != "pending"


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.05)


def relay_settings(webhook_url: str, **relay: Any) -> Settings:
    """The relay of these tests; the offline drain and the deal scan run only when `relay`
    asks for them (`offline_interval_seconds`, `scan_interval_seconds`)."""
    quiet = {
        "offline_interval_seconds": 0,
        "scan_interval_seconds": 0,
        "health_cache_seconds": 0,
        "refusal_delay_seconds": 0,
    }
    return Settings(
        bitrix24=Bitrix24Settings(
            webhook_url=webhook_url, application_token=TOKEN, rate_per_second=200, burst=400
        ),
        relay=RelaySettings(**{**quiet, **relay}),
    )


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    app = create_emulator(secret=SECRET, application_token=TOKEN, rate_per_second=None)
    async with serve(app) as server:
        yield Emulator(server, app.state.portal)


class RelayServer(BackgroundServer):
    """The relay's app served as `salesflow relay` serves it (`relay.server.uvicorn_config`)."""

    def __init__(self, app: Any, relay: RelaySettings, port: int = 0) -> None:
        super().__init__(app, port=port)
        config = uvicorn_config(app, relay, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)


@contextlib.asynccontextmanager
async def serve_relay(app: Any, relay: RelaySettings, port: int = 0) -> AsyncIterator[RelayServer]:
    server = RelayServer(app, relay, port)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def running_relay(
    settings: Settings, engine: AsyncEngine, temporal_client: Client, port: int = 0
) -> AsyncIterator[Relay]:
    app = create_app(
        settings, engine=engine, temporal_client=temporal_client, forwarder_options=FAST
    )
    async with (
        serve_relay(app, settings.relay, port=port) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        yield Relay(server, app, engine, http)


@pytest.fixture
async def relay(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> AsyncIterator[Relay]:
    async with (
        database("sqlite", tmp_path) as engine,
        running_relay(relay_settings(emulator.webhook_url), engine, dev_env.client) as running,
    ):
        yield running


async def unreachable_temporal() -> Client:
    """A client of a Temporal server that is not there: every call fails to connect."""
    return await Client.connect("127.0.0.1:1", lazy=True, data_converter=pydantic_data_converter)


async def workflow_exists(client: Client, deal_id: int) -> bool:
    try:
        await client.get_workflow_handle(deal_workflow_id(deal_id)).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def deal_signals(client: Client, deal_id: int) -> list[dict[str, Any]]:
    """The `bitrix24_event` signals in the deal workflow's history, decoded."""
    handle = client.get_workflow_handle(deal_workflow_id(deal_id))
    found = []
    async for event in handle.fetch_history_events():
        if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            continue
        attrs = event.workflow_execution_signaled_event_attributes
        if attrs.signal_name == SIGNAL_BITRIX24_EVENT:
            found.append(json.loads(attrs.input.payloads[0].data))
    return found
