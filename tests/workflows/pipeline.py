"""Helpers that walk a deal through the pipeline on the time-skipping server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import (
    AcceptLead,
    ApprovalDecision,
    Bitrix24Event,
    DealView,
    DocumentsSigned,
    KpFeedback,
    MoveStage,
    PaymentSchedule,
    RecordPayment,
    Tranche,
)
from tests.workflows.doubles import FakePortal

IN_WORK_FIELDS = {
    "UF_CRM_PRIORITY": "11",
    "UF_CRM_KP": "КП-000123",
    "CONTACT_ID": "1",
    "UF_CRM_DELIVERY_TERM": "30 дней",
    "UF_CRM_DIRECTION": "Россия, Москва",
}
CONTRACT_FIELDS = {
    "UF_CRM_INVOICE": "СЧ-000045",
    "UF_CRM_CONTRACT": "Д-12/2026",
    "UF_CRM_PAYMENT_TERMS": "31",
}
ORDER = ("NEW", "IN_WORK", "KP", "CONTRACT", "INVOICE", "LAUNCH", "ACCEPTED", "TO_SHIP", "SHIPPED")


async def until(
    handle: WorkflowHandle[Any, Any], check: Callable[[DealView], bool], seconds: float = 15
) -> DealView:
    """Query until `check(state)` holds; the workflow works between our commands."""
    view: DealView | None = None
    for _ in range(int(seconds * 20)):
        view = await handle.query(DealWorkflow.state)
        if check(view):
            return view
        await asyncio.sleep(0.05)
    raise AssertionError(f"state never satisfied the check: {view}")


async def complete_in_bitrix24(
    handle: WorkflowHandle[Any, Any], portal: FakePortal, purpose: str
) -> None:
    """A person completes the deal's task in Bitrix24: its ONTASKUPDATE reaches the deal."""
    task_id = portal.task_ids[f"deal:{portal.deal.id}:{purpose}"]
    portal.completed_tasks.add(task_id)
    await handle.signal(
        DealWorkflow.bitrix24_event, Bitrix24Event(event="ONTASKUPDATE", entity_id=task_id)
    )


async def rework_done(
    handle: WorkflowHandle[Any, Any], portal: FakePortal, objection: str, then: str
) -> DealView:
    """«Возврат на задачу»: the objection task `objection` completed, the next round's task
    `then` is created (rules.rework_before_next_round, on by default)."""
    await until(handle, lambda v: any(t.key.endswith(f":{objection}") for t in v.open_tasks))
    await complete_in_bitrix24(handle, portal, objection)
    return await until(handle, lambda v: any(t.key.endswith(f":{then}") for t in v.open_tasks))


async def at_stage(handle: WorkflowHandle[Any, Any], stage: str) -> DealView:
    return await until(handle, lambda v: v.stage == stage)


async def pass_days(env: WorkflowEnvironment, days: int) -> None:
    """Skip `days` one day at a time: a deal polls 1C hourly, and one long skip can outlast the
    time-skipping server's RPC deadline on a busy machine."""
    for _ in range(days):
        await env.sleep(timedelta(days=1))


def schedule(start: date) -> PaymentSchedule:
    return PaymentSchedule(
        tranches=[
            Tranche(percent=50, due=start + timedelta(days=10)),
            Tranche(percent=30, due=start + timedelta(days=20)),
            Tranche(percent=10, due=start + timedelta(days=30)),
            Tranche(percent=10, due=start + timedelta(days=40)),
        ]
    )


async def drive_to(handle: WorkflowHandle[Any, Any], portal: FakePortal, target: str) -> DealView:
    """Move the deal forward the way people would, until it reaches `target`."""
    view = await handle.query(DealWorkflow.state)
    while view.stage != target:
        stage = view.stage
        if stage == "NEW":
            await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=3))
        elif stage == "IN_WORK":
            await until(handle, lambda v: bool(v.open_tasks))
            portal.deal.fields.update(IN_WORK_FIELDS)
            await handle.execute_update(DealWorkflow.move_stage, MoveStage(to="KP"))
        elif stage == "KP":
            await until(handle, lambda v: v.kp_round > 0)
            await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=True))
        elif stage == "CONTRACT":
            if view.document_set != "invoice":
                await until(handle, lambda v: any(p.kind == "approval" for p in v.processes))
                await handle.execute_update(
                    DealWorkflow.approval_decision, ApprovalDecision(approved=True)
                )
            await until(
                handle,
                lambda v: any(
                    "Счет, Договор на согласование и подписание" in t.title for t in v.open_tasks
                ),
            )
            portal.deal.fields.update(CONTRACT_FIELDS)
            await handle.execute_update(DealWorkflow.move_stage, MoveStage(to="INVOICE"))
        elif stage == "INVOICE":
            await until(handle, lambda v: v.invoice_round > 0)
            for kind in ("invoice", "contract"):
                await handle.execute_update(
                    DealWorkflow.documents_signed, DocumentsSigned(kind=kind)
                )
            await handle.execute_update(
                DealWorkflow.record_payment,
                RecordPayment(amount=320000, paid_on=date.today(), source="manual"),
            )
        elif stage == "LAUNCH":
            await handle.execute_update(DealWorkflow.set_payment_schedule, schedule(date.today()))
            await handle.execute_update(DealWorkflow.move_stage, MoveStage(to="ACCEPTED"))
        elif stage == "ACCEPTED":
            await until(handle, lambda v: len(v.open_tasks) >= 3)
            await handle.execute_update(DealWorkflow.move_stage, MoveStage(to="TO_SHIP"))
        elif stage == "TO_SHIP":
            await handle.execute_update(DealWorkflow.move_stage, MoveStage(to="SHIPPED"))
        else:
            raise AssertionError(f"cannot drive from {stage}")
        view = await until(handle, lambda v, s=stage: v.stage != s)
    return view
