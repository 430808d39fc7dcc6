"""R-X10 / issue 12 «done when»: every history entry a person caused names that person — the
card's actor on each update (schedule, payment, signed documents, process, approval), and
the deal's last modifier for what a field in Bitrix24 drove."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from temporalio.client import WorkflowHandle

from salesflow.workflows.causes import AUTOMATIC
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import (
    AcceptLead,
    Actor,
    ApprovalDecision,
    DealView,
    DocumentsSigned,
    KpFeedback,
    MoveStage,
    RecordPayment,
    StartProcess,
)
from tests.workflows.conftest import new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import CONTRACT_FIELDS, IN_WORK_FIELDS, drive_to, schedule, until

MANAGER = Actor(user_id=3, name="Иван Петров")
ROP = Actor(user_id=2, name="Ольга Смирнова")
ACCOUNTANT = Actor(user_id=7, name="Мария Бухова")
# what a person caused: everything but the workflow's own doing (causes.AUTOMATIC) and the
# КП read from 1C (not coded)


async def _drive(handle: WorkflowHandle[Any, Any], portal: FakePortal) -> DealView:
    await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=3, actor=MANAGER))
    await until(handle, lambda v: v.stage == "IN_WORK" and bool(v.open_tasks))
    portal.deal.fields.update(IN_WORK_FIELDS)
    await handle.execute_update(DealWorkflow.move_stage, MoveStage(to="KP", actor=MANAGER))
    await until(handle, lambda v: v.stage == "KP" and v.kp_round > 0)
    await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=True, actor=MANAGER))
    view = await until(handle, lambda v: v.stage == "CONTRACT")
    if view.document_set != "invoice":
        await until(handle, lambda v: any(p.kind == "approval" for p in v.processes))
        await handle.execute_update(
            DealWorkflow.approval_decision, ApprovalDecision(approved=True, actor=ROP)
        )
    await handle.execute_update(
        DealWorkflow.start_process, StartProcess(kind="purchasing", actor=MANAGER)
    )
    portal.deal.fields.update(CONTRACT_FIELDS)
    await handle.execute_update(DealWorkflow.move_stage, MoveStage(to="INVOICE", actor=MANAGER))
    await until(handle, lambda v: v.stage == "INVOICE" and v.invoice_round > 0)
    for kind in ("invoice", "contract"):
        await handle.execute_update(
            DealWorkflow.documents_signed, DocumentsSigned(kind=kind, actor=MANAGER)
        )
    await handle.execute_update(
        DealWorkflow.record_payment,
        RecordPayment(amount=320000, paid_on=date.today(), source="manual", actor=ACCOUNTANT),
    )
    await until(handle, lambda v: v.stage == "LAUNCH")
    plan = schedule(date.today()).model_copy(update={"actor": MANAGER})
    await handle.execute_update(DealWorkflow.set_payment_schedule, plan)
    return await until(handle, lambda v: bool(v.payment_schedule))


async def test_r_x10_every_entry_a_person_caused_names_them(run_deal) -> None:
    portal = FakePortal(new_deal(4351))
    async with run_deal(portal) as handle:
        view = await _drive(handle, portal)
    unnamed = [
        (h.stage, h.cause)
        for h in view.history
        if h.actor is None and h.code not in AUTOMATIC and not h.cause.startswith("КП ")
    ]
    assert unnamed == []
    by_cause = {h.cause: h.actor for h in view.history}
    assert by_cause["КП agreed; document set contract_and_invoice"] == MANAGER
    assert by_cause["internal approval approved"] == ROP or view.document_set == "invoice"
    assert by_cause["invoice signed"] == MANAGER
    assert by_cause["payment schedule set: 4 tranches"] == MANAGER
    paid = [h for h in view.history if h.cause.startswith("payment 320000.00")]
    assert paid and paid[0].actor == ACCOUNTANT


async def test_r_kp_6_a_decision_on_the_item_in_bitrix24_names_who_moved_it(
    run_deal, skip_env
) -> None:
    """The «Согласование» item moved in Bitrix24: the poll reads its `movedBy` (crm.item.get)
    and the history names that user (patch fin12-approval-item-mover)."""
    portal = FakePortal(new_deal(4352))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "CONTRACT")
        await until(handle, lambda v: any(p.kind == "approval" for p in v.processes))
        item = next(iter(portal.approval_items.values()))
        item.update(stage="DT1032_3:SUCCESS", moved_by=2, moved_by_name=ROP.name)
        await skip_env.sleep(timedelta(minutes=31))  # the item's next poll
        view = await until(handle, lambda v: any(h.code == "approval_approved" for h in v.history))
    entry = next(h for h in view.history if h.code == "approval_approved")
    assert entry.actor == Actor(user_id=2, name=ROP.name)
