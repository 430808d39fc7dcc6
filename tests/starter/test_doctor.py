"""`salesflow doctor` against the emulators: a correct portal passes, a broken one is named."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from emulators.asgi_server import serve
from emulators.bitrix24.app import create_app as bitrix24_app
from emulators.bitrix24.seed import LOCAL_APP_ACCESS_TOKEN, LOCAL_APP_CLIENT_ID, builtin_seed
from emulators.onec.app import create_app as onec_app
from salesflow.config.settings import Settings
from salesflow.starter.doctor import (
    APP_TOKEN,
    FAIL,
    OK,
    app_token_check,
    exit_code,
    main,
    render,
    run_checks,
)
from salesflow.store import app_tokens
from salesflow.store.db import init_db, make_engine


@contextlib.asynccontextmanager
async def _stack(seed: dict[str, Any], unpublished: tuple[str, ...] = ()) -> AsyncIterator[str]:
    b24 = bitrix24_app(seed=seed, secret="s3cret", rate_per_second=None)
    onec = onec_app("trade", "odata", "odata")
    onec.state.base.published -= set(unpublished)
    async with serve(b24) as b24_server, serve(onec) as onec_server:
        yield b24_server.url, onec_server.url


def _settings(b24_url: str, onec_url: str, **portal: Any) -> Settings:
    return Settings.model_validate(
        {
            "bitrix24": {"webhook_url": f"{b24_url}/rest/1/s3cret/", "rate_per_second": 50},
            "onec": {"odata_url": f"{onec_url}/trade/odata/standard.odata/"},
            "portal": portal,
        }
    )


@pytest.fixture
async def healthy() -> AsyncIterator[Settings]:
    async with _stack(builtin_seed()) as (b24_url, onec_url):
        yield _settings(b24_url, onec_url)


async def test_doctor_passes_on_a_correct_portal(healthy: Settings) -> None:
    checks = await run_checks(healthy)
    assert [c for c in checks if c.status != OK] == []
    names = {c.name for c in checks}
    assert {"Bitrix24 webhook", "Webhook scopes", "Stages", "Deal fields", "Users"} <= names
    assert {"Options priority", "Options loss_reason", "1C OData", "1C entity sets"} <= names
    assert exit_code(checks) == 0
    console = Console(record=True, width=200)
    code = await asyncio.to_thread(main, healthy, console)
    assert code == 0
    assert "configuration matches" in console.export_text()


async def test_doctor_names_every_problem() -> None:
    seed = builtin_seed()
    seed["deal_userfields"] = [
        uf for uf in seed["deal_userfields"] if uf["FIELD_NAME"] != "UF_CRM_INN"
    ]
    for uf in seed["deal_userfields"]:
        if uf["FIELD_NAME"] == "UF_CRM_KP_DATE":
            uf["USER_TYPE_ID"] = "string"
    for user in seed["users"]:
        if user["ID"] == 5:
            user["ACTIVE"] = False
    seed["portal"]["webhook_scopes"] = ["crm", "user", "im"]
    async with _stack(seed, unpublished=("Task_ЗадачаИсполнителя",)) as (b24_url, onec_url):
        settings = _settings(
            b24_url,
            onec_url,
            stages={"KP": "C1:UC_OFFER"},
            enums={"kp_status": {"agreed": 22, "not_agreed": 21}, "priority": {"A": 99}},
        )
        checks = await run_checks(settings)
        console = Console(record=True, width=250)
        code = await asyncio.to_thread(main, settings, console)
    failed = {c.name: c for c in checks if c.status == FAIL}
    assert set(failed) == {
        "Webhook scopes",
        "Stage KP",
        "Field inn",
        "Field kp_date",
        "Options kp_status",
        "Options priority",
        "User 5 (logist)",
        "1C Task_ЗадачаИсполнителя",
    }
    assert "task" in failed["Webhook scopes"].detail
    assert "C1:UC_OFFER" in failed["Stage KP"].detail and "C1:UC_KP" in failed["Stage KP"].fix
    assert "UF_CRM_INN does not exist" in failed["Field inn"].detail
    assert "is string, expected date/datetime" in failed["Field kp_date"].detail
    assert "agreed=22 is «Не согласовано»" in failed["Options kp_status"].detail
    assert "A=99 does not exist" in failed["Options priority"].detail
    assert "inactive" in failed["User 5 (logist)"].detail
    assert all(c.fix for c in failed.values())
    assert exit_code(checks) == 1 and code == 1
    text = console.export_text()
    assert "✗ fail" in text and "Stage KP" in text and "check(s) failed" in text


async def test_doctor_when_nothing_answers() -> None:
    settings = Settings.model_validate(
        {
            "bitrix24": {"webhook_url": "http://127.0.0.1:9/rest/1/x/"},
            "onec": {"odata_url": ""},
        }
    )
    checks = await run_checks(settings)
    assert [(c.name, c.status) for c in checks] == [
        ("Bitrix24 webhook", FAIL),
        ("1C OData", "skip"),
    ]
    render(checks, Console(record=True))
    assert exit_code(checks) == 1


async def test_doctor_reports_the_application_token(tmp_path: Path) -> None:
    b24 = bitrix24_app(secret="s3cret", rate_per_second=None)
    portal = b24.state.portal
    async with serve(b24) as server:
        base = {
            "webhook_url": f"{server.url}/rest/1/s3cret/",
            "app_access_token": LOCAL_APP_ACCESS_TOKEN,
        }
        refresh = {
            "app_client_id": LOCAL_APP_CLIENT_ID,
            "app_client_secret": "secret",
            "app_refresh_token": "refresh",
        }
        database = {"url": f"sqlite+aiosqlite:///{tmp_path / 'salesflow.db'}"}
        plain = Settings.model_validate({"bitrix24": base, "database": database})
        refreshing = Settings.model_validate(
            {"bitrix24": {**base, **refresh}, "database": database}
        )

        assert (await app_token_check(plain)).status == OK
        portal.apps[LOCAL_APP_CLIENT_ID].expires_at = time.time() - 1
        expired = await app_token_check(plain)
        assert expired.status == FAIL and "bitrix24.app_refresh_token" in expired.fix
        assert (await app_token_check(refreshing)).status == OK  # the relay will refresh it

        engine = make_engine(database["url"])
        await init_db(engine)
        await app_tokens.put(engine, LOCAL_APP_CLIENT_ID, "gone", "gone-refresh", None)
        stale = await app_token_check(refreshing)  # the stored pair is the one checked
        assert stale.status == OK and "invalid_token" in stale.detail
        await app_tokens.set_error(engine, LOCAL_APP_CLIENT_ID, "invalid_grant: x", "a", "r")
        await engine.dispose()
        refused = await app_token_check(refreshing)
        assert refused.status == FAIL and "invalid_grant" in refused.detail
        assert "re-authorize" in refused.fix
        checks = await run_checks(refreshing)
        assert [c.status for c in checks if c.name == APP_TOKEN] == [FAIL]
