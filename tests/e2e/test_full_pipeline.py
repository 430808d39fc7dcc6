"""End to end, nothing stubbed: the whole «Продажа» pipeline on the real stack.

A deal of 640 000 ₽ with direction «Россия» goes NEW → WON with two КП rounds, the internal
approval, a 50/30/10/10 schedule whose second tranche goes overdue, logistics done in 1C and
the documents e-mailed to the accountant; another deal is lost at КП with «Другое» + comment.
People act through Bitrix24 (REST on the emulator, whose events reach the relay), 1C users
through the 1C emulator's admin endpoints, and managers through the real `salesflow` CLI.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from salesflow.activities.onec import task_key_in
from salesflow.integrations.onec import F
from salesflow.integrations.onec.client import OneCClient
from tests.e2e.stack import Stack, running_stack

HISTORIES = Path(__file__).resolve().parents[1] / "histories"

# Calendar-time deadlines, a working day that is already over (so the due tranche is overdue
# at once) and fast polls of 1C: the whole life of a deal in seconds on the real dev server.
FAST_RULES = {
    "work_start": "00:00",
    "work_end": "00:01",
    "take_into_work": {"minutes": 60, "working_time": False},
    "kp_feedback_task": {"minutes": 60, "working_time": False},
    "onec_poll_seconds": 1,
    "onec_task_poll_seconds": 1,
    # notices at calendar times: a tranche due on a day off would wait for the next business day
    "reminders": {"working_hours_only": False},
}
TASK_TITLES = [
    "Проверить товарные позиции",
    "Отправить КП клиенту",
    "Связаться с клиентом, получить обратную связь по КП",
    "Отработать возражение, переформировать КП",
    "Связаться с клиентом, получить обратную связь по КП",
    "Отправить Счет, Договор (в зависимости от выбранной вариации) на согласование внутри компании",
    "Проверить товарные позиции, отправить Счет, Договор на согласование и подписание с клиентом",
    "Получить оплату от клиента",
    "Проконтролировать выполнение работ",
    "Проконтролировать упаковку",
    "Проверить оплату по клиенту",
    "Отгрузить товар клиенту",
    "Проконтролировать отгрузку-доставку",
    "Отправить Акты выполненных работ, получить подписанный документ",
    "Отправить УПД, получить подписанный документ",
]


async def record_histories(stack: Stack, workflow_ids: list[str]) -> None:
    """Refresh tests/histories/ (replayed by tests/workflows/test_replay.py) from this run."""
    for workflow_id in workflow_ids:
        history = await stack.client.get_workflow_handle(workflow_id).fetch_history()
        kind = workflow_id.split("-", 2)[2] if workflow_id.count("-") > 1 else "deal"
        name = "deal" if kind.isdigit() else kind.rsplit("-", 1)[0]
        (HISTORIES / f"full-lifecycle-{name}.json").write_text(history.to_json(), encoding="utf-8")


async def _cli_ok(stack: Stack, *args: str) -> str:
    code, out = await stack.cli("deal", *args)
    assert code == 0, f"salesflow deal {' '.join(args)} failed:\n{out}"
    return out


async def _admin(stack: Stack, path: str, body: dict) -> dict:
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{stack.onec.url}/_emulator/{path}", json=body)
    assert answer.status_code < 300, answer.text
    return answer.json()


async def _bitrix_move(stack: Stack, deal_id: int, stage_id: str, **fields: object) -> None:
    """A person edits the deal in Bitrix24; the portal's event goes to the relay."""
    await stack.bitrix24.call(
        "crm.deal.update", {"id": deal_id, "fields": {**fields, "STAGE_ID": stage_id}}
    )


async def test_r_pipeline_640k_russia_new_to_won(dev_env, tmp_path) -> None:
    today = datetime.now(ZoneInfo("Europe/Moscow")).date()
    async with running_stack(dev_env, tmp_path, "full", 930_000, FAST_RULES) as stack:
        deal_id = await stack.add_deal(
            TITLE="Насосная станция",
            OPPORTUNITY=640000,
            COMPANY_ID=1,
            UF_CRM_DIRECTION="Россия, Москва",
            UF_CRM_KP="КП-000123",
            UF_CRM_INN="7701234567",
        )
        await stack.wait_for_workflow(deal_id)
        await _cli_ok(stack, "accept", str(deal_id), "--manager", "3")
        await stack.wait_until(deal_id, lambda v: v.stage == "IN_WORK" and v.open_tasks)

        # R-IW-F: a move to КП with empty fields is undone; with them filled it is followed.
        await _bitrix_move(stack, deal_id, "C1:UC_KP")
        await stack.eventually(
            lambda: any(":refused_move:" in n["TAG"] for n in stack.portal.notifications)
        )
        await stack.eventually(lambda: stack.portal.deals[deal_id]["STAGE_ID"] == "C1:PREPARATION")
        await _bitrix_move(
            stack, deal_id, "C1:UC_KP", UF_CRM_PRIORITY=11, UF_CRM_DELIVERY_TERM="30 дней"
        )
        await stack.wait_until(deal_id, lambda v: v.stage == "KP" and v.kp_round == 1)

        # R-KP-2: the КП's three lines came from 1C into the deal.
        rows = await stack.bitrix24.call("crm.deal.productrows.get", {"id": deal_id})
        assert len(rows) == 3 and round(sum(r["PRICE"] * r["QUANTITY"] for r in rows)) == 640000

        # R-KP-4: one «не согласовано» round, then agreed.
        await _cli_ok(stack, "kp-feedback", str(deal_id), "--not-agreed", "--comment", "дорого")
        view = await stack.wait_until(
            deal_id, lambda v: any(t.key.endswith(":kp:objection:1") for t in v.open_tasks)
        )
        # «Возврат на задачу»: the manager completes the objection task in Bitrix24; then the
        # second feedback round's task comes.
        objection = next(t for t in view.open_tasks if t.key.endswith(":kp:objection:1"))
        await stack.bitrix24.call("tasks.task.complete", {"taskId": objection.task_id})
        await stack.wait_until(
            deal_id, lambda v: any(t.key.endswith(":kp:feedback:2") for t in v.open_tasks)
        )
        await _cli_ok(stack, "kp-feedback", str(deal_id), "--agreed")
        view = await stack.wait_until(
            deal_id, lambda v: any(p.kind == "approval" for p in v.processes)
        )
        assert view.stage == "CONTRACT" and view.document_set == "contract_and_invoice"

        # R-KP-6/7: the «Согласование» item exists, linked to the deal; approved.
        async def approval_items() -> list:
            found = await stack.bitrix24.call(
                "crm.item.list", {"entityTypeId": 1032, "filter": {"parentId2": deal_id}}
            )
            return found["items"]

        for _ in range(100):  # the child creates the item right after it starts
            items = {"items": await approval_items()}
            if items["items"]:
                break
            await asyncio.sleep(0.1)
        assert len(items["items"]) == 1
        await _cli_ok(stack, "approval", str(deal_id), "--approve")
        await stack.wait_until(
            deal_id, lambda v: any("подписание с клиентом" in t.title for t in v.open_tasks)
        )
        item = await stack.bitrix24.call(
            "crm.item.get", {"entityTypeId": 1032, "id": items["items"][0]["id"]}
        )
        assert item["item"]["stageId"] == "DT1032_3:SUCCESS"

        # The invoice exists in 1C; the manager fills the contract fields and moves on.
        async with OneCClient(stack.settings.onec.odata_url, "odata", "odata") as onec:
            romashka = await onec.find_one("Catalog_Контрагенты", F("ИНН") == "7701234567")
            assert romashka is not None
            await onec.create(
                "Document_СчетНаОплатуКлиенту",
                {
                    "Number": "СЧ-000045",
                    "СуммаДокумента": 640000,
                    "Контрагент_Key": romashka["Ref_Key"],
                },
            )
        await stack.bitrix24.call(
            "crm.deal.update",
            {
                "id": deal_id,
                "fields": {
                    "UF_CRM_INVOICE": "СЧ-000045",
                    "UF_CRM_CONTRACT": "Д-12/2026",
                    "UF_CRM_PAYMENT_TERMS": 31,
                },
            },
        )
        await _cli_ok(stack, "move", str(deal_id), "INVOICE")
        await _cli_ok(stack, "signed", str(deal_id), "invoice")
        await _cli_ok(stack, "signed", str(deal_id), "contract")

        # R-INV-3: a 100 000 ₽ advance arrives in 1C and closes the pay loop.
        await _admin(stack, "payments", {"invoice": "СЧ-000045", "amount": 100000})
        await stack.wait_until(deal_id, lambda v: v.stage == "LAUNCH", seconds=30)

        # R-LA-1, R-PS-1: 50/30/10/10; the 50 % tranche is due today, past the working day,
        # and the advance does not cover it.
        code, out = await stack.cli("deal", "schedule", str(deal_id), "50:" + str(today))
        assert code == 1 and "сумма процентов 50" in out and "schedule_invalid" in out
        await _cli_ok(
            stack,
            "schedule",
            str(deal_id),
            f"50:{today}",
            f"30:{today + timedelta(days=1)}",
            f"10:{today + timedelta(days=30)}",
            f"10:{today + timedelta(days=40)}",
        )
        await stack.wait_until(deal_id, lambda v: v.payment_schedule[0].state == "overdue")
        await _cli_ok(stack, "move", str(deal_id), "ACCEPTED")

        # R-AC-3 / R-X6: the logist's task is mirrored into 1C; the logist completes it there.
        task_1c = await stack.eventually(
            lambda: [
                t
                for t in stack.onec_base.all("Task_ЗадачаИсполнителя")
                if str(task_key_in(t["Описание"]) or "").startswith(f"deal:{deal_id}:")
            ]
        )
        await _admin(
            stack, f"tasks/{task_1c[0]['Ref_Key']}/complete", {"comment": "Отгружено, ТТН 123"}
        )

        def ship_task() -> dict:
            return next(
                t
                for t in stack.portal.tasks.values()
                if t["TITLE"] == "Отгрузить товар клиенту" and f"D_{deal_id}" in t["UF_CRM_TASK"]
            )

        await stack.eventually(lambda: str(ship_task()["STATUS"]) == "5", seconds=30)
        ship = ship_task()
        comments = await stack.bitrix24.call(
            "task.commentitem.getlist", {"TASKID": int(ship["ID"])}
        )
        assert any("ТТН 123" in c["POST_MESSAGE"] for c in comments)

        # The overdue tranche: manager notified, РОП escalated; then the rest of it is paid.
        overdue = {
            n["USER_ID"]
            for n in stack.portal.notifications
            if str(n.get("TAG", "")).startswith(f"deal:{deal_id}:ps:1:overdue")
        }
        assert overdue == {2, 3}
        await _cli_ok(stack, "pay", str(deal_id), "--amount", "220000", "--date", str(today))
        await stack.wait_until(deal_id, lambda v: v.payment_schedule[0].state == "paid")

        await _cli_ok(stack, "move", str(deal_id), "TO_SHIP")
        await _cli_ok(stack, "move", str(deal_id), "SHIPPED")

        # R-SH-1..3: the УПД is posted and signed in 1C; both documents signed → e-mail → WON.
        upd = await _admin(stack, "upd", {"basis": "КП-000123"})
        await _admin(stack, f"upd/{upd['Ref_Key']}/sign", {"signed": True})
        await _cli_ok(stack, "signed", str(deal_id), "act")
        await _cli_ok(stack, "signed", str(deal_id), "upd")
        result = await stack.handle(deal_id).result()
        engineers = await stack.bitrix24.call("crm.deal.list", {"filter": {"CATEGORY_ID": 2}})
        board = await _cli_ok(stack, "list")
        sla_code, sla = await stack.cli("report", "sla")
        if os.environ.get("SALESFLOW_RECORD_HISTORIES"):
            await record_histories(
                stack, [f"deal-{deal_id}", *(p.workflow_id for p in result.processes)]
            )

    assert result.stage == "WON"
    # The read model: the board shows the deal won; the SLA report counts its deadlines.
    assert str(deal_id) in board and "WON" in board
    assert sla_code == 0 and "INVOICE" in sla and "LAUNCH" in sla, sla
    deal_tasks = [t for t in stack.portal.tasks.values() if f"D_{deal_id}" in t["UF_CRM_TASK"]]
    assert sorted(t["TITLE"] for t in deal_tasks) == sorted(TASK_TITLES)
    assert {(str(t["RESPONSIBLE_ID"]), str(t["CREATED_BY"])) for t in deal_tasks} == {
        ("3", "2"),
        ("5", "3"),
    }
    client_mails = [m for m in stack.portal.emails if str(m["OWNER_ID"]) == str(deal_id)]
    # R-X5: taken, КП, invoice, shipped, documents, feedback form; issue 14 item 6: the
    # logist's 1C task put to work and executed
    assert len(client_mails) == 8
    started_done = [m for m in client_mails if "По вашему заказу" in str(m["BODY"])]
    assert len(started_done) == 2
    (accountant_mail,) = stack.mailbox.messages
    assert accountant_mail["To"] == "buh@example.ru"
    body = accountant_mail.get_payload(decode=True).decode()
    assert upd["Number"] in body
    assert [d["ORIGIN_ID"] for d in engineers] == [f"deal:{deal_id}:won:engineers_deal"]
    assert stack.portal.deals[deal_id]["STAGE_ID"] == "C1:WON"


async def test_r_lose_1_lost_at_kp_with_other_and_comment(dev_env, tmp_path) -> None:
    async with running_stack(dev_env, tmp_path, "lost", 940_000, FAST_RULES) as stack:
        deal_id = await stack.add_deal(UF_CRM_KP="КП-000124", UF_CRM_DIRECTION="Казахстан")
        await stack.wait_for_workflow(deal_id)
        await _cli_ok(stack, "accept", str(deal_id), "--manager", "4")
        await stack.wait_until(deal_id, lambda v: bool(v.open_tasks))
        await _bitrix_move(
            stack, deal_id, "C1:UC_KP", UF_CRM_PRIORITY=12, UF_CRM_DELIVERY_TERM="60 дней"
        )
        await stack.wait_until(deal_id, lambda v: v.stage == "KP" and v.kp_round == 1)
        code, out = await stack.cli("deal", "lose", str(deal_id), "--reason", "OTHER")
        # the refusal in Russian with its code (issue 12: refusals at the right depth)
        assert code == 1 and "для причины «Другое» нужен комментарий" in out
        assert "(код: other_needs_comment)" in out
        await _cli_ok(
            stack, "lose", str(deal_id), "--reason", "OTHER", "--comment", "Проект заморожен"
        )
        result = await stack.handle(deal_id).result()
        comments = await stack.bitrix24.call(
            "crm.timeline.comment.list", {"filter": {"ENTITY_ID": deal_id, "ENTITY_TYPE": "deal"}}
        )
        rows = await stack.bitrix24.call("crm.deal.productrows.get", {"id": deal_id})
    assert result.stage == "LOSE"
    deal = stack.portal.deals[deal_id]
    assert deal["STAGE_ID"] == "C1:LOSE"
    assert str(deal["UF_CRM_LOSS_REASON"]) == "46"
    assert deal["UF_CRM_LOSS_COMMENT"] == "Проект заморожен"
    # R-KP-2: outside «Россия» the rows stay empty and the timeline says why.
    assert rows == []
    # the 1C step's comment, and (issue 15) each stage change once: IN_WORK, KP, LOSE
    stamped = [c for c in comments if "— salesflow, " in c["COMMENT"]]
    assert len(comments) - len(stamped) == 1
    assert [c["COMMENT"].split(".")[0] for c in stamped] == [
        "Стадия сделки: Взят в работу",
        "Стадия сделки: КП",
        "Стадия сделки: Сделка провалена",
    ]
