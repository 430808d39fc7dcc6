"""The deal's child workflows and their bookkeeping in `DealState.processes`: the internal
approval (`InternalApproval`), the tracked processes (`DealProcess`, R-X7) and the logist's
task mirrored into 1C (`LogistTaskMirror`, R-X6, R-AC-3).

Children start with ParentClosePolicy.ABANDON and report back by signal, which survives the
deal's continue-as-new; when the deal closes, `end` cancels those still running.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Literal

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

from salesflow.workflows import patches

with workflow.unsafe.imports_passed_through():
    from salesflow.config.templates import DEFAULT_TEMPLATES
    from salesflow.workflows import activity_stubs as act
    from salesflow.workflows import causes as C
    from salesflow.workflows import rules as R
    from salesflow.workflows.approval import InternalApproval
    from salesflow.workflows.deal_effects import DealEffects
    from salesflow.workflows.logist_mirror import LogistTaskMirror
    from salesflow.workflows.models import (
        ApprovalDecision,
        ApprovalInput,
        ApprovalItemRequest,
        ApprovalResult,
        Deadline,
        ProcessInput,
        ProcessState,
        Stage,
        StartProcess,
        TaskRequest,
    )
    from salesflow.workflows.names import SIGNAL_LOGIST_TASK_DONE
    from salesflow.workflows.onec_models import (
        CancelOneCTaskRequest,
        LogistMirrorInput,
        LogistMirrorResult,
        PollSchedule,
    )
    from salesflow.workflows.process import DealProcess

LOGIST_PROCESS = "1c_logist_task"
TASK_CONFIG_PROBLEM = "notify_onec_task_config_problem"
APPROVAL = "approval"
LOSE_TASK_REASON = "onec_task_withdrawn"  # written in the 1C task withdrawn on LOSE
PROCESS_SERVICE = {
    "import_order": "purchasing",
    "production": "production",
    "purchasing": "purchasing",
}
WON_KEEPS_LOGIST_MIRRORS = "won-keeps-logist-mirrors"
LOGIST_DONE_CLOSES_TASK = "logist-done-closes-task"  # 1C executed: the open task is done
CANCELLED_CHILDREN = "cancelled-children-say-so"  # `state` tells a cancelled child as such
LOSE_CANCELS_1C_TASK = "timers-lose-cancels-1c-task"  # issue 14: compensation on LOSE
LOGIST_DEADLINE = "timers-logist-deadline"  # R-X4: the task's DEADLINE as 1C's СрокИсполнения


class Children:
    def __init__(self, fx: DealEffects) -> None:
        self.fx = fx
        self.s = fx.s
        self.rules = fx.rules
        self.watching = False  # the deal's WATCHED_DEADLINES patch (set by the workflow)

    # ---- the internal approval (R-KP-6, R-KP-7, R-CT-1) ----------------------------------

    async def approval(self, round_no: int) -> ApprovalResult | None:
        """Run (or rejoin) the «Согласование» child; None when the deal was lost or moved."""
        fx, intents = self.fx, self.s.intents
        key = fx.key(f"approval:{round_no}")
        child_id = f"deal-{self.s.deal_id}-approval-{round_no}"
        if f"approval_started:{round_no}" not in self.s.done:
            approval = self.rules.approval
            item = ApprovalItemRequest(
                key=key,
                deal_id=self.s.deal_id,
                entity_type_id=approval.entity_type_id,
                category_id=approval.category_id,
                stage_id=approval.stage_new,
                title=fx.text("approval_item_title", document_set=self.s.document_set or ""),
                assigned_by_id=self.rules.people.rop,
            )
            await workflow.start_child_workflow(
                InternalApproval.run,
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
            self.s.processes.append(ProcessState(kind=APPROVAL, workflow_id=child_id))
            if self.watching:  # R-X4: the approval item's SLA, the РОП's to keep
                fx.watch(
                    Deadline(
                        name=f"approval_{round_no}",
                        due=R.sla_due(workflow.now(), "approval", self.rules),
                        what=fx.text("approval_item_title", document_set=self.s.document_set or ""),
                        kind="approval",
                        workflow_id=child_id,
                        responsible_id=self.rules.people.rop,
                    )
                )
        done = lambda: intents.approval is not None and intents.approval.key == key  # noqa: E731
        await fx.wait(done)
        if not done():
            return None
        result, intents.approval = intents.approval, None
        self.finish(child_id, "done")
        return result

    def approval_running(self) -> ProcessState | None:
        running = [p for p in self.s.processes if p.kind == APPROVAL and p.state == "running"]
        return running[-1] if running else None

    async def decide(self, decision: ApprovalDecision) -> None:
        """The person's decision, forwarded to the running «Согласование» child."""
        child = self.approval_running()
        assert child is not None  # the update's validator checked
        handle = workflow.get_external_workflow_handle_for(InternalApproval.run, child.workflow_id)
        await handle.signal(InternalApproval.decide, decision)

    # ---- the tracked processes (R-X7) ----------------------------------------------------

    async def start_process(self, cmd: StartProcess) -> str:
        """«Заказ Импорт», «Производство», «Закупки» as a tracked child; returns its name."""
        fx = self.fx
        n = fx.bump(f"process:{cmd.kind}")
        child_id = f"deal-{self.s.deal_id}-process-{cmd.kind}-{n}"
        name = fx.text(f"process_{cmd.kind}")
        due = R.sla_due(workflow.now(), "process", self.rules) if self.watching else None
        task = TaskRequest(
            key=fx.key(f"process:{cmd.kind}:{n}"),
            deal_id=self.s.deal_id,
            title=fx.text("task_process", process=name),
            description=fx.text("task_description"),
            responsible_id=self.rules.people.services[PROCESS_SERVICE[cmd.kind]],
            created_by=fx.responsible(),
            deadline=due,
        )
        self.s.processes.append(ProcessState(kind=cmd.kind, workflow_id=child_id))
        await workflow.start_child_workflow(
            DealProcess.run,
            ProcessInput(
                deal_id=self.s.deal_id,
                kind=cmd.kind,
                task=task,
                parent_id=workflow.info().workflow_id,
            ),
            id=child_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
        if due is not None:  # R-X7 / R-X4: the process's SLA, watched
            fx.watch(
                Deadline(
                    name=f"process_{child_id}",
                    due=due,
                    what=name,
                    kind="process",
                    workflow_id=child_id,
                    responsible_id=task.responsible_id,
                )
            )
        return name

    # ---- the logist's task mirrored into 1C (R-X6, R-AC-3) -------------------------------

    async def logist_task(self, purpose: str, template: str) -> None:
        """The logist's task, creator the manager, mirrored into 1C."""
        fx = self.fx
        logist = self.rules.people.logist
        due = R.sla_due(workflow.now(), "service_task", self.rules) if self.watching else None
        task_id = await fx.task(
            purpose, template, responsible=logist, created_by=fx.responsible(), deadline=due
        )
        if task_id and due is not None and f"mirror:{purpose}" not in self.s.done:
            fx.watch(  # R-X4: the logist's task, done when 1C (or a person) completes it
                Deadline(
                    name=f"task_{task_id}",
                    due=due,
                    what=fx.text(template),
                    kind="service_task",
                    task_id=task_id,
                    responsible_id=logist,
                )
            )
        if not task_id or f"mirror:{purpose}" in self.s.done:
            return
        child_id = self._mirror_id(purpose)
        # R-X4: the 1C task's СрокИсполнения (Task_ЗадачаИсполнителя, БСП; onec-real.md) is
        # the Bitrix24 task's DEADLINE, watched above
        onec_due = due if due is not None and patches.patched(LOGIST_DEADLINE) else None
        await workflow.start_child_workflow(
            LogistTaskMirror.run,
            LogistMirrorInput(
                deal_id=self.s.deal_id,
                bitrix_task_id=task_id,
                key=fx.key(f"{purpose}:1c"),
                title=fx.text(template),
                deadline=onec_due,
                responsible_id=logist,
                poll=PollSchedule(first=timedelta(seconds=self.rules.onec_task_poll_seconds)),
                report_signal=SIGNAL_LOGIST_TASK_DONE,
                rop_id=self.rules.people.rop,
                config_problem_text=self._task_config_problem_text(),
                config_retry=timedelta(minutes=self.rules.onec_config_retry_minutes),
            ),
            id=child_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
        self.s.done.append(f"mirror:{purpose}")
        self.s.processes.append(ProcessState(kind=LOGIST_PROCESS, workflow_id=child_id))

    def _task_config_problem_text(self) -> str:
        """The РОП's text for a 1C configuration problem creating the task (`{problem}` left
        for the mirror); rules carried from before the template existed fall back to it."""
        template = self.rules.templates.get(TASK_CONFIG_PROBLEM) or DEFAULT_TEMPLATES.get(
            TASK_CONFIG_PROBLEM, ""
        )
        return R.render(template, deal_id=self.s.deal_id)

    def logist_task_done(self, result: LogistMirrorResult) -> None:
        purpose = result.key.removeprefix(self.fx.key("")).removesuffix(":1c")
        self.finish(self._mirror_id(purpose), "failed" if result.error else "done")
        if result.error:
            self.fx.record(self.s.stage, C.cause("logist_failed", error=result.error))
            return
        self.fx.record(
            self.s.stage, C.cause("logist_done", ref=result.ref, executed=str(result.executed))
        )
        if result.executed and patches.patched(LOGIST_DONE_CLOSES_TASK):
            # the mirror completed the Bitrix24 task too
            key = self.fx.key(purpose)
            self.s.open_tasks = [t for t in self.s.open_tasks if t.key != key]

    def _mirror_id(self, purpose: str) -> str:
        return f"deal-{self.s.deal_id}-1c-{purpose.replace(':', '-')}"

    # ---- bookkeeping ---------------------------------------------------------------------

    def finish(self, workflow_id: str, state: Literal["done", "failed"]) -> None:
        for process in self.s.processes:
            # a child cancelled by the close may still report back: it stays cancelled
            if process.workflow_id == workflow_id and process.state != "cancelled":
                process.state = state

    async def end(self) -> None:
        """Running children of a closed deal are cancelled (they were started ABANDON) — except,
        on WON, the logist's 1C task mirrors: the goods' task lives on in 1C and its progress
        still belongs in Bitrix24 (R-AC-3), so they run until 1C says executed."""
        keep_mirrors = self.s.stage == Stage.WON and patches.patched(WON_KEEPS_LOGIST_MIRRORS)
        cancelled_state = patches.patched(CANCELLED_CHILDREN)
        withdraw = [  # R-LOSE / issue 14: the logist's 1C tasks still open, withdrawn in 1C
            p.workflow_id
            for p in self.s.processes
            if p.kind == LOGIST_PROCESS and p.state == "running" and self.s.stage == Stage.LOSE
        ]
        for process in self.s.processes:
            if keep_mirrors and process.kind == LOGIST_PROCESS:
                continue
            if process.state == "running":
                handle = workflow.get_external_workflow_handle(process.workflow_id)
                with contextlib.suppress(Exception):  # it may have finished already
                    await handle.cancel()
                if cancelled_state:
                    process.state = "cancelled"  # as Temporal shows it
                else:
                    process.state = "failed" if self.s.stage == Stage.LOSE else "done"
        if withdraw and patches.patched(LOSE_CANCELS_1C_TASK):
            await self._withdraw_logist_tasks(withdraw)

    async def _withdraw_logist_tasks(self, workflow_ids: list[str]) -> None:
        """Compensation on LOSE: each open logist task of the deal withdrawn in 1C (marked for
        deletion, the reason written in it), once each; retried while 1C is down."""
        fx = self.fx
        purposes = [d.removeprefix("mirror:") for d in self.s.done if d.startswith("mirror:")]
        reason = R.render(
            self.rules.templates.get(LOSE_TASK_REASON) or DEFAULT_TEMPLATES[LOSE_TASK_REASON],
            deal_id=self.s.deal_id,
        )
        for purpose in purposes:
            if self._mirror_id(purpose) not in workflow_ids:
                continue
            withdrawn = await fx.onec_once(
                f"lose:withdraw_1c:{purpose}",
                act.cancel_onec_task,
                CancelOneCTaskRequest(key=fx.key(f"{purpose}:1c"), reason=reason),
            )
            if withdrawn:
                fx.record(self.s.stage, C.cause("logist_withdrawn", purpose=purpose))
