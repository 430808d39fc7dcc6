"""Issue 14 item 5 on the time-skipping server: the automatic tasks of a stage are completed in
Bitrix24 when the deal leaves it; the logist's task mirrored into 1C is left to 1C."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError

from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import Bitrix24Event, DocumentsSigned, KpFeedback, LoseDeal
from tests.workflows.conftest import calendar_rules, new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import drive_to, until


async def test_r_x1_tasks_of_a_left_stage_are_completed_in_bitrix24(run_deal) -> None:
    portal = FakePortal(new_deal(7401))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: v.kp_round == 1)
        await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=False))
        await until(handle, lambda v: v.kp_round == 2)
        # the answered round's feedback task is completed while the deal stays at КП
        feedback_1 = portal.task_ids["deal:7401:kp:feedback:1"]
        assert feedback_1 in portal.completed_tasks
        assert portal.task_ids["deal:7401:kp:send_kp"] not in portal.completed_tasks
        await drive_to(handle, portal, "SHIPPED")
        for kind in ("act", "upd"):
            await handle.execute_update(DealWorkflow.documents_signed, DocumentsSigned(kind=kind))
        result = await handle.result()
    assert result.stage == "WON"
    logist = portal.task_ids["deal:7401:ac:ship_goods"]
    open_in_bitrix = {k for k, i in portal.task_ids.items() if i not in portal.completed_tasks}
    assert open_in_bitrix == {"deal:7401:ac:ship_goods"}
    assert [t.task_id for t in result.open_tasks] == [logist]


async def test_r_x8_r_kp_6_lost_during_approval_closes_the_approval_item(
    run_deal, skip_env
) -> None:
    portal = FakePortal(new_deal(7402))
    rules = calendar_rules()
    async with run_deal(portal, rules) as handle:
        await drive_to(handle, portal, "CONTRACT")
        view = await until(handle, lambda v: any(p.kind == "approval" for p in v.processes))
        await until(handle, lambda _: bool(portal.approval_items))
        await handle.execute_update(DealWorkflow.lose_deal, LoseDeal(reason="COMPETITOR"))
        result = await handle.result()
        approval = next(p for p in view.processes if p.kind == "approval")
        with pytest.raises(WorkflowFailureError):  # cancelled, after closing its item
            await skip_env.client.get_workflow_handle(approval.workflow_id).result()
    assert result.stage == "LOSE"
    (item,) = portal.approval_items.values()
    assert item["stage"] == rules.approval.stage_rejected
    assert [p.state for p in result.processes] == ["cancelled"]


async def test_r_x5_kp_sent_message_goes_when_the_kp_task_is_done(run_deal) -> None:
    portal = FakePortal(new_deal(7403))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: v.kp_round == 1)
        assert "deal:7403:kp:client_message" not in portal.client_messages
        task_id = portal.task_ids["deal:7403:kp:send_kp"]
        portal.completed_tasks.add(task_id)
        await handle.signal(
            DealWorkflow.bitrix24_event, Bitrix24Event(event="ONTASKUPDATE", entity_id=task_id)
        )
        await until(handle, lambda _: "deal:7403:kp:client_message" in portal.client_messages)
        await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=True))
        await until(handle, lambda v: v.stage == "CONTRACT")
    assert len([k for k in portal.client_messages if k.endswith("kp:client_message")]) == 1
