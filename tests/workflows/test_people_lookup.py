"""Issue 14 item 7 on the time-skipping server: people are read when used
(salesflow/workflows/people_lookup.py) — a new РОП in the configuration takes over running
deals, and a user deactivated in Bitrix24 hands their work to the РОП with a notice.

Deal IDs of this module: 7_471 … 7_479.
"""

from __future__ import annotations

from datetime import timedelta

from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import Bitrix24Event
from tests.workflows.conftest import calendar_rules, new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import drive_to, pass_days, until

NEW_ROP = 20


async def changed(handle, portal: FakePortal) -> None:
    await handle.signal(
        DealWorkflow.bitrix24_event,
        Bitrix24Event(event="ONCRMDEALUPDATE", entity_id=portal.deal.id),
    )


async def test_r_x4_a_new_rop_takes_over_a_running_deal(run_deal, skip_env) -> None:
    portal = FakePortal(new_deal(7471))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "IN_WORK")
        await until(handle, lambda v: bool(v.open_tasks))
        assert portal.people is not None
        portal.people = portal.people.model_copy(update={"rop": NEW_ROP})
        await skip_env.sleep(timedelta(minutes=61))  # the last read is older than the interval
        await changed(handle, portal)
        await until(handle, lambda v: any("РОП changed" in h.cause for h in v.history))
        await pass_days(skip_env, 5)  # «Согласовать КП» is overdue: the escalation
        await until(
            handle, lambda _: any(n.key.endswith(":overdue:rop") for n in portal.notifications)
        )
    (escalation,) = [n for n in portal.notifications if n.key.endswith("kp_agreement:overdue:rop")]
    assert escalation.user_ids == [NEW_ROP]


async def test_r_x1_a_deactivated_users_work_goes_to_the_rop(run_deal, skip_env) -> None:
    portal = FakePortal(new_deal(7472))
    rop = calendar_rules().people.rop
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "IN_WORK")  # accepted by manager 3
        view = await until(handle, lambda v: bool(v.open_tasks))
        (task,) = view.open_tasks
        assert task.responsible_id == 3
        portal.inactive = {3}
        await skip_env.sleep(timedelta(minutes=61))
        await changed(handle, portal)
        view = await until(
            handle, lambda v: v.manager_id == rop and v.open_tasks[0].responsible_id == rop
        )
        await until(
            handle, lambda _: any(n.key == "deal:7472:deactivated:3" for n in portal.notifications)
        )
    assert portal.deal.assigned_by_id == rop
    assert [(r.task_id, r.responsible_id) for r in portal.reassigned] == [(task.task_id, rop)]
    (told,) = [n for n in portal.notifications if n.key == "deal:7472:deactivated:3"]
    assert told.user_ids == [rop] and "деактивирован" in told.message
