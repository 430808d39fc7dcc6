"""A Bitrix24 task completed (ONTASKUPDATE, status 5) closes its step, and the seed's «Возврат
на задачу» (rule rework_before_next_round): the next round's task only after the objection task
is completed (issue 12 item 3)."""

from __future__ import annotations

from datetime import date

from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import (
    Bitrix24Event,
    DealRules,
    KpFeedback,
    RecordPayment,
    RequestTasks,
)
from tests.workflows.conftest import calendar_rules, new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import complete_in_bitrix24, drive_to, pass_days, rework_done, until

SEQUENCED = calendar_rules()  # rework_before_next_round is on by default


def test_r_kp_4_rework_before_next_round_is_on_by_default_and_off_for_older_snapshots() -> None:
    """New deals sequence the rounds; a rules snapshot from before the setting (an older deal,
    a recorded history) keeps both tasks at once, as it was started."""
    assert SEQUENCED.rework_before_next_round is True
    older = SEQUENCED.model_dump(mode="json")
    del older["rework_before_next_round"]
    assert DealRules.model_validate(older).rework_before_next_round is False


async def test_r_kp_4_with_the_rule_off_both_tasks_come_at_once(run_deal) -> None:
    portal = FakePortal(new_deal(4205))
    async with run_deal(portal, calendar_rules(rework_before_next_round=False)) as handle:
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: v.kp_round == 1)
        await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=False))
        await until(handle, lambda v: any("kp:feedback:2" in t.key for t in v.open_tasks))
    assert keys(portal, ":kp:objection:") == ["kp:objection:1"]


def keys(portal: FakePortal, part: str) -> list[str]:
    return sorted(k.split(":", 2)[2] for k in portal.tasks if part in k)


async def test_r_kp_4_next_feedback_round_after_the_objection_task_is_completed(
    run_deal,
) -> None:
    portal = FakePortal(new_deal(4201))
    async with run_deal(portal, SEQUENCED) as handle:
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: v.kp_round == 1)
        view = await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=False))
        assert view.kp_round == 2
        await until(handle, lambda v: any("kp:objection:1" in t.key for t in v.open_tasks))
        # the objection task is open: no feedback task of round 2 yet
        assert keys(portal, ":kp:feedback:") == ["kp:feedback:1"]
        await complete_in_bitrix24(handle, portal, "kp:objection:1")
        view = await until(handle, lambda v: any("kp:feedback:2" in t.key for t in v.open_tasks))
        assert not any("kp:objection:1" in t.key for t in view.open_tasks)
        await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=True))
        view = await until(handle, lambda v: v.stage == "CONTRACT")
    assert keys(portal, ":kp:feedback:") == ["kp:feedback:1", "kp:feedback:2"]
    assert keys(portal, ":kp:objection:") == ["kp:objection:1"]
    completed = [h.cause for h in view.history if "completed in Bitrix24" in h.cause]
    assert len(completed) == 1


async def test_r_kp_4_an_answer_before_the_objection_task_is_done_needs_no_feedback_task(
    run_deal,
) -> None:
    portal = FakePortal(new_deal(4202))
    async with run_deal(portal, SEQUENCED) as handle:
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: v.kp_round == 1)
        await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=False))
        await until(handle, lambda v: any("kp:objection:1" in t.key for t in v.open_tasks))
        await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=True))
        view = await until(handle, lambda v: v.stage == "CONTRACT")
    assert keys(portal, ":kp:feedback:") == ["kp:feedback:1"]
    assert "КП feedback round 2: agreed" in [h.cause for h in view.history]


async def test_r_inv_2_next_payment_round_after_the_objection_task_is_completed(
    run_deal, skip_env
) -> None:
    portal = FakePortal(new_deal(4203))
    async with run_deal(portal, SEQUENCED) as handle:
        await drive_to(handle, portal, "INVOICE")
        await until(handle, lambda v: v.invoice_round == 1)
        await pass_days(skip_env, 6)
        await until(handle, lambda v: any("inv:objection:1" in t.key for t in v.open_tasks))
        await pass_days(skip_env, 6)
        view = await handle.query(DealWorkflow.state)
        assert view.invoice_round == 1
        assert keys(portal, ":inv:get_payment:") == ["inv:get_payment:1"]
        await complete_in_bitrix24(handle, portal, "inv:objection:1")
        await until(handle, lambda v: v.invoice_round == 2)
        await until(handle, lambda v: any("inv:get_payment:2" in t.key for t in v.open_tasks))
        portal.deal.fields.update(
            UF_CRM_SIGNED_INVOICE="Подписан", UF_CRM_SIGNED_CONTRACT="Подписан"
        )
        await handle.execute_update(
            DealWorkflow.record_payment,
            RecordPayment(amount=640000, paid_on=date.today(), source="manual"),
        )
        view = await until(handle, lambda v: v.stage == "LAUNCH")
    assert keys(portal, ":inv:get_payment:") == ["inv:get_payment:1", "inv:get_payment:2"]
    assert keys(portal, ":inv:objection:") == ["inv:objection:1"]


async def test_r_x1_responsible_changed_in_bitrix24_takes_the_deal_and_its_tasks(run_deal) -> None:
    portal = FakePortal(new_deal(4204))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: v.kp_round == 1)
        await handle.execute_update(DealWorkflow.request_tasks, RequestTasks(lawyer=True))
        portal.deal.assigned_by_id = 4
        portal.deal.fields["MODIFY_BY_ID"] = "2"
        await handle.signal(
            DealWorkflow.bitrix24_event,
            Bitrix24Event(event="ONCRMDEALUPDATE", entity_id=portal.deal.id),
        )
        view = await until(
            handle, lambda v: v.manager_id == 4 and all(t.responsible_id != 3 for t in v.open_tasks)
        )
        await handle.signal(  # the same change re-read: nothing more
            DealWorkflow.bitrix24_event,
            Bitrix24Event(event="ONCRMDEALUPDATE", entity_id=portal.deal.id),
        )
        await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=False))
        view = await rework_done(handle, portal, "kp:objection:1", "kp:feedback:2")
    # IN_WORK's «Проверить товарные позиции» was completed when the deal left IN_WORK.
    manager_tasks = {"kp:send_kp", "kp:feedback:1"}
    moved = {r.task_id for r in portal.reassigned}
    assert moved == {portal.task_ids[f"deal:4204:{p}"] for p in manager_tasks}
    assert len(portal.reassigned) == len(moved)  # each once
    lawyer = next(t for k, t in portal.tasks.items() if ":request:lawyer:" in k)
    assert lawyer.responsible_id == 9  # a service's task stays the service's
    for purpose in ("kp:objection:1", "kp:feedback:2"):
        assert portal.tasks[f"deal:4204:{purpose}"].responsible_id == 4
    assert "responsible changed in Bitrix24 by user 2: user 3 → user 4" in [
        h.cause for h in view.history
    ]
