"""`salesflow app install` (issue 12, item 5) against the Bitrix24 emulator over real HTTP: the
deal card's tab and the relay's events bound with the local application's token, idempotently,
with clear refusals; `salesflow doctor` checks the same registrations and `--fix` binds them."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from emulators.asgi_server import BackgroundServer, serve
from emulators.bitrix24.app import create_app as create_emulator
from emulators.bitrix24.seed import LOCAL_APP_ACCESS_TOKEN, LOCAL_APP_CLIENT_ID
from emulators.bitrix24.state import Portal
from salesflow.config.settings import Settings
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.starter import app_install
from salesflow.starter.doctor import FAIL, OK, SKIP, app_install_check

PUBLIC = "http://127.0.0.1:8000"


@pytest.fixture
async def emulator() -> AsyncIterator[tuple[BackgroundServer, Portal]]:
    app = create_emulator(rate_per_second=None)
    async with serve(app) as server:
        yield server, app.state.portal


def _settings(url: str, **relay: Any) -> Settings:
    return Settings.model_validate(
        {
            "bitrix24": {
                "webhook_url": f"{url}/rest/1/devsecret/",
                "app_access_token": LOCAL_APP_ACCESS_TOKEN,
            },
            "relay": {"public_url": PUBLIC, **relay},
        }
    )


async def _install(settings: Settings, **target: Any) -> tuple[app_install.Plan, list[Any]]:
    goal = app_install.target(settings, **target)
    async with app_install.application_caller(settings) as caller:
        return await app_install.install(caller, goal)


def _registrations(portal: Portal) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    tabs = [(p.placement, p.handler, p.title) for p in portal.placements]
    events = sorted((b.event, b.handler or "offline") for b in portal.bindings)
    return tabs, events


async def test_r_app_install_binds_the_tab_and_events_once(emulator: Any) -> None:
    server, portal = emulator
    settings = _settings(server.url)
    plan, done = await _install(settings)
    tabs, events = _registrations(portal)
    assert tabs == [("CRM_DEAL_DETAIL_TAB", f"{PUBLIC}/bitrix24/deal-card", "Процесс сделки")]
    online = [e for e, handler in events if handler == f"{PUBLIC}/bitrix24/events"]
    offline = [e for e, handler in events if handler == "offline"]
    assert sorted(online) == sorted(app_install.ONLINE_EVENTS)
    assert sorted(offline) == sorted(settings.relay.offline_events)
    assert len(done) == 1 + len(online) + len(offline) and not plan.done
    # A second run reads, finds everything bound and changes nothing.
    again, done_again = await _install(settings)
    assert again.done and done_again == []
    assert _registrations(portal) == (tabs, events)


async def test_r_app_install_replaces_the_tab_when_the_public_url_changes(emulator: Any) -> None:
    server, portal = emulator
    await _install(_settings(server.url), online=False, offline=False)
    moved = "https://salesflow.example.ru"
    _, done = await _install(_settings(server.url, public_url=moved), online=False)
    assert [(s.action, s.handler) for s in done][:2] == [
        ("unbind", f"{PUBLIC}/bitrix24/deal-card"),
        ("bind", f"{moved}/bitrix24/deal-card"),
    ]
    assert [p.handler for p in portal.placements] == [f"{moved}/bitrix24/deal-card"]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "relay.public_url is empty"),
        ("http://salesflow.example.ru", "https"),
        ("https://salesflow.example.ru/bitrix24/deal-card", "the relay's base"),
        ("ftp://salesflow.example.ru", "not an http(s) URL"),
        ("https://salesflow.example.ru/?x=1", "query"),
    ],
)
def test_r_app_install_refuses_a_wrong_handler_url(url: str, says: str) -> None:
    with pytest.raises(app_install.InstallError, match=re.escape(says)):
        app_install.check_public_url(url)


def test_r_app_install_takes_http_on_loopback_only() -> None:
    assert app_install.check_public_url("http://localhost:8000/") == "http://localhost:8000"
    assert app_install.check_public_url("http://[::1]:8000") == "http://[::1]:8000"
    assert app_install.check_public_url("https://x.example.ru/sf/") == "https://x.example.ru/sf"


async def test_r_app_install_without_the_placement_scope_says_so(emulator: Any) -> None:
    server, portal = emulator
    app = portal.apps[LOCAL_APP_CLIENT_ID]
    portal.apps[LOCAL_APP_CLIENT_ID] = replace(app, scopes=app.scopes - {"placement"})
    with pytest.raises(app_install.InstallError, match="lacks scope placement"):
        await _install(_settings(server.url))
    assert portal.placements == [] and portal.bindings == []


async def test_r_app_install_with_a_non_admin_token_says_so(emulator: Any) -> None:
    server, portal = emulator
    portal.apps[LOCAL_APP_CLIENT_ID] = replace(portal.apps[LOCAL_APP_CLIENT_ID], user_id=3)
    with pytest.raises(app_install.InstallError, match="administrator"):
        await _install(_settings(server.url))
    assert portal.placements == []


async def test_r_app_install_with_a_webhook_says_it_is_not_the_application(
    emulator: Any,
) -> None:
    server, _ = emulator
    goal = app_install.target(_settings(server.url))
    async with Bitrix24Client(f"{server.url}/rest/1/devsecret/", coalesce=False) as webhook:
        with pytest.raises(app_install.InstallError, match="not the local application"):
            await app_install.plan(webhook, goal)


async def test_r_app_install_without_an_application_token_says_so() -> None:
    settings = Settings.model_validate({"relay": {"public_url": PUBLIC}})
    with pytest.raises(app_install.InstallError, match="no local application configured"):
        async with app_install.application_caller(settings):
            pass


async def test_r_doctor_checks_the_tab_and_events_and_fix_binds_them(emulator: Any) -> None:
    server, portal = emulator
    settings = _settings(server.url)
    missing = await app_install_check(settings)
    assert missing.status == FAIL and "CRM_DEAL_DETAIL_TAB" in missing.detail
    assert "salesflow app install" in missing.fix and portal.placements == []
    fixed = await app_install_check(settings, fix=True)
    assert fixed.status == OK and fixed.detail.startswith("fixed:")
    assert len(portal.placements) == 1
    assert (await app_install_check(settings)).status == OK
    unset = _settings(server.url, public_url="")
    assert (await app_install_check(unset)).status == SKIP


async def test_r_cli_app_install_dry_run_then_install_then_nothing(
    emulator: Any, tmp_path: Path
) -> None:
    server, portal = emulator
    env = {
        **os.environ,
        "SALESFLOW_BITRIX24__WEBHOOK_URL": f"{server.url}/rest/1/devsecret/",
        "SALESFLOW_BITRIX24__APP_ACCESS_TOKEN": LOCAL_APP_ACCESS_TOKEN,
        "SALESFLOW_RELAY__PUBLIC_URL": PUBLIC,
        "COLUMNS": "200",
    }

    async def cli(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "salesflow"),
            "app",
            "install",
            *args,
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode()

    code, out = await cli("--dry-run")
    assert code == 0 and "would be made, none made" in out and "CRM_DEAL_DETAIL_TAB" in out
    assert portal.placements == [] and portal.bindings == []
    code, out = await cli()
    assert code == 0 and "installed:" in out and len(portal.placements) == 1
    code, out = await cli()
    assert code == 0 and "nothing to change" in out
