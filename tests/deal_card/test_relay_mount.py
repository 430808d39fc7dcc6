"""The relay's public port serves the deal card's tab (one endpoint, one TLS termination)."""

from __future__ import annotations

from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from salesflow.config.settings import Settings
from salesflow.relay.app import create_app
from tests.store.databases import sqlite_database


async def test_r_x10_relay_serves_the_tab_and_refuses_a_forged_call(
    tmp_path: Path, dev_env: WorkflowEnvironment
) -> None:
    settings = Settings.model_validate({"relay": {"scan_interval_seconds": 0}})
    async with sqlite_database(tmp_path) as engine:
        app = create_app(settings, engine=engine, temporal_client=dev_env.client)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
            forged = await http.post(
                "/bitrix24/deal-card",
                data={"APPLICATION_TOKEN": "forged", "member_id": "x", "AUTH_ID": "y"},
            )
            assert forged.status_code == 403
            assert "Доступ запрещён" in forged.text
        off = Settings.model_validate({"deal_card": {"enabled": False}})
        quiet = create_app(off, engine=engine, temporal_client=dev_env.client)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=quiet), base_url="http://relay"
        ) as http:
            assert (await http.post("/bitrix24/deal-card")).status_code == 404
