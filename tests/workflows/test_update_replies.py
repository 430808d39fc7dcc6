"""Updates after which the deal moves on answer once it has (R-NEW-3, R-KP-4, R-KP-7, R-LOSE-1):
the reply is the deal after the step, so `salesflow deal …` needs no polling."""

from __future__ import annotations

import re

from temporalio.api.sdk.v1 import WorkflowMetadata

from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import (
    AcceptLead,
    Actor,
    ApprovalDecision,
    KpFeedback,
    LoseDeal,
)
from tests.workflows.conftest import new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import drive_to, until


async def test_r_new_3_accept_answers_at_in_work(run_deal) -> None:
    portal = FakePortal(new_deal(2601))
    async with run_deal(portal) as handle:
        ack = await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=3))
        view = await handle.query(DealWorkflow.state)
    # issue 16: the reply is a small UpdateAck — the stage after the step and what changed
    assert ack.stage == "IN_WORK"
    assert "accepted by user 3" in ack.changed
    assert view.stage == "IN_WORK"
    assert view.manager_id == 3


async def test_r_kp_4_feedback_answers_with_the_next_round_or_the_next_stage(run_deal) -> None:
    portal = FakePortal(new_deal(2602))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: v.kp_round == 1)
        view = await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=False))
        assert (view.stage, view.kp_round) == ("KP", 2)
        view = await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=True))
    assert view.stage == "CONTRACT"


async def test_r_kp_7_rejected_approval_answers_back_at_kp(run_deal) -> None:
    portal = FakePortal(new_deal(2603))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "CONTRACT")
        await until(handle, lambda v: any(p.kind == "approval" for p in v.processes))
        view = await handle.execute_update(
            DealWorkflow.approval_decision, ApprovalDecision(approved=False, comment="цена")
        )
    assert view.stage == "KP"


async def test_r_lose_1_lose_answers_at_lose(run_deal) -> None:
    portal = FakePortal(new_deal(2604))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "IN_WORK")
        view = await handle.execute_update(
            DealWorkflow.lose_deal, LoseDeal(reason="OTHER", comment="передумали")
        )
        assert view.stage == "LOSE"
        await handle.result()


async def test_web_ui_details_name_the_stage_the_manager_and_the_zone(run_deal) -> None:
    """#10: the integrator's window — current details by Bitrix24 names, deadlines zoned."""
    deal = new_deal(2605).model_copy(
        update={"assigned_by_id": 3, "assigned_by_name": "Петров Пётр"}
    )
    portal = FakePortal(deal)
    async with run_deal(portal) as handle:
        await until(handle, lambda v: bool(v.deadlines))
        at_new = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=3))
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert "**Stage:** Новая заявка (NEW)" in at_new.current_details
    assert re.search(r"\d\d\.\d\d\.\d{4} \d\d:\d\d Europe/Moscow", at_new.current_details)
    assert "**Stage:** Взят в работу (IN_WORK)" in metadata.current_details
    assert "**Manager:** Петров Пётр (ID 3)" in metadata.current_details


async def test_r_x10_the_history_names_who_acted(run_deal) -> None:
    portal = FakePortal(new_deal(2606))
    manager = Actor(user_id=3, name="Петров Пётр", source="bitrix24")
    async with run_deal(portal) as handle:
        view = await handle.execute_update(
            DealWorkflow.accept_lead, AcceptLead(manager_id=3, actor=manager)
        )
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: v.kp_round == 1)
        cli = Actor(user_id=0, name="integrator (CLI)", source="cli")
        view = await handle.execute_update(
            DealWorkflow.kp_feedback, KpFeedback(agreed=False, actor=cli)
        )
        await handle.execute_update(
            DealWorkflow.lose_deal, LoseDeal(reason="NO_MONEY", actor=manager)
        )
        lost = await handle.query(DealWorkflow.state)
    by_cause = {h.cause: h.actor for h in lost.history}
    assert by_cause["accepted by user 3"] == manager
    assert by_cause["КП feedback round 1: not agreed"] == cli
    assert by_cause["lost: NO_MONEY"] == manager
    assert view.stage == "KP"
