"""R-X4 / R-X9: a deadline on every entity — stage tasks carry their stage's DEADLINE, the
КП date is watched through КП, service tasks and processes have an SLA — on the
time-skipping server."""

from __future__ import annotations

from datetime import date, timedelta

from salesflow.workflows import rules as R
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import Bitrix24Event, RequestTasks, StartProcess
from tests.workflows.conftest import calendar_rules, new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import drive_to, pass_days, until

ENGINEER, PURCHASER, ROP = 6, 7, 2


def _task(portal: FakePortal, title_part: str):
    return next(t for t in portal.tasks.values() if title_part in t.title)


async def test_r_x4_r_kp_1_r_inv_1_stage_tasks_carry_the_stage_deadline(run_deal) -> None:
    portal = FakePortal(new_deal(7101))
    rules = calendar_rules()
    async with run_deal(portal, rules) as handle:
        await drive_to(handle, portal, "KP")
        view = await until(handle, lambda v: v.kp_round > 0)
        kp_day = date.fromisoformat(portal.deal.fields["UF_CRM_KP_DATE"][:10])
        kp_due = R.local_moment(kp_day, R._clock(rules.work_end), rules.timezone)
        # «Дата согласования КП» is kept (and watched) through КП
        assert {d.name: d.due for d in view.deadlines}["kp_agreement"] == kp_due
        assert _task(portal, "Отправить КП").deadline == kp_due
        portal.deal.fields["UF_CRM_PAYMENT_DATE"] = (date.today() + timedelta(days=5)).isoformat()
        await drive_to(handle, portal, "INVOICE")
        view = await until(handle, lambda v: any(d.name == "payment_1" for d in v.deadlines))
        payment_due = next(d.due for d in view.deadlines if d.name == "payment_1")
        assert _task(portal, "Получить оплату").deadline == payment_due
        assert "kp_agreement" not in {d.name for d in view.deadlines}


async def test_r_x4_r_x6_r_x7_service_task_and_process_sla_escalated_then_cleared(
    run_deal, skip_env
) -> None:
    portal = FakePortal(new_deal(7102))
    rules = calendar_rules(
        service_task={"minutes": 120, "working_time": False},
        process={"minutes": 1440, "working_time": False},
    )
    async with run_deal(portal, rules) as handle:
        await drive_to(handle, portal, "IN_WORK")
        await handle.execute_update(DealWorkflow.request_tasks, RequestTasks(engineers=True))
        await handle.execute_update(DealWorkflow.start_process, StartProcess(kind="purchasing"))
        task = _task(portal, "инженер")
        assert task.deadline is not None
        task_id = portal.task_ids[task.key]
        view = await handle.query(DealWorkflow.state)
        assert {d.kind for d in view.deadlines} >= {"service_task", "process"}
        await skip_env.sleep(timedelta(minutes=121))
        await until(handle, lambda v: any(d.overdue and d.task_id for d in v.deadlines))
        told = [n for n in portal.notifications if f":task_{task_id}:overdue" in n.key]
        assert sorted(n.user_ids for n in told) == [[ROP], [ENGINEER]]
        # the engineer completes the task in Bitrix24: its deadline goes, the process's stays
        portal.completed_tasks.add(task_id)
        await handle.signal(
            DealWorkflow.bitrix24_event, Bitrix24Event(event="ONTASKUPDATE", entity_id=task_id)
        )
        view = await until(handle, lambda v: not any(d.task_id for d in v.deadlines))
        assert [d.kind for d in view.deadlines if d.workflow_id] == ["process"]
        await pass_days(skip_env, 1)
        await until(handle, lambda v: any(d.overdue and d.workflow_id for d in v.deadlines))
    told = [n for n in portal.notifications if ":process_" in n.key and ":overdue" in n.key]
    assert sorted(n.user_ids for n in told) == [[ROP], [PURCHASER]]


async def test_r_x4_r_kp_6_approval_item_sla_escalated_to_the_rop(run_deal, skip_env) -> None:
    portal = FakePortal(new_deal(7103))
    rules = calendar_rules(approval={"minutes": 240, "working_time": False})
    async with run_deal(portal, rules) as handle:
        await drive_to(handle, portal, "CONTRACT")
        await until(handle, lambda v: any(d.kind == "approval" for d in v.deadlines))
        await skip_env.sleep(timedelta(hours=4, minutes=1))
        await until(handle, lambda v: any(d.overdue and d.kind == "approval" for d in v.deadlines))
    told = [n for n in portal.notifications if ":approval_1:overdue" in n.key]
    assert sorted(n.user_ids for n in told) == [[ROP], [ROP]]  # the РОП is its responsible


async def test_r_x4_r_x6_logist_task_sla_until_1c_executes_it(run_deal, skip_env) -> None:
    portal = FakePortal(new_deal(7104))
    async with run_deal(portal, calendar_rules()) as handle:
        await drive_to(handle, portal, "IN_WORK")
        await handle.execute_update(DealWorkflow.request_tasks, RequestTasks(logistics=True))
        task = _task(portal, "логист")
        assert task.deadline is not None
        view = await until(handle, lambda v: any(d.task_id for d in v.deadlines))
        assert [d.responsible_id for d in view.deadlines if d.task_id] == [5]
        await until(handle, lambda _: bool(portal.onec_tasks))
        for onec_task in portal.onec_tasks.values():
            onec_task["done"] = True
        await skip_env.sleep(timedelta(minutes=2))
        view = await until(handle, lambda v: not any(d.task_id for d in v.deadlines))
    assert not [n for n in portal.notifications if ":overdue" in n.key]
