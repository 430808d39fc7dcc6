"""`DealWorkflow`: one long-lived workflow per Bitrix24 deal of the «Продажа» pipeline.

Stage methods follow the pipeline order of PIPELINE.md. Each one runs the stage's entry
actions once (keys in `state.done` plus idempotency markers in Bitrix24), then waits for what
ends the stage while deadlines run as timers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows import rules as R
    from workflows.models import (
        FINAL_STAGES,
        STAGE_ORDER,
        AcceptLead,
        Bitrix24Event,
        ClientMessageRequest,
        Deadline,
        DealInput,
        DealSnapshot,
        DealState,
        DealUpdateRequest,
        DealView,
        HistoryEntry,
        LoseDeal,
        NotifyRequest,
        OpenTask,
        RejectLead,
        TaskRequest,
        TimelineCommentRequest,
    )
    from workflows.names import DEAL_AMOUNT, DEAL_ID, DEAL_MANAGER, DEAL_OVERDUE, DEAL_STAGE

ACTIVITY_TIMEOUT = timedelta(seconds=60)
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)
DEAL_EVENTS = frozenset({"ONCRMDEALADD", "ONCRMDEALUPDATE"})


@workflow.defn(name="DealWorkflow")
class DealWorkflow:
    @workflow.init
    def __init__(self, inp: DealInput) -> None:
        self.rules = inp.rules
        self.s: DealState = inp.state or DealState(deal_id=inp.deal_id)
        self.accept: AcceptLead | None = None
        self.reject: RejectLead | None = None
        self.lose: LoseDeal | None = None
        self.moved_to: str | None = None

    # ---- the pipeline -------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: DealInput) -> DealView:
        if self.s.deal is None:
            await self._refresh_deal()
            if not self._in_pipeline():
                return self._view()
            assert self.s.deal is not None
            stage = self.rules.stage_code(self.s.deal.stage_id) or "NEW"
            if stage != "NEW":
                self.s.manager_id = self.s.deal.assigned_by_id or None
            self._enter(stage, "deal found in Bitrix24", now=workflow.now())
        stages: dict[str, Callable[[], Any]] = {
            "NEW": self.stage_new,
            "IN_WORK": self.stage_in_work,
        }
        while self.s.stage not in FINAL_STAGES:
            self._continue_as_new_if_suggested()
            next_stage = await stages.get(self.s.stage, self.stage_parked)()
            await self._move(next_stage)
        if self.s.stage == "LOSE":
            await self.stage_lose()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._view()

    async def stage_new(self) -> str:
        """NEW: notify (R-NEW-1), wait for accept/reject (R-NEW-2/3), escalate (R-NEW-4)."""
        people = self.rules.people
        deadline_rule = self.rules.deadlines["take_into_work"]
        await self._notify(
            "new:notify",
            people.managers,
            "notify_new_deal",
            deadline=_human_minutes(deadline_rule.minutes),
        )
        due = R.deadline_after(self._entered_at(), deadline_rule, self.rules)
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
                    deadline=_human_minutes(deadline_rule.minutes),
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
        deal_id = self.s.deal_id
        manager = self._manager()
        await self._once(
            "iw:client_message",
            "send_client_message",
            ClientMessageRequest(
                key=self._key("iw:client_message"),
                deal_id=deal_id,
                manager_id=manager,
                subject=self._text("client_subject"),
                template=self.rules.templates["client_taken_into_work"],
            ),
        )
        await self._task("iw:check_products", "task_check_products")
        kp_date = R.kp_agreement_date(self._entered_at(), self.rules)
        await self._once(
            "iw:kp_date",
            "update_deal",
            DealUpdateRequest(
                deal_id=deal_id, fields={self.rules.fields["kp_date"]: kp_date.isoformat()}
            ),
        )
        due = self._end_of_working_day(kp_date)
        self._set_deadline("kp_agreement", due)
        if not await self._wait(lambda: False, until=due):
            await self._deadline_missed("kp_agreement", "Согласовать КП с клиентом", due)
            await self._wait(lambda: False)
        return self._take_move()

    async def stage_parked(self) -> str:
        """A stage whose automation is not built yet: follow people's moves and losses only."""
        await self._wait(lambda: False)
        return self._take_move()

    async def stage_lose(self) -> None:
        """LOSE (R-LOSE-1): the reason and comment are written to the deal."""
        if self.lose is None:
            return
        fields = self.rules.fields
        reason_id = self.rules.enums["loss_reason"][self.lose.reason]
        await self._once(
            "lose:fields",
            "update_deal",
            DealUpdateRequest(
                deal_id=self.s.deal_id,
                fields={
                    fields["loss_reason"]: reason_id,
                    fields["loss_comment"]: self.lose.comment or "",
                },
            ),
        )

    # ---- updates, signal, query ----------------------------------------------------------

    @workflow.update
    async def accept_lead(self, cmd: AcceptLead) -> DealView:
        self.accept = cmd
        await workflow.wait_condition(lambda: self.s.stage != "NEW")
        return self._view()

    @accept_lead.validator
    def _validate_accept(self, cmd: AcceptLead) -> None:
        self._require_stage("NEW", "accept_lead")
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
        await workflow.wait_condition(lambda: self.s.stage != "NEW")
        return self._view()

    @reject_lead.validator
    def _validate_reject(self, cmd: RejectLead) -> None:
        self._require_stage("NEW", "reject_lead")
        if self.accept is not None or self.reject is not None:
            raise ValueError("the lead has already been taken or rejected")
        if not cmd.reason.strip():
            raise ValueError("reason must not be empty")

    @workflow.update
    async def lose_deal(self, cmd: LoseDeal) -> DealView:
        self.lose = cmd
        await workflow.wait_condition(lambda: self.s.stage == "LOSE")
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

    @workflow.query
    def state(self) -> DealView:
        return self._view()

    # ---- waiting and reconciliation -------------------------------------------------------

    async def _wait(self, done: Callable[[], bool], until: datetime | None = None) -> bool:
        """Wait for `done`, a loss, or a move by a person; False when `until` passes first."""
        while True:
            if done() or self._interrupted():
                return True
            timeout = None
            if until is not None:
                timeout = until - workflow.now()
                if timeout <= timedelta(0):
                    return False
            try:
                await workflow.wait_condition(
                    lambda: done() or self._interrupted() or bool(self.s.pending_events),
                    timeout=timeout,
                    timeout_summary="stage deadline",
                )
            except TimeoutError:
                return False
            while self.s.pending_events:
                await self._reconcile(self.s.pending_events.pop(0))

    def _interrupted(self) -> bool:
        return self.lose is not None or self.moved_to is not None

    async def _reconcile(self, event: Bitrix24Event) -> None:
        """A deal changed in Bitrix24: re-read it and follow a stage move made by a person."""
        if event.event not in DEAL_EVENTS:
            return
        await self._refresh_deal()
        deal = self.s.deal
        assert deal is not None
        seen = self.rules.stage_code(deal.stage_id)
        if seen is None or seen == self.s.stage or self.moved_to is not None:
            return
        if seen == "LOSE":
            self.lose = LoseDeal(reason="OTHER", comment="moved to «Сделка провалена» in Bitrix24")
            return
        forward = seen == "WON" or (
            seen in STAGE_ORDER and STAGE_ORDER.index(seen) > STAGE_ORDER.index(self.s.stage)
        )
        if forward:
            missing = R.missing_fields(self.s.stage, deal.fields, self.rules, self.s.document_set)
            if missing:
                await self._refuse_move(seen, missing)
                return
        self.moved_to = seen

    async def _refuse_move(self, target: str, missing: list[str]) -> None:
        """R-X3: return the deal to its stage and tell the person which fields are empty."""
        round_no = self._bump("refused_move")
        await self._update_deal({"STAGE_ID": self.rules.stages[self.s.stage]})
        await self._notify(
            f"refused_move:{round_no}",
            [self._manager() or self.rules.people.rop],
            "notify_missing_fields",
            fields=", ".join(missing),
        )
        self._record(self.s.stage, f"move to {target} refused: empty {', '.join(missing)}")

    def _take_move(self) -> str:
        if self.lose is not None:
            return "LOSE"
        target = self.moved_to or self.s.stage
        self.moved_to = None
        if self.s.manager_id is None and self.s.deal is not None and target != "NEW":
            self.s.manager_id = self.s.deal.assigned_by_id or None
        self._pending_cause = "moved by a person in Bitrix24"
        return target

    # ---- stage bookkeeping ---------------------------------------------------------------

    _pending_cause: str = ""

    def _cause(self, stage: str, cause: str) -> str:
        self._pending_cause = cause
        return stage

    async def _move(self, stage: str) -> None:
        if stage == "LOSE" and self.lose is not None and not self._pending_cause:
            self._pending_cause = f"lost: {self.lose.reason}"
        cause = self._pending_cause or "automation"
        self._pending_cause = ""
        if stage == self.s.stage:
            return
        by_person = self.s.deal is not None and self.rules.stage_code(self.s.deal.stage_id) == stage
        if not by_person:
            await self._update_deal({"STAGE_ID": self.rules.stages[stage]})
        self._enter(stage, cause, now=workflow.now())

    def _enter(self, stage: str, cause: str, now: datetime) -> None:
        self.s.stage = stage
        self.s.stage_entered_at = now
        self.s.deadlines = []
        self._record(stage, cause)
        workflow.upsert_search_attributes(
            [
                DEAL_ID.value_set(self.s.deal_id),
                DEAL_STAGE.value_set(stage),
                DEAL_OVERDUE.value_set(False),
            ]
        )
        self._details()

    def _record(self, stage: str, cause: str) -> None:
        self.s.history.append(HistoryEntry(at=workflow.now(), stage=stage, cause=cause))

    def _entered_at(self) -> datetime:
        return self.s.stage_entered_at or workflow.now()

    def _set_deadline(self, name: str, due: datetime) -> None:
        self._clear_deadline(name)
        self.s.deadlines.append(Deadline(name=name, due=due))
        self._details()

    def _clear_deadline(self, name: str) -> None:
        self.s.deadlines = [d for d in self.s.deadlines if d.name != name]

    def _mark_overdue(self, name: str) -> None:
        for deadline in self.s.deadlines:
            if deadline.name == name and not deadline.overdue:
                deadline.overdue = True
                workflow.upsert_search_attributes([DEAL_OVERDUE.value_set(True)])
                self._details()

    async def _deadline_missed(self, name: str, what: str, due: datetime) -> None:
        """R-X4: the responsible is told and the РОП gets the escalation, once each."""
        self._mark_overdue(name)
        manager = self._manager()
        await self._notify(
            f"{name}:overdue",
            [manager] if manager else [self.rules.people.rop],
            "notify_deadline_missed",
            what=what,
            deadline=self._local(due),
        )
        await self._notify(
            f"{name}:overdue:rop",
            [self.rules.people.rop],
            "notify_deadline_missed_rop",
            what=what,
            manager=str(manager or "—"),
        )

    def _details(self) -> None:
        lines = [f"**Stage:** {self.s.stage}"]
        if self.s.manager_id:
            lines.append(f"**Manager:** {self.s.manager_id}")
        for d in self.s.deadlines:
            flag = " — **overdue**" if d.overdue else ""
            lines.append(f"**{d.name}:** {self._local(d.due)}{flag}")
        workflow.set_current_details("\n\n".join(lines))

    def _bump(self, counter: str) -> int:
        self.s.counters[counter] = self.s.counters.get(counter, 0) + 1
        return self.s.counters[counter]

    def _continue_as_new_if_suggested(self) -> None:
        if workflow.info().is_continue_as_new_suggested():
            workflow.continue_as_new(
                DealInput(deal_id=self.s.deal_id, rules=self.rules, state=self.s)
            )

    # ---- side effects (activities) -------------------------------------------------------

    def _key(self, purpose: str) -> str:
        return f"deal:{self.s.deal_id}:{purpose}"

    async def _activity(self, name: str, arg: Any, result_type: type | None = None) -> Any:
        return await workflow.execute_activity(
            name,
            arg,
            result_type=result_type,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
            summary=name,
        )

    async def _once(
        self, purpose: str, name: str, arg: Any, result_type: type | None = None
    ) -> Any:
        """Run a side effect once per purpose; a failure it cannot retry is told to the РОП."""
        if purpose in self.s.done:
            return None
        try:
            result = await self._activity(name, arg, result_type)
        except ActivityError as err:
            await self._report_failure(purpose, err)
            return None
        self.s.done.append(purpose)
        return result

    async def _report_failure(self, purpose: str, err: ActivityError) -> None:
        cause = err.cause
        text = str(cause.message if isinstance(cause, ApplicationError) else cause or err)
        self._record(self.s.stage, f"{purpose} failed: {text}")
        if purpose.startswith("failure:"):
            return
        await self._once(
            f"failure:{purpose}",
            "notify_users",
            NotifyRequest(
                key=self._key(f"failure:{purpose}"),
                user_ids=[self.rules.people.rop],
                message=f"salesflow: сделка №{self.s.deal_id}: шаг «{purpose}» не выполнен: {text}",
            ),
        )

    async def _notify(self, purpose: str, users: list[int], template: str, **values: Any) -> None:
        await self._once(
            purpose,
            "notify_users",
            NotifyRequest(
                key=self._key(purpose), user_ids=users, message=self._text(template, **values)
            ),
        )

    async def _task(
        self,
        purpose: str,
        title_template: str,
        responsible: int | None = None,
        created_by: int | None = None,
        deadline: datetime | None = None,
    ) -> None:
        """R-X1: responsible = manager, creator = РОП, linked to the deal, unless told otherwise."""
        title = self._text(title_template)
        responsible_id = responsible or self._manager() or self.rules.people.rop
        task_id = await self._once(
            purpose,
            "create_task",
            TaskRequest(
                key=self._key(purpose),
                deal_id=self.s.deal_id,
                title=title,
                description=self._text("task_description"),
                responsible_id=responsible_id,
                created_by=created_by or self.rules.people.rop,
                deadline=deadline,
            ),
            int,
        )
        if task_id:
            self.s.open_tasks.append(
                OpenTask(
                    key=self._key(purpose),
                    task_id=task_id,
                    title=title,
                    responsible_id=responsible_id,
                    deadline=deadline,
                )
            )

    async def _update_deal(self, fields: dict[str, Any]) -> None:
        await self._activity(
            "update_deal", DealUpdateRequest(deal_id=self.s.deal_id, fields=fields)
        )
        if self.s.deal is not None:
            for name, value in fields.items():
                if name == "STAGE_ID":
                    self.s.deal.stage_id = str(value)
                elif name == "ASSIGNED_BY_ID":
                    self.s.deal.assigned_by_id = int(value or 0)
                else:
                    self.s.deal.fields[name] = None if value is None else str(value)

    async def _refresh_deal(self) -> None:
        deal: DealSnapshot = await self._activity("fetch_deal", self.s.deal_id, DealSnapshot)
        self.s.deal = deal
        if self.s.manager_id is None and self.s.stage != "NEW" and deal.assigned_by_id:
            self.s.manager_id = deal.assigned_by_id
        workflow.upsert_search_attributes([DEAL_AMOUNT.value_set(deal.amount)])

    async def _comment(self, purpose: str, text: str) -> None:
        await self._once(
            purpose,
            "add_timeline_comment",
            TimelineCommentRequest(key=self._key(purpose), deal_id=self.s.deal_id, text=text),
        )

    # ---- small helpers -------------------------------------------------------------------

    def _in_pipeline(self) -> bool:
        deal = self.s.deal
        return deal is not None and deal.category_id == self.rules.category_id

    def _manager(self) -> int | None:
        return self.s.manager_id

    def _text(self, template: str, **values: Any) -> str:
        deal = self.s.deal
        return R.render(
            self.rules.templates[template],
            deal_id=self.s.deal_id,
            deal_title=deal.title if deal else "",
            **values,
        )

    def _local(self, moment: datetime) -> str:
        return R.local_text(moment, self.rules.timezone)

    def _end_of_working_day(self, day: Any) -> datetime:
        hours, minutes = (int(x) for x in self.rules.work_end.split(":"))
        return R.local_moment(day, time(hours, minutes), self.rules.timezone)

    def _require_stage(self, stage: str, update: str) -> None:
        if self.s.stage != stage:
            raise ValueError(f"{update} is allowed at stage {stage}; the deal is at {self.s.stage}")

    def _view(self) -> DealView:
        deal = self.s.deal
        return DealView(
            deal_id=self.s.deal_id,
            stage=self.s.stage,
            manager_id=self.s.manager_id,
            amount=deal.amount if deal else 0.0,
            document_set=self.s.document_set,
            open_tasks=self.s.open_tasks,
            deadlines=self.s.deadlines,
            payment_schedule=self.s.payment_schedule,
            history=self.s.history,
        )


def _human_minutes(minutes: int) -> str:
    if minutes % 60 == 0:
        hours = minutes // 60
        return "1 час" if hours == 1 else f"{hours} ч."
    return f"{minutes} мин."
