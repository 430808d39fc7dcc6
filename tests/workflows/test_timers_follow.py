"""Issue 14 item 2 (R-X4, R-X9): deadlines follow the data — the КП date, a task's DEADLINE
moved by a person, the responsible, «Срок поставки» — on the time-skipping server."""

from __future__ import annotations

from datetime import datetime, timedelta

from salesflow.workflows import rules as R
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import Bitrix24Event, LoseDeal, RequestTasks
from tests.workflows.conftest import calendar_rules, new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import drive_to, until

ROP, ENGINEER, OTHER_MANAGER = 2, 6, 4


def _deal_changed(deal_id: int) -> Bitrix24Event:
    return Bitrix24Event(event="ONCRMDEALUPDATE", entity_id=deal_id)


def _told(portal: FakePortal, part: str) -> list[list[int]]:
    return sorted(n.user_ids for n in portal.notifications if part in n.key)


async def _skip_to(env, moment: datetime) -> None:
    """Skip server time to `moment`, a day at a time (one long skip can outlast the RPC)."""
    while (now := await env.get_current_time()) < moment:
        await env.sleep(min(moment - now, timedelta(days=1)))


async def test_r_x4_r_iw_3_kp_date_moved_forward_delays_the_escalation(run_deal, skip_env) -> None:
    portal = FakePortal(new_deal(7301))
    rules = calendar_rules()
    async with run_deal(portal, rules) as handle:
        await drive_to(handle, portal, "IN_WORK")
        view = await until(handle, lambda v: any(d.name == "kp_agreement" for d in v.deadlines))
        old_due = next(d.due for d in view.deadlines if d.name == "kp_agreement")
        new_day = R.local_day(old_due, rules.timezone) + timedelta(days=7)
        new_due = R.local_moment(new_day, R._clock(rules.work_end), rules.timezone)
        # a person moves «Дата согласования КП» a week on, and hands the deal to another manager
        portal.deal.fields["UF_CRM_KP_DATE"] = new_day.strftime("%d.%m.%Y")
        portal.deal.assigned_by_id = OTHER_MANAGER
        await handle.signal(DealWorkflow.bitrix24_event, _deal_changed(portal.deal.id))
        view = await until(
            handle,
            lambda v: any(d.name == "kp_agreement" and d.due == new_due for d in v.deadlines),
        )
        assert view.manager_id == OTHER_MANAGER
        await _skip_to(skip_env, old_due + timedelta(hours=2))
        await handle.query(DealWorkflow.state)
        assert not _told(portal, "kp_agreement:overdue")  # the old due is gone
        await _skip_to(skip_env, new_due + timedelta(minutes=1))
        await until(handle, lambda v: any(d.overdue for d in v.deadlines))
    # escalated once, to the new responsible and the РОП
    assert _told(portal, ":kp_agreement:overdue") == [[ROP], [OTHER_MANAGER]]
    history = [h.cause for h in view.history]
    assert any("deadline kp_agreement moved" in c for c in history)


async def test_r_x4_r_x6_task_deadline_moved_by_a_person_moves_the_reminder(
    run_deal, skip_env
) -> None:
    portal = FakePortal(new_deal(7302))
    rules = calendar_rules(service_task={"minutes": 120, "working_time": False})
    async with run_deal(portal, rules) as handle:
        await drive_to(handle, portal, "IN_WORK")
        await handle.execute_update(DealWorkflow.request_tasks, RequestTasks(engineers=True))
        task = next(t for t in portal.tasks.values() if "инженер" in t.title)
        task_id = portal.task_ids[task.key]
        assert task.deadline is not None
        moved = task.deadline + timedelta(hours=10)
        # the engineer moves the task's DEADLINE in Bitrix24 (ONTASKUPDATE)
        portal.moved_deadlines[task_id] = moved
        await handle.signal(
            DealWorkflow.bitrix24_event, Bitrix24Event(event="ONTASKUPDATE", entity_id=task_id)
        )
        view = await until(
            handle, lambda v: any(d.task_id == task_id and d.due == moved for d in v.deadlines)
        )
        assert next(t.deadline for t in view.open_tasks if t.task_id == task_id) == moved
        await _skip_to(skip_env, task.deadline + timedelta(hours=1))
        await handle.query(DealWorkflow.state)
        assert not _told(portal, f":task_{task_id}:overdue")
        await _skip_to(skip_env, moved + timedelta(hours=1))
        await until(handle, lambda v: any(d.overdue and d.task_id for d in v.deadlines))
        await until(handle, lambda _: bool(_told(portal, f":task_{task_id}:reminder")))
    assert _told(portal, f":task_{task_id}:overdue") == [[ROP], [ENGINEER]]
    first = next(n for n in portal.notifications if f":task_{task_id}:reminder:1" in n.key)
    assert portal.notified_at[first.key] > moved  # the reminders follow the moved deadline


async def test_r_x4_delivery_term_watched_and_follows_the_field(run_deal, skip_env) -> None:
    portal = FakePortal(new_deal(7303))
    rules = calendar_rules()
    async with run_deal(portal, rules) as handle:
        await drive_to(handle, portal, "KP")
        now = await skip_env.get_current_time()
        day = R.local_day(now, rules.timezone) + timedelta(days=3)
        # «Срок поставки» typed as a date: watched from now on, through the stages
        portal.deal.fields["UF_CRM_DELIVERY_TERM"] = day.isoformat()
        await handle.signal(DealWorkflow.bitrix24_event, _deal_changed(portal.deal.id))
        due = R.local_moment(day, R._clock(rules.work_end), rules.timezone)
        await until(
            handle,
            lambda v: any(d.kind == "delivery" and d.due == due for d in v.deadlines),
        )
        await drive_to(handle, portal, "CONTRACT")
        view = await until(handle, lambda v: any(d.kind == "approval" for d in v.deadlines))
        assert any(d.kind == "delivery" for d in view.deadlines)  # kept across the stage
        await _skip_to(skip_env, due + timedelta(minutes=1))
        await until(handle, lambda v: any(d.overdue and d.kind == "delivery" for d in v.deadlines))
    assert _told(portal, ":delivery_term:overdue") == [[ROP], [3]]


async def test_r_x4_r_x6_logist_task_deadline_sent_to_1c_and_watched(run_deal, skip_env) -> None:
    portal = FakePortal(new_deal(7304))
    rules = calendar_rules(service_task={"minutes": 120, "working_time": False})
    async with run_deal(portal, rules) as handle:
        await drive_to(handle, portal, "IN_WORK")
        await handle.execute_update(DealWorkflow.request_tasks, RequestTasks(logistics=True))
        task = next(t for t in portal.tasks.values() if "логист" in t.title)
        task_id = portal.task_ids[task.key]
        await until(handle, lambda _: bool(portal.onec_tasks))
        (onec_task,) = portal.onec_tasks.values()
        # 1C's СрокИсполнения is the Bitrix24 task's DEADLINE
        assert task.deadline is not None and onec_task["deadline"] == task.deadline
        await _skip_to(skip_env, task.deadline + timedelta(minutes=1))
        await until(handle, lambda v: any(d.overdue and d.task_id == task_id for d in v.deadlines))
    assert _told(portal, f":task_{task_id}:overdue") == [[ROP], [5]]


async def test_r_lose_1_r_x6_lost_deal_withdraws_the_logist_task_in_1c(run_deal) -> None:
    portal = FakePortal(new_deal(7305))
    async with run_deal(portal, calendar_rules()) as handle:
        await drive_to(handle, portal, "IN_WORK")
        await handle.execute_update(DealWorkflow.request_tasks, RequestTasks(logistics=True))
        await until(handle, lambda _: bool(portal.onec_tasks))
        await handle.execute_update(
            DealWorkflow.lose_deal, LoseDeal(reason="NO_MONEY", comment="нет бюджета")
        )
        view = await until(
            handle, lambda v: any("withdrawn (deal lost)" in h.cause for h in v.history)
        )
    (onec_task,) = portal.onec_tasks.values()
    assert "провалена" in onec_task["cancelled"]
    assert view.stage == "LOSE"
