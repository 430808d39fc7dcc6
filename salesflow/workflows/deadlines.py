"""Deadlines that follow the data (issue 14 item 2, R-X4, R-X9).

A deadline is not a timer armed once: its due is re-computed from what it depends on each time
the workflow reads the deal (the ONCRMDEALUPDATE event → `fetch_deal`) or a task (ONTASKUPDATE
→ `read_task`, tasks.task.get): «Дата согласования КП», «Дата оплаты», «Срок поставки» on the
deal, the DEADLINE a person moved on the task. A `Deadline` says what
it follows (`field`, `task_key`, `task_id`); the waits here wake on every change
(`workflow.wait_condition(..., timeout=...)` around a version counter) and wait again for the
new due. A deadline moved forward after it was missed is escalated again when it passes anew.

Everything here runs only when `FOLLOW` was patched in when the run started (`start`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from temporalio import workflow

from salesflow.workflows import patches

with workflow.unsafe.imports_passed_through():
    from salesflow.workflows import activity_stubs as act
    from salesflow.workflows import rules as R
    from salesflow.workflows.activity_stubs import call
    from salesflow.workflows.models import (
        Actor,
        Deadline,
        Stage,
        TaskDeadlineRequest,
        TaskSnapshot,
    )
    from salesflow.workflows.names import TASK_COMPLETED
    from salesflow.workflows.onec_models import OneCTaskDeadlineRequest

if TYPE_CHECKING:
    from salesflow.workflows.deal_effects import DealEffects

FOLLOW = "timers-follow-data"  # issue 14 item 2: deadlines re-computed from the current data
DELIVERY = "timers-delivery-watched"  # R-X4: «Срок поставки» watched until the goods ship
DELIVERY_KIND = "delivery"
# fin14: a field's move rewrites the DEADLINE of the tasks that watch it (tasks.task.update)
TASK_DEADLINE_FOLLOWS_FIELD = "fin14-task-deadline-follows-field"
# fin14: the logist's Bitrix24 DEADLINE moved by a person → 1C's СрокИсполнения
ONEC_DEADLINE_FOLLOWS_TASK = "fin14-onec-deadline-follows-task"
SAME_MOMENT = timedelta(minutes=1)
DELIVERY_NAME = "delivery_term"
# «Срок поставки» is kept until the goods are shipped (R-SH); watched from IN_WORK on
DELIVERED = (Stage.SHIPPED, Stage.WON, Stage.LOSE)


def parse_day(raw: str) -> date | None:
    """A date a person typed in a deal field: ISO (`2026-12-07`, `2026-12-07T00:00:00+03:00`,
    how crm.deal.get returns date fields) or `07.12.2026`; None for anything else («30 дней»)."""
    text = raw.strip()
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        pass
    try:
        return datetime.strptime(text[:10], "%d.%m.%Y").date()
    except ValueError:
        return None


class Following:
    def __init__(self, fx: DealEffects) -> None:
        self.fx = fx
        self.s = fx.s
        self.rules = fx.rules
        self.on = False  # FOLLOW, decided when the run starts
        self.delivery = False  # DELIVERY, decided when the run starts
        self.version = 0  # bumped when a due moves (waits wake and re-read it)
        self.pending: list[tuple[str, datetime]] = []  # (task key, due) to write to Bitrix24
        self.closers: dict[int, Actor] = {}  # task id → who completed it (read_task, CLOSED_BY)

    def start(self) -> None:
        self.on = patches.patched(FOLLOW)
        if self.on:
            self.delivery = patches.patched(DELIVERY)
            self.watch_delivery()

    # ---- what a deadline follows -----------------------------------------------------------

    def link(self, name: str, field: str = "", task_purpose: str = "", *more_purposes: str) -> None:
        """Deadline `name` follows deal field `field` and/or the DEADLINE of the task created for
        `task_purpose` (and of those for `more_purposes`), from now on (the values seen now are
        its basis)."""
        if not self.on:
            return
        for d in self.s.deadlines:
            if d.name == name:
                if field:
                    d.field, d.basis = field, self.fx.field(field)
                if task_purpose:
                    d.task_key = self.fx.key(task_purpose)
                for purpose in more_purposes:
                    if self.fx.key(purpose) not in d.more_task_keys:
                        d.more_task_keys.append(self.fx.key(purpose))

    def field_due(self, field: str) -> datetime | None:
        """The end of the working day of the date in deal field `field`, if it holds one."""
        day = parse_day(self.fx.field(field)) if self.on else None
        return None if day is None else self.fx.end_of_working_day(day)

    def current(self, name: str) -> Deadline | None:
        return next((d for d in self.s.deadlines if d.name == name), None)

    def due(self, name: str, default: datetime) -> Callable[[], datetime]:
        """The current due of deadline `name` (as last re-computed), else `default`."""
        return lambda: d.due if (d := self.current(name)) is not None else default

    # ---- re-reading the data ---------------------------------------------------------------

    def deal_read(self) -> None:
        """After every read of the deal: the fields deadlines follow. (The responsible is
        followed by field_intents.py: `fx.responsible()` reads the manager it sets.)"""
        if not self.on or self.s.deal is None:
            return
        for d in list(self.s.deadlines):
            if not d.field:
                continue
            raw = self.fx.field(d.field)
            if raw == d.basis:
                continue
            d.basis = raw
            day = parse_day(raw)
            if day is not None:
                title = R.FIELD_TITLES.get(d.field, d.field)
                due = self.fx.end_of_working_day(day)
                self.move(d, due, f"«{title}» changed to {raw}")
                self.pending += [(k, due) for k in [d.task_key, *d.more_task_keys] if k]
        self.watch_delivery()

    async def push_task_deadlines(self) -> None:
        """After `deal_read`: the open automatic tasks that watch a moved field («Получить
        оплату от клиента» ← «Дата оплаты», «Отправить КП клиенту» ← «Дата согласования КП»)
        get the new due as their DEADLINE in Bitrix24 (`set_task_deadline`, read first)."""
        pending, self.pending = self.pending, []
        for key, due in pending:
            task = next((t for t in self.s.open_tasks if t.key == key), None)
            if task is None:
                continue
            if task.deadline is not None and abs(task.deadline - due) < SAME_MOMENT:
                continue
            if not workflow.patched(TASK_DEADLINE_FOLLOWS_FIELD):
                return
            request = TaskDeadlineRequest(task_id=task.task_id, deadline=due)
            await call(act.set_task_deadline, request)
            task.deadline = due
            self.fx.record(self.s.stage, f"task {task.task_id} DEADLINE {self.fx.local(due)}")

    async def read_task(self, task_id: int) -> str:
        """ONTASKUPDATE: the task re-read (tasks.task.get); a DEADLINE or a responsible a person
        changed moves what follows it. Returns the task's STATUS."""
        task: TaskSnapshot = await call(act.read_task, task_id)
        if task.closed_by:  # who completed it, for the history (issue 12)
            self.closers[task_id] = Actor(user_id=task.closed_by, name=task.closed_by_name)
        keys = set()
        moved: list[str] = []  # the keys of the open tasks whose DEADLINE a person moved
        for t in self.s.open_tasks:
            if t.task_id != task_id:
                continue
            keys.add(t.key)
            if task.deadline is not None:
                if t.deadline is None or abs(task.deadline - t.deadline) >= SAME_MOMENT:
                    moved.append(t.key)
                t.deadline = task.deadline
            if task.responsible_id:
                t.responsible_id = task.responsible_id
        for d in list(self.s.deadlines):
            if d.task_id != task_id and d.task_key not in keys and not keys & {*d.more_task_keys}:
                continue
            if d.task_id == task_id and task.responsible_id:
                d.responsible_id = task.responsible_id
            # Bitrix24 keeps DEADLINE to the second: a due that differs by less is the same one
            if task.deadline is not None and abs(task.deadline - d.due) >= SAME_MOMENT:
                self.move(d, task.deadline, f"task {task_id} DEADLINE moved in Bitrix24")
        if task.deadline is not None and task.status != TASK_COMPLETED:
            await self._onec_follows(moved, task.deadline)
        return task.status

    async def _onec_follows(self, keys: list[str], deadline: datetime) -> None:
        """R-X4 / R-X6: the logist's task mirrored into 1C gets the DEADLINE a person set on its
        Bitrix24 task as its СрокИсполнения (`set_onec_task_deadline`, read first)."""
        fx = self.fx
        for key in keys:
            purpose = key.removeprefix(fx.key(""))
            if f"mirror:{purpose}" not in self.s.done:
                continue
            if not workflow.patched(ONEC_DEADLINE_FOLLOWS_TASK):
                return
            await fx.onec_once(
                f"{purpose}:1c_deadline:{deadline.isoformat()}",
                act.set_onec_task_deadline,
                OneCTaskDeadlineRequest(key=fx.key(f"{purpose}:1c"), deadline=deadline),
            )

    def move(self, d: Deadline, due: datetime, cause: str) -> None:
        """Deadline `d` is due at `due` now; waits on it wake and wait again."""
        if d.due == due:
            return
        d.due = due
        if d.overdue and due > workflow.now():
            d.overdue = False  # escalated again when it passes anew
        self.fx.record(self.s.stage, f"deadline {d.name} moved to {self.fx.local(due)}: {cause}")
        self.version += 1
        self.fx.sync_overdue()

    # ---- waiting on a deadline that moves ----------------------------------------------------

    async def timer(self, done: Callable[[], bool], due: Callable[[], datetime]) -> bool:
        """True when `done` holds before `due()` passes; `due()` is read again whenever a
        deadline moves (a plain wait, the stage's events are the stage's)."""
        while True:
            if done():
                return True
            seen = self.version
            timeout = due() - workflow.now()
            if timeout <= timedelta(0):
                return False
            try:
                await workflow.wait_condition(
                    lambda v=seen: done() or self.version != v,  # type: ignore[misc]
                    timeout=timeout,
                    timeout_summary="deadline (follows the data)",
                )
            except TimeoutError:
                if due() <= workflow.now():
                    return done()

    def _purpose(self, name: str) -> str:
        """The notices' purpose of deadline `name`: its name, then `name@<n>` after the n-th
        move forward past a miss (each miss is escalated once)."""
        n = self.s.counters.get(f"{name}:missed_moves", 0)
        return name if n == 0 else f"{name}@{n}"

    async def _missed(self, name: str, what: str, due: datetime, responsible: int | None) -> None:
        """R-X4: the responsible told, the РОП escalated, once each per miss."""
        await self.fx.deadline_missed(name, what, due, responsible, purpose=self._purpose(name))

    async def wait_or_remind(
        self,
        done: Callable[[], bool],
        until: datetime | Callable[[], datetime],
        name: str,
        what: str,
        kind: str,
    ) -> bool:
        """The stage's deadline `name` (see `DealEffects.wait_or_remind`) following its data:
        waits on the stage's events, escalates when the current due passes, reminds until
        `done`, and starts over when the due moves forward meanwhile."""
        fx = self.fx
        due = until if callable(until) else self.due(name, until)
        moved = lambda: due() > workflow.now()  # noqa: E731
        while True:
            if await fx.wait(done, until=due):
                break
            await self._missed(name, what, due(), None)
            await fx.remind(
                lambda: done() or moved(),
                f"{self._purpose(name)}:reminder",
                kind,
                [fx.responsible()],
                "notify_deadline_reminder",
                what=what,
                deadline=fx.local(due()),
            )
            if not moved() or done() or fx.interrupted():
                break
            fx.bump(f"{name}:missed_moves")
        fx.clear_deadline(name)
        return done()

    async def watch(self, d: Deadline) -> None:
        """A deadline watched beside the stage (`DealEffects.watch`), following its data."""
        fx, name = self.fx, d.name
        cur = lambda: self.current(name) or d  # noqa: E731
        if d.kind == DELIVERY_KIND:
            done = lambda: self.s.stage in DELIVERED or self.current(name) is None  # noqa: E731
        else:
            done = lambda: fx._watched_done(d) or self.current(name) is None  # noqa: E731
        due = lambda: cur().due  # noqa: E731
        moved = lambda: due() > workflow.now()  # noqa: E731

        async def plain(check: Callable[[], bool], moment: datetime) -> bool:
            return await self.timer(check, lambda: moment)

        while not await self.timer(done, due):
            responsible = cur().responsible_id or fx.responsible()
            await self._missed(name, cur().what, due(), cur().responsible_id)
            await fx.remind(
                lambda: done() or moved(),
                f"{self._purpose(name)}:reminder",
                cur().kind or name,
                [responsible],
                "notify_deadline_reminder",
                waiter=plain,
                what=cur().what,
                deadline=fx.local(due()),
            )
            if done() or not moved():
                break
            fx.bump(f"{name}:missed_moves")
        fx._watchers.pop(name, None)
        if self.current(name) is not None and done():
            fx.clear_deadline(name)

    # ---- «Срок поставки» (R-X4) ----------------------------------------------------------------

    def watch_delivery(self) -> None:
        """«Срок поставки» on the deal, when it is a date, watched from IN_WORK until the goods
        are shipped; the manager is its responsible. A text («30 дней») is not a deadline."""
        if not (self.on and self.delivery) or self.s.deal is None:
            return
        if self.s.stage == Stage.NEW or self.s.stage in DELIVERED:
            return
        if "delivery_term" not in self.rules.fields:
            return
        d = self.current(DELIVERY_NAME)
        if d is None:
            raw = self.fx.field("delivery_term")
            day = parse_day(raw)
            if day is None:
                return
            self.fx.watch(
                Deadline(
                    name=DELIVERY_NAME,
                    due=self.fx.end_of_working_day(day),
                    what=R.FIELD_TITLES["delivery_term"],
                    kind=DELIVERY_KIND,
                    field="delivery_term",
                    basis=raw,
                )
            )
        elif DELIVERY_NAME not in self.fx._watchers:  # carried over a continue-as-new
            self.fx._watchers[DELIVERY_NAME] = asyncio.create_task(self.watch(d))
