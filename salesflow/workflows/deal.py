"""`DealWorkflow`: one long-lived workflow per Bitrix24 deal of the «Продажа» pipeline.

Stage methods follow the pipeline order of PIPELINE.md (`stage_new` … `stage_lose`). Each one
runs the stage's entry actions once (keys in `state.done` plus idempotency markers in Bitrix24
and 1C), then waits for what ends the stage while deadlines run as timers. The machinery —
waiting, reconciling people's moves, keyed side effects — lives in `deal_effects.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from salesflow.workflows import rules as R
    from salesflow.workflows.deal_effects import DealEffects
    from salesflow.workflows.models import (
        FINAL_STAGES,
        AcceptLead,
        ApprovalDecision,
        ApprovalInput,
        ApprovalItemRequest,
        ApprovalResult,
        Bitrix24Event,
        BoardUpdate,
        Deadline,
        DealInput,
        DealState,
        DealView,
        DocumentsSigned,
        EmailRequest,
        KpFeedback,
        LinkedDealRequest,
        LoseDeal,
        MoveStage,
        PaymentRecord,
        PaymentSchedule,
        ProcessInput,
        ProcessResult,
        ProcessState,
        RecordPayment,
        RejectLead,
        RequestTasks,
        StartProcess,
        TaskRequest,
        TrancheState,
    )
    from salesflow.workflows.names import DEAL_MANAGER
    from salesflow.workflows.onec_models import (
        FETCH_CLOSING_DOCUMENTS,
        FIND_INVOICE_PAYMENTS,
        LOAD_KP_INTO_DEAL,
        LOGIST_TASK_MIRROR,
        ClosingDocsRequest,
        ClosingDocument,
        FindPaymentsRequest,
        LoadKpRequest,
        LoadKpResult,
        LogistMirrorInput,
        LogistMirrorResult,
        Payment,
        PollSchedule,
    )

SERVICES = ("engineers", "purchasing", "logistics", "production", "lawyer", "metrologist")
PROCESS_SERVICE = {
    "import_order": "purchasing",
    "production": "production",
    "purchasing": "purchasing",
}
SCHEDULE_STAGES = ("LAUNCH", "ACCEPTED", "TO_SHIP")
PAYMENT_STAGES = ("INVOICE", "LAUNCH", "ACCEPTED", "TO_SHIP", "SHIPPED")
DOCUMENT_TITLES = {"act": "Акт выполненных работ", "upd": "УПД"}
LOGIST_PROCESS = "1c_logist_task"
WON_KEEPS_LOGIST_MIRRORS = "won-keeps-logist-mirrors"
CAN_DRAINS_INTENTS = "continue-as-new-drains-intents"


@workflow.defn(name="DealWorkflow")
class DealWorkflow(DealEffects):
    @workflow.init
    def __init__(self, inp: DealInput) -> None:
        self.rules = inp.rules
        self.s = inp.state or DealState(deal_id=inp.deal_id)
        self._draining = False  # continue-as-new is due: handlers return once intent recorded
        self._pending_cause = ""
        self._payments_task: Any = None
        self._poll_task: Any = None
        self._board_task: Any = None
        self._board_dirty = False
        self._board_busy = False

    # ---- the people's intents, kept in DealState (carried through continue-as-new) --------

    @property
    def accept(self) -> AcceptLead | None:
        return self.s.intents.accept

    @accept.setter
    def accept(self, value: AcceptLead | None) -> None:
        self.s.intents.accept = value

    @property
    def reject(self) -> RejectLead | None:
        return self.s.intents.reject

    @reject.setter
    def reject(self, value: RejectLead | None) -> None:
        self.s.intents.reject = value

    @property
    def lose(self) -> LoseDeal | None:
        return self.s.intents.lose

    @lose.setter
    def lose(self, value: LoseDeal | None) -> None:
        self.s.intents.lose = value

    @property
    def moved_to(self) -> str | None:
        return self.s.intents.moved_to

    @moved_to.setter
    def moved_to(self, value: str | None) -> None:
        self.s.intents.moved_to = value

    @property
    def feedback(self) -> KpFeedback | None:
        return self.s.intents.feedback

    @feedback.setter
    def feedback(self, value: KpFeedback | None) -> None:
        self.s.intents.feedback = value

    @property
    def approval(self) -> ApprovalResult | None:
        return self.s.intents.approval

    @approval.setter
    def approval(self, value: ApprovalResult | None) -> None:
        self.s.intents.approval = value

    # ---- the pipeline, in stage order -----------------------------------------------------

    @workflow.run
    async def run(self, inp: DealInput) -> DealView:
        if workflow.patched("deal-board"):
            self._board_task = asyncio.create_task(self._publish_board())
        if self.s.deal is None:
            await self._refresh_deal()
            if not self._in_pipeline():
                return self._view()
            assert self.s.deal is not None
            stage = self.rules.stage_code(self.s.deal.stage_id) or "NEW"
            if stage != "NEW":
                self.s.manager_id = self.s.deal.assigned_by_id or None
            self._enter(stage, "deal found in Bitrix24", now=workflow.now())
        stages: dict[str, Callable[[], Awaitable[str]]] = {
            "NEW": self.stage_new,
            "IN_WORK": self.stage_in_work,
            "KP": self.stage_kp,
            "CONTRACT": self.stage_contract,
            "INVOICE": self.stage_invoice,
            "LAUNCH": self.stage_launch,
            "ACCEPTED": self.stage_accepted,
            "TO_SHIP": self.stage_to_ship,
            "SHIPPED": self.stage_shipped,
        }
        self._start_background()
        while self.s.stage not in FINAL_STAGES:
            await self._continue_as_new_when_suggested()
            next_stage = await stages[self.s.stage]()
            await self._move(next_stage)
            self._start_background()
        if self.s.stage == "WON":
            await self.stage_won()
        else:
            await self.stage_lose()
        await self._flush_board()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._view()

    async def stage_new(self) -> str:
        """NEW: notify (R-NEW-1), wait for accept/reject (R-NEW-2/3), escalate (R-NEW-4)."""
        people = self.rules.people
        rule = self.rules.deadlines["take_into_work"]
        await self._notify(
            "new:notify", people.managers, "notify_new_deal", deadline=_human(rule.minutes)
        )
        due = R.deadline_after(self._entered_at(), rule, self.rules)
        self._set_deadline("take_into_work", due)
        acted = lambda: self.accept is not None or self.reject is not None  # noqa: E731
        while not await self._wait(acted, until=due):
            self._mark_overdue("take_into_work")
            round_no = self._bump("new:reminder")
            if round_no == 1:
                await self._notify(
                    "new:overdue",
                    [people.rop],
                    "notify_take_overdue_rop",
                    deadline=_human(rule.minutes),
                )
                await self._notify(
                    "new:overdue:managers",
                    people.managers,
                    "notify_deadline_missed",
                    what="Взять заявку в работу",
                    deadline=self._local(due),
                )
            else:
                await self._notify(
                    f"new:reminder:{round_no}",
                    [*people.managers, people.rop],
                    "notify_take_reminder",
                )
            due = workflow.now() + timedelta(minutes=self.rules.reminder_interval_minutes)
        self._clear_deadline("take_into_work")
        if self.reject is not None:
            self.s.reject_reason = self.reject.reason
            await self._update_deal({self.rules.fields["reject_reason"]: self.reject.reason})
            return self._cause("LOSE", f"lead rejected: {self.reject.reason}")
        if self.accept is not None:
            self.s.manager_id = self.accept.manager_id
            workflow.upsert_search_attributes([DEAL_MANAGER.value_set(self.s.manager_id)])
            await self._update_deal({"ASSIGNED_BY_ID": self.s.manager_id})
            return self._cause("IN_WORK", f"accepted by user {self.s.manager_id}")
        return self._take_move()

    async def stage_in_work(self) -> str:
        """IN_WORK: client message (R-IW-1), task (R-IW-2), КП date +2 business days (R-IW-3)."""
        await self._client_message("iw:client_message", "client_taken_into_work")
        await self._task("iw:check_products", "task_check_products")
        kp_date = R.kp_agreement_date(self._entered_at(), self.rules)
        await self._set_fields_once(
            "iw:kp_date", {self.rules.fields["kp_date"]: kp_date.isoformat()}
        )
        due = self._end_of_working_day(kp_date)
        self._set_deadline("kp_agreement", due)
        await self._wait_or_remind(lambda: False, due, "kp_agreement", "Согласовать КП с клиентом")
        return self._take_move()

    async def stage_kp(self) -> str:
        """KP: tasks (R-KP-1, R-KP-3), КП from 1C (R-KP-2), the feedback loop (R-KP-4)."""
        await self._task("kp:send_kp", "task_send_kp")
        await self._load_kp()
        await self._client_message("kp:client_message", "client_kp_sent")
        if self.s.approved is False:
            round_no = self.s.counters.get("approval", 0)
            await self._task(f"kp:approval_rework:{round_no}", "task_kp_objection")
            self.s.approved = None
        while True:
            self.s.kp_round += 1
            n = self.s.kp_round
            rule = self.rules.deadlines["kp_feedback_task"]
            due = R.deadline_after(workflow.now(), rule, self.rules)
            await self._task(f"kp:feedback:{n}", "task_kp_feedback", deadline=due)
            self._set_deadline(f"kp_feedback_{n}", due)
            what = f"Обратная связь по КП (раунд {n})"
            if not await self._wait_or_remind(
                lambda: self.feedback is not None, due, f"kp_feedback_{n}", what
            ):
                return self._take_move()
            feedback, self.feedback = self.feedback, None
            assert feedback is not None
            self._close_tasks(f"kp:feedback:{n}", f"kp:objection:{n - 1}")
            status = self.rules.enums["kp_status"]["agreed" if feedback.agreed else "not_agreed"]
            await self._set_fields_once(f"kp:status:{n}", {self.rules.fields["kp_status"]: status})
            self._record(
                "KP", f"КП feedback round {n}: {'agreed' if feedback.agreed else 'not agreed'}"
            )
            if feedback.agreed:
                break
            await self._task(f"kp:objection:{n}", "task_kp_objection")
            await self._continue_as_new_when_suggested()
        await self._refresh_deal()
        assert self.s.deal is not None
        self.s.document_set = R.document_set(self.s.deal.amount, self.rules)
        return await self._advance("CONTRACT", f"КП agreed; document set {self.s.document_set}")

    async def stage_contract(self) -> str:
        """CONTRACT: internal approval when the document set needs it (R-CT-1, R-KP-5…7)."""
        doc_set = self.s.document_set or R.document_set(self._amount(), self.rules)
        self.s.document_set = doc_set
        if doc_set != "invoice":
            round_no = self.s.counters.get("approval", 0) or self._bump("approval")
            await self._task(f"ct:approval:{round_no}", "task_internal_approval")
            result = await self._approval(round_no)
            if result is None:
                return self._take_move()
            if not result.approved:
                self.s.approved = False
                self._bump("approval")
                await self._notify(
                    f"ct:approval_rejected:{round_no}",
                    [self.s.manager_id or self.rules.people.rop],
                    "notify_approval_rejected",
                    comment=result.comment or "—",
                )
                return self._cause("KP", f"internal approval rejected: {result.comment or '—'}")
            self.s.approved = True
        await self._task("ct:send_documents", "task_send_documents_to_client")
        await self._wait(lambda: False)
        return self._take_move()

    async def stage_invoice(self) -> str:
        """INVOICE: the pay loop (R-INV-1, R-INV-2) closed by 1C or a person (R-INV-3)."""
        await self._client_message("inv:client_message", "client_invoice_issued")
        paid = lambda: bool(self.s.payments)  # noqa: E731  (payments exist from INVOICE on)
        while not paid():
            if not self.s.counters.get("inv:open"):
                self.s.invoice_round += 1
                self.s.counters["inv:open"] = 1
            n = self.s.invoice_round
            await self._task(f"inv:get_payment:{n}", "task_get_payment")
            due = self._payment_due()
            self._set_deadline(f"payment_{n}", due)
            if not await self._wait(paid, until=due):
                await self._deadline_missed(f"payment_{n}", f"Оплата счёта (раунд {n})", due)
                await self._task(f"inv:objection:{n}", "task_invoice_objection")
                self.s.counters["inv:open"] = 0
                await self._continue_as_new_when_suggested()
                continue
            if self._interrupted() and not paid():
                return self._take_move()
        self.s.counters["inv:open"] = 0
        self._clear_deadline(f"payment_{self.s.invoice_round}")
        if not self._field("payment_date"):
            await self._set_fields_once(
                "inv:payment_date",
                {self.rules.fields["payment_date"]: self.s.payments[0].paid_on.isoformat()},
            )
        return await self._advance("LAUNCH", "payment received")

    async def stage_launch(self) -> str:
        """LAUNCH: the payment schedule (R-LA-1, via `set_payment_schedule`) and R-LA-2."""
        await self._task("la:control_works", "task_control_works")
        await self._wait(lambda: False)
        return self._take_move()

    async def stage_accepted(self) -> str:
        """ACCEPTED: schedule control runs (R-AC-1); tasks R-AC-2; the logist's task (R-AC-3)."""
        await self._task("ac:control_packing", "task_control_packing")
        await self._task("ac:check_payment", "task_check_payment")
        await self._logist_task("ac:ship_goods", "task_ship_goods")
        await self._wait(lambda: False)
        return self._take_move()

    async def stage_to_ship(self) -> str:
        """TO_SHIP: schedule control runs (R-TS-1); task R-TS-2."""
        await self._task("ts:control_shipping", "task_control_shipping")
        await self._wait(lambda: False)
        return self._take_move()

    async def stage_shipped(self) -> str:
        """SHIPPED: acts and УПД with 1-day deadlines (R-SH-1/2), e-mail on signing (R-SH-3)."""
        await self._client_message("sh:client_message", "client_shipped")
        rule = self.rules.deadlines["closing_document_task"]
        due = R.deadline_after(self._entered_at(), rule, self.rules)
        await self._task("sh:act", "task_send_act", deadline=due)
        await self._task("sh:upd", "task_send_upd", deadline=due)
        self._set_deadline("closing_documents", due)
        both = lambda: {"act", "upd"} <= set(self.s.signed)  # noqa: E731
        what = "Подписать Акт и УПД с клиентом"
        if not await self._wait_or_remind(both, due, "closing_documents", what):
            return self._take_move()
        await self._send_documents_to_accountant()
        await self._client_message("sh:client_documents", "client_documents_sent")
        return await self._advance("WON", "closing documents signed and sent")

    async def stage_won(self) -> None:
        """WON: the feedback form to the client (R-WON-1), the «Инженеры» deal (R-WON-2)."""
        self._stop_background()
        await self._client_message("won:feedback_form", "client_won_feedback")
        await self._once(
            "won:engineers_deal",
            "create_linked_deal",
            LinkedDealRequest(
                key=self._key("won:engineers_deal"),
                source_deal_id=self.s.deal_id,
                category_id=self.rules.engineers_category_id,
                title=self._text("engineers_deal_title"),
            ),
            int,
        )
        await self._end_children()

    async def stage_lose(self) -> None:
        """LOSE (R-LOSE-1): reason and comment on the deal; timers and children end."""
        self._stop_background()
        await self._end_children()
        if self.lose is None:
            return
        fields = self.rules.fields
        reason_id = self.rules.enums["loss_reason"][self.lose.reason]
        await self._set_fields_once(
            "lose:fields",
            {fields["loss_reason"]: reason_id, fields["loss_comment"]: self.lose.comment or ""},
        )

    # ---- stage helpers ---------------------------------------------------------------------

    async def _load_kp(self) -> None:
        """R-KP-2: КП lines from 1C into the deal when the direction contains «Россия»."""
        result: LoadKpResult | None = await self._onec_once(
            "kp:load_from_1c",
            LOAD_KP_INTO_DEAL,
            LoadKpRequest(key=self._key("kp:load_from_1c"), deal_id=self.s.deal_id),
            LoadKpResult,
        )
        if result is not None:
            self._record(
                "KP", result.comment or f"КП {result.kp_number}: {len(result.lines)} lines"
            )

    async def _approval(self, round_no: int) -> ApprovalResult | None:
        """Run (or rejoin) the «Согласование» child; None when the deal was lost or moved."""
        key = self._key(f"approval:{round_no}")
        child_id = f"deal-{self.s.deal_id}-approval-{round_no}"
        if f"approval_started:{round_no}" not in self.s.done:
            approval = self.rules.approval
            item = ApprovalItemRequest(
                key=key,
                deal_id=self.s.deal_id,
                entity_type_id=approval.entity_type_id,
                category_id=approval.category_id,
                stage_id=approval.stage_new,
                title=self._text("approval_item_title", document_set=self.s.document_set or ""),
                assigned_by_id=self.rules.people.rop,
            )
            await workflow.start_child_workflow(
                "InternalApproval",
                ApprovalInput(
                    deal_id=self.s.deal_id,
                    key=key,
                    item=item,
                    rules=approval,
                    parent_id=workflow.info().workflow_id,
                ),
                id=child_id,
                parent_close_policy=ParentClosePolicy.ABANDON,
            )
            self.s.done.append(f"approval_started:{round_no}")
            self.s.processes.append(ProcessState(kind="approval", workflow_id=child_id))
        done = lambda: self.approval is not None and self.approval.key == key  # noqa: E731
        await self._wait(done)
        if not done():
            return None
        result, self.approval = self.approval, None
        self._finish_process(child_id, "done")
        return result

    async def _logist_task(self, purpose: str, template: str) -> None:
        """R-AC-3 / R-X6: the logist's task, creator the manager, mirrored into 1C."""
        logist = self.rules.people.logist
        task_id = await self._task(
            purpose,
            template,
            responsible=logist,
            created_by=self.s.manager_id or self.rules.people.rop,
        )
        if not task_id or f"mirror:{purpose}" in self.s.done:
            return
        child_id = self._mirror_id(purpose)
        await workflow.start_child_workflow(
            LOGIST_TASK_MIRROR,
            LogistMirrorInput(
                deal_id=self.s.deal_id,
                bitrix_task_id=task_id,
                key=self._key(f"{purpose}:1c"),
                title=self._text(template),
                responsible_id=logist,
                poll=PollSchedule(first=timedelta(seconds=self.rules.onec_task_poll_seconds)),
                report_signal="logist_task_done",
            ),
            id=child_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
        self.s.done.append(f"mirror:{purpose}")
        self.s.processes.append(ProcessState(kind=LOGIST_PROCESS, workflow_id=child_id))

    def _payment_due(self) -> datetime:
        """This round's payment deadline: the deal's «Дата оплаты» if still ahead, else +N days."""
        raw = self._field("payment_date")[:10]
        day: date | None
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            day = None
        if day is None or self._end_of_working_day(day) <= workflow.now():
            day = R.Calendar(self.rules.calendar).add_business_days(
                self._today(), self.rules.payment_round_business_days
            )
        return self._end_of_working_day(day)

    async def _send_documents_to_accountant(self) -> None:
        """R-SH-3: the signed closing documents (numbers from 1C) e-mailed to the accountant."""
        if "sh:mail_accountant" in self.s.done:
            return
        documents: list[ClosingDocument] = (
            await self._onec_once(
                "sh:closing_documents",
                FETCH_CLOSING_DOCUMENTS,
                ClosingDocsRequest(
                    inn=self._field("inn") or None, invoice_number=self._field("invoice") or None
                ),
                list[ClosingDocument],
            )
            or []
        )
        lines = [f"— {DOCUMENT_TITLES.get(k, k)}: подписан" for k in sorted(set(self.s.signed))]
        lines += [f"— {d.kind.upper()} №{d.number} от {d.date:%d.%m.%Y}" for d in documents]
        await self._once(
            "sh:mail_accountant",
            "send_email",
            EmailRequest(
                key=self._key("sh:mail_accountant"),
                to=[self.rules.accountant_email],
                subject=self._text("mail_accountant_subject"),
                body=self._text("mail_accountant_body", documents="\n".join(lines)),
            ),
        )
        fields = self.rules.fields
        await self._set_fields_once(
            "sh:fields", {fields["act"]: "Подписан", fields["upd"]: "Подписан"}
        )

    # ---- background: payment schedule control and 1C payments ------------------------------

    def _start_background(self) -> None:
        if self.s.payment_schedule and self._payments_task is None:
            self._payments_task = asyncio.create_task(self._control_payments())
        if self._poll_task is None and self.s.stage in PAYMENT_STAGES:
            self._poll_task = asyncio.create_task(self._poll_onec_payments())

    def _stop_background(self) -> None:
        for task in (self._payments_task, self._poll_task):
            if task is not None and not task.done():
                task.cancel()

    async def _control_payments(self) -> None:
        """R-PS-1: before each due date remind; when it passes unpaid notify and escalate."""
        for tranche in self.s.payment_schedule:
            n = tranche.number
            paid = lambda t=tranche: self._tranche_paid(t)  # noqa: E731
            remind_day = tranche.due - timedelta(days=self.rules.payment_reminder_days_before)
            remind_at = self._end_of_working_day(remind_day) - timedelta(hours=8)
            due_at = self._end_of_working_day(tranche.due)
            if not await self._until(paid, remind_at):
                tranche.state = "reminded"
                await self._payment_notice(
                    f"ps:{n}:reminder", [self._responsible()], "notify_payment_reminder", tranche
                )
            if not await self._until(paid, due_at):
                tranche.state = "overdue"
                self._sync_overdue()
                await self._payment_notice(
                    f"ps:{n}:overdue", [self._responsible()], "notify_payment_overdue", tranche
                )
                await self._payment_notice(
                    f"ps:{n}:overdue:rop",
                    [self.rules.people.rop],
                    "notify_payment_overdue_rop",
                    tranche,
                )
                every = timedelta(hours=self.rules.payment_overdue_reminder_hours)
                while not await self._until(paid, workflow.now() + every):
                    k = self._bump(f"ps:{n}:overdue_reminders")
                    await self._payment_notice(
                        f"ps:{n}:overdue:{k}",
                        [self._responsible()],
                        "notify_payment_overdue",
                        tranche,
                    )
            tranche.state = "paid"
            self._sync_overdue()
            await self._publish_schedule()

    async def _until(self, done: Callable[[], bool], moment: Any) -> bool:
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

    def _tranche_paid(self, tranche: TrancheState) -> bool:
        """Payments cover the schedule in due order: this tranche and all before it."""
        received = sum(p.amount for p in self.s.payments)
        owed = sum(t.amount for t in self.s.payment_schedule if t.due <= tranche.due)
        covered = received + 0.005 >= owed
        if covered:
            tranche.paid = tranche.amount
        return covered

    async def _payment_notice(
        self, purpose: str, users: list[int], template: str, t: TrancheState
    ) -> None:
        await self._notify(
            purpose,
            users,
            template,
            number=str(t.number),
            amount=f"{t.amount:,.2f}".replace(",", " "),
            due=t.due.strftime("%d.%m.%Y"),
            manager=str(self.s.manager_id or "—"),
        )

    async def _publish_schedule(self) -> None:
        """R-PS-2: the schedule and each tranche's state, written on the deal."""
        text = "; ".join(
            f"{t.number}) {t.percent:g}% {t.amount:.2f} до {t.due:%d.%m.%Y} — {t.state}"
            for t in self.s.payment_schedule
        )
        await self._update_deal({self.rules.fields["payment_schedule"]: text})

    async def _poll_onec_payments(self) -> None:
        """R-INV-3 / R-PS-1: incoming payments for the deal's invoice, read from 1C."""
        while self.s.stage in PAYMENT_STAGES and not self._all_paid():
            invoice = self._field("invoice")
            if invoice:
                try:
                    found: list[Payment] = await self._activity(
                        FIND_INVOICE_PAYMENTS,
                        FindPaymentsRequest(invoice_number=invoice),
                        list[Payment],
                    )
                except ActivityError as err:  # e.g. 1C does not know this invoice number
                    await self._report_failure(f"1c_payments:{invoice}", err)
                    found = []
                for payment in found:
                    self._add_payment(payment.amount, payment.paid_on, "1c", payment.number)
            await workflow.sleep(
                timedelta(seconds=self.rules.onec_poll_seconds), summary="poll 1C payments"
            )

    def _all_paid(self) -> bool:
        if self.s.stage == "INVOICE" or not self.s.payment_schedule:
            return False
        return all(self._tranche_paid(t) for t in self.s.payment_schedule)

    def _add_payment(self, amount: float, paid_on: Any, source: str, number: str = "") -> bool:
        reference = f"{source}:{number}" if number else ""
        if reference and any(p.source == reference for p in self.s.payments):
            return False
        self.s.payments.append(
            PaymentRecord(amount=amount, paid_on=paid_on, source=reference or source)
        )
        self._record(self.s.stage, f"payment {amount:.2f} on {paid_on} ({source})")
        return True

    # ---- the read model (deal board) ---------------------------------------------------------

    def _details(self) -> None:
        super()._details()
        self._board_dirty = True

    async def _publish_board(self) -> None:
        """Keep the deal's board row current: one short local activity per burst of changes."""
        while True:
            await workflow.wait_condition(lambda: self._board_dirty)
            self._board_dirty, self._board_busy = False, True
            try:
                await workflow.execute_local_activity(
                    "update_board",
                    self._board_row(),
                    start_to_close_timeout=timedelta(seconds=10),
                    schedule_to_close_timeout=timedelta(minutes=2),
                )
            except ActivityError:
                self._record(self.s.stage, "deal board not updated (database unavailable)")
            finally:
                self._board_busy = False

    async def _flush_board(self) -> None:
        if self._board_task is None:
            return
        self._board_dirty = True
        await workflow.wait_condition(lambda: not self._board_dirty and not self._board_busy)

    def _board_row(self) -> BoardUpdate:
        tranches = [
            Deadline(
                name=f"tranche_{t.number}",
                due=self._end_of_working_day(t.due),
                overdue=t.state == "overdue",
            )
            for t in self.s.payment_schedule
            if t.state != "paid"
        ]
        return BoardUpdate(
            deal_id=self.s.deal_id,
            title=self.s.deal.title if self.s.deal else "",
            stage=self.s.stage,
            manager_id=self.s.manager_id,
            amount=self._amount(),
            document_set=self.s.document_set,
            deadlines=[*self.s.deadlines, *tranches],
        )

    # ---- children --------------------------------------------------------------------------

    def _finish_process(self, workflow_id: str, state: Literal["done", "failed"]) -> None:
        for process in self.s.processes:
            if process.workflow_id == workflow_id:
                process.state = state

    async def _end_children(self) -> None:
        """Running children of a closed deal are cancelled (they were started ABANDON) — except,
        on WON, the logist's 1C task mirrors: the goods' task lives on in 1C and its progress
        still belongs in Bitrix24 (R-AC-3), so they run until 1C says executed."""
        keep_mirrors = self.s.stage == "WON" and workflow.patched(WON_KEEPS_LOGIST_MIRRORS)
        for process in self.s.processes:
            if keep_mirrors and process.kind == LOGIST_PROCESS:
                continue
            if process.state == "running":
                handle = workflow.get_external_workflow_handle(process.workflow_id)
                with contextlib.suppress(Exception):  # it may have finished already
                    await handle.cancel()
                process.state = "failed" if self.s.stage == "LOSE" else "done"

    async def _continue_as_new_when_suggested(self) -> None:
        if workflow.info().is_continue_as_new_suggested():
            if workflow.patched(CAN_DRAINS_INTENTS):
                # Handlers that wait for the main loop return once their intent is in DealState;
                # otherwise they would wait for a loop that waits for them.
                self._draining = True
            await workflow.wait_condition(workflow.all_handlers_finished)
            self._continue_as_new_if_suggested()

    # ---- updates, signals, query -----------------------------------------------------------

    @workflow.update
    async def accept_lead(self, cmd: AcceptLead) -> DealView:
        self.accept = cmd
        await workflow.wait_condition(lambda: self.s.stage != "NEW" or self._draining)
        return self._view()

    @accept_lead.validator
    def _validate_accept(self, cmd: AcceptLead) -> None:
        self._require_stage("accept_lead", "NEW")
        if self.accept is not None or self.reject is not None:
            raise ValueError("the lead has already been taken or rejected")
        known = self.rules.people.managers
        if cmd.manager_id not in known:
            raise ValueError(
                f"manager_id {cmd.manager_id} is not a sales manager (configured: {known})"
            )

    @workflow.update
    async def reject_lead(self, cmd: RejectLead) -> DealView:
        self.reject = cmd
        await workflow.wait_condition(lambda: self.s.stage != "NEW" or self._draining)
        return self._view()

    @reject_lead.validator
    def _validate_reject(self, cmd: RejectLead) -> None:
        self._require_stage("reject_lead", "NEW")
        if self.accept is not None or self.reject is not None:
            raise ValueError("the lead has already been taken or rejected")
        if not cmd.reason.strip():
            raise ValueError("reason must not be empty")

    @workflow.update
    async def kp_feedback(self, cmd: KpFeedback) -> DealView:
        self.feedback = cmd
        await workflow.wait_condition(
            lambda: self.feedback is None or self.s.stage != "KP" or self._draining
        )
        return self._view()

    @kp_feedback.validator
    def _validate_feedback(self, cmd: KpFeedback) -> None:
        self._require_stage("kp_feedback", "KP")
        if self.feedback is not None or not self.s.kp_round:
            raise ValueError("no КП feedback is awaited right now")

    @workflow.update
    async def approval_decision(self, cmd: ApprovalDecision) -> DealView:
        child = next(
            p for p in reversed(self.s.processes) if p.kind == "approval" and p.state == "running"
        )
        await workflow.get_external_workflow_handle(child.workflow_id).signal("decide", cmd)
        await workflow.wait_condition(
            lambda: self.s.stage != "CONTRACT" or self.s.approved is not None or self._draining
        )
        return self._view()

    @approval_decision.validator
    def _validate_approval(self, cmd: ApprovalDecision) -> None:
        self._require_stage("approval_decision", "CONTRACT")
        if not any(p.kind == "approval" and p.state == "running" for p in self.s.processes):
            raise ValueError("no internal approval is running for this deal")
        if not cmd.approved and not (cmd.comment or "").strip():
            raise ValueError("a rejection needs a comment for the manager")

    @workflow.update
    async def record_payment(self, cmd: RecordPayment) -> DealView:
        info = workflow.current_update_info()
        self._add_payment(cmd.amount, cmd.paid_on, cmd.source, info.id if info else "")
        if self.s.payment_schedule:
            await self._publish_schedule()
        return self._view()

    @record_payment.validator
    def _validate_payment(self, cmd: RecordPayment) -> None:
        self._require_stage("record_payment", *PAYMENT_STAGES)
        if cmd.paid_on > self._today() + timedelta(days=1):
            raise ValueError(f"paid_on {cmd.paid_on} is in the future")
        started = self.s.history[0].at.date() if self.s.history else self._today()
        if cmd.paid_on < started - timedelta(days=366):
            raise ValueError(f"paid_on {cmd.paid_on} is long before the deal started ({started})")

    @workflow.update
    async def set_payment_schedule(self, cmd: PaymentSchedule) -> DealView:
        plan = R.plan_schedule(
            [(t.percent, t.due) for t in cmd.tranches], self._amount(), self._deal_start()
        )
        self.s.payment_schedule = [
            TrancheState(number=i, percent=p, due=d, amount=a)
            for i, (p, d, a) in enumerate(plan, 1)
        ]
        self._record(self.s.stage, f"payment schedule set: {len(plan)} tranches")
        await self._publish_schedule()
        if self._payments_task is None:
            self._payments_task = asyncio.create_task(self._control_payments())
        return self._view()

    @set_payment_schedule.validator
    def _validate_schedule(self, cmd: PaymentSchedule) -> None:
        self._require_stage("set_payment_schedule", *SCHEDULE_STAGES)
        if self.s.payment_schedule:
            raise ValueError("the payment schedule is already set")
        R.plan_schedule(
            [(t.percent, t.due) for t in cmd.tranches], self._amount(), self._deal_start()
        )

    @workflow.update
    async def request_tasks(self, cmd: RequestTasks) -> DealView:
        """R-X6: one task per service asked for; the logistics task is mirrored into 1C."""
        info = workflow.current_update_info()
        ref = info.id if info else str(self._bump("request_tasks"))
        for service in SERVICES:
            if not getattr(cmd, service):
                continue
            purpose = f"request:{service}:{ref}"
            if service == "logistics":
                await self._logist_task(purpose, "task_request_logistics")
            else:
                await self._task(
                    purpose,
                    f"task_request_{service}",
                    responsible=self.rules.people.services[service],
                )
        return self._view()

    @request_tasks.validator
    def _validate_request(self, cmd: RequestTasks) -> None:
        if self.s.stage in FINAL_STAGES:
            raise ValueError(f"the deal is closed ({self.s.stage})")
        if not any(getattr(cmd, s) for s in SERVICES):
            raise ValueError("set at least one of: " + ", ".join(SERVICES))

    @workflow.update
    async def start_process(self, cmd: StartProcess) -> DealView:
        """R-X7: «Заказ Импорт», «Производство», «Закупки» as tracked children."""
        n = self._bump(f"process:{cmd.kind}")
        child_id = f"deal-{self.s.deal_id}-process-{cmd.kind}-{n}"
        name = self._text(f"process_{cmd.kind}")
        task = TaskRequest(
            key=self._key(f"process:{cmd.kind}:{n}"),
            deal_id=self.s.deal_id,
            title=self._text("task_process", process=name),
            description=self._text("task_description"),
            responsible_id=self.rules.people.services[PROCESS_SERVICE[cmd.kind]],
            created_by=self.s.manager_id or self.rules.people.rop,
        )
        self.s.processes.append(ProcessState(kind=cmd.kind, workflow_id=child_id))
        await workflow.start_child_workflow(
            "DealProcess",
            ProcessInput(
                deal_id=self.s.deal_id,
                kind=cmd.kind,
                task=task,
                parent_id=workflow.info().workflow_id,
            ),
            id=child_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
        self._record(self.s.stage, f"process started: {name}")
        return self._view()

    @start_process.validator
    def _validate_process(self, cmd: StartProcess) -> None:
        if self.s.stage in FINAL_STAGES:
            raise ValueError(f"the deal is closed ({self.s.stage})")

    @workflow.update
    async def documents_signed(self, cmd: DocumentsSigned) -> DealView:
        if cmd.kind in ("act", "upd"):
            if cmd.kind not in self.s.signed:
                self.s.signed.append(cmd.kind)
        else:
            field = self.rules.fields[f"signed_{cmd.kind}"]
            await self._update_deal({field: f"Подписан {self._today():%d.%m.%Y}"})
        self._record(self.s.stage, f"{cmd.kind} signed")
        return self._view()

    @documents_signed.validator
    def _validate_signed(self, cmd: DocumentsSigned) -> None:
        if cmd.kind in ("act", "upd"):
            self._require_stage("documents_signed(act|upd)", "SHIPPED")
        else:
            self._require_stage("documents_signed(invoice|contract)", "CONTRACT", "INVOICE")

    @workflow.update
    async def move_stage(self, cmd: MoveStage) -> DealView:
        await self._refresh_deal()
        missing = self._missing_for_move(cmd.to)
        if missing:
            raise ApplicationError(
                "required fields are empty: " + ", ".join(missing), type="RequiredFieldsMissing"
            )
        self.moved_to = cmd.to
        await workflow.wait_condition(
            lambda: self.s.stage == cmd.to or self.s.stage in FINAL_STAGES or self._draining
        )
        return self._view()

    @move_stage.validator
    def _validate_move(self, cmd: MoveStage) -> None:
        if self.s.stage in FINAL_STAGES:
            raise ValueError(f"the deal is closed ({self.s.stage})")
        if cmd.to == self.s.stage:
            raise ValueError(f"the deal is already at {cmd.to}")
        if cmd.to == "LOSE":
            raise ValueError("use lose_deal, which asks for a reason")
        if self.moved_to is not None or self.lose is not None:
            raise ValueError("the deal is already moving")

    @workflow.update
    async def lose_deal(self, cmd: LoseDeal) -> DealView:
        self.lose = cmd
        await workflow.wait_condition(lambda: self.s.stage == "LOSE" or self._draining)
        return self._view()

    @lose_deal.validator
    def _validate_lose(self, cmd: LoseDeal) -> None:
        if self.s.stage in FINAL_STAGES:
            raise ValueError(f"the deal is already closed ({self.s.stage})")
        if self.lose is not None:
            raise ValueError("the deal is already being lost")
        if cmd.reason == "OTHER" and not (cmd.comment or "").strip():
            raise ValueError("reason OTHER («Другое») requires a comment")

    @workflow.signal(name="bitrix24_event")
    def bitrix24_event(self, event: Bitrix24Event) -> None:
        self.s.pending_events.append(event)

    @workflow.signal
    def approval_done(self, result: ApprovalResult) -> None:
        self.approval = result

    @workflow.signal
    def process_done(self, result: ProcessResult) -> None:
        self._finish_process(result.workflow_id, "done")
        self._record(self.s.stage, f"process {result.kind} done")

    @workflow.signal
    def logist_task_done(self, result: LogistMirrorResult) -> None:
        purpose = result.key.removeprefix(self._key("")).removesuffix(":1c")
        self._finish_process(self._mirror_id(purpose), "failed" if result.error else "done")
        if result.error:
            self._record(self.s.stage, f"1C logist task failed: {result.error}")
            return
        self._record(self.s.stage, f"1C logist task {result.ref} executed={result.executed}")

    @workflow.query
    def state(self) -> DealView:
        return self._view()

    # ---- small helpers ---------------------------------------------------------------------

    def _in_pipeline(self) -> bool:
        deal = self.s.deal
        return deal is not None and deal.category_id == self.rules.category_id

    def _amount(self) -> float:
        return self.s.deal.amount if self.s.deal else 0.0

    def _deal_start(self) -> date:
        at = self.s.history[0].at if self.s.history else workflow.now()
        return R.local_day(at, self.rules.timezone)

    def _close_tasks(self, *purposes: str) -> None:
        """A round's tasks are done once its answer is in: they leave the open tasks."""
        keys = {self._key(p) for p in purposes}
        self.s.open_tasks = [t for t in self.s.open_tasks if t.key not in keys]

    def _mirror_id(self, purpose: str) -> str:
        return f"deal-{self.s.deal_id}-1c-{purpose.replace(':', '-')}"

    def _responsible(self) -> int:
        return self.s.manager_id or self.rules.people.rop


def _human(minutes: int) -> str:
    if minutes % 60 == 0:
        hours = minutes // 60
        return "1 час" if hours == 1 else f"{hours} ч."
    return f"{minutes} мин."
