"""`DealWorkflow`: one long-lived workflow per Bitrix24 deal of the «Продажа» pipeline.

The pipeline of PIPELINE.md, one stage method each, in this order:

    stage     Bitrix24 name               method           ends with
    NEW       Новая заявка                stage_new        accept / reject (1 hour, R-NEW)
    IN_WORK   Взят в работу               stage_in_work    a person moves it (КП date, R-IW)
    KP        КП                          stage_kp         КП agreed → CONTRACT (R-KP)
    CONTRACT  Договор                     stage_contract   approval; a person moves it (R-CT)
    INVOICE   Счет                        stage_invoice    payment → LAUNCH (R-INV)
    LAUNCH    Запуск реализации сделки    stage_launch     a person moves it (R-LA)
    ACCEPTED  Принят                      stage_accepted   a person moves it (R-AC)
    TO_SHIP   К отгрузке                  stage_to_ship    a person moves it (R-TS)
    SHIPPED   Отгружен/Доставлен          stage_shipped    documents signed → WON (R-SH)
    WON       Сделка успешна              stage_won        final (R-WON)
    LOSE      Сделка провалена            stage_lose       final, from any stage (R-LOSE)

Each stage method runs the stage's entry actions once (keys in `state.done` plus idempotency
markers in Bitrix24 and 1C), waits for what ends the stage while deadlines run as timers, and
returns a `Transition` (where to, and why). People act through the updates at the end of the
class; what they asked for is kept in `DealState.intents` until the stage acts on it.

Rooms: `deal_effects.py` (waiting, people's moves, keyed side effects), `payments.py` (the
payment schedule and the 1C payments poll), `board.py` (the deal board row), `children.py`
(approval, processes, the logist's 1C task), `activity_stubs.py` (the activities called).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from salesflow.workflows import patches

with workflow.unsafe.imports_passed_through():
    from salesflow.workflows import activity_stubs as act
    from salesflow.workflows import causes as C
    from salesflow.workflows import migration
    from salesflow.workflows import rules as R
    from salesflow.workflows.board import BoardPublisher
    from salesflow.workflows.children import Children
    from salesflow.workflows.client_messages import ClientMessages
    from salesflow.workflows.deadlines import Following
    from salesflow.workflows.deal_changes import DealChanges
    from salesflow.workflows.deal_effects import (
        FIELDS_DRIVE,
        MOVE_ACTOR,
        DealEffects,
        Transition,
    )
    from salesflow.workflows.field_intents import ONE_SERVICE_TASK, SERVICES, FieldIntents
    from salesflow.workflows.models import (
        FINAL_STAGES,
        AcceptLead,
        ApprovalDecision,
        ApprovalResult,
        Bitrix24Event,
        ClosePayments,
        Deadline,
        DealInput,
        DealRules,
        DealState,
        DealView,
        DocumentsSigned,
        EmailRequest,
        KpFeedback,
        LinkedDealRequest,
        LoseDeal,
        MigrateRules,
        MoveStage,
        PaymentSchedule,
        ProcessResult,
        RecordPayment,
        RejectLead,
        RequestTasks,
        Stage,
        StartProcess,
        UpdateAck,
    )
    from salesflow.workflows.names import (
        DEAL_MANAGER,
        SIGNAL_APPROVAL_DONE,
        SIGNAL_BITRIX24_EVENT,
        SIGNAL_LOGIST_TASK_DONE,
        SIGNAL_ONEC_CONFIG_FIXED,
        SIGNAL_PROCESS_DONE,
        in_pipeline,
    )
    from salesflow.workflows.onec_models import (
        ClosingDocsRequest,
        ClosingDocument,
        LoadKpRequest,
        LogistMirrorResult,
    )
    from salesflow.workflows.payments import PAYMENT_STAGES, SCHEDULE_STAGES, Payments
    from salesflow.workflows.people_lookup import PeopleLookup
    from salesflow.workflows.refusals import refuse
    from salesflow.workflows.update_ack import ack, since
    from salesflow.workflows.why import WhyRequest, WhyView, explain

DOCUMENT_TITLES = {"act": "Акт выполненных работ", "upd": "УПД"}
CAN_DRAINS_INTENTS = "continue-as-new-drains-intents"
UPDATES_ANSWER_AFTER_MOVE = "updates-answer-after-move"
NEW_REMINDER_POLICY = "new-lead-reminder-policy"  # R-X4: working hours, daily cap, ladder
WATCHED_DEADLINES = "watched-deadlines"  # R-X4: КП date through КП, service tasks, processes
TASK_DEADLINES = "stage-task-deadlines"  # R-X4: «Отправить КП», «Получить оплату» carry DEADLINE
COMPLETE_ROUND_TASKS = "complete-round-tasks"  # a КП round's tasks completed in Bitrix24
KP_MESSAGE_WHEN_SENT = "kp-message-when-sent"  # «КП отправлено» after the КП task is done
POSTPAYMENT = "postpayment-skips-the-pay-loop"  # R-CT-2
PAYMENTS_AFTER_WON = "payments-after-won"  # R-PS-1: tranches chased after WON
CLOSING_BUSINESS_DAYS = "closing-documents-business-days"  # R-X9: «1 день» in business days
ACCOUNTANT_ATTACHMENTS = "fin14-accountant-mail-attachments"  # R-SH-3: the signed files
CLOSING_TASKS_LINKED = "fin14-closing-tasks-linked"  # the Акт/УПД DEADLINEs move closing_documents
KP_RELOAD_PER_ROUND = "kp-load-per-round"  # a re-formed КП is read from 1C again (R-KP-4)
REWORK_BEFORE_NEXT_ROUND = "rework-before-next-round"
MOVE_WAIT = timedelta(seconds=10)  # how long an update waits for the deal to take its step


@workflow.defn(name="DealWorkflow")
class DealWorkflow:
    @workflow.init
    def __init__(self, inp: DealInput) -> None:
        self.rules = inp.rules
        self.s = inp.state or DealState(deal_id=inp.deal_id)
        self.board = BoardPublisher()
        self.fx = DealEffects(self.rules, self.s, on_change=self.board.mark_dirty)
        self.payments = Payments(self.fx)
        self.children = Children(self.fx)
        self.fields = FieldIntents(self.fx, self._request_service)
        self.fx.on_deal_read = self.fields.follow
        self.follow = self.fx.follow = Following(self.fx)  # deadlines follow the data
        self.changes = DealChanges(self.fx)  # the deal deleted, moved, changed (issue 14)
        self.people = PeopleLookup(self.fx)  # people read when used, not frozen (issue 14)
        self.messages = ClientMessages(self.fx)  # the client told of the order's work (issue 14)
        self.fx.on_deal_read = self.changes.after(self.fields.follow, self.people.refresh)
        self.fx.deal_gone = self.changes.deal_gone
        self.fx.on_events = self.changes.take_events
        self.fx.left = self.changes.left_pipeline
        self._draining = False  # continue-as-new is due: handlers return once intent recorded
        self._watching = False  # WATCHED_DEADLINES, decided when the run starts

    # ---- the pipeline, in stage order -----------------------------------------------------

    @workflow.run
    async def run(self, inp: DealInput) -> DealView:
        fx = self.fx
        if patches.patched("deal-board"):
            self.board.start(fx)
        fx.decisions.start()
        self.messages.start()
        if self.s.deal is None:
            await fx.refresh_deal()
            if self.s.deal is None:  # deleted before its first read (deal_changes.py)
                return fx.view()
            if inp.reopened_from is not None and await self.changes.reopened(inp.reopened_from):
                return fx.view()  # refused: back at its final stage
            if not in_pipeline(self.s.deal.category_id, self.rules.category_id):
                return fx.view()
            stage = fx.stage_of(self.s.deal.stage_id) or Stage.NEW
            if stage != Stage.NEW:
                self.s.manager_id = self.s.deal.assigned_by_id or None
            fx.enter(stage, C.cause("found"), now=workflow.now())
        stages: dict[Stage, Callable[[], Awaitable[Transition]]] = {
            Stage.NEW: self.stage_new,
            Stage.IN_WORK: self.stage_in_work,
            Stage.KP: self.stage_kp,
            Stage.CONTRACT: self.stage_contract,
            Stage.INVOICE: self.stage_invoice,
            Stage.LAUNCH: self.stage_launch,
            Stage.ACCEPTED: self.stage_accepted,
            Stage.TO_SHIP: self.stage_to_ship,
            Stage.SHIPPED: self.stage_shipped,
        }
        self.payments.start()
        self._watching = patches.patched(WATCHED_DEADLINES)
        self.children.watching = self._watching
        if self._watching:
            fx.rewatch()
            self.follow.start()
        while self.s.stage not in FINAL_STAGES:
            await self._continue_as_new_when_suggested()
            await self.people.refresh()
            transition = await stages[self.s.stage]()
            if self.s.ended:
                break
            left = self.s.stage
            await fx.move(transition)
            self.changes.entered(left)
            self.payments.start()
        if self.s.ended:  # deleted or moved out of «Продажа»: ends cleanly (deal_changes.py)
            self.payments.stop()
            await self.children.end()
            await self.changes.finish()
        elif self.s.stage == Stage.WON:
            await self.stage_won()
        else:
            await self.stage_lose()
        await self.board.flush()
        await fx.decisions.flush()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return fx.view()

    async def stage_new(self) -> Transition:
        """NEW: notify (R-NEW-1), wait for accept/reject (R-NEW-2/3), escalate (R-NEW-4)."""
        fx, intents, people = self.fx, self.s.intents, self.rules.people
        rule = self.rules.deadlines["take_into_work"]
        new = self.changes.new_prefix()  # "new", or "new:<n>" when moved back to NEW
        await fx.notify(
            f"{new}:notify", people.managers, "notify_new_deal", deadline=_human(rule.minutes)
        )
        due = R.deadline_after(fx.entered_at(), rule, self.rules)
        fx.set_deadline("take_into_work", due)
        acted = lambda: intents.accept is not None or intents.reject is not None  # noqa: E731
        if patches.patched(NEW_REMINDER_POLICY):
            if not await fx.wait(acted, until=due):
                await self._take_overdue(due)
                await fx.remind(
                    acted,
                    f"{new}:reminder",
                    "take_into_work",
                    people.managers,
                    "notify_take_reminder",
                )
        else:
            while not await fx.wait(acted, until=due):
                round_no = fx.bump("new:reminder")
                if round_no == 1:
                    await self._take_overdue(due)
                else:
                    await fx.notify(
                        f"new:reminder:{round_no}",
                        [*people.managers, people.rop],
                        "notify_take_reminder",
                    )
                due = workflow.now() + timedelta(minutes=self.rules.reminder_interval_minutes)
        fx.clear_deadline("take_into_work")
        if intents.reject is not None:
            self.s.reject_reason = intents.reject.reason
            await fx.update_deal({self.rules.fields["reject_reason"]: intents.reject.reason})
            return Transition(
                Stage.LOSE,
                C.cause("lead_rejected", reason=intents.reject.reason),
                intents.reject.actor,
            )
        if intents.accept is not None:
            self.s.manager_id = intents.accept.manager_id
            workflow.upsert_search_attributes([DEAL_MANAGER.value_set(self.s.manager_id)])
            await fx.update_deal({"ASSIGNED_BY_ID": self.s.manager_id})
            return Transition(
                Stage.IN_WORK, C.cause("accepted", user=self.s.manager_id), intents.accept.actor
            )
        return fx.take_move()

    async def stage_in_work(self) -> Transition:
        """IN_WORK: client message (R-IW-1), task (R-IW-2), КП date +2 business days (R-IW-3)."""
        fx = self.fx
        await fx.client_message("iw:client_message", "client_taken_into_work")
        await fx.task("iw:check_products", "task_check_products")
        kp_date = R.kp_agreement_date(fx.entered_at(), self.rules)
        await fx.set_fields_once("iw:kp_date", {self.rules.fields["kp_date"]: kp_date.isoformat()})
        due = self.follow.field_due("kp_date") or fx.end_of_working_day(kp_date)
        fx.set_deadline("kp_agreement", due)
        self.follow.link("kp_agreement", field="kp_date")
        await fx.wait_or_remind(lambda: False, due, "kp_agreement", "Согласовать КП с клиентом")
        return fx.take_move()

    async def stage_kp(self) -> Transition:
        """KP: tasks (R-KP-1, R-KP-3), КП from 1C (R-KP-2), the feedback loop (R-KP-4)."""
        fx, intents = self.fx, self.s.intents
        if self._watching and patches.patched(TASK_DEADLINES):
            kp_due = self._kp_due()
            if kp_due is not None:
                fx.watch(
                    Deadline(
                        name="kp_agreement",
                        due=kp_due,
                        what="Согласовать КП с клиентом",
                        kind="kp_agreement",
                        stage=Stage.KP,
                    )
                )
            await fx.task("kp:send_kp", "task_send_kp", deadline=kp_due)
            self.follow.link("kp_agreement", field="kp_date", task_purpose="kp:send_kp")
        else:
            await fx.task("kp:send_kp", "task_send_kp")
        await self._load_kp()
        kp_message_when_sent = patches.patched(KP_MESSAGE_WHEN_SENT)
        if kp_message_when_sent:
            fx.on_task_completed[fx.key("kp:send_kp")] = self._kp_sent
        else:
            await fx.client_message("kp:client_message", "client_kp_sent")
        if self.s.approved is False:
            round_no = self.s.counters.get("approval", 0)
            await fx.task(f"kp:approval_rework:{round_no}", "task_kp_objection")
            self.s.approved = None
        while True:
            self.s.kp_round += 1
            n = self.s.kp_round
            if fx.field("kp_status") and patches.patched(FIELDS_DRIVE):
                # «Статус КП» holds this round's answer only (field_intents.py)
                await fx.set_fields_once(
                    f"kp:status_clear:{n}", {self.rules.fields["kp_status"]: None}
                )
            answered = lambda: intents.feedback is not None  # noqa: E731
            if await self._rework_first(f"kp:objection:{n - 1}", answered):
                if not answered():
                    return fx.take_move()
            else:
                rule = self.rules.deadlines["kp_feedback_task"]
                due = R.deadline_after(workflow.now(), rule, self.rules)
                await fx.task(f"kp:feedback:{n}", "task_kp_feedback", deadline=due)
                fx.set_deadline(f"kp_feedback_{n}", due)
                self.follow.link(f"kp_feedback_{n}", task_purpose=f"kp:feedback:{n}")
                what = f"Обратная связь по КП (раунд {n})"
                if not await fx.wait_or_remind(
                    answered, due, f"kp_feedback_{n}", what, "kp_feedback"
                ):
                    return fx.take_move()
            feedback, intents.feedback = intents.feedback, None
            assert feedback is not None
            if n > 1 and patches.patched(KP_RELOAD_PER_ROUND):
                # The client answered a re-formed КП (R-KP-4): its lines are read from 1C again.
                await self._load_kp(f"kp:load_from_1c:{n}")
            if kp_message_when_sent:
                await self._kp_sent()  # an answer means the client has the КП
            await self._close_tasks(f"kp:feedback:{n}", f"kp:objection:{n - 1}")
            status = self.rules.enums["kp_status"]["agreed" if feedback.agreed else "not_agreed"]
            await fx.set_fields_once(f"kp:status:{n}", {self.rules.fields["kp_status"]: status})
            fx.record(
                Stage.KP,
                C.cause(
                    "kp_feedback", round=n, answer="agreed" if feedback.agreed else "not agreed"
                ),
                feedback.actor,
            )
            if feedback.agreed:
                break
            await fx.task(f"kp:objection:{n}", "task_kp_objection")
            await self._continue_as_new_when_suggested()
        await fx.refresh_deal()
        assert self.s.deal is not None
        document_set = await self.changes.agreed_document_set()  # in RUB (deal_changes.py)
        if document_set is None:
            return fx.take_move()
        self.s.document_set = document_set
        rub = self.changes.rub_amount()
        fx.decisions.document_set(self.s.deal.amount if rub is None else rub, document_set)
        return await fx.advance(
            Stage.CONTRACT, C.cause("kp_agreed", document_set=self.s.document_set), feedback.actor
        )

    async def stage_contract(self) -> Transition:
        """CONTRACT: internal approval when the document set needs it (R-CT-1, R-KP-5…7)."""
        fx = self.fx
        doc_set = self.s.document_set or R.document_set(fx.amount(), self.rules)
        self.s.document_set = doc_set
        fx.decisions.approval(doc_set, self.s.counters.get("approval", 0) or 1)
        if doc_set != "invoice":
            round_no = self.s.counters.get("approval", 0) or fx.bump("approval")
            await fx.task(f"ct:approval:{round_no}", "task_internal_approval")
            result = await self.children.approval(round_no)
            if result is None:
                return fx.take_move()
            if not result.approved:
                self.s.approved = False
                fx.bump("approval")
                await fx.notify(
                    f"ct:approval_rejected:{round_no}",
                    [fx.responsible()],
                    "notify_approval_rejected",
                    comment=result.comment or "—",
                )
                return Transition(
                    Stage.KP,
                    C.cause("approval_rejected", comment=result.comment or "—"),
                    result.actor,
                )
            self.s.approved = True
            fx.record(Stage.CONTRACT, C.cause("approval_approved"), result.actor)
        await fx.task("ct:send_documents", "task_send_documents_to_client")
        await fx.wait(lambda: False)
        return fx.take_move()

    async def stage_invoice(self) -> Transition:
        """INVOICE: the pay loop (R-INV-1, R-INV-2) closed by 1C or a person (R-INV-3)."""
        fx = self.fx
        await fx.client_message("inv:client_message", "client_invoice_issued")
        if patches.patched(POSTPAYMENT) and self._postpaid():
            return await self._invoice_postpaid()
        paid = lambda: bool(self.s.payments)  # noqa: E731  (payments exist from INVOICE on)
        while not paid():
            if not self.s.counters.get("inv:open"):
                if await self._rework_first(f"inv:objection:{self.s.invoice_round}", paid):
                    if paid():
                        break
                    return fx.take_move()
                self.s.invoice_round += 1
                self.s.counters["inv:open"] = 1
            n = self.s.invoice_round
            due = self.payments.invoice_due()
            if patches.patched(TASK_DEADLINES):
                await fx.task(f"inv:get_payment:{n}", "task_get_payment", deadline=due)
            else:
                await fx.task(f"inv:get_payment:{n}", "task_get_payment")
            fx.set_deadline(f"payment_{n}", due)
            self.follow.link(
                f"payment_{n}", field="payment_date", task_purpose=f"inv:get_payment:{n}"
            )
            following = self.follow.due(f"payment_{n}", due)  # «Дата оплаты» moved: the due too
            if not await fx.wait(paid, until=following if self.follow.on else due):
                due = following()
                await fx.deadline_missed(f"payment_{n}", f"Оплата счёта (раунд {n})", due)
                await fx.task(f"inv:objection:{n}", "task_invoice_objection")
                self.s.counters["inv:open"] = 0
                await self._continue_as_new_when_suggested()
                continue
            if fx.interrupted() and not paid():
                return fx.take_move()
        self.s.counters["inv:open"] = 0
        fx.clear_deadline(f"payment_{self.s.invoice_round}")
        if not fx.field("payment_date"):
            await fx.set_fields_once(
                "inv:payment_date",
                {self.rules.fields["payment_date"]: self.s.payments[0].paid_on.isoformat()},
            )
        return await fx.advance(Stage.LAUNCH, C.cause("payment_received"))

    async def stage_launch(self) -> Transition:
        """LAUNCH: the payment schedule (R-LA-1, via `set_payment_schedule`) and R-LA-2."""
        await self.fx.task("la:control_works", "task_control_works")
        await self.fx.wait(lambda: False)
        return self.fx.take_move()

    async def stage_accepted(self) -> Transition:
        """ACCEPTED: schedule control runs (R-AC-1); tasks R-AC-2; the logist's task (R-AC-3)."""
        await self.fx.task("ac:control_packing", "task_control_packing")
        await self.fx.task("ac:check_payment", "task_check_payment")
        await self.children.logist_task("ac:ship_goods", "task_ship_goods")
        await self.fx.wait(lambda: False)
        return self.fx.take_move()

    async def stage_to_ship(self) -> Transition:
        """TO_SHIP: schedule control runs (R-TS-1); task R-TS-2."""
        await self.fx.task("ts:control_shipping", "task_control_shipping")
        await self.fx.wait(lambda: False)
        return self.fx.take_move()

    async def stage_shipped(self) -> Transition:
        """SHIPPED: acts and УПД with 1-day deadlines (R-SH-1/2), e-mail on signing (R-SH-3)."""
        fx = self.fx
        await fx.client_message("sh:client_message", "client_shipped")
        rule = self.rules.deadlines["closing_document_task"]
        whole_days = patches.patched(CLOSING_BUSINESS_DAYS)
        due = R.deadline_after(fx.entered_at(), rule, self.rules, whole_days=whole_days)
        await fx.task("sh:act", "task_send_act", deadline=due)
        await fx.task("sh:upd", "task_send_upd", deadline=due)
        fx.set_deadline("closing_documents", due)
        if workflow.patched(CLOSING_TASKS_LINKED):  # a DEADLINE a person moves moves it
            self.follow.link("closing_documents", "", "sh:act", "sh:upd")
        both = lambda: {"act", "upd"} <= set(self.s.signed)  # noqa: E731
        what = "Подписать Акт и УПД с клиентом"
        if not await fx.wait_or_remind(both, due, "closing_documents", what):
            return fx.take_move()
        await self._send_documents_to_accountant()
        await fx.client_message("sh:client_documents", "client_documents_sent")
        return await fx.advance(Stage.WON, C.cause("closing_documents"))

    async def stage_won(self) -> None:
        """WON: the feedback form to the client (R-WON-1), the «Инженеры» deal (R-WON-2)."""
        fx = self.fx
        after_won = self.rules.payment_control_after_won and patches.patched(PAYMENTS_AFTER_WON)
        self.payments.after_won = after_won
        if after_won:
            self.payments.start()  # the 1C poll goes on (or again, after continue-as-new)
        else:
            self.payments.stop()
        await fx.client_message(
            "won:feedback_form", "client_won_feedback", text=self.messages.won_text()
        )
        await fx.once(
            "won:engineers_deal",
            act.create_linked_deal,
            LinkedDealRequest(
                key=fx.key("won:engineers_deal"),
                source_deal_id=self.s.deal_id,
                category_id=self.rules.engineers_category_id,
                title=fx.text("engineers_deal_title"),
            ),
        )
        await self.children.end()
        if after_won:
            await self._payments_after_won()
            self.payments.stop()

    async def _payments_after_won(self) -> None:
        """R-PS-1: the deal is won, its open tranches are still chased until paid or closed
        by the РОП (`close_payments`); the closing itself waited for nothing."""
        unsettled = lambda: bool(  # noqa: E731
            self.payments.open_tranches() and self.s.payments_closed is None
        )
        if unsettled() and "won:payments_open" not in self.s.done:
            numbers = ", ".join(str(t.number) for t in self.payments.open_tranches())
            self.fx.record(Stage.WON, C.cause("payments_go_on", numbers=numbers))
            self.s.done.append("won:payments_open")
        while unsettled():
            await workflow.wait_condition(
                lambda: not unsettled() or workflow.info().is_continue_as_new_suggested()
            )
            await self._continue_as_new_when_suggested()

    async def stage_lose(self) -> None:
        """LOSE (R-LOSE-1): reason and comment on the deal; timers and children end."""
        self.payments.stop()
        await self.children.end()
        lose = self.s.intents.lose
        if lose is None:
            return
        self.s.lose_reason, self.s.lose_comment = lose.reason, lose.comment
        fields = self.rules.fields
        reason_id = self.rules.enums["loss_reason"][lose.reason]
        await self.fx.set_fields_once(
            "lose:fields",
            {fields["loss_reason"]: reason_id, fields["loss_comment"]: lose.comment or ""},
        )

    # ---- stage helpers ---------------------------------------------------------------------

    async def _kp_sent(self) -> None:
        """R-X5: «КП отправлено» once «Отправить КП клиенту» is done (or the client answers)."""
        await self.fx.client_message("kp:client_message", "client_kp_sent")

    def _postpaid(self) -> bool:
        """R-CT-2: «Оплата» is «Постоплата» on the deal."""
        postpayment = self.rules.enums.get("payment_terms", {}).get("postpayment")
        return postpayment is not None and self.fx.field("payment_terms") == str(postpayment)

    async def _invoice_postpaid(self) -> Transition:
        """R-CT-2 «Постоплата»: on to LAUNCH once the invoice (and the contract, by document
        set) are signed; the money is controlled by the payment schedule (R-PS)."""
        fx = self.fx
        fields = ["signed_invoice"]
        if self.s.document_set == "contract_and_invoice":
            fields.append("signed_contract")
        signed = lambda: all(fx.field(f).strip() for f in fields)  # noqa: E731
        if "inv:postpaid" not in self.s.done:
            fx.record(Stage.INVOICE, C.cause("postpayment"))
            self.s.done.append("inv:postpaid")
        await fx.wait(signed)
        if not signed():
            return fx.take_move()
        return await fx.advance(Stage.LAUNCH, "invoice signed (postpayment)")

    def _kp_due(self) -> datetime | None:
        """The end of the working day of «Дата согласования КП» on the deal (R-IW-3), if set."""
        try:
            day = date.fromisoformat(self.fx.field("kp_date")[:10])
        except ValueError:
            return None
        return self.fx.end_of_working_day(day)

    async def _take_overdue(self, due: datetime) -> None:
        """R-NEW-4: nobody took the lead in time: the РОП and the managers are told, once."""
        fx, people = self.fx, self.rules.people
        fx.mark_overdue("take_into_work")
        new = self.changes.new_prefix()
        await fx.notify(
            f"{new}:overdue",
            [people.rop],
            "notify_take_overdue_rop",
            deadline=_human(self.rules.deadlines["take_into_work"].minutes),
        )
        await fx.notify(
            f"{new}:overdue:managers",
            people.managers,
            "notify_deadline_missed",
            what="Взять заявку в работу",
            deadline=fx.local(due),
        )

    async def _load_kp(self, purpose: str = "kp:load_from_1c") -> None:
        """R-KP-2: КП lines from 1C into the deal when the direction contains «Россия»; the
        rows matched to 1C nomenclature otherwise. Once per КП round (`purpose`)."""
        fx = self.fx
        result = await fx.onec_once(
            purpose,
            act.load_kp_into_deal,
            LoadKpRequest(key=fx.key(purpose), deal_id=self.s.deal_id),
        )
        if result is not None:
            fx.record(
                Stage.KP,
                result.comment
                or C.cause("kp_loaded", number=result.kp_number, lines=len(result.lines)),
            )

    async def _rework_first(self, purpose: str, answered: Callable[[], bool]) -> bool:
        """The seed's «Возврат на задачу» (rule `rework_before_next_round`): while the objection
        task of `purpose` is open, the next round waits for it to be completed in Bitrix24.
        True: the round has no task to create (answered, or interrupted, before that)."""
        key = self.fx.key(purpose)
        is_open = lambda: any(t.key == key for t in self.s.open_tasks)  # noqa: E731
        if not (self.rules.rework_before_next_round and is_open()):
            return False
        if not patches.patched(REWORK_BEFORE_NEXT_ROUND):
            return False
        await self.fx.wait(lambda: answered() or not is_open())
        return answered() or self.fx.interrupted()

    async def _close_tasks(self, *purposes: str) -> None:
        """A round's tasks are done once its answer is in: completed in Bitrix24 (patched) and
        gone from the open tasks."""
        keys = {self.fx.key(p) for p in purposes}
        if patches.patched(COMPLETE_ROUND_TASKS):
            await self.fx.complete_tasks(sorted(keys))
        self.s.open_tasks = [t for t in self.s.open_tasks if t.key not in keys]

    async def _send_documents_to_accountant(self) -> None:
        """R-SH-3: the signed closing documents (numbers from 1C) e-mailed to the accountant."""
        fx = self.fx
        if "sh:mail_accountant" in self.s.done:
            return
        documents: list[ClosingDocument] = (
            await fx.onec_once(
                "sh:closing_documents",
                act.fetch_closing_documents,
                ClosingDocsRequest(
                    inn=fx.field("inn") or None, invoice_number=fx.field("invoice") or None
                ),
            )
            or []
        )
        lines = [f"— {DOCUMENT_TITLES.get(k, k)}: подписан" for k in sorted(set(self.s.signed))]
        lines += [f"— {d.kind.upper()} №{d.number} от {d.date:%d.%m.%Y}" for d in documents]
        await fx.once(
            "sh:mail_accountant",
            act.send_email,
            EmailRequest(
                key=fx.key("sh:mail_accountant"),
                to=[self.rules.accountant_email],
                subject=fx.text("mail_accountant_subject"),
                body=fx.text("mail_accountant_body", documents="\n".join(lines)),
                **self._signed_files(),
            ),
        )
        fields = self.rules.fields
        await fx.set_fields_once(
            "sh:fields", {fields["act"]: "Подписан", fields["upd"]: "Подписан"}
        )

    def _signed_files(self) -> dict[str, Any]:
        """R-SH-3: the deal's signed Акт and УПД files attached to the accountant's e-mail
        (patched; rules from before the file fields existed attach nothing)."""
        fields = [self.rules.fields.get(k) for k in ("signed_act", "signed_upd")]
        present = [f for f in fields if f]
        if not present or not workflow.patched(ACCOUNTANT_ATTACHMENTS):
            return {}
        return {"deal_id": self.s.deal_id, "attach_fields": present}

    async def _continue_as_new_when_suggested(self) -> None:
        if workflow.info().is_continue_as_new_suggested():
            if patches.patched(CAN_DRAINS_INTENTS):
                # Handlers that wait for the main loop return once their intent is in DealState;
                # otherwise they would wait for a loop that waits for them.
                self._draining = True
            await workflow.wait_condition(workflow.all_handlers_finished)
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(
                    DealInput(deal_id=self.s.deal_id, rules=self.rules, state=self.s)
                )

    async def _answer_after_move(
        self, moved: Callable[[], bool], recorded: Callable[[], bool]
    ) -> None:
        """The reply of an update after which the deal moves on: once it has (`moved`), or
        after MOVE_WAIT; runs before this patch answered once the intent was taken
        (`recorded`). Continue-as-new being due answers at once (the intent is carried)."""
        if patches.patched(UPDATES_ANSWER_AFTER_MOVE):
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: moved() or self._draining,
                    timeout=MOVE_WAIT,
                    timeout_summary="the deal takes its step",
                )
        else:
            await workflow.wait_condition(lambda: recorded() or self._draining)

    # ---- updates, signals, query -----------------------------------------------------------

    @workflow.update
    async def accept_lead(self, cmd: AcceptLead) -> UpdateAck:
        mark = since(self.s)
        self.s.intents.accept = cmd
        left_new = lambda: self.s.stage != Stage.NEW  # noqa: E731
        await self._answer_after_move(left_new, left_new)
        return ack(self.s, mark)

    @accept_lead.validator
    def _validate_accept(self, cmd: AcceptLead) -> None:
        self.fx.require_stage("accept_lead", Stage.NEW)
        intents = self.s.intents
        if intents.accept is not None or intents.reject is not None:
            raise refuse("already_decided")
        known = self.rules.people.managers
        if cmd.manager_id not in known:
            raise refuse("not_a_manager", manager_id=cmd.manager_id, known=list(known))

    @workflow.update
    async def reject_lead(self, cmd: RejectLead) -> UpdateAck:
        mark = since(self.s)
        self.s.intents.reject = cmd
        left_new = lambda: self.s.stage != Stage.NEW  # noqa: E731
        await self._answer_after_move(left_new, left_new)
        return ack(self.s, mark)

    @reject_lead.validator
    def _validate_reject(self, cmd: RejectLead) -> None:
        self.fx.require_stage("reject_lead", Stage.NEW)
        intents = self.s.intents
        if intents.accept is not None or intents.reject is not None:
            raise refuse("already_decided")
        if not cmd.reason.strip():
            raise refuse("reason_required")

    @workflow.update
    async def kp_feedback(self, cmd: KpFeedback) -> UpdateAck:
        mark = since(self.s)
        self.s.intents.feedback = cmd
        round_no = self.s.kp_round
        left_kp = lambda: self.s.stage != Stage.KP  # noqa: E731
        await self._answer_after_move(
            # agreed: on to CONTRACT; not agreed: the next round has begun
            lambda: left_kp() or (not cmd.agreed and self.s.kp_round > round_no),
            lambda: self.s.intents.feedback is None or left_kp(),
        )
        return ack(self.s, mark)

    @kp_feedback.validator
    def _validate_feedback(self, cmd: KpFeedback) -> None:
        self.fx.require_stage("kp_feedback", Stage.KP)
        if self.s.intents.feedback is not None or not self.s.kp_round:
            raise refuse("no_feedback_awaited")

    @workflow.update
    async def approval_decision(self, cmd: ApprovalDecision) -> UpdateAck:
        mark = since(self.s)
        await self.children.decide(cmd)
        left_contract = lambda: self.s.stage != Stage.CONTRACT  # noqa: E731
        await self._answer_after_move(
            # approved: the deal stays at CONTRACT for the signatures; rejected: back to KP
            lambda: left_contract() or self.s.approved is True,
            lambda: left_contract() or self.s.approved is not None,
        )
        return ack(self.s, mark)

    @approval_decision.validator
    def _validate_approval(self, cmd: ApprovalDecision) -> None:
        self.fx.require_stage("approval_decision", Stage.CONTRACT)
        if self.children.approval_running() is None:
            raise refuse("no_approval_running")
        if not cmd.approved and not (cmd.comment or "").strip():
            raise refuse("rejection_needs_comment")

    @workflow.update
    async def record_payment(self, cmd: RecordPayment) -> UpdateAck:
        mark = since(self.s)
        info = workflow.current_update_info()
        self.payments.add(
            cmd.amount, cmd.paid_on, cmd.source, info.id if info else "", actor=cmd.actor
        )
        await self.payments.tell_overpaid()
        if self.s.payment_schedule:
            await self.payments.publish_schedule()
        return ack(self.s, mark)

    @record_payment.validator
    def _validate_payment(self, cmd: RecordPayment) -> None:
        if not (self.s.stage == Stage.WON and self.payments.after_won):
            self.fx.require_stage("record_payment", *PAYMENT_STAGES)
        today = self.fx.today()
        if cmd.paid_on > today + timedelta(days=1):
            raise refuse("paid_in_future", paid_on=cmd.paid_on.isoformat())
        started = self.s.history[0].at.date() if self.s.history else today
        if cmd.paid_on < started - timedelta(days=366):
            raise refuse(
                "paid_too_early", paid_on=cmd.paid_on.isoformat(), started=started.isoformat()
            )

    @workflow.update
    async def close_payments(self, cmd: ClosePayments) -> UpdateAck:
        """R-PS-1: the РОП ends the payment control of a won deal with tranches still open."""
        mark = since(self.s)
        self.s.payments_closed = cmd.comment
        self.fx.record(self.s.stage, C.cause("payments_closed", comment=cmd.comment), cmd.actor)
        return ack(self.s, mark)

    @close_payments.validator
    def _validate_close_payments(self, cmd: ClosePayments) -> None:
        self.fx.require_stage("close_payments", Stage.WON)
        if not self.payments.after_won or not self.payments.open_tranches():
            raise refuse("no_payment_control")

    @workflow.update
    async def set_payment_schedule(self, cmd: PaymentSchedule) -> UpdateAck:
        mark = since(self.s)
        self.s.payment_schedule = self.payments.plan(cmd)
        self.fx.record(
            self.s.stage,
            C.cause("schedule_set", count=len(self.s.payment_schedule)),
            cmd.actor,
        )
        await self.payments.publish_schedule()
        self.payments.start_control()
        return ack(self.s, mark)

    @set_payment_schedule.validator
    def _validate_schedule(self, cmd: PaymentSchedule) -> None:
        self.fx.require_stage("set_payment_schedule", *SCHEDULE_STAGES)
        if self.s.payment_schedule:
            raise refuse("schedule_set")
        self.payments.plan(cmd)

    @workflow.update
    async def amend_payment_schedule(self, cmd: PaymentSchedule) -> UpdateAck:
        """Issue 14 item 2: the schedule changed while tranches are unpaid (payments.py)."""
        mark = since(self.s)
        await self.payments.amend(cmd)
        return ack(self.s, mark)

    @amend_payment_schedule.validator
    def _validate_amend_schedule(self, cmd: PaymentSchedule) -> None:
        if self.s.stage in FINAL_STAGES and not self.payments.after_won:
            raise refuse("closed", stage=self.s.stage)
        refusal = self.payments.amendment_refusal(cmd)
        if refusal:
            raise refusal

    @workflow.update
    async def request_tasks(self, cmd: RequestTasks) -> UpdateAck:
        """R-X6: one task per service asked for; the logistics task is mirrored into 1C."""
        mark = since(self.s)
        info = workflow.current_update_info()
        ref = info.id if info else str(self.fx.bump("request_tasks"))
        for service in SERVICES:
            if not getattr(cmd, service):
                continue
            if not patches.patched(ONE_SERVICE_TASK):
                await self._request_service(service, f"request:{service}:{ref}")
            elif (purpose := self.fields.service_round(service)) is not None:
                await self.fields.request(service, purpose)  # None: asked for already
        return ack(self.s, mark)

    async def _request_service(self, service: str, purpose: str) -> None:
        """R-X6: the service's task (watched with its SLA), the logistics one mirrored to 1C."""
        if service == "logistics":
            await self.children.logist_task(purpose, "task_request_logistics")
        elif self._watching:
            await self._service_task(purpose, service)
        else:
            await self.fx.task(
                purpose, f"task_request_{service}", responsible=self.rules.people.services[service]
            )

    async def _service_task(self, purpose: str, service: str) -> None:
        """R-X6 / R-X4: a service's task with the configured SLA as its DEADLINE, watched."""
        fx = self.fx
        responsible = self.rules.people.services[service]
        due = R.sla_due(workflow.now(), "service_task", self.rules)
        task_id = await fx.task(
            purpose, f"task_request_{service}", responsible=responsible, deadline=due
        )
        if task_id:
            fx.watch(
                Deadline(
                    name=f"task_{task_id}",
                    due=due,
                    what=fx.text(f"task_request_{service}"),
                    kind="service_task",
                    task_id=task_id,
                    responsible_id=responsible,
                )
            )

    @request_tasks.validator
    def _validate_request(self, cmd: RequestTasks) -> None:
        if self.s.stage in FINAL_STAGES:
            raise refuse("closed", stage=self.s.stage)
        if not any(getattr(cmd, s) for s in SERVICES):
            raise refuse("nothing_requested", services=", ".join(SERVICES))

    @workflow.update
    async def start_process(self, cmd: StartProcess) -> UpdateAck:
        """R-X7: «Заказ Импорт», «Производство», «Закупки» as tracked children."""
        mark = since(self.s)
        name = await self.children.start_process(cmd)
        self.fx.record(self.s.stage, C.cause("process_started", name=name), cmd.actor)
        return ack(self.s, mark)

    @start_process.validator
    def _validate_process(self, cmd: StartProcess) -> None:
        if self.s.stage in FINAL_STAGES:
            raise refuse("closed", stage=self.s.stage)

    @workflow.update
    async def documents_signed(self, cmd: DocumentsSigned) -> UpdateAck:
        mark = since(self.s)
        if cmd.kind in ("act", "upd"):
            if cmd.kind not in self.s.signed:
                self.s.signed.append(cmd.kind)
        else:
            if f"signed:{cmd.kind}" not in self.s.done:  # the field it writes is no news
                self.s.done.append(f"signed:{cmd.kind}")
            field = self.rules.fields[f"signed_{cmd.kind}"]
            await self.fx.update_deal({field: f"Подписан {self.fx.today():%d.%m.%Y}"})
        self.fx.record(self.s.stage, C.cause("signed", kind=cmd.kind), cmd.actor)
        return ack(self.s, mark)

    @documents_signed.validator
    def _validate_signed(self, cmd: DocumentsSigned) -> None:
        if cmd.kind in ("act", "upd"):
            self.fx.require_stage("documents_signed(act|upd)", Stage.SHIPPED)
        else:
            self.fx.require_stage(
                "documents_signed(invoice|contract)", Stage.CONTRACT, Stage.INVOICE
            )

    @workflow.update
    async def move_stage(self, cmd: MoveStage) -> UpdateAck:
        mark = since(self.s)
        await self.fx.refresh_deal()
        missing = self.fx.missing_for_move(cmd.to)
        if missing:
            self.fx.decisions.refusal("move_stage", "empty: " + ", ".join(missing), cmd.actor)
            listed = ", ".join(missing)
            raise ApplicationError(  # the type kept; the details as a refusal's (refusals.py)
                "required fields are empty: " + listed,
                {"code": "required_fields", "params": {"fields": listed}},
                type="RequiredFieldsMissing",
            )
        self.s.intents.moved_to = cmd.to
        if patches.patched(MOVE_ACTOR):
            self.s.intents.moved_by = cmd.actor
        arrived = lambda: self.s.stage == cmd.to or self.s.stage in FINAL_STAGES  # noqa: E731
        await self._answer_after_move(arrived, arrived)
        return ack(self.s, mark)

    @move_stage.validator
    def _validate_move(self, cmd: MoveStage) -> None:
        if self.s.stage in FINAL_STAGES:
            raise refuse("closed", stage=self.s.stage)
        if cmd.to == self.s.stage:
            raise refuse("already_at", stage=cmd.to)
        if cmd.to == Stage.LOSE:
            raise refuse("use_lose_deal")
        if self.s.intents.moved_to is not None or self.s.intents.lose is not None:
            raise refuse("already_moving")

    @workflow.update
    async def lose_deal(self, cmd: LoseDeal) -> UpdateAck:
        mark = since(self.s)
        self.s.intents.lose = cmd
        lost = lambda: self.s.stage == Stage.LOSE  # noqa: E731
        await self._answer_after_move(lost, lost)
        return ack(self.s, mark)

    @lose_deal.validator
    def _validate_lose(self, cmd: LoseDeal) -> None:
        if self.s.stage in FINAL_STAGES:
            raise refuse("closed", stage=self.s.stage)
        if self.s.intents.lose is not None:
            raise refuse("already_losing")
        if cmd.reason == "OTHER" and not (cmd.comment or "").strip():
            raise refuse("other_needs_comment")

    @workflow.signal(name=SIGNAL_BITRIX24_EVENT)
    def bitrix24_event(self, event: Bitrix24Event) -> None:
        self.s.pending_events.append(event)

    @workflow.signal(name=SIGNAL_APPROVAL_DONE)
    def approval_done(self, result: ApprovalResult) -> None:
        self.s.intents.approval = result

    @workflow.signal(name=SIGNAL_PROCESS_DONE)
    def process_done(self, result: ProcessResult) -> None:
        self.children.finish(result.workflow_id, "done")
        self.fx.record(self.s.stage, C.cause("process_done", kind=result.kind))

    @workflow.signal(name=SIGNAL_LOGIST_TASK_DONE)
    def logist_task_done(self, result: LogistMirrorResult) -> None:
        self.children.logist_task_done(result)

    @workflow.signal(name=SIGNAL_ONEC_CONFIG_FIXED)
    def onec_configuration_fixed(self) -> None:
        self.fx.onec_config_fixed += 1

    @workflow.query
    def state(self) -> DealView:
        return self.fx.view()

    @workflow.query
    def rules_snapshot(self) -> DealRules:
        return self.rules

    @workflow.update
    async def migrate_rules(self, cmd: MigrateRules) -> UpdateAck:
        """Issue 15: the deal takes another rule set on purpose (in place: every part of the
        workflow holds this one object); running deadlines keep their due time."""
        mark = since(self.s)
        was = self.rules.version or "—"
        for name in type(self.rules).model_fields:
            setattr(self.rules, name, getattr(cmd.rules, name))
        self.fx.record(self.s.stage, f"rules migrated: {was} → {self.rules.version}", cmd.actor)
        return ack(self.s, mark)

    @migrate_rules.validator
    def _validate_migrate(self, cmd: MigrateRules) -> None:
        deal = self.s.deal
        reason = migration.refusal(
            deal_id=self.s.deal_id,
            stage=self.s.stage,
            category_id=deal.category_id if deal else None,
            manager_id=self.s.manager_id,
            document_set=self.s.document_set,
            amount=deal.amount if deal else 0.0,
            processes=self.s.processes,
            new=cmd.rules,
        )
        if reason:
            raise reason

    @workflow.query
    def why(self, req: WhyRequest | None = None) -> WhyView:
        """Issue 15: the deal's story, the chain for `req.what`, what it waits for (Russian)."""
        return explain(self.s, self.rules, req, workflow.now())


def _human(minutes: int) -> str:
    if minutes % 60 == 0:
        hours = minutes // 60
        return "1 час" if hours == 1 else f"{hours} ч."
    return f"{minutes} мин."
