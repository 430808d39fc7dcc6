"""Issue 14 (fin14) on the time-skipping server: the tasks' DEADLINEs follow the data (R-X4) —
a moved «Дата оплаты» / КП date rewrites the watching task's DEADLINE in Bitrix24, the logist's
DEADLINE moved by a person reaches 1C's СрокИсполнения, the Акт/УПД tasks move
`closing_documents`; a lost deal's «Согласование» item a person already decided stays so."""

from __future__ import annotations

from datetime import datetime, timedelta

from salesflow.workflows import rules as R
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import (
    Bitrix24Event,
    DealRules,
    DocumentsSigned,
    LoseDeal,
    RequestTasks,
)
from tests.workflows.conftest import calendar_rules, new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import drive_to, until


def _deal_changed(deal_id: int) -> Bitrix24Event:
    return Bitrix24Event(event="ONCRMDEALUPDATE", entity_id=deal_id)


def _task_changed(task_id: int) -> Bitrix24Event:
    return Bitrix24Event(event="ONTASKUPDATE", entity_id=task_id)


def _week_on(due: datetime, rules: DealRules) -> tuple[str, datetime]:
    """The date a week after `due`'s day as a person types it, and its end of working day."""
    day = R.local_day(due, rules.timezone) + timedelta(days=7)
    return day.strftime("%d.%m.%Y"), R.local_moment(day, R._clock(rules.work_end), rules.timezone)


async def test_r_x4_r_kp_1_kp_date_moved_rewrites_the_send_kp_task_deadline(run_deal) -> None:
    portal = FakePortal(new_deal(7601))
    rules = calendar_rules()
    async with run_deal(portal, rules) as handle:
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: v.kp_round > 0)
        task_id = portal.task_ids["deal:7601:kp:send_kp"]
        old = portal.tasks["deal:7601:kp:send_kp"].deadline
        assert old is not None
        typed, new_due = _week_on(old, rules)
        portal.deal.fields["UF_CRM_KP_DATE"] = typed
        await handle.signal(DealWorkflow.bitrix24_event, _deal_changed(portal.deal.id))
        await until(handle, lambda _: bool(portal.rewritten_deadlines))
        # the ONTASKUPDATE the rewrite causes is no move by a person: written once
        await handle.signal(DealWorkflow.bitrix24_event, _task_changed(task_id))
        view = await until(
            handle,
            lambda v: any(t.task_id == task_id and t.deadline == new_due for t in v.open_tasks),
        )
    assert portal.rewritten_deadlines == [(task_id, new_due)]
    assert next(d.due for d in view.deadlines if d.name == "kp_agreement") == new_due


async def test_r_x4_r_inv_1_payment_date_moved_rewrites_the_payment_task_deadline(
    run_deal,
) -> None:
    portal = FakePortal(new_deal(7602))
    rules = calendar_rules()
    async with run_deal(portal, rules) as handle:
        await drive_to(handle, portal, "INVOICE")
        await until(handle, lambda v: v.invoice_round > 0)
        key = "deal:7602:inv:get_payment:1"
        await until(handle, lambda v: any(t.key == key for t in v.open_tasks))
        old = portal.tasks[key].deadline
        assert old is not None
        typed, new_due = _week_on(old, rules)
        portal.deal.fields["UF_CRM_PAYMENT_DATE"] = typed
        await handle.signal(DealWorkflow.bitrix24_event, _deal_changed(portal.deal.id))
        await until(handle, lambda _: bool(portal.rewritten_deadlines))
        view = await until(
            handle, lambda v: any(d.name == "payment_1" and d.due == new_due for d in v.deadlines)
        )
    assert portal.rewritten_deadlines == [(portal.task_ids[key], new_due)]
    assert any("DEADLINE" in h.cause for h in view.history)


async def test_r_x4_r_x6_logist_deadline_moved_in_bitrix24_moves_1c_srok(run_deal) -> None:
    portal = FakePortal(new_deal(7603))
    rules = calendar_rules(service_task={"minutes": 120, "working_time": False})
    async with run_deal(portal, rules) as handle:
        await drive_to(handle, portal, "IN_WORK")
        await handle.execute_update(DealWorkflow.request_tasks, RequestTasks(logistics=True))
        task = next(t for t in portal.tasks.values() if "логист" in t.title)
        task_id = portal.task_ids[task.key]
        await until(handle, lambda _: bool(portal.onec_tasks))
        assert task.deadline is not None
        moved = task.deadline + timedelta(hours=30)
        portal.moved_deadlines[task_id] = moved  # the logist moves the DEADLINE in Bitrix24
        await handle.signal(DealWorkflow.bitrix24_event, _task_changed(task_id))
        await until(handle, lambda _: next(iter(portal.onec_tasks.values()))["deadline"] == moved)
        # the same event again changes nothing more
        await handle.signal(DealWorkflow.bitrix24_event, _task_changed(task_id))
        view = await until(
            handle, lambda v: any(d.task_id == task_id and d.due == moved for d in v.deadlines)
        )
    (onec_task,) = portal.onec_tasks.values()
    assert onec_task["deadline"] == moved
    assert not portal.rewritten_deadlines  # the person's DEADLINE is not written back
    assert view.stage == "IN_WORK"


async def test_r_sh_1_r_x4_act_task_deadline_moved_moves_closing_documents(run_deal) -> None:
    portal = FakePortal(new_deal(7604))
    async with run_deal(portal, calendar_rules()) as handle:
        await drive_to(handle, portal, "SHIPPED")
        key = "deal:7604:sh:upd"
        view = await until(handle, lambda v: any(t.key == key for t in v.open_tasks))
        due = next(d.due for d in view.deadlines if d.name == "closing_documents")
        moved = due + timedelta(days=2)
        task_id = portal.task_ids[key]
        portal.moved_deadlines[task_id] = moved  # a person moves the УПД task's DEADLINE
        await handle.signal(DealWorkflow.bitrix24_event, _task_changed(task_id))
        view = await until(
            handle,
            lambda v: any(d.name == "closing_documents" and d.due == moved for d in v.deadlines),
        )
    assert any("deadline closing_documents moved" in h.cause for h in view.history)


async def test_r_x8_r_kp_6_lost_deal_keeps_the_approval_a_person_decided(run_deal) -> None:
    portal = FakePortal(new_deal(7605))
    rules = calendar_rules()
    async with run_deal(portal, rules) as handle:
        await drive_to(handle, portal, "CONTRACT")
        await until(handle, lambda _: bool(portal.approval_items))
        (item,) = portal.approval_items.values()
        item["stage"] = rules.approval.stage_approved  # decided in Bitrix24, not polled yet
        await handle.execute_update(DealWorkflow.lose_deal, LoseDeal(reason="COMPETITOR"))
        result = await handle.result()
    assert result.stage == "LOSE"
    assert item["stage"] == rules.approval.stage_approved


async def test_r_sh_3_accountant_mail_attaches_the_signed_act_and_upd(run_deal) -> None:
    portal = FakePortal(new_deal(7606))
    async with run_deal(portal, calendar_rules()) as handle:
        await drive_to(handle, portal, "SHIPPED")
        for kind in ("act", "upd"):
            await handle.execute_update(DealWorkflow.documents_signed, DocumentsSigned(kind=kind))
        result = await handle.result()
    assert result.stage == "WON"
    (mail,) = portal.emails.values()
    assert mail.deal_id == 7606
    assert mail.attach_fields == ["UF_CRM_SIGNED_ACT", "UF_CRM_SIGNED_UPD"]
