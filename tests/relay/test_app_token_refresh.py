"""The offline drain outlives the application's hourly token: refreshed on expiry, the new pair
kept in the database for the next start, a refused refresh named without stopping the relay.

Real parts: the Bitrix24 emulator (its OAuth server at /oauth/token/) over HTTP, SQLite and
PostgreSQL, the shared Temporal dev server without a worker.

Deal IDs of this module: 7_400_000 … 7_400_999.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from emulators.bitrix24.oauth import OAUTH_PATH
from emulators.bitrix24.seed import (
    LOCAL_APP_ACCESS_TOKEN,
    LOCAL_APP_CLIENT_ID,
    LOCAL_APP_CLIENT_SECRET,
    LOCAL_APP_REFRESH_TOKEN,
)
from salesflow.config.settings import Settings
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.integrations.bitrix24.oauth import RefreshingCaller
from salesflow.relay.app_token import application_tokens
from salesflow.store import app_tokens, inbox
from tests.relay.conftest import (
    SALES_CATEGORY,
    Emulator,
    Relay,
    relay_settings,
    running_relay,
    until,
)
from tests.store.databases import database

BASE = 7_400_000
IDLE = 3600.0  # the start-up run, then `run_once` by hand


def app_settings(emulator: Emulator) -> Settings:
    settings = relay_settings(emulator.webhook_url, offline_interval_seconds=IDLE)
    bitrix24 = settings.bitrix24.model_copy(
        update={
            "app_access_token": LOCAL_APP_ACCESS_TOKEN,
            "app_client_id": LOCAL_APP_CLIENT_ID,
            "app_client_secret": LOCAL_APP_CLIENT_SECRET,
            "app_refresh_token": LOCAL_APP_REFRESH_TOKEN,
            "oauth_url": emulator.server.url + OAUTH_PATH,
        }
    )
    return settings.model_copy(update={"bitrix24": bitrix24})


async def admin_token(emulator: Emulator, **state: object) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{emulator.server.url}/_emulator/token", json=state)
        response.raise_for_status()


async def add_deals(emulator: Emulator, first: int, count: int) -> None:
    """Deals made in the portal: each queues ONCRMDEALADD in the offline queue."""
    emulator.portal.bump_id("deal", first - 1)
    async with Bitrix24Client(emulator.webhook_url, rate_per_second=200, burst=400) as b24:
        for index in range(count):
            fields = {"CATEGORY_ID": SALES_CATEGORY, "TITLE": f"token refresh {index}"}
            assert int(await b24.call("crm.deal.add", {"fields": fields})) == first + index


async def started(relay: Relay) -> None:
    async def ran() -> bool:
        return relay.app.state.offline.runs >= 1

    await until(ran)


async def rows_of(relay: Relay, first: int, count: int) -> set[int]:
    rows = await inbox.recent(relay.engine, limit=10_000)
    wanted = set(range(first, first + count))
    return {row.entity_id for row in rows if row.entity_id in wanted}


def refreshes(emulator: Emulator) -> list[str]:
    return [entry["outcome"] for entry in emulator.portal.oauth_log]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_the_drain_refreshes_across_expiries_and_a_restart_keeps_the_new_pair(
    kind: str, tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    first = BASE + (0 if kind == "sqlite" else 500)
    settings = app_settings(emulator)
    portal_app = emulator.portal.apps[LOCAL_APP_CLIENT_ID]
    async with database(kind, tmp_path) as engine:
        async with running_relay(settings, engine, dev_env.client) as relay:
            await started(relay)
            assert relay.app.state.offline.last_error is None and refreshes(emulator) == []
            assert isinstance(relay.app.state.drainer._caller, RefreshingCaller)

            await admin_token(emulator, expired=True)
            await add_deals(emulator, first + 1, 3)
            drained = await relay.app.state.offline.run_once()
            assert drained is not None and drained.recorded == 3
            assert await rows_of(relay, first + 1, 3) == {first + 1, first + 2, first + 3}
            assert refreshes(emulator) == ["refreshed"]
            once = await app_tokens.get(engine, LOCAL_APP_CLIENT_ID)
            assert once is not None and once.access_token == portal_app.access_token
            assert once.refresh_token == portal_app.refresh_token != LOCAL_APP_REFRESH_TOKEN

            await admin_token(emulator, expired=True)  # the next hour: the rotated token
            await add_deals(emulator, first + 4, 1)
            assert (await relay.app.state.offline.run_once()).recorded == 1
            assert refreshes(emulator) == ["refreshed", "refreshed"]

        # A restart with the same (now spent) configuration: the stored pair is used.
        stored = await app_tokens.get(engine, LOCAL_APP_CLIENT_ID)
        assert stored is not None and stored.access_token == portal_app.access_token
        async with running_relay(settings, engine, dev_env.client) as relay:
            await started(relay)
            await add_deals(emulator, first + 5, 2)
            drained = await relay.app.state.offline.run_once()
            assert drained is not None and drained.recorded == 2
            assert refreshes(emulator) == ["refreshed", "refreshed"]  # no refresh needed

            await admin_token(emulator, expired=True)
            await add_deals(emulator, first + 7, 1)
            assert (await relay.app.state.offline.run_once()).recorded == 1
            assert refreshes(emulator) == ["refreshed"] * 3  # the stored refresh token worked
        assert relay.app.state.drainer.tokens.refreshes == 1

    # The configured pair is spent: without the stored one the relay could not go on.
    spent = application_tokens(settings, engine)
    assert spent.pair.refresh_token == LOCAL_APP_REFRESH_TOKEN != portal_app.refresh_token
    assert emulator.portal.app_by_token(spent.access_token) is None


async def test_a_refused_refresh_is_named_and_the_webhook_path_goes_on(
    tmp_path: Path,
    emulator: Emulator,
    dev_env: WorkflowEnvironment,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = BASE + 900
    async with (
        database("sqlite", tmp_path) as engine,
        running_relay(app_settings(emulator), engine, dev_env.client) as relay,
    ):
        await started(relay)
        await admin_token(emulator, expired=True, revoke_refresh=True)
        await add_deals(emulator, first + 1, 1)
        with caplog.at_level(logging.ERROR, logger="salesflow.relay"):
            assert await relay.app.state.offline.run_once() is None
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert any("invalid_grant" in m and "re-authorize" in m for m in errors), errors
        offline = relay.app.state.offline
        assert "AppTokenRefused" in offline.last_error
        assert "bitrix24.app_refresh_token" in offline.last_error
        stored = await app_tokens.get(engine, LOCAL_APP_CLIENT_ID)
        assert stored is not None and "invalid_grant" in (stored.last_error or "")
        assert await relay.app.state.offline.run_once() is None  # still refused, asked once
        assert refreshes(emulator) == ["invalid_grant"]

        response = await relay.post(emulator.body("ONCRMDEALUPDATE", first + 2))
        assert response.status_code == 200 and response.json()["status"] == "recorded"
        await relay.settled(response.json()["id"])


async def test_a_refresh_token_alone_is_enough_to_drain(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    """Configured with the application's refresh token only: the first call gets a token."""
    first = BASE + 950
    settings = app_settings(emulator)
    bitrix24 = settings.bitrix24.model_copy(update={"app_access_token": ""})
    settings = settings.model_copy(update={"bitrix24": bitrix24})
    async with (
        database("sqlite", tmp_path) as engine,
        running_relay(settings, engine, dev_env.client) as relay,
    ):
        await started(relay)
        await add_deals(emulator, first + 1, 2)
        drained = await relay.app.state.offline.run_once()
        assert drained is not None and drained.recorded == 2
        assert await rows_of(relay, first + 1, 2) == {first + 1, first + 2}
    assert refreshes(emulator) == ["refreshed"]
