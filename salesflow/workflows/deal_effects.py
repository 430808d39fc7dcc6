"""The machinery under `DealWorkflow`: waiting, reconciling people's moves, stage bookkeeping,
and side effects that run once per purpose (each with an idempotency key `deal:<id>:<purpose>`).

`DealEffects` works on the deal's `DealState` (shared with the workflow, which holds one
`DealEffects`); stage methods end by returning a `Transition`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

from salesflow.workflows import patches

with workflow.unsafe.imports_passed_through():
    from salesflow.config.templates import DEFAULT_TEMPLATES
    from salesflow.workflows import activity_stubs as act
    from salesflow.workflows import causes as C
    from salesflow.workflows import rules as R
    from salesflow.workflows import stage_batch
    from salesflow.workflows.activity_stubs import call
    from salesflow.workflows.decisions import Decisions
    from salesflow.workflows.models import (
        FINAL_STAGES,
        STAGE_ORDER,
        Actor,
        Bitrix24Event,
        ClientMessageRequest,
        Deadline,
        DealRules,
        DealState,
        DealUpdateRequest,
        DealView,
        HistoryEntry,
        LoseDeal,
        NotifyRequest,
        OpenTask,
        Stage,
        TaskRequest,
    )
    from salesflow.workflows.movers import PERSON_MOVE, bitrix24_mover, move_cause
    from salesflow.workflows.names import (
        DEAL_AMOUNT,
        DEAL_EVENTS,
        DEAL_ID,
        DEAL_OVERDUE,
        DEAL_STAGE,
        ONTASKUPDATE,
        TASK_COMPLETED,
    )
    from salesflow.workflows.outage import is_configuration_problem, run_with_outage_watch
    from salesflow.workflows.refusals import refuse

if TYPE_CHECKING:
    from salesflow.workflows.deadlines import Following

HISTORY_CODES = "deal12-history-codes"  # a history entry keeps its cause's code (causes.py)
MOVE_ACTOR = "deal12-move-actor"  # a move names who made it: Bitrix24's mover, the CLI's operator
FIELDS_DRIVE = "bitrix24-fields-drive"  # the deal's fields become intents (field_intents.py)
SKIPPED_STAGES_CHECKED = "skipped-stages-checked"  # a forward jump meets every skipped stage
LOSE_NEEDS_REASON = "lose-needs-reason"  # a move to LOSE in Bitrix24 without a reason returns
CANCEL_IS_NOT_FAILURE = "cancel-not-failure"  # a step stopped by the close is no failure
COMPLETE_LEFT_TASKS = "complete-left-stage-tasks"  # issue 14: a left stage's tasks completed
# the purposes of each stage's automatic tasks (service tasks and processes belong to no stage)
STAGE_TASKS: dict[Stage, str] = {
    Stage.IN_WORK: "iw:",
    Stage.KP: "kp:",
    Stage.CONTRACT: "ct:",
    Stage.INVOICE: "inv:",
    Stage.LAUNCH: "la:",
    Stage.ACCEPTED: "ac:",
    Stage.TO_SHIP: "ts:",
    Stage.SHIPPED: "sh:",
}
REMIND_AFTER_MISSED = "reminders-after-missed-deadline"  # R-X4: reminders after the escalation
# A 1C step refused as wrong for the base waits for the fix and is retried (docs/ONEC.md).
ONEC_CONFIG_RETRY = "onec-config-retry"
ONEC_CONFIG_WAIT = "notify_onec_config_wait"  # said to the РОП after the refusal

A = TypeVar("A")
T = TypeVar("T")


@dataclass(frozen=True)
class Transition:
    """How a stage ends: the stage to enter and why (the cause goes into the deal's history).
    `to` equal to the current stage means: run the stage again."""

    to: Stage
    cause: str = ""
    actor: Actor | None = None  # the person whose command ends the stage (R-X10)


class DealEffects:
    def __init__(self, rules: DealRules, state: DealState, on_change: Callable[[], None]) -> None:
        self.rules = rules
        self.s = state
        self._on_change = on_change  # the deal's details changed (the board follows)
        self._watchers: dict[str, asyncio.Task[None]] = {}
        # what the stage does when a person completes one of its tasks (by task key)
        self.on_task_completed: dict[str, Callable[[], Awaitable[None]]] = {}
        self.onec_config_fixed = 0  # `onec_configuration_fixed` signals seen (not carried over)
        # after a re-read on a Bitrix24 event: turn the deal's fields into intents
        self.on_deal_read: Callable[[], Awaitable[None]] | None = None
        # deadlines that follow the data (deadlines.py; on when its patch is)
        self.follow: Following | None = None
        self.decisions = Decisions(self)  # issue 15: decisions recorded as data
        # the deal leaving the pipeline (deal_changes.py): a failed read that means "deleted",
        # events that delete or move it (True: it left), a read showing it elsewhere
        self.deal_gone: Callable[[ActivityError], bool] | None = None
        self.on_events: Callable[[list[Bitrix24Event]], Awaitable[bool]] | None = None
        self.left: Callable[[], bool] | None = None

    # ---- waiting and reconciliation -------------------------------------------------------

    async def wait(
        self, done: Callable[[], bool], until: datetime | Callable[[], datetime] | None = None
    ) -> bool:
        """Wait for `done`, a loss, or a move by a person; False when `until` passes first
        (`until` may be a function: a due re-read after each of the deal's events)."""
        while True:
            if done() or self.interrupted():
                return True
            timeout = None
            if until is not None:
                timeout = (until() if callable(until) else until) - workflow.now()
                if timeout <= timedelta(0):
                    return False
            try:
                await workflow.wait_condition(
                    lambda: done() or self.interrupted() or bool(self.s.pending_events),
                    timeout=timeout,
                    timeout_summary="stage deadline",
                )
            except TimeoutError:
                return False
            if self.s.pending_events:
                await self._reconcile_pending()

    async def wait_or_remind(
        self,
        done: Callable[[], bool],
        until: datetime,
        name: str,
        what: str,
        kind: str | None = None,
    ) -> bool:
        """Wait for `done`; when `until` passes, tell the responsible and the РОП once (R-X4),
        then remind by the reminder policy of deadline `kind` (default: `name`) until `done`.
        False only when interrupted before `done`."""
        if self.follow is not None and self.follow.on:  # the due follows the data
            return await self.follow.wait_or_remind(done, until, name, what, kind or name)
        if not await self.wait(done, until=until):
            await self.deadline_missed(name, what, until)
            if patches.patched(REMIND_AFTER_MISSED):
                await self.remind(
                    done,
                    f"{name}:reminder",
                    kind or name,
                    [self.responsible()],
                    "notify_deadline_reminder",
                    what=what,
                    deadline=self.local(until),
                )
            else:
                await self.wait(done)
        self.clear_deadline(name)
        return done()

    async def remind(
        self,
        done: Callable[[], bool],
        purpose: str,
        kind: str,
        first: list[int],
        template: str,
        waiter: Callable[[Callable[[], bool], datetime], Awaitable[bool]] | None = None,
        **values: Any,
    ) -> None:
        """R-X4 reminders until `done` (or a loss or a move): each `<purpose>:<n>` once, at the
        interval of deadline `kind`, in working hours, within the daily cap, up the ladder
        starting with `first` (the manager rung). `waiter(done, until)` is True when `done`
        came first (default: `wait`, which follows the deal's events)."""
        wait = waiter or self.wait
        while True:
            day_key, count_key = f"{purpose}:day", f"{purpose}:today"
            last = workflow.now()
            sent = self.s.counters.get(count_key, 0)
            if self.s.counters.get(day_key) != self.today().toordinal():
                sent = 0
            at = R.next_reminder(last, self.reminder_minutes(kind), self.rules, sent)
            if await wait(done, at):
                return
            number = self.bump(f"{purpose}:count")
            today = self.today().toordinal()
            if self.s.counters.get(day_key) != today:
                self.s.counters[day_key], self.s.counters[count_key] = today, 0
            self.bump(count_key)
            await self.notify(f"{purpose}:{number}", self.ladder(number, first), template, **values)

    def reminder_minutes(self, kind: str) -> int:
        minutes = self.rules.reminders.interval_minutes.get(kind)
        if minutes is None and kind == "payment":
            return self.rules.payment_overdue_reminder_hours * 60
        return minutes or self.rules.reminder_interval_minutes

    def ladder(self, number: int, first: list[int]) -> list[int]:
        """Who gets reminder `number`: every rung reached so far (`ladder_step` reminders each)."""
        policy, people = self.rules.reminders, self.rules.people
        if not policy.ladder:
            return first
        reached = policy.ladder[: (number - 1) // max(policy.ladder_step, 1) + 1]
        rungs = {"manager": first, "rop": [people.rop], "director": [people.director]}
        users = [u for rung in reached for u in rungs[rung] if u]
        return list(dict.fromkeys(users)) or first

    def interrupted(self) -> bool:
        intents = self.s.intents
        return intents.lose is not None or intents.moved_to is not None or bool(self.s.ended)

    async def _reconcile_pending(self) -> None:
        """Take every event that has arrived: changed tasks are re-read once each, and the deal
        once for all its events (Bitrix24 events carry only IDs)."""
        events, self.s.pending_events = self.s.pending_events, []
        if self.on_events is not None and await self.on_events(events):
            return
        for task_id in dict.fromkeys(e.entity_id for e in events if e.event == ONTASKUPDATE):
            await self._reconcile_task(task_id)
        if any(e.event in DEAL_EVENTS for e in events):
            await self._reconcile_deal()

    async def _reconcile_deal(self) -> None:
        """The deal changed in Bitrix24: re-read it and follow a stage move made by a person."""
        await self.refresh_deal()
        if self.left is not None and self.left():
            return
        deal = self.s.deal
        assert deal is not None
        seen = self.stage_of(deal.stage_id)
        intents = self.s.intents
        if seen != Stage.LOSE and self.on_deal_read is not None and patches.patched(FIELDS_DRIVE):
            await self.on_deal_read()
        if seen is None or seen == self.s.stage or intents.moved_to is not None:
            return
        if seen == Stage.LOSE:
            reason_ids = {v: k for k, v in self.rules.enums["loss_reason"].items()}
            raw = deal.fields.get(self.rules.fields["loss_reason"])
            reason = "OTHER"
            if isinstance(raw, str) and raw.isdigit():
                reason = reason_ids.get(int(raw), "OTHER")
            comment = deal.fields.get(self.rules.fields["loss_comment"])
            known = isinstance(raw, str) and raw.isdigit() and int(raw) in reason_ids
            lacking = [] if known else [R.FIELD_TITLES["loss_reason"]]
            if known and reason == "OTHER" and not str(comment or "").strip():
                lacking = [R.FIELD_TITLES["loss_comment"]]
            if lacking and patches.patched(LOSE_NEEDS_REASON):
                await self._refuse_move(seen, lacking, "notify_lose_reason_missing")
                return
            intents.lose = LoseDeal.model_construct(
                # The code is a key of the config's enums.loss_reason, not checked against
                # LoseDeal's codes (model_construct does not validate).
                reason=reason,  # type: ignore[arg-type]
                comment=str(comment or "moved to LOSE in Bitrix24"),
            )
            return
        missing = self.missing_for_move(seen)
        if missing:
            await self._refuse_move(seen, missing)
            return
        intents.moved_to = seen
        if patches.patched(MOVE_ACTOR):
            intents.moved_by = bitrix24_mover(deal)

    async def _reconcile_task(self, task_id: int) -> None:
        if not any(t.task_id == task_id for t in self.s.open_tasks):
            return
        closer: Actor | None = None
        if self.follow is not None and self.follow.on:  # its DEADLINE too (deadlines.py)
            status = await self.follow.read_task(task_id)
            closer = self.follow.closers.pop(task_id, None)
        else:
            status = await call(act.read_task_status, task_id)
        if status == TASK_COMPLETED:
            keys = [t.key for t in self.s.open_tasks if t.task_id == task_id]
            self.s.open_tasks = [t for t in self.s.open_tasks if t.task_id != task_id]
            self.record(self.s.stage, C.cause("task_completed", task_id=task_id), closer)
            for key in keys:
                follow_up = self.on_task_completed.pop(key, None)
                if follow_up is not None:
                    await follow_up()

    def stage_of(self, status_id: str) -> Stage | None:
        """The pipeline stage of a Bitrix24 STAGE_ID (None: not one of the pipeline's)."""
        code = self.rules.stage_code(status_id)
        return Stage(code) if code is not None and code in Stage.__members__ else None

    def _is_forward(self, target: str) -> bool:
        if target == Stage.WON:
            return True
        order = list(STAGE_ORDER)
        return target in order and order.index(Stage(target)) > order.index(self.s.stage)

    def missing_for_move(self, target: str) -> list[str]:
        """R-X3: the required fields of the stage being left, when moving forward."""
        if not self._is_forward(target) or self.s.deal is None:
            return []
        missing = R.missing_fields(
            self.s.stage, self.s.deal.fields, self.rules, self.s.document_set
        )
        if self.s.stage == Stage.LAUNCH and not self.s.payment_schedule:
            missing.append("График оплаты")
        skipped = self._skipped(target)
        if skipped and patches.patched(SKIPPED_STAGES_CHECKED):
            doc_set = self.s.document_set or R.document_set(self.amount(), self.rules)
            for stage in skipped:
                items = R.missing_fields(stage, self.s.deal.fields, self.rules, doc_set)
                if stage == Stage.CONTRACT and doc_set != "invoice" and self.s.approved is not True:
                    items.append(self._rendered("missing_internal_approval"))
                if stage == Stage.LAUNCH and not self.s.payment_schedule:
                    items.append("График оплаты")
                missing += [item for item in items if item not in missing]
        return missing

    def _skipped(self, target: str) -> list[Stage]:
        """The stages a forward move to `target` jumps over (strictly between)."""
        order = list(STAGE_ORDER)
        if self.s.stage not in order or target not in order:
            return []
        return order[order.index(self.s.stage) + 1 : order.index(Stage(target))]

    def _rendered(self, name: str, **values: Any) -> str:
        """A text added after deals started (their rules may not carry it), rendered."""
        deal = self.s.deal
        return R.render(
            self._template(name),
            deal_id=self.s.deal_id,
            deal_title=deal.title if deal else "",
            **values,
        )

    async def _refuse_move(
        self, target: str, missing: list[str], template: str = "notify_missing_fields"
    ) -> None:
        """R-X3: return the deal to its stage and tell the person which fields are empty."""
        round_no = self.bump("refused_move")
        await self.update_deal({"STAGE_ID": self.rules.stages[self.s.stage]})
        purpose = f"refused_move:{round_no}"
        await self.once(
            purpose,
            act.notify_users,
            NotifyRequest(
                key=self.key(purpose),
                user_ids=[self.responsible()],
                message=self._rendered(template, fields=", ".join(missing)),
            ),
        )
        self.record(self.s.stage, C.cause("move_refused", target=target, fields=", ".join(missing)))
        self.decisions.stage_refused(target, missing)

    async def advance(self, target: Stage, cause: str, actor: Actor | None = None) -> Transition:
        """The automation moves on only when the stage's required fields are filled (R-X3);
        until then the manager is told which are empty, and the deal waits for them."""
        while True:
            await self.refresh_deal()
            assert self.s.deal is not None
            missing = R.missing_fields(
                self.s.stage, self.s.deal.fields, self.rules, self.s.document_set
            )
            if not missing:
                return Transition(target, cause, actor)
            listed = ", ".join(missing)
            await self.notify(
                f"blocked:{self.s.stage}:{listed}",
                [self.responsible()],
                "notify_missing_fields",
                fields=listed,
            )
            self.record(self.s.stage, C.cause("waiting_for_fields", fields=listed, target=target))
            reads = self.s.counters.get("deal_reads", 0)

            def reread(r: int = reads) -> bool:
                return self.s.counters.get("deal_reads", 0) > r

            await self.wait(reread)
            if self.interrupted():
                return self.take_move()

    def take_move(self) -> Transition:
        """Where people sent the deal: lost, moved by a person, or (neither) its stage again."""
        intents = self.s.intents
        if intents.lose is not None:
            return Transition(Stage.LOSE)
        target = Stage(intents.moved_to) if intents.moved_to else self.s.stage
        actor, intents.moved_to, intents.moved_by = intents.moved_by, None, None
        if self.s.manager_id is None and self.s.deal is not None and target != Stage.NEW:
            self.s.manager_id = self.s.deal.assigned_by_id or None
        return Transition(target, move_cause(actor), actor)

    # ---- stage bookkeeping ---------------------------------------------------------------

    async def move(self, transition: Transition) -> None:
        stage, cause = transition.to, transition.cause
        lose = self.s.intents.lose
        actor = transition.actor
        if stage == Stage.LOSE and lose is not None and cause in ("", PERSON_MOVE):
            cause = C.cause("lost", reason=lose.reason)
            actor = actor or lose.actor
        cause = cause or C.cause("automation")
        if stage == self.s.stage:
            return
        in_bitrix = self.s.deal is not None and self.s.deal.stage_id == self.rules.stages[stage]
        batched = patches.patched(stage_batch.BATCHED_MOVE)  # issue 16: one request
        if batched:  # Bitrix24 shows the stage before the workflow enters it, as before
            prefix = STAGE_TASKS.get(self.s.stage)
            await stage_batch.leave(
                self,
                None if in_bitrix else self.rules.stages[stage],
                [t.key for t in self.s.open_tasks if prefix and t.key.startswith(self.key(prefix))],
            )
        elif not in_bitrix:
            await self.update_deal({"STAGE_ID": self.rules.stages[stage]})
        left = self.s.stage
        self.enter(stage, cause, now=workflow.now(), actor=actor)
        if not batched and patches.patched(COMPLETE_LEFT_TASKS):
            prefix = STAGE_TASKS.get(left)
            await self.complete_tasks(
                [t.key for t in self.s.open_tasks if prefix and t.key.startswith(self.key(prefix))]
            )

    async def complete_tasks(self, keys: list[str]) -> None:
        """The automatic tasks `keys` are done with (their stage left, their round answered):
        completed in Bitrix24, once each; the logist's task mirrored into 1C is 1C's to end."""
        if len(stage_batch.pending(self, keys)) > 1 and patches.patched(stage_batch.BATCHED_MOVE):
            await stage_batch.leave(self, None, keys)  # issue 16: all in one batch
            return
        for task in [t for t in self.s.open_tasks if t.key in keys]:
            purpose = task.key.removeprefix(self.key(""))
            if f"mirror:{purpose}" in self.s.done:
                continue
            await self.once(f"complete:{purpose}", act.complete_task, task.task_id)
            if f"complete:{purpose}" in self.s.done:
                self.s.open_tasks = [t for t in self.s.open_tasks if t.key != task.key]

    def enter(self, stage: Stage, cause: str, now: datetime, actor: Actor | None = None) -> None:
        self.s.stage = stage
        self.s.stage_entered_at = now
        # a task's or a process's deadline outlives the stage (R-X6, R-X7)
        self.s.deadlines = [
            d for d in self.s.deadlines if d.task_id or d.workflow_id or d.kind == "delivery"
        ]  # «Срок поставки» too, until the goods ship (deadlines.py)
        self.record(stage, cause, actor)
        self.decisions.stage_entered(cause, actor)
        workflow.upsert_search_attributes(
            [
                DEAL_ID.value_set(self.s.deal_id),
                DEAL_STAGE.value_set(stage.value),
                DEAL_OVERDUE.value_set(self.any_overdue()),
            ]
        )
        self.details()

    def record(self, stage: str, cause: str, actor: Actor | None = None) -> None:
        entry = HistoryEntry(at=workflow.now(), stage=stage, cause=cause, actor=actor)
        # duck-typed: deal.py's `causes` may be the sandbox's copy of the module
        code, params = getattr(cause, "code", ""), getattr(cause, "params", {})
        if code and patches.patched(HISTORY_CODES):
            entry.code, entry.params = code, dict(params)
        self.s.history.append(entry)

    def entered_at(self) -> datetime:
        return self.s.stage_entered_at or workflow.now()

    def set_deadline(self, name: str, due: datetime) -> None:
        self.decisions.deadline_armed(name, due)
        self.clear_deadline(name)
        self.s.deadlines.append(Deadline(name=name, due=due))
        self.details()

    def watch(self, deadline: Deadline) -> None:
        """R-X4: a deadline watched beside the stage's own waiting (see `Deadline`): when it
        passes first, the responsible and the РОП are told once, then reminders follow."""
        self.decisions.deadline_armed(deadline.name, deadline.due, deadline.what, clears=False)
        self.s.deadlines = [d for d in self.s.deadlines if d.name != deadline.name]
        self.s.deadlines.append(deadline)
        self.details()
        self._watchers[deadline.name] = asyncio.create_task(self._watch(deadline))

    def rewatch(self) -> None:
        """After continue-as-new: watch again the deadlines of tasks and processes."""
        for deadline in list(self.s.deadlines):
            if (deadline.task_id or deadline.workflow_id) and deadline.name not in self._watchers:
                self._watchers[deadline.name] = asyncio.create_task(self._watch(deadline))

    def _watched_done(self, d: Deadline) -> bool:
        s = self.s
        if s.stage in FINAL_STAGES or s.ended:
            return True
        if d.task_id is not None:
            return not any(t.task_id == d.task_id for t in s.open_tasks)
        if d.workflow_id is not None:
            return not any(
                p.workflow_id == d.workflow_id and p.state == "running" for p in s.processes
            )
        return s.stage != d.stage

    async def _watch(self, d: Deadline) -> None:
        if self.follow is not None and self.follow.on:  # the due follows the data
            await self.follow.watch(d)
            return
        done = lambda: self._watched_done(d)  # noqa: E731
        if not await self.timer(done, d.due):
            responsible = d.responsible_id or self.responsible()
            await self.deadline_missed(d.name, d.what, d.due, responsible=responsible)
            await self.remind(
                done,
                f"{d.name}:reminder",
                d.kind or d.name,
                [responsible],
                "notify_deadline_reminder",
                waiter=self.timer,
                what=d.what,
                deadline=self.local(d.due),
            )
        self._watchers.pop(d.name, None)
        if any(x.name == d.name and x.due == d.due for x in self.s.deadlines):
            self.clear_deadline(d.name)

    async def timer(
        self, done: Callable[[], bool], moment: datetime, summary: str = "deadline"
    ) -> bool:
        """True when `done` holds before `moment`; a plain timer (events are the stage's)."""
        if done():
            return True
        timeout = moment - workflow.now()
        if timeout <= timedelta(0):
            return False
        try:
            await workflow.wait_condition(done, timeout=timeout, timeout_summary=summary)
        except TimeoutError:
            return done()
        return True

    def clear_deadline(self, name: str) -> None:
        self.decisions.deadlines_closed(name)
        self.s.deadlines = [d for d in self.s.deadlines if d.name != name]
        self.sync_overdue()

    def any_overdue(self) -> bool:
        return any(d.overdue for d in self.s.deadlines) or any(
            t.state == "overdue" for t in self.s.payment_schedule
        )

    def sync_overdue(self) -> None:
        overdue = self.any_overdue()
        if workflow.info().typed_search_attributes.get(DEAL_OVERDUE) != overdue:
            workflow.upsert_search_attributes([DEAL_OVERDUE.value_set(overdue)])
        self.details()

    def mark_overdue(self, name: str) -> None:
        self.decisions.deadline_missed(name)
        for deadline in self.s.deadlines:
            if deadline.name == name:
                deadline.overdue = True
        self.sync_overdue()

    async def deadline_missed(
        self,
        name: str,
        what: str,
        due: datetime,
        responsible: int | None = None,
        purpose: str | None = None,
    ) -> None:
        """R-X4: the responsible is told and the РОП gets the escalation, once each (keyed by
        `purpose`, the deadline's name unless a re-armed deadline numbers its misses)."""
        self.mark_overdue(name)
        purpose = purpose or name
        await self.notify(
            f"{purpose}:overdue",
            [responsible or self.responsible()],
            "notify_deadline_missed",
            what=what,
            deadline=self.local(due),
        )
        await self.notify(
            f"{purpose}:overdue:rop",
            [self.rules.people.rop],
            "notify_deadline_missed_rop",
            what=what,
            manager=str(self.s.manager_id or "—"),
        )

    def details(self) -> None:
        """The Web UI's current details (not in history): the stage by its Bitrix24 name, the
        manager by name, deadlines in the portal's zone, the named zone."""
        stage_name = self.rules.templates.get(f"stage_{self.s.stage}", "")
        lines = [
            f"**Stage:** {stage_name} ({self.s.stage})"
            if stage_name
            else f"**Stage:** {self.s.stage}"
        ]
        if self.s.manager_id:
            deal = self.s.deal
            name = (
                deal.assigned_by_name if deal and deal.assigned_by_id == self.s.manager_id else ""
            )
            lines.append(
                f"**Manager:** {name} (ID {self.s.manager_id})"
                if name
                else f"**Manager:** ID {self.s.manager_id}"
            )
        zone = self.rules.timezone
        for d in self.s.deadlines:
            flag = " — **overdue**" if d.overdue else ""
            lines.append(f"**{d.name}:** {self.local(d.due)} {zone}{flag}")
        for t in self.s.payment_schedule:
            lines.append(f"**Tranche {t.number}:** {t.percent:g}% by {t.due} — {t.state}")
        workflow.set_current_details("\n\n".join(lines))
        self._on_change()

    def bump(self, counter: str) -> int:
        self.s.counters[counter] = self.s.counters.get(counter, 0) + 1
        return self.s.counters[counter]

    # ---- side effects (activities) -------------------------------------------------------

    def key(self, purpose: str) -> str:
        reopened = self.s.counters.get("reopen")  # a new run of a reopened deal (deal_changes)
        if reopened:
            return f"deal:{self.s.deal_id}:reopen{reopened}:{purpose}"
        return f"deal:{self.s.deal_id}:{purpose}"

    async def once(
        self, purpose: str, activity_fn: Callable[[A], Awaitable[T]], arg: A
    ) -> T | None:
        """Run a side effect once per purpose; a failure it cannot retry is told to the РОП.
        None when it ran before (or failed for good)."""
        if purpose in self.s.done:
            return None
        try:
            result = await call(activity_fn, arg)
        except ActivityError as err:
            await self.report_failure(purpose, err)
            return None
        self.s.done.append(purpose)
        self.decisions.effect(purpose, arg)
        return result

    async def onec_once(
        self, purpose: str, activity_fn: Callable[[A], Awaitable[T]], arg: A
    ) -> T | None:
        """A 1C side effect: retried while 1C is down; the manager hears of a long outage once."""
        if purpose in self.s.done:
            return None
        minutes = self.rules.onec_outage_notify_minutes

        async def tell() -> None:
            await self.notify(
                f"onec_outage:{purpose}",
                [self.responsible()],
                "notify_onec_outage",
                minutes=str(minutes),
                step=purpose,
            )

        told = False
        while True:
            try:
                result = await run_with_outage_watch(
                    activity_fn, arg, notify=tell, after=timedelta(minutes=minutes)
                )
            except ActivityError as err:
                if not (is_configuration_problem(err) and patches.patched(ONEC_CONFIG_RETRY)):
                    await self.report_failure(purpose, err)
                    return None
                if not told:
                    then = R.render(
                        self._template(ONEC_CONFIG_WAIT),
                        minutes=self.rules.onec_config_retry_minutes,
                    )
                    await self.report_failure(purpose, err, then=then)
                    told = True
                if not await self._wait_for_onec_fix():
                    return None
                continue
            if told:
                self.record(self.s.stage, f"{purpose} done after the 1C configuration was fixed")
            self.s.done.append(purpose)
            return result

    async def _wait_for_onec_fix(self) -> bool:
        """A configuration problem: wait for `onec_configuration_fixed` (sent by `salesflow
        doctor --fix-applied`) or the retry interval, whichever comes first, then retry.
        False when a person moved or lost the deal meanwhile (the step is not done)."""
        seen = self.onec_config_fixed
        retry_at = workflow.now() + timedelta(minutes=self.rules.onec_config_retry_minutes)
        await self.wait(lambda: self.onec_config_fixed > seen, until=retry_at)
        return not self.interrupted()

    def _template(self, name: str) -> str:
        """A template by name; rules carried from before it existed fall back to the default."""
        return self.rules.templates.get(name) or DEFAULT_TEMPLATES.get(name, "")

    async def report_failure(self, purpose: str, err: ActivityError, then: str = "") -> None:
        """Record a step that failed for good and tell the РОП; a cancelled step (the deal
        closed under it) is passed on as a cancellation instead."""
        if is_cancelled_exception(err) and patches.patched(CANCEL_IS_NOT_FAILURE):
            raise asyncio.CancelledError(purpose) from err
        cause = err.cause
        text = str(cause.message if isinstance(cause, ApplicationError) else cause or err)
        self.record(self.s.stage, f"{purpose} failed: {text}")
        if purpose.startswith("failure:"):
            return
        await self.once(
            f"failure:{purpose}",
            act.notify_users,
            NotifyRequest(
                key=self.key(f"failure:{purpose}"),
                user_ids=[self.rules.people.rop],
                message=(
                    f"salesflow: сделка №{self.s.deal_id}: шаг «{purpose}» не выполнен: {text}"
                    + (f" {then}" if then else "")
                ),
            ),
        )

    async def notify(self, purpose: str, users: list[int], template: str, **values: Any) -> None:
        await self.once(
            purpose,
            act.notify_users,
            NotifyRequest(
                key=self.key(purpose), user_ids=users, message=self.text(template, **values)
            ),
        )

    async def task(
        self,
        purpose: str,
        title_template: str,
        responsible: int | None = None,
        created_by: int | None = None,
        deadline: datetime | None = None,
        **values: Any,
    ) -> int | None:
        """R-X1: responsible = manager, creator = РОП, linked to the deal, unless told otherwise."""
        title = self.text(title_template, **values)
        responsible_id = responsible or self.responsible()
        task_id: int | None = await self.once(
            purpose,
            act.create_task,
            TaskRequest(
                key=self.key(purpose),
                deal_id=self.s.deal_id,
                title=title,
                description=self.text("task_description"),
                responsible_id=responsible_id,
                created_by=created_by or self.rules.people.rop,
                deadline=deadline,
            ),
        )
        if task_id:
            self.s.open_tasks.append(
                OpenTask(
                    key=self.key(purpose),
                    task_id=task_id,
                    title=title,
                    responsible_id=responsible_id,
                    deadline=deadline,
                )
            )
        return task_id

    async def client_message(self, purpose: str, template: str, text: str | None = None) -> None:
        """A message to the client (R-IW-1, R-X5, R-WON-1) signed with the manager's card;
        `text`: the template already filled in (client_messages.py), else `template`'s."""
        await self.once(
            purpose,
            act.send_client_message,
            ClientMessageRequest(
                key=self.key(purpose),
                deal_id=self.s.deal_id,
                manager_id=self.s.manager_id,
                subject=self.text("client_subject"),
                template=text if text is not None else self.rules.templates[template],
            ),
        )

    async def update_deal(self, fields: dict[str, Any]) -> None:
        await call(act.update_deal, DealUpdateRequest(deal_id=self.s.deal_id, fields=fields))
        if self.s.deal is not None:
            for name, value in fields.items():
                if name == "STAGE_ID":
                    self.s.deal.stage_id = str(value)
                elif name == "ASSIGNED_BY_ID":
                    self.s.deal.assigned_by_id = int(value or 0)
                else:
                    self.s.deal.fields[name] = None if value is None else str(value)

    async def set_fields_once(self, purpose: str, fields: dict[str, Any]) -> None:
        if purpose in self.s.done:
            return
        await self.update_deal(fields)
        self.s.done.append(purpose)

    async def refresh_deal(self) -> None:
        try:
            deal = await call(act.fetch_deal, self.s.deal_id)
        except ActivityError as err:
            if self.deal_gone is not None and self.deal_gone(err):
                return  # deleted: the last snapshot stays, `s.ended` says so
            raise
        self.s.deal = deal
        self.bump("deal_reads")
        if self.s.manager_id is None and self.s.stage != Stage.NEW and deal.assigned_by_id:
            self.s.manager_id = deal.assigned_by_id
        if workflow.info().typed_search_attributes.get(DEAL_AMOUNT) != deal.amount:
            workflow.upsert_search_attributes([DEAL_AMOUNT.value_set(deal.amount)])
        if self.follow is not None:
            self.follow.deal_read()  # deadlines re-computed from what was read
            await self.follow.push_task_deadlines()  # and the tasks that watch them

    # ---- small helpers -------------------------------------------------------------------

    def responsible(self) -> int:
        """Who hears about the deal: its manager, or the РОП while it has none."""
        return self.s.manager_id or self.rules.people.rop

    def amount(self) -> float:
        return self.s.deal.amount if self.s.deal else 0.0

    def field(self, name: str) -> str:
        if self.s.deal is None:
            return ""
        value = self.s.deal.fields.get(self.rules.fields[name])
        return "" if value is None else str(value)

    def text(self, template: str, **values: Any) -> str:
        deal = self.s.deal
        return R.render(
            self.rules.templates[template],
            deal_id=self.s.deal_id,
            deal_title=deal.title if deal else "",
            **values,
        )

    def local(self, moment: datetime) -> str:
        return R.local_text(moment, self.rules.timezone)

    def today(self) -> date:
        return R.local_day(workflow.now(), self.rules.timezone)

    def end_of_working_day(self, day: date) -> datetime:
        hours, minutes = (int(x) for x in self.rules.work_end.split(":"))
        return R.local_moment(day, time(hours, minutes), self.rules.timezone)

    def require_stage(self, update: str, *stages: Stage) -> None:
        if self.s.stage not in stages:
            allowed = ", ".join(stages)
            raise refuse("wrong_stage", update=update, allowed=allowed, stage=self.s.stage)

    def view(self) -> DealView:
        deal = self.s.deal
        return DealView(
            deal_id=self.s.deal_id,
            stage=self.s.stage,
            manager_id=self.s.manager_id,
            manager_name=(
                deal.assigned_by_name if deal and deal.assigned_by_id == self.s.manager_id else ""
            ),
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
            rules_version=self.rules.version,
            ended=self.s.ended,
        )
