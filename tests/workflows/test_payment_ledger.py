"""R-PS-1 payment ledger on the time-skipping server: the same money from a person and from
1C is one payment, partial payments per tranche, overpayment told, control after WON."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError

from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import ClosePayments, DocumentsSigned, RecordPayment
from salesflow.workflows.onec_models import Payment
from tests.workflows.conftest import calendar_rules, new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import drive_to, pass_days, schedule, until

MANAGER = 3


def _pay(amount: float, paid_on: date | None = None) -> RecordPayment:
    return RecordPayment(amount=amount, paid_on=paid_on or date.today(), source="manual")


async def test_r_ps_1_r_inv_3_manual_and_1c_are_one_payment_partial_and_overpaid(
    run_deal, skip_env
) -> None:
    portal = FakePortal(new_deal(7201))
    async with run_deal(portal, calendar_rules()) as handle:
        await drive_to(handle, portal, "LAUNCH")  # 320 000 recorded by a person at INVOICE
        await handle.execute_update(DealWorkflow.set_payment_schedule, schedule(date.today()))
        # the same 320 000 arrives from 1C a day later: merged into the person's record
        portal.onec_payments.append(
            Payment(
                ref="p1", number="ПБ-1", paid_on=date.today() + timedelta(days=1), amount=320000
            )
        )
        await skip_env.sleep(timedelta(hours=1))
        view = await until(handle, lambda v: any(p.document for p in v.payments))
        await skip_env.sleep(timedelta(hours=2))  # further polls read ПБ-1 again
        # 1C first, then a person records the same money: still one payment
        portal.onec_payments.append(
            Payment(ref="p2", number="ПБ-2", paid_on=date.today(), amount=100000)
        )
        await skip_env.sleep(timedelta(hours=1))
        await until(handle, lambda v: len(v.payments) == 2)
        await handle.execute_update(DealWorkflow.record_payment, _pay(100000))
        view = await handle.query(DealWorkflow.state)
        assert [(p.amount, p.document, p.matched) for p in view.payments] == [
            (320000, "ПБ-1", True),
            (100000, "ПБ-2", True),
        ]
        assert view.payments[0].paid_on == date.today() + timedelta(days=1)  # 1C's date wins
        # partial: tranche 2 (192 000) has 100 000 and stays open with the rest due
        second = view.payment_schedule[1]
        assert (second.paid, second.state) == (100000, "planned")
        assert "оплачено 100000.00" in str(portal.deal.fields["UF_CRM_PAYMENT_SCHEDULE"])
        assert not [n for n in portal.notifications if ":ps:overpaid" in n.key]
        # 300 000 more than the deal's 640 000 is told to the manager, once
        await handle.execute_update(DealWorkflow.record_payment, _pay(520000))
        await handle.query(DealWorkflow.state)
    (overpaid,) = [n for n in portal.notifications if ":ps:overpaid" in n.key]
    assert overpaid.user_ids == [MANAGER] and "300 000.00" in overpaid.message


async def test_r_ps_1_tranche_due_after_won_is_reminded_until_the_rop_closes_it(
    run_deal, skip_env
) -> None:
    portal = FakePortal(new_deal(7202))
    rules = calendar_rules(payment_control_after_won=True, onec_poll_seconds=86_400)
    async with run_deal(portal, rules) as handle:
        await drive_to(handle, portal, "SHIPPED")
        for kind in ("act", "upd"):
            await handle.execute_update(DealWorkflow.documents_signed, DocumentsSigned(kind=kind))
        await until(
            handle,
            lambda v: (
                v.stage == "WON" and any("payment control goes on" in h.cause for h in v.history)
            ),
        )
        for task in portal.onec_tasks.values():  # the logist's mirror ends: its polls cost time
            task["done"] = True
        await skip_env.sleep(timedelta(minutes=2))
        await until(handle, lambda v: all(p.state != "running" for p in v.processes))
        # the deal is won; its second tranche (due in 20 days) is still chased
        await pass_days(skip_env, 19)
        await until(handle, lambda v: v.payment_schedule[1].state == "reminded")
        assert any(n.key == "deal:7202:ps:2:reminder" for n in portal.notifications)
        await handle.execute_update(DealWorkflow.record_payment, _pay(192000))
        await until(handle, lambda v: v.payment_schedule[1].state == "paid")
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(
                DealWorkflow.close_payments, ClosePayments.model_construct(comment="")
            )
        await handle.execute_update(
            DealWorkflow.close_payments, ClosePayments(comment="Остаток списан по акту сверки")
        )
        result = await handle.result()
    assert result.stage == "WON"
    assert result.payment_schedule[2].state != "paid"


async def test_r_ps_1_r_inv_3_payment_unposted_in_1c_is_reversed_and_chased_again(
    run_deal, skip_env
) -> None:
    portal = FakePortal(new_deal(7203))
    async with run_deal(portal, calendar_rules()) as handle:
        await drive_to(handle, portal, "LAUNCH")  # 320 000 recorded by a person at INVOICE
        await handle.execute_update(DealWorkflow.set_payment_schedule, schedule(date.today()))
        portal.onec_payments.append(
            Payment(ref="p1", number="ПБ-7", paid_on=date.today(), amount=320000)
        )
        await skip_env.sleep(timedelta(hours=1))
        await until(handle, lambda v: v.payment_schedule[0].state == "paid")
        # the accountant unposts ПБ-7 in 1C: its money leaves the ledger, tranche 1 is open
        portal.onec_payments[0] = portal.onec_payments[0].model_copy(update={"posted": False})
        await skip_env.sleep(timedelta(hours=1))
        view = await until(handle, lambda v: v.payment_schedule[0].state != "paid")
        assert sum(p.amount for p in view.payments) == 0
        assert any("reversed: 1C ПБ-7" in h.cause for h in view.history)
        (told,) = [n for n in portal.notifications if ":ps:reversed:ПБ-7:" in n.key]
        assert told.user_ids == [MANAGER] and "отменён в 1С" in told.message
        # posted again: the money is back, once
        portal.onec_payments[0] = portal.onec_payments[0].model_copy(update={"posted": True})
        await skip_env.sleep(timedelta(hours=1))
        view = await until(handle, lambda v: v.payment_schedule[0].state == "paid")
        await skip_env.sleep(timedelta(hours=1))
        view = await handle.query(DealWorkflow.state)
    assert sum(p.amount for p in view.payments) == 320000
