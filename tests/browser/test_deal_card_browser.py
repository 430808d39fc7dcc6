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
from tests.e2e.test_full_pipeline import FAST_RULES, TASK_TITLES

MANAGER, ROP, ACCOUNTANT = 3, 2, 11
APPROVAL_TYPE = 1032
STAGES = Settings().portal.stages
# The «Согласование» item's stage is only polled by the approval child (no event, no tab
# action): every 3 s here.
APPROVAL = {**Settings().portal.approval.model_dump(), "poll_minutes": 0.05}


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

    async def until(self, check: Callable[[Any], Any], what: str, seconds: float = 60.0) -> Any:
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

    async def until_stage(self, stage: str, seconds: float = 60.0) -> Any:
        """The tab shows the workflow at `stage`, and the deal in Bitrix24 is at it too."""

        async def at(frame: Any) -> bool:
            return await self.stage(frame) == stage

        frame = await self.until(at, f"stage {stage}", seconds)
        status_id = getattr(STAGES, stage)
        await self.stack.eventually(
            lambda: self.stack.portal.deals[self.deal_id]["STAGE_ID"] == status_id
        )
        return frame

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

    async def feedback_awaited(frame: Any) -> bool:  # the КП is out: round 1
        return await _has(frame, 'form[data-action="kp_feedback"]')

    await tab.until(feedback_awaited, "stage KP, awaiting the КП feedback")


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
    assert "Иван Петров" in history  # who acted (the tab's accept)


async def _approval_item(stack: Stack, deal_id: int) -> dict[str, Any]:
    for _ in range(200):
        found = await stack.bitrix24.call(
            "crm.item.list", {"entityTypeId": APPROVAL_TYPE, "filter": {"parentId2": deal_id}}
        )
        if found["items"]:
            return found["items"][0]
        await asyncio.sleep(0.1)
    raise AssertionError("no «Согласование» item for the deal")


async def test_r_pipeline_new_to_won_from_bitrix24_alone(
    stack: Stack, page: Any, artifacts: Path
) -> None:
    """NEW → WON by people only: the tab, Bitrix24 (stages, fields, the approval item, tasks)
    and 1C (invoice, payments, the logist's task, the УПД) — no CLI, no Temporal call."""
    today = datetime.now(ZoneInfo("Europe/Moscow")).date()
    deal_id = await _new_deal(
        stack,
        TITLE="Насосная станция (браузер)",
        COMPANY_ID=1,
        UF_CRM_DIRECTION="Россия, Москва",
        UF_CRM_KP="КП-000123",
        UF_CRM_INN="7701234567",
    )
    tab = Tab(page, stack, artifacts, deal_id)
    await _accepted_into_work(stack, tab)
    await _moved_to_kp(stack, tab, UF_CRM_PRIORITY=11, UF_CRM_DELIVERY_TERM="30 дней")
    # R-KP-2: the КП's lines from 1C
    await stack.eventually(lambda: len(stack.portal.product_rows.get(deal_id) or []) == 3)
    await tab.shot("2-kp")

    # R-KP-4: «не согласовано» with a comment → the objection task; once it is done in
    # Bitrix24 the next feedback round starts; then «согласовано».
    frame = await tab.submit("kp_feedback", "КП не согласовано", fill={"comment": "дорого"})
    assert (await tab.notice(frame, "kp_feedback"))[0]
    objection = await stack.eventually(lambda: _open_task(stack, deal_id, "Отработать возражение"))
    await stack.bitrix24.call("tasks.task.complete", {"taskId": int(objection["ID"])})

    async def second_round(frame: Any) -> bool:
        text = await frame.inner_text("#deadlines") if await _has(frame, "#deadlines") else ""
        return "раунд 2" in text

    await tab.until(second_round, "the second feedback round")
    frame = await tab.submit("kp_feedback", "КП согласовано")
    assert (await tab.notice(frame, "kp_feedback"))[0]
    await tab.until_stage("CONTRACT")

    # R-KP-6/7: the РОП decides the «Согласование» item in Bitrix24 (its stage).
    item = await _approval_item(stack, deal_id)
    await stack.bitrix24.call(
        "crm.item.update",
        {
            "entityTypeId": APPROVAL_TYPE,
            "id": item["id"],
            "fields": {"stageId": APPROVAL["stage_approved"]},
        },
    )

    async def signing_task(frame: Any) -> bool:
        return "подписание с клиентом" in await frame.inner_text("#tasks")

    await tab.until(signing_task, "the signing task")
    decided = await stack.bitrix24.call(
        "crm.item.get", {"entityTypeId": APPROVAL_TYPE, "id": item["id"]}
    )
    assert decided["item"]["stageId"] == APPROVAL["stage_approved"]
    assert _open_task(stack, deal_id, "подписание с клиентом") is not None

    # The invoice is made in 1C; the manager fills the deal's fields and moves it on.
    async with OneCClient(stack.settings.onec.odata_url, "odata", "odata") as onec:
        romashka = await onec.find_one("Catalog_Контрагенты", F("ИНН") == "7701234567")
        assert romashka is not None
        await onec.create(
            "Document_СчетНаОплатуКлиенту",
            {
                "Number": "СЧ-000046",
                "СуммаДокумента": 640000,
                "Контрагент_Key": romashka["Ref_Key"],
            },
        )
    await _bitrix(
        stack,
        deal_id,
        UF_CRM_INVOICE="СЧ-000046",
        UF_CRM_CONTRACT="Д-13/2026",
        UF_CRM_PAYMENT_TERMS=31,
        STAGE_ID=STAGES.INVOICE,
    )
    await tab.until_stage("INVOICE")
    for kind in ("Счет подписан", "Договор подписан"):
        frame = await tab.submit("documents_signed", kind)
        assert (await tab.notice(frame, "documents_signed"))[0], kind

    # R-INV-3: the advance arrives in 1C and closes the pay loop.
    await _onec(stack, "payments", {"invoice": "СЧ-000046", "amount": 100000})
    await tab.until_stage("LAUNCH")
    assert stack.portal.deals[deal_id]["STAGE_ID"] == STAGES.LAUNCH

    # R-LA-1, R-PS-1: the schedule in the tab; a wrong one is refused beside the form.
    frame = await tab.submit(
        "set_payment_schedule", fill={"percent_1": "50", "due_1": today.isoformat()}
    )
    ok, text = await tab.notice(frame, "set_payment_schedule")
    assert not ok and "50" in text
    dates = [today, today + timedelta(days=1), today + timedelta(days=30), today + timedelta(40)]
    fill = {}
    for number, (percent, due) in enumerate(zip((50, 30, 10, 10), dates, strict=True), 1):
        fill[f"percent_{number}"], fill[f"due_{number}"] = str(percent), due.isoformat()
    frame = await tab.submit("set_payment_schedule", fill=fill)
    assert (await tab.notice(frame, "set_payment_schedule"))[0]

    async def overdue(frame: Any) -> bool:
        return await _has(frame, '[data-tranche="1"][data-state="overdue"]')

    await tab.until(overdue, "the first tranche overdue")
    await tab.shot("3-schedule")
    await _bitrix(stack, deal_id, STAGE_ID=STAGES.ACCEPTED)
    await tab.until_stage("ACCEPTED")

    # R-AC-3: the logist's task is in 1C; the logist completes it there.
    task_1c = await stack.eventually(
        lambda: [
            t
            for t in stack.onec_base.all("Task_ЗадачаИсполнителя")
            if f"deal:{deal_id}:" in str(t.get("Описание"))
        ]
    )
    await _onec(stack, f"tasks/{task_1c[0]['Ref_Key']}/complete", {"comment": "Отгружено, ТТН 7"})

    def shipped_task() -> bool:
        task = next(
            (t for t in _tasks(stack, deal_id) if t["TITLE"] == "Отгрузить товар клиенту"), None
        )
        return task is not None and str(task["STATUS"]) == "5"

    await stack.eventually(shipped_task, seconds=30)

    async def logist_done(frame: Any) -> bool:
        return not await _has(frame, '[data-logist-state="none"]')

    await tab.until(logist_done, "the logist's 1C task")

    # The accountant records the rest of the first tranche in the tab.
    await tab.open(ACCOUNTANT)
    frame = await tab.submit(
        "record_payment", fill={"amount": "220000", "paid_on": today.isoformat()}
    )
    assert (await tab.notice(frame, "record_payment"))[0]

    async def paid(frame: Any) -> bool:
        return await _has(frame, '[data-tranche="1"][data-state="paid"]')

    await tab.until(paid, "the first tranche paid")
    tab.user_id = MANAGER
    await _bitrix(stack, deal_id, STAGE_ID=STAGES.TO_SHIP)
    await tab.until_stage("TO_SHIP")
    await _bitrix(stack, deal_id, STAGE_ID=STAGES.SHIPPED)
    await tab.until_stage("SHIPPED")

    # R-SH-1..3: the УПД posted and signed in 1C; both documents signed in the tab → WON.
    upd = await _onec(stack, "upd", {"basis": "КП-000123"})
    await _onec(stack, f"upd/{upd['Ref_Key']}/sign", {"signed": True})
    for kind in ("Акт подписан", "УПД подписан"):
        frame = await tab.submit("documents_signed", kind)
    frame = await tab.until_stage("WON")
    await tab.shot("4-won")
    assert stack.portal.deals[deal_id]["STAGE_ID"] == STAGES.WON
    mails = await stack.eventually(
        lambda: [m for m in stack.mailbox.messages if upd["Number"] in _body(m)]
    )
    assert mails[0]["To"] == "buh@example.ru"
    titles = sorted(t["TITLE"] for t in _tasks(stack, deal_id))
    assert titles == sorted(TASK_TITLES)  # every step's task, once
    history = await frame.inner_text("#history")
    (artifacts / f"deal-{deal_id}-history.txt").write_text(history, encoding="utf-8")
    assert "Иван Петров" in history  # who acted (the tab's accept)
    # issue 12: what people did in the tab names them («Кто» is the 4th column)
    rows = await frame.eval_on_selector_all(
        "#history tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText))"
    )
    person = ("подписан документ", "задан график платежей", "оплата 220000", "задача ")
    unnamed = [r for r in rows if r[2].startswith(person) and r[3] in ("—", "")]
    assert [r for r in rows if r[2].startswith(person)] and unnamed == []


def _body(message: Any) -> str:
    payload = message.get_payload(decode=True)
    return payload.decode() if isinstance(payload, bytes) else str(payload)
