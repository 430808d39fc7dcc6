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

from salesflow.workflows import patches

with workflow.unsafe.imports_passed_through():
    from salesflow.workflows import activity_stubs as act
    from salesflow.workflows import rules as R
    from salesflow.workflows.activity_stubs import call
    from salesflow.workflows.causes import cause
    from salesflow.workflows.deal_effects import DealEffects
    from salesflow.workflows.models import (
        FINAL_STAGES,
        Actor,
        NotifyRequest,
        PaymentRecord,
        PaymentSchedule,
        Stage,
        TrancheState,
    )
    from salesflow.workflows.onec_models import FindPaymentsRequest
    from salesflow.workflows.refusals import Refusal, refuse

SCHEDULE_STAGES = (Stage.LAUNCH, Stage.ACCEPTED, Stage.TO_SHIP)
WORKING_HOURS = "payment-notices-in-working-hours"  # R-X4/R-X9
LEDGER = "payment-ledger"  # R-PS-1: one payment from 1C and a person; partial; overpaid
REMINDER_POLICY = "payment-reminder-policy"  # overdue tranches reminded as other deadlines
REVERSAL = "timers-payment-reversal"  # R-PS-1: a payment 1C unposted or deleted is reversed
AMEND = "timers-schedule-amend"  # issue 14 item 2: the schedule amended while tranches are open
PAYMENT_STAGES = (Stage.INVOICE, Stage.LAUNCH, Stage.ACCEPTED, Stage.TO_SHIP, Stage.SHIPPED)


class Payments:
    def __init__(self, fx: DealEffects) -> None:
        self.fx = fx
        self.s = fx.s
        self.rules = fx.rules
        self._control_task: asyncio.Task[None] | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._ledger: bool | None = None  # LEDGER, decided when the run starts
        self._reversal = False  # REVERSAL (with the ledger), decided when the run starts
        self._generation = 0  # amendments seen by this run (the control's schedule)
        self.after_won = False  # R-PS-1: the control goes on after WON (set by the workflow)

    # ---- starting and stopping -----------------------------------------------------------

    def start(self) -> None:
        """The schedule control once a schedule is set; the 1C poll at the payment stages."""
        if self._ledger is None:
            self._ledger = patches.patched(LEDGER)
            self._reversal = bool(self._ledger) and patches.patched(REVERSAL)
        self.start_control()
        if self._poll_task is None and self._polling():
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

    # ---- amending the schedule (issue 14 item 2) ---------------------------------------------

    def amendment_refusal(self, cmd: PaymentSchedule) -> Refusal | None:
        """Why the schedule cannot become `cmd` (a refusal code, workflows/refusals.py), or
        None. Raises a refusal when `cmd` does not add up (as `set_payment_schedule`). Reads
        only."""
        deal_id = self.s.deal_id
        if not self.s.payment_schedule:
            return refuse("schedule_not_set", deal_id=deal_id)
        unpaid = self.open_tranches()
        if not unpaid:
            return refuse("schedule_all_paid", deal_id=deal_id)
        new = self.plan(cmd)
        received = self.received() + 0.005
        for t in self.s.payment_schedule:
            if t in unpaid:
                continue
            kept = any(n.percent == t.percent and n.due == t.due for n in new)
            owed = sum(n.amount for n in new if n.due <= t.due)
            if not kept or received < owed:  # dropped, changed, or no longer covered
                return refuse(
                    "schedule_drops_paid",
                    deal_id=deal_id,
                    number=t.number,
                    percent=f"{t.percent:g}",
                    due=t.due.strftime("%d.%m.%Y"),
                )
        return None

    async def amend(self, cmd: PaymentSchedule) -> None:
        """The schedule replaced by `cmd` (checked by `amendment_refusal`): recorded with its
        actor, republished on the deal, and controlled afresh (new notices' purposes)."""
        fx = self.fx
        old = self.s.payment_schedule
        new = self.plan(cmd)
        for t in new:  # a paid tranche kept as it was
            same = next((o for o in old if o.percent == t.percent and o.due == t.due), None)
            if same is not None and same.state == "paid":
                t.state, t.paid, t.paid_on = same.state, same.paid, same.paid_on
        if patches.patched(AMEND):
            fx.bump("ps:amendments")
        self.s.payment_schedule = new
        fx.record(
            self.s.stage,
            cause("schedule_amended", old=_plan_text(old), new=_plan_text(new)),
            cmd.actor,
        )
        fx.sync_overdue()
        await self.publish_schedule()
        self._generation += 1  # the running control ends at its next wake (no cancel)
        self._control_task = None
        if self.s.stage not in FINAL_STAGES or self.after_won:
            self.start_control()

    def _ps(self, n: int) -> str:
        """The purpose prefix of tranche `n`'s notices; after the k-th amendment `ps:a<k>:<n>`
        (tranche numbers repeat, each schedule's notices are its own)."""
        k = self.s.counters.get("ps:amendments", 0)
        return f"ps:{n}" if k == 0 else f"ps:a{k}:{n}"

    def add(
        self,
        amount: float,
        paid_on: Any,
        source: str,
        number: str = "",
        onec: bool = False,
        actor: Actor | None = None,
    ) -> bool:
        """A payment, once per reference (`source:number`); False when already known. `onec`:
        a payment document read from 1C (`number` is its number); `actor`: who recorded it."""
        if self._ledger:
            if onec:
                return self._from_onec(amount, paid_on, number)
            return self._from_person(amount, paid_on, source, number, actor)
        reference = f"{source}:{number}" if number else ""
        if reference and any(p.source == reference for p in self.s.payments):
            return False
        self.s.payments.append(
            PaymentRecord(amount=amount, paid_on=paid_on, source=reference or source)
        )
        self.fx.record(self.s.stage, _paid(amount, paid_on, source), actor)
        return True

    # ---- the ledger (R-PS-1): one payment however many ways it is told ----------------

    def _same(self, p: PaymentRecord, amount: float, paid_on: date) -> bool:
        close = abs((p.paid_on - paid_on).days) <= self.rules.payment_match_days
        return close and abs(p.amount - amount) < 0.005

    def _from_onec(self, amount: float, paid_on: date, document: str) -> bool:
        """A 1C payment document: new, already known, or a person's record it confirms (merged:
        1C's date wins). False when the ledger did not change."""
        known = [p for p in self.s.payments if p.document == document]
        if known and self._reversal and sum(p.amount for p in known) < 0.005:
            # reversed before (unposted in 1C), posted again: the money is back
            self.s.payments.append(
                PaymentRecord(
                    amount=amount,
                    paid_on=paid_on,
                    source=f"1c:{document}",
                    document=document,
                    matched=True,
                )
            )
            self.fx.record(
                self.s.stage,
                cause("payment_posted_again", amount=f"{amount:.2f}", document=document),
            )
            return True
        if known:
            return False
        for p in self.s.payments:
            if not p.document and self._same(p, amount, paid_on):
                p.document, p.matched, p.paid_on = document, True, paid_on
                self.fx.record(
                    self.s.stage,
                    cause("payment_confirmed", amount=f"{amount:.2f}", document=document),
                )
                return True
        self.s.payments.append(
            PaymentRecord(
                amount=amount, paid_on=paid_on, source=f"1c:{document}", document=document
            )
        )
        self.fx.record(
            self.s.stage,
            cause("payment_onec", amount=f"{amount:.2f}", paid_on=paid_on, document=document),
        )
        return True

    def _from_person(
        self, amount: float, paid_on: date, source: str, ref: str, actor: Actor | None = None
    ) -> bool:
        """A payment a person records: once per update; the same money already read from 1C
        (and not yet matched to a person's record) is that payment, not a second one."""
        reference = f"{source}:{ref}" if ref else source
        if ref and any(p.source == reference for p in self.s.payments):
            return False
        for p in self.s.payments:
            if p.document and not p.matched and self._same(p, amount, paid_on):
                p.matched = True
                self.fx.record(
                    self.s.stage,
                    cause("payment_known_from_onec", amount=f"{amount:.2f}", document=p.document),
                    actor,
                )
                return False
        self.s.payments.append(PaymentRecord(amount=amount, paid_on=paid_on, source=reference))
        self.fx.record(self.s.stage, _paid(amount, paid_on, source), actor)
        return True

    async def reverse(self, document: str) -> bool:
        """R-PS-1: 1C shows payment document `document` unposted or marked for deletion: its
        money leaves the ledger by a reversal entry (the record stays), the tranches it covered
        are open again and controlled afresh, the manager is told once. False: nothing to do."""
        net = sum(p.amount for p in self.s.payments if p.document == document)
        if net < 0.005:
            return False  # unknown to the ledger, or reversed already
        fx = self.fx
        n = fx.bump(f"ps:reversal:{document}")
        self.s.payments.append(
            PaymentRecord(
                amount=-net,
                paid_on=fx.today(),
                source=f"1c-reversal:{document}",
                document=document,
                matched=True,
            )
        )
        fx.record(self.s.stage, cause("payment_reversed", amount=f"{net:.2f}", document=document))
        for t in self.s.payment_schedule:
            if t.state == "paid" and not self._tranche_paid(t):
                t.state, t.paid_on = "planned", None
        purpose = f"ps:reversed:{document}:{n}"
        text = fx._rendered("notify_payment_reversed", document=document, amount=_money(net))
        await fx.once(  # a text newer than some deals' rules: rendered with its default
            purpose,
            act.notify_users,
            NotifyRequest(key=fx.key(purpose), user_ids=[fx.responsible()], message=text),
        )
        if self.s.payment_schedule:
            fx.bump("ps:amendments")  # the open tranches' notices anew
            self._generation += 1
            self._control_task = None
            self.start_control()
            await self.publish_schedule()
        return True

    def received(self) -> float:
        return sum(p.amount for p in self.s.payments)

    async def tell_overpaid(self) -> None:
        """R-PS-1: more money than the deal's amount (or schedule) is told to the manager, once
        per excess."""
        if not self._ledger:
            return
        owed = sum(t.amount for t in self.s.payment_schedule) or self.fx.amount()
        excess = self.received() - owed
        if owed and excess > 0.005:
            await self.fx.notify(
                f"ps:overpaid:{round(excess * 100)}",
                [self.fx.responsible()],
                "notify_payment_overpaid",
                excess=_money(excess),
                received=_money(self.received()),
                owed=_money(owed),
            )

    async def publish_schedule(self) -> None:
        """R-PS-2: the schedule and each tranche's state, written on the deal."""
        text = "; ".join(
            f"{t.number}) {t.percent:g}% {t.amount:.2f} до {t.due:%d.%m.%Y} — {t.state}"
            + (f" (оплачено {t.paid:.2f})" if self._ledger and 0 < t.paid < t.amount else "")
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
        generation = self._generation
        stale = lambda: self._generation != generation  # noqa: E731  (the schedule was amended)
        for tranche in self.s.payment_schedule:
            n = tranche.number
            paid = lambda t=tranche: stale() or self._tranche_paid(t)  # noqa: E731
            remind_day = tranche.due - timedelta(days=self.rules.payment_reminder_days_before)
            remind_at = fx.end_of_working_day(remind_day) - timedelta(hours=8)
            due_at = fx.end_of_working_day(tranche.due)
            if patches.patched(WORKING_HOURS) and self.rules.reminders.working_hours_only:
                # R-X4/R-X9: the reminder on the last business day before, in working hours; a
                # due date on a day off moves to the next business day (ГК РФ ст. 193)
                calendar = R.Calendar(self.rules.calendar)
                day = calendar.previous_business_day(remind_day)
                remind_at = R.working_moment(
                    fx.end_of_working_day(day) - timedelta(hours=8), self.rules
                )
                due_at = fx.end_of_working_day(calendar.next_business_day(tranche.due))
            if not await self._until(paid, remind_at):
                tranche.state = "reminded"
                await self._notice(
                    f"{self._ps(n)}:reminder",
                    [fx.responsible()],
                    "notify_payment_reminder",
                    tranche,
                )
            if stale():
                return
            if not await self._until(paid, due_at):
                tranche.state = "overdue"
                fx.sync_overdue()
                await self._notice(
                    f"{self._ps(n)}:overdue", [fx.responsible()], "notify_payment_overdue", tranche
                )
                await self._notice(
                    f"{self._ps(n)}:overdue:rop",
                    [self.rules.people.rop],
                    "notify_payment_overdue_rop",
                    tranche,
                )
                if patches.patched(REMINDER_POLICY):
                    await self._remind_overdue(paid, tranche)
                every = timedelta(hours=self.rules.payment_overdue_reminder_hours)
                while not await self._until(paid, workflow.now() + every):
                    k = fx.bump(f"{self._ps(n)}:overdue_reminders")
                    await self._notice(
                        f"{self._ps(n)}:overdue:{k}",
                        [fx.responsible()],
                        "notify_payment_overdue",
                        tranche,
                    )
            if stale():
                return
            tranche.state = "paid"
            if tranche.paid_on is None:
                tranche.paid_on = self._covered_on(tranche)
            fx.sync_overdue()
            await self.publish_schedule()

    async def _remind_overdue(self, paid: Callable[[], bool], t: TrancheState) -> None:
        """R-PS-1 / R-X4: the overdue tranche reminded by the reminder policy until paid."""
        await self.fx.remind(
            paid,
            f"{self._ps(t.number)}:overdue",
            "payment",
            [self.fx.responsible()],
            "notify_payment_overdue",
            waiter=self._until,
            **self._values(t),
        )

    async def _until(self, done: Callable[[], bool], moment: datetime) -> bool:
        """True when `done` holds before `moment` (a timer that a payment can end early)."""
        return await self.fx.timer(done, moment, summary="payment due")

    def _owed_by(self, tranche: TrancheState) -> float:
        return sum(t.amount for t in self.s.payment_schedule if t.due <= tranche.due)

    def _tranche_paid(self, tranche: TrancheState) -> bool:
        """Payments cover the schedule in due order: this tranche and all before it. In the
        ledger a tranche also records a partial payment (the rest stays due)."""
        received = sum(p.amount for p in self.s.payments)
        owed = self._owed_by(tranche)
        covered = received + 0.005 >= owed
        if covered:
            tranche.paid = tranche.amount
        elif self._ledger:
            before = owed - tranche.amount
            tranche.paid = round(max(0.0, received - before), 2)
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
        due = t.amount - t.paid if self._ledger else t.amount  # the rest of a partial payment
        return {
            "number": str(t.number),
            "amount": _money(due),
            "due": t.due.strftime("%d.%m.%Y"),
            "manager": str(self.s.manager_id or "—"),
        }

    # ---- 1C ------------------------------------------------------------------------------

    async def _poll_onec(self) -> None:
        """R-INV-3 / R-PS-1: incoming payments for the deal's invoice, read from 1C."""
        while self._polling() and not self._all_paid():
            invoice = self.fx.field("invoice")
            if invoice:
                try:
                    found = await call(
                        act.find_invoice_payments,
                        FindPaymentsRequest(invoice_number=invoice, include_void=self._reversal)
                        if self._reversal
                        else FindPaymentsRequest(invoice_number=invoice),
                    )
                except ActivityError as err:  # e.g. 1C does not know this invoice number
                    await self.fx.report_failure(f"1c_payments:{invoice}", err)
                    found = []
                for payment in found:
                    if not payment.posted or payment.deleted:
                        await self.reverse(payment.number)
                        continue
                    self.add(payment.amount, payment.paid_on, "1c", payment.number, onec=True)
                await self.tell_overpaid()
            await workflow.sleep(
                timedelta(seconds=self.rules.onec_poll_seconds), summary="poll 1C payments"
            )

    def _polling(self) -> bool:
        return self.s.stage in PAYMENT_STAGES or (self.after_won and self.s.stage == Stage.WON)

    def open_tranches(self) -> list[TrancheState]:
        """The tranches not yet covered (reads only: validators call it)."""
        received = self.received() + 0.005
        return [t for t in self.s.payment_schedule if received < self._owed_by(t)]

    def _all_paid(self) -> bool:
        if self.s.stage == Stage.INVOICE or not self.s.payment_schedule:
            return False
        return all(self._tranche_paid(t) for t in self.s.payment_schedule)


def _money(value: float) -> str:
    return f"{value:,.2f}".replace(",", " ")


def _paid(amount: float, paid_on: Any, source: str) -> str:
    return cause("payment", amount=f"{amount:.2f}", paid_on=paid_on, source=source)


def _plan_text(tranches: list[TrancheState]) -> str:
    return ", ".join(f"{t.percent:g}% до {t.due:%d.%m.%Y}" for t in tranches) or "—"
