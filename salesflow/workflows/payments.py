"""Payments of a deal: the payment schedule's control (R-LA-1, R-PS-1, R-PS-2) and the 1C
poll for incoming payments on the deal's invoice (R-INV-3).

Both run beside the stages as workflow tasks from INVOICE/LAUNCH on and stop when the deal
closes. Payments (from 1C or recorded by a person) cover the schedule in due order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from salesflow.workflows import activity_stubs as act
    from salesflow.workflows import rules as R
    from salesflow.workflows.activity_stubs import call
    from salesflow.workflows.deal_effects import DealEffects
    from salesflow.workflows.models import (
        PaymentRecord,
        PaymentSchedule,
        Stage,
        TrancheState,
    )
    from salesflow.workflows.onec_models import FindPaymentsRequest

SCHEDULE_STAGES = (Stage.LAUNCH, Stage.ACCEPTED, Stage.TO_SHIP)
WORKING_HOURS = "payment-notices-in-working-hours"  # R-X4/R-X9
REMINDER_POLICY = "payment-reminder-policy"  # overdue tranches reminded as other deadlines
PAYMENT_STAGES = (Stage.INVOICE, Stage.LAUNCH, Stage.ACCEPTED, Stage.TO_SHIP, Stage.SHIPPED)


class Payments:
    def __init__(self, fx: DealEffects) -> None:
        self.fx = fx
        self.s = fx.s
        self.rules = fx.rules
        self._control_task: asyncio.Task[None] | None = None
        self._poll_task: asyncio.Task[None] | None = None

    # ---- starting and stopping -----------------------------------------------------------

    def start(self) -> None:
        """The schedule control once a schedule is set; the 1C poll at the payment stages."""
        self.start_control()
        if self._poll_task is None and self.s.stage in PAYMENT_STAGES:
            self._poll_task = asyncio.create_task(self._poll_onec())

    def start_control(self) -> None:
        if self.s.payment_schedule and self._control_task is None:
            self._control_task = asyncio.create_task(self._control_schedule())

    def stop(self) -> None:
        for task in (self._control_task, self._poll_task):
            if task is not None and not task.done():
                task.cancel()

    # ---- what people tell the deal -------------------------------------------------------

    def deal_start(self) -> date:
        at = self.s.history[0].at if self.s.history else workflow.now()
        return R.local_day(at, self.rules.timezone)

    def plan(self, cmd: PaymentSchedule) -> list[TrancheState]:
        """R-LA-1: the tranches of a schedule (raises ValueError when it does not add up)."""
        plan = R.plan_schedule(
            [(t.percent, t.due) for t in cmd.tranches], self.fx.amount(), self.deal_start()
        )
        return [
            TrancheState(number=i, percent=p, due=d, amount=a)
            for i, (p, d, a) in enumerate(plan, 1)
        ]

    def add(self, amount: float, paid_on: Any, source: str, number: str = "") -> bool:
        """A payment, once per reference (`source:number`); False when already known."""
        reference = f"{source}:{number}" if number else ""
        if reference and any(p.source == reference for p in self.s.payments):
            return False
        self.s.payments.append(
            PaymentRecord(amount=amount, paid_on=paid_on, source=reference or source)
        )
        self.fx.record(self.s.stage, f"payment {amount:.2f} on {paid_on} ({source})")
        return True

    async def publish_schedule(self) -> None:
        """R-PS-2: the schedule and each tranche's state, written on the deal."""
        text = "; ".join(
            f"{t.number}) {t.percent:g}% {t.amount:.2f} до {t.due:%d.%m.%Y} — {t.state}"
            for t in self.s.payment_schedule
        )
        await self.fx.update_deal({self.rules.fields["payment_schedule"]: text})

    def invoice_due(self) -> datetime:
        """This round's payment deadline: the deal's «Дата оплаты» if still ahead, else +N days."""
        fx = self.fx
        raw = fx.field("payment_date")[:10]
        day: date | None
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            day = None
        if day is None or fx.end_of_working_day(day) <= workflow.now():
            day = R.Calendar(self.rules.calendar).add_business_days(
                fx.today(), self.rules.payment_round_business_days
            )
        return fx.end_of_working_day(day)

    # ---- the schedule's control ----------------------------------------------------------

    async def _control_schedule(self) -> None:
        """R-PS-1: before each due date remind; when it passes unpaid notify and escalate."""
        fx = self.fx
        for tranche in self.s.payment_schedule:
            n = tranche.number
            paid = lambda t=tranche: self._tranche_paid(t)  # noqa: E731
            remind_day = tranche.due - timedelta(days=self.rules.payment_reminder_days_before)
            remind_at = fx.end_of_working_day(remind_day) - timedelta(hours=8)
            due_at = fx.end_of_working_day(tranche.due)
            working = workflow.patched(WORKING_HOURS) and self.rules.reminders.working_hours_only
            if working:
                # R-X4/R-X9: the reminder on the last business day before, the overdue notice
                # at the next working moment after the due day ends
                calendar = R.Calendar(self.rules.calendar)
                day = calendar.previous_business_day(remind_day)
                remind_at = R.working_moment(
                    fx.end_of_working_day(day) - timedelta(hours=8), self.rules
                )
                due_at = R.working_moment(due_at, self.rules)
            if not await self._until(paid, remind_at):
                tranche.state = "reminded"
                await self._notice(
                    f"ps:{n}:reminder", [fx.responsible()], "notify_payment_reminder", tranche
                )
            if not await self._until(paid, due_at):
                tranche.state = "overdue"
                fx.sync_overdue()
                await self._notice(
                    f"ps:{n}:overdue", [fx.responsible()], "notify_payment_overdue", tranche
                )
                await self._notice(
                    f"ps:{n}:overdue:rop",
                    [self.rules.people.rop],
                    "notify_payment_overdue_rop",
                    tranche,
                )
                if workflow.patched(REMINDER_POLICY):
                    await self._remind_overdue(paid, tranche)
                every = timedelta(hours=self.rules.payment_overdue_reminder_hours)
                while not await self._until(paid, workflow.now() + every):
                    k = fx.bump(f"ps:{n}:overdue_reminders")
                    await self._notice(
                        f"ps:{n}:overdue:{k}",
                        [fx.responsible()],
                        "notify_payment_overdue",
                        tranche,
                    )
            tranche.state = "paid"
            if tranche.paid_on is None:
                tranche.paid_on = self._covered_on(tranche)
            fx.sync_overdue()
            await self.publish_schedule()

    async def _remind_overdue(self, paid: Callable[[], bool], t: TrancheState) -> None:
        """R-PS-1 / R-X4: the overdue tranche reminded by the reminder policy until paid."""
        await self.fx.remind(
            paid,
            f"ps:{t.number}:overdue",
            "payment",
            [self.fx.responsible()],
            "notify_payment_overdue",
            waiter=self._until,
            **self._values(t),
        )

    async def _until(self, done: Callable[[], bool], moment: datetime) -> bool:
        """True when `done` holds before `moment` (a timer that a payment can end early)."""
        if done():
            return True
        timeout = moment - workflow.now()
        if timeout <= timedelta(0):
            return False
        try:
            await workflow.wait_condition(done, timeout=timeout, timeout_summary="payment due")
        except TimeoutError:
            return done()
        return True

    def _owed_by(self, tranche: TrancheState) -> float:
        return sum(t.amount for t in self.s.payment_schedule if t.due <= tranche.due)

    def _tranche_paid(self, tranche: TrancheState) -> bool:
        """Payments cover the schedule in due order: this tranche and all before it."""
        received = sum(p.amount for p in self.s.payments)
        covered = received + 0.005 >= self._owed_by(tranche)
        if covered:
            tranche.paid = tranche.amount
        return covered

    def _covered_on(self, tranche: TrancheState) -> date | None:
        """The payment date on which the payments, in the order received, first covered this
        tranche and all due before it."""
        owed, received = self._owed_by(tranche), 0.0
        for payment in self.s.payments:
            received += payment.amount
            if received + 0.005 >= owed:
                return payment.paid_on
        return None

    async def _notice(self, purpose: str, users: list[int], template: str, t: TrancheState) -> None:
        await self.fx.notify(purpose, users, template, **self._values(t))

    def _values(self, t: TrancheState) -> dict[str, str]:
        return {
            "number": str(t.number),
            "amount": f"{t.amount:,.2f}".replace(",", " "),
            "due": t.due.strftime("%d.%m.%Y"),
            "manager": str(self.s.manager_id or "—"),
        }

    # ---- 1C ------------------------------------------------------------------------------

    async def _poll_onec(self) -> None:
        """R-INV-3 / R-PS-1: incoming payments for the deal's invoice, read from 1C."""
        while self.s.stage in PAYMENT_STAGES and not self._all_paid():
            invoice = self.fx.field("invoice")
            if invoice:
                try:
                    found = await call(
                        act.find_invoice_payments, FindPaymentsRequest(invoice_number=invoice)
                    )
                except ActivityError as err:  # e.g. 1C does not know this invoice number
                    await self.fx.report_failure(f"1c_payments:{invoice}", err)
                    found = []
                for payment in found:
                    self.add(payment.amount, payment.paid_on, "1c", payment.number)
            await workflow.sleep(
                timedelta(seconds=self.rules.onec_poll_seconds), summary="poll 1C payments"
            )

    def _all_paid(self) -> bool:
        if self.s.stage == Stage.INVOICE or not self.s.payment_schedule:
            return False
        return all(self._tranche_paid(t) for t in self.s.payment_schedule)
