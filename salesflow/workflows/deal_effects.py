"""The machinery under `DealWorkflow`: waiting, reconciling people's moves, stage bookkeeping,
and side effects that run once per purpose (each with an idempotency key `deal:<id>:<purpose>`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from salesflow.workflows import rules as R
    from salesflow.workflows.models import (
        STAGE_ORDER,
        ClientMessageRequest,
        Deadline,
        DealInput,
        DealRules,
        DealSnapshot,
        DealState,
        DealUpdateRequest,
        DealView,
        HistoryEntry,
        LoseDeal,
        NotifyRequest,
        OpenTask,
        TaskRequest,
        TimelineCommentRequest,
    )
    from salesflow.workflows.names import DEAL_AMOUNT, DEAL_ID, DEAL_OVERDUE, DEAL_STAGE
    from salesflow.workflows.outage import run_with_outage_watch

ACTIVITY_TIMEOUT = timedelta(seconds=60)
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)
DEAL_EVENTS = frozenset({"ONCRMDEALADD", "ONCRMDEALUPDATE"})
TASK_EVENTS = frozenset({"ONTASKUPDATE"})
TASK_COMPLETED = "5"
PERSON_MOVE = "moved by a person in Bitrix24"
CANCEL_IS_NOT_FAILURE = "cancel-not-failure"  # a step stopped by the close is no failure


class DealEffects:
    rules: DealRules
    s: DealState
    lose: LoseDeal | None
    moved_to: str | None
    _pending_cause: str
    _seen_events: set[tuple[str, int, int]]

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
            if self.s.pending_events:
                await self._reconcile_pending()

    async def _wait_or_remind(
        self, done: Callable[[], bool], until: datetime, name: str, what: str
    ) -> bool:
        """Wait for `done`; when `until` passes, tell the responsible and the РОП once (R-X4),
        then keep waiting. False only when interrupted before `done`."""
        if not await self._wait(done, until=until):
            await self._deadline_missed(name, what, until)
            await self._wait(done)
        self._clear_deadline(name)
        return done()

    def _interrupted(self) -> bool:
        return self.lose is not None or self.moved_to is not None

    async def _reconcile_pending(self) -> None:
        """Take every event that has arrived: changed tasks are re-read once each, and the deal
        once for all its events (Bitrix24 events carry only IDs)."""
        events, self.s.pending_events = self.s.pending_events, []
        for task_id in dict.fromkeys(e.entity_id for e in events if e.event in TASK_EVENTS):
            await self._reconcile_task(task_id)
        if any(e.event in DEAL_EVENTS for e in events):
            await self._reconcile_deal()

    async def _reconcile_deal(self) -> None:
        """The deal changed in Bitrix24: re-read it and follow a stage move made by a person."""
        await self._refresh_deal()
        deal = self.s.deal
        assert deal is not None
        seen = self.rules.stage_code(deal.stage_id)
        if seen is None or seen == self.s.stage or self.moved_to is not None:
            return
        if seen == "LOSE":
            reason_ids = {v: k for k, v in self.rules.enums["loss_reason"].items()}
            raw = deal.fields.get(self.rules.fields["loss_reason"])
            reason = "OTHER"
            if isinstance(raw, str) and raw.isdigit():
                reason = reason_ids.get(int(raw), "OTHER")
            comment = deal.fields.get(self.rules.fields["loss_comment"])
            self.lose = LoseDeal.model_construct(
                # The code is a key of the config's enums.loss_reason, not checked against
                # LoseDeal's codes (model_construct does not validate).
                reason=reason,  # type: ignore[arg-type]
                comment=str(comment or "moved to LOSE in Bitrix24"),
            )
            return
        missing = self._missing_for_move(seen)
        if missing:
            await self._refuse_move(seen, missing)
            return
        self.moved_to = seen

    async def _reconcile_task(self, task_id: int) -> None:
        if not any(t.task_id == task_id for t in self.s.open_tasks):
            return
        status: str = await self._activity("read_task_status", task_id, str)
        if status == TASK_COMPLETED:
            self.s.open_tasks = [t for t in self.s.open_tasks if t.task_id != task_id]
            self._record(self.s.stage, f"task {task_id} completed in Bitrix24")

    def _is_forward(self, target: str) -> bool:
        if target == "WON":
            return True
        order = list(STAGE_ORDER)
        return target in order and order.index(target) > order.index(self.s.stage)

    def _missing_for_move(self, target: str) -> list[str]:
        """R-X3: the required fields of the stage being left, when moving forward."""
        if not self._is_forward(target) or self.s.deal is None:
            return []
        missing = R.missing_fields(
            self.s.stage, self.s.deal.fields, self.rules, self.s.document_set
        )
        if self.s.stage == "LAUNCH" and not self.s.payment_schedule:
            missing.append("График оплаты")
        return missing

    async def _refuse_move(self, target: str, missing: list[str]) -> None:
        """R-X3: return the deal to its stage and tell the person which fields are empty."""
        round_no = self._bump("refused_move")
        await self._update_deal({"STAGE_ID": self.rules.stages[self.s.stage]})
        await self._notify(
            f"refused_move:{round_no}",
            [self.s.manager_id or self.rules.people.rop],
            "notify_missing_fields",
            fields=", ".join(missing),
        )
        self._record(self.s.stage, f"move to {target} refused: empty {', '.join(missing)}")

    async def _advance(self, target: str, cause: str) -> str:
        """The automation moves on only when the stage's required fields are filled (R-X3);
        until then the manager is told which are empty, and the deal waits for them."""
        while True:
            await self._refresh_deal()
            assert self.s.deal is not None
            missing = R.missing_fields(
                self.s.stage, self.s.deal.fields, self.rules, self.s.document_set
            )
            if not missing:
                return self._cause(target, cause)
            listed = ", ".join(missing)
            await self._notify(
                f"blocked:{self.s.stage}:{listed}",
                [self.s.manager_id or self.rules.people.rop],
                "notify_missing_fields",
                fields=listed,
            )
            self._record(self.s.stage, f"waiting for {listed} before {target}")
            reads = self.s.counters.get("deal_reads", 0)

            def reread(r: int = reads) -> bool:
                return self.s.counters.get("deal_reads", 0) > r

            await self._wait(reread)
            if self._interrupted():
                return self._take_move()

    def _take_move(self) -> str:
        if self.lose is not None:
            return "LOSE"
        target = self.moved_to or self.s.stage
        self.moved_to = None
        if self.s.manager_id is None and self.s.deal is not None and target != "NEW":
            self.s.manager_id = self.s.deal.assigned_by_id or None
        self._pending_cause = PERSON_MOVE
        return target

    # ---- stage bookkeeping ---------------------------------------------------------------

    def _cause(self, stage: str, cause: str) -> str:
        self._pending_cause = cause
        return stage

    async def _move(self, stage: str) -> None:
        if stage == "LOSE" and self.lose is not None and self._pending_cause in ("", PERSON_MOVE):
            self._pending_cause = f"lost: {self.lose.reason}"
        cause = self._pending_cause or "automation"
        self._pending_cause = ""
        if stage == self.s.stage:
            return
        in_bitrix = self.s.deal is not None and self.s.deal.stage_id == self.rules.stages[stage]
        if not in_bitrix:
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
                DEAL_OVERDUE.value_set(self._any_overdue()),
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
        self._sync_overdue()

    def _any_overdue(self) -> bool:
        return any(d.overdue for d in self.s.deadlines) or any(
            t.state == "overdue" for t in self.s.payment_schedule
        )

    def _sync_overdue(self) -> None:
        overdue = self._any_overdue()
        if workflow.info().typed_search_attributes.get(DEAL_OVERDUE) != overdue:
            workflow.upsert_search_attributes([DEAL_OVERDUE.value_set(overdue)])
        self._details()

    def _mark_overdue(self, name: str) -> None:
        for deadline in self.s.deadlines:
            if deadline.name == name:
                deadline.overdue = True
        self._sync_overdue()

    async def _deadline_missed(self, name: str, what: str, due: datetime) -> None:
        """R-X4: the responsible is told and the РОП gets the escalation, once each."""
        self._mark_overdue(name)
        manager = self.s.manager_id
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
        for t in self.s.payment_schedule:
            lines.append(f"**Tranche {t.number}:** {t.percent:g}% by {t.due} — {t.state}")
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

    async def _onec_once(
        self, purpose: str, name: str, arg: Any, result_type: type | None = None
    ) -> Any:
        """A 1C side effect: retried while 1C is down; the manager hears of a long outage once."""
        if purpose in self.s.done:
            return None
        minutes = self.rules.onec_outage_notify_minutes

        async def tell() -> None:
            await self._notify(
                f"onec_outage:{purpose}",
                [self.s.manager_id or self.rules.people.rop],
                "notify_onec_outage",
                minutes=str(minutes),
                step=purpose,
            )

        try:
            result = await run_with_outage_watch(
                name,
                arg,
                notify=tell,
                after=timedelta(minutes=minutes),
                result_type=result_type,
            )
        except ActivityError as err:
            await self._report_failure(purpose, err)
            return None
        self.s.done.append(purpose)
        return result

    async def _report_failure(self, purpose: str, err: ActivityError) -> None:
        """Record a step that failed for good and tell the РОП; a cancelled step (the deal
        closed under it) is passed on as a cancellation instead."""
        if is_cancelled_exception(err) and workflow.patched(CANCEL_IS_NOT_FAILURE):
            raise asyncio.CancelledError(purpose) from err
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
        **values: Any,
    ) -> int | None:
        """R-X1: responsible = manager, creator = РОП, linked to the deal, unless told otherwise."""
        title = self._text(title_template, **values)
        responsible_id = responsible or self.s.manager_id or self.rules.people.rop
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
        return task_id

    async def _client_message(self, purpose: str, template: str) -> None:
        """A message to the client (R-IW-1, R-X5, R-WON-1) signed with the manager's card."""
        await self._once(
            purpose,
            "send_client_message",
            ClientMessageRequest(
                key=self._key(purpose),
                deal_id=self.s.deal_id,
                manager_id=self.s.manager_id,
                subject=self._text("client_subject"),
                template=self.rules.templates[template],
            ),
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

    async def _set_fields_once(self, purpose: str, fields: dict[str, Any]) -> None:
        if purpose in self.s.done:
            return
        await self._update_deal(fields)
        self.s.done.append(purpose)

    async def _refresh_deal(self) -> None:
        deal: DealSnapshot = await self._activity("fetch_deal", self.s.deal_id, DealSnapshot)
        self.s.deal = deal
        self._bump("deal_reads")
        if self.s.manager_id is None and self.s.stage != "NEW" and deal.assigned_by_id:
            self.s.manager_id = deal.assigned_by_id
        if workflow.info().typed_search_attributes.get(DEAL_AMOUNT) != deal.amount:
            workflow.upsert_search_attributes([DEAL_AMOUNT.value_set(deal.amount)])

    async def _comment(self, purpose: str, text: str) -> None:
        await self._once(
            purpose,
            "add_timeline_comment",
            TimelineCommentRequest(key=self._key(purpose), deal_id=self.s.deal_id, text=text),
        )

    # ---- small helpers -------------------------------------------------------------------

    def _field(self, name: str) -> str:
        if self.s.deal is None:
            return ""
        value = self.s.deal.fields.get(self.rules.fields[name])
        return "" if value is None else str(value)

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

    def _today(self) -> date:
        return R.local_day(workflow.now(), self.rules.timezone)

    def _end_of_working_day(self, day: date) -> datetime:
        hours, minutes = (int(x) for x in self.rules.work_end.split(":"))
        return R.local_moment(day, time(hours, minutes), self.rules.timezone)

    def _require_stage(self, update: str, *stages: str) -> None:
        if self.s.stage not in stages:
            allowed = ", ".join(stages)
            raise ValueError(f"{update} is allowed at {allowed}; the deal is at {self.s.stage}")

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
            payments=self.s.payments,
            processes=self.s.processes,
            kp_round=self.s.kp_round,
            invoice_round=self.s.invoice_round,
            history=self.s.history,
        )
