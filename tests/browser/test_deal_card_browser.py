"""The deal card's tab in a real browser (issue 12): Debian's chromium opens the Bitrix24
emulator's deal card, which frames the tab as the portal does, and people click through it.

The local application is installed into the emulator by the product's own code
(`salesflow app install`'s, through `local_stack.install_app` as `salesflow dev` does); the
emulator's outgoing webhook is then switched off, so every event reaches the relay through the
application's own bindings. The lifecycle tests act only as people do: in the browser, in
Bitrix24 (REST on the emulator: stages, fields, the «Согласование» item, tasks) and in 1C (the
1C emulator's own endpoints) — never through the CLI or Temporal. The workflow's state is
read where the people read it: in the tab. Screenshots go to `.artifacts/browser/`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from emulators.bitrix24.seed import LOCAL_APP_ACCESS_TOKEN
from emulators.local_stack import deal_card_url, install_app
from salesflow.config.settings import Settings
from salesflow.integrations.onec import F
from salesflow.integrations.onec.client import OneCClient
from tests.e2e.stack import Stack, running_stack
from tests.e2e.test_full_pipeline import FAST_RULES

MANAGER, ROP, ACCOUNTANT = 3, 2, 11
APPROVAL_TYPE = 1032
STAGES = Settings().portal.stages
# The «Согласование» item is read by the approval child's poll (at least a minute): the only
# wait of the lifecycle that is not an event (reported as a gap of the tab).
APPROVAL = {**Settings().portal.approval.model_dump(), "poll_minutes": 1}
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
async def stack(dev_env: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("browser")
    overrides = {"portal": {"approval": APPROVAL}}
    async with running_stack(dev_env, tmp, "browser", 960_000, FAST_RULES, overrides) as stack:
        app = stack.settings.model_dump()
        app["bitrix24"]["app_access_token"] = LOCAL_APP_ACCESS_TOKEN
        app["relay"]["public_url"] = stack.relay.url
        bound = await install_app(Settings.model_validate(app))
        assert any("CRM_DEAL_DETAIL_TAB" in line for line in bound), bound
        # A second install changes nothing.
        assert await install_app(Settings.model_validate(app)) == []
        stack.portal.handler_url = None  # events only through the application's bindings
        yield stack


class Tab:
    """The deal card of one deal as one user sees it in the browser."""

    def __init__(self, page: Any, stack: Stack, artifacts: Path, deal_id: int) -> None:
        self.page = page
        self.stack = stack
        self.artifacts = artifacts
        self.deal_id = deal_id
        self.user_id = MANAGER

    async def open(self, user_id: int | None = None) -> Any:
        """Open (or reload) the deal card; the tab's frame once the tab has answered."""
        self.user_id = user_id or self.user_id
        url = deal_card_url(self.stack.settings, self.deal_id, self.user_id)
        await self.page.goto(url)
        frame = await self._frame()
        await frame.wait_for_selector("#actor, #message")
        return frame

    async def _frame(self) -> Any:
        for _ in range(200):
            frame = self.page.frame(name="tab-frame")
            if frame is not None and "/bitrix24/deal-card" in frame.url:
                await frame.wait_for_load_state()
                return frame
            await asyncio.sleep(0.05)
        raise AssertionError("the deal card never framed the tab")

    async def stage(self, frame: Any | None = None) -> str:
        frame = frame or await self.open()
        found = await frame.query_selector("#stage")
        return (await found.get_attribute("data-stage")) if found else ""

    async def until(
        self, check: Callable[[Any], Any], what: str, seconds: float = 30.0
    ) -> Any:
        """Reload the tab until `check(frame)` (awaitable) holds; the frame."""
        deadline = time.monotonic() + seconds
        while True:
            frame = await self.open()
            if await check(frame):
                return frame
            if time.monotonic() > deadline:
                text = await frame.inner_text("body")
                raise AssertionError(f"the tab never showed {what}:\n{text[:1500]}")
            await asyncio.sleep(0.2)

    async def until_stage(self, stage: str, seconds: float = 30.0) -> Any:
        async def at(frame: Any) -> bool:
            return await self.stage(frame) == stage

        return await self.until(at, f"stage {stage}", seconds)

    async def submit(
        self,
        action: str,
        button: str | None = None,
        fill: dict[str, str] | None = None,
        select: dict[str, str] | None = None,
    ) -> Any:
        """Fill and submit the action's form in the tab as a person does; the answer's frame."""
        frame = await self._frame()
        form = frame.locator(f'form[data-action="{action}"]')
        for name, value in (fill or {}).items():
            await form.locator(f'[name="{name}"]').fill(value)
        for name, value in (select or {}).items():
            await form.locator(f'select[name="{name}"]').select_option(value)
        target = form.get_by_role("button", name=button) if button else form.locator("button")
        async with frame.expect_navigation():
            await target.first.click()
        await frame.wait_for_selector("#actor, #message")
        return frame

    async def notice(self, frame: Any, action: str) -> tuple[bool, str]:
        found = frame.locator(f'[data-notice="{action}"]')
        css = await found.get_attribute("class") or ""
        return "done" in css, await found.inner_text()

    async def shot(self, name: str) -> None:
        await self.page.locator("#tab-frame").screenshot(
            path=str(self.artifacts / f"deal-{self.deal_id}-{name}.png")
        )


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    page = await browser.new_page()
    try:
        yield page
    finally:
        await page.close()


async def _new_deal(stack: Stack, **fields: Any) -> int:
    """A person creates the deal in Bitrix24."""
    return await stack.add_deal(**fields)


async def _bitrix(stack: Stack, deal_id: int, **fields: Any) -> None:
    """A person edits the deal in Bitrix24 (a stage move is a STAGE_ID change)."""
    await stack.bitrix24.call("crm.deal.update", {"id": deal_id, "fields": fields})


async def _onec(stack: Stack, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """A 1C user's action (the 1C emulator's own endpoints, as the e2e tests do it)."""
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{stack.onec.url}/_emulator/{path}", json=body)
    assert answer.status_code < 300, answer.text
    return answer.json()


def _tasks(stack: Stack, deal_id: int) -> list[dict[str, Any]]:
    return [t for t in stack.portal.tasks.values() if f"D_{deal_id}" in t["UF_CRM_TASK"]]


def _open_task(stack: Stack, deal_id: int, title: str) -> dict[str, Any] | None:
    return next(
        (t for t in _tasks(stack, deal_id) if title in t["TITLE"] and str(t["STATUS"]) != "5"),
        None,
    )


async def _has(frame: Any, selector: str) -> bool:
    return await frame.query_selector(selector) is not None


async def _accepted_into_work(stack: Stack, tab: Tab) -> None:
    """NEW: the manager opens the card and takes the lead («Принять заявку»)."""
    await tab.until_stage("NEW")
    await tab.shot("1-new")
    frame = await tab.submit("accept_lead")
    assert (await tab.notice(frame, "accept_lead"))[0]
    assert await tab.stage(frame) == "IN_WORK"
    deal = stack.portal.deals[tab.deal_id]
    assert str(deal["ASSIGNED_BY_ID"]) == str(MANAGER)
    await stack.eventually(lambda: _open_task(stack, tab.deal_id, "Проверить товарные позиции"))


async def _moved_to_kp(stack: Stack, tab: Tab, **fields: Any) -> None:
    await _bitrix(stack, tab.deal_id, STAGE_ID=STAGES.KP, **fields)
    await tab.until_stage("KP")


async def test_r_lose_1_lost_from_the_tab_other_needs_a_comment(
    stack: Stack, page: Any, artifacts: Path
) -> None:
    deal_id = await _new_deal(stack, UF_CRM_KP="КП-000124", UF_CRM_DIRECTION="Казахстан")
    tab = Tab(page, stack, artifacts, deal_id)
    await _accepted_into_work(stack, tab)
    await _moved_to_kp(stack, tab, UF_CRM_PRIORITY=12, UF_CRM_DELIVERY_TERM="60 дней")

    # «Другое» without a comment: refused beside the form, nothing changes.
    frame = await tab.submit("lose_deal", select={"reason": "OTHER"})
    ok, text = await tab.notice(frame, "lose_deal")
    assert not ok and "комментарий" in text
    await tab.shot("2-lose-refused")
    assert await tab.stage(frame) == "KP"
    assert stack.portal.deals[deal_id]["STAGE_ID"] == STAGES.KP

    frame = await tab.submit(
        "lose_deal", select={"reason": "OTHER"}, fill={"comment": "Проект заморожен"}
    )
    frame = await tab.until_stage("LOSE")
    await tab.shot("3-lost")
    assert await _has(frame, "#message")  # closed: no actions any more
    deal = stack.portal.deals[deal_id]
    assert deal["STAGE_ID"] == STAGES.LOSE
    assert str(deal["UF_CRM_LOSS_REASON"]) == "46"
    assert deal["UF_CRM_LOSS_COMMENT"] == "Проект заморожен"
    history = await frame.inner_text("#history")
    assert "Иван" in history or str(MANAGER) in history  # who acted
