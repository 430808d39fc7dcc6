"""Issue 14 item 2 (R-LA-1, R-PS-1, R-PS-2): the payment schedule amended while tranches are
unpaid — checked as when set, recorded with the actor, republished; refused in Russian when
nothing is unpaid or a paid tranche would be dropped. On the time-skipping server."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError

from salesflow.config.templates import Templates
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import Actor, PaymentSchedule, RecordPayment, Tranche
from salesflow.workflows.refusals import refusal_of, refusal_text
from tests.workflows.conftest import calendar_rules, new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import drive_to, pass_days, schedule, until

ROP = 2


def _plan(*tranches: tuple[float, int], actor: Actor | None = None) -> PaymentSchedule:
    today = date.today()
    return PaymentSchedule(
        tranches=[Tranche(percent=p, due=today + timedelta(days=d)) for p, d in tranches],
        actor=actor,
    )


async def _refused(handle, cmd: PaymentSchedule) -> str:
    """The refusal as a person reads it: its code's Russian template (workflows/refusals.py)."""
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(DealWorkflow.amend_payment_schedule, cmd)
    found = refusal_of(err.value.cause)
    assert found is not None, err.value.cause  # a refusal code, not a bare ValueError
    return refusal_text(*found, Templates())


async def test_r_ps_1_r_ps_2_schedule_amended_while_unpaid_refused_when_paid(
    run_deal, skip_env
) -> None:
    portal = FakePortal(new_deal(7401))
    rules = calendar_rules(onec_poll_seconds=86_400)
    async with run_deal(portal, rules) as handle:
        await drive_to(handle, portal, "LAUNCH")  # 320 000 (50 %) paid at INVOICE
        assert "не задан" in await _refused(handle, _plan((50, 10), (50, 20)))
        await handle.execute_update(DealWorkflow.set_payment_schedule, schedule(date.today()))
        # the paid 50 % tranche (due in 10 days) may not go, change, or lose its cover
        assert "Транш 1 (50% до" in await _refused(handle, _plan((40, 10), (60, 20)))
        assert "уже оплачен" in await _refused(handle, _plan((10, 5), (50, 10), (40, 20)))
        assert "100" in await _refused(handle, _plan((50, 10), (30, 20)))  # does not add up
        rop = Actor(user_id=ROP, name="РОП")
        await handle.execute_update(
            DealWorkflow.amend_payment_schedule, _plan((50, 10), (50, 25), actor=rop)
        )  # answers a small UpdateAck; the schedule is in the state
        view = await handle.query(DealWorkflow.state)
        assert [(t.percent, t.state) for t in view.payment_schedule] == [
            (50, "paid"),
            (50, "planned"),
        ]
        entry = next(h for h in view.history if "payment schedule amended" in h.cause)
        assert entry.actor == rop
        field = str(portal.deal.fields["UF_CRM_PAYMENT_SCHEDULE"])
        assert "2) 50% 320000.00 до" in field and "3)" not in field
        # the amended schedule is controlled afresh: tranche 2 reminded before its new due
        await pass_days(skip_env, 24)
        await until(handle, lambda v: v.payment_schedule[1].state == "reminded")
        assert [n for n in portal.notifications if ":ps:a1:2:reminder" in n.key]
        assert not [n for n in portal.notifications if ":ps:2:" in n.key]
        await handle.execute_update(
            DealWorkflow.record_payment,
            RecordPayment(amount=320000, paid_on=date.today(), source="manual"),
        )
        await until(handle, lambda v: v.payment_schedule[1].state == "paid")
        assert "уже оплачены" in await _refused(handle, _plan((50, 10), (50, 30)))
