"""R-CT-2 on the time-skipping server: «Постоплата» goes on from INVOICE once the documents
are signed; «Предоплата» waits for the money (R-INV)."""

from __future__ import annotations

from datetime import date

from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import ApprovalDecision, DocumentsSigned, MoveStage
from tests.workflows.conftest import new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import CONTRACT_FIELDS, drive_to, until

POSTPAYMENT, PREPAYMENT = "32", "31"


async def _at_invoice_signed(handle, portal: FakePortal, terms: str) -> None:
    await drive_to(handle, portal, "CONTRACT")
    await until(handle, lambda v: any(p.kind == "approval" for p in v.processes))
    await handle.execute_update(DealWorkflow.approval_decision, ApprovalDecision(approved=True))
    await until(
        handle, lambda v: any("на согласование и подписание" in t.title for t in v.open_tasks)
    )
    portal.deal.fields.update(
        {
            **CONTRACT_FIELDS,
            "UF_CRM_PAYMENT_TERMS": terms,
            "UF_CRM_PAYMENT_DATE": date.today().isoformat(),
        }
    )
    await handle.execute_update(DealWorkflow.move_stage, MoveStage(to="INVOICE"))
    for kind in ("invoice", "contract"):
        await handle.execute_update(DealWorkflow.documents_signed, DocumentsSigned(kind=kind))


async def test_r_ct_2_postpayment_goes_on_from_invoice_when_signed(run_deal) -> None:
    portal = FakePortal(new_deal(7301))
    async with run_deal(portal) as handle:
        await _at_invoice_signed(handle, portal, POSTPAYMENT)
        view = await until(handle, lambda v: v.stage == "LAUNCH")
    assert view.payments == []
    assert not any("Получить оплату" in t for t in portal.titles())
    assert any("postpayment" in h.cause for h in view.history)


async def test_r_ct_2_r_inv_1_prepayment_waits_for_the_money(run_deal, skip_env) -> None:
    portal = FakePortal(new_deal(7302))
    async with run_deal(portal) as handle:
        await _at_invoice_signed(handle, portal, PREPAYMENT)
        view = await until(handle, lambda v: v.invoice_round == 1)
        await handle.query(DealWorkflow.state)
    assert view.stage == "INVOICE"
    assert any("Получить оплату" in t for t in portal.titles())
