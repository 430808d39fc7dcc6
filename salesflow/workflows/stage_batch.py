"""Leaving a stage in one activity and one Bitrix24 request (issue 16, items 3 and 5).

Before, `DealEffects.move` ran `update_deal` (STAGE_ID) and then one `complete_task` per
automatic task of the stage left (each a `tasks.task.get` and a `tasks.task.complete`): 1 + N
activities (≈ 3 history events and a workflow task each) and 1 + 2N REST requests per move.
Now `leave_stage` does the same in one activity: one `batch` with the STAGE_ID and the tasks'
statuses, one more with the completions of those still open (salesflow/activities/
bitrix24_batch.py). Behind `workflow.patched(BATCHED_MOVE)`; runs that moved before it keep
the old commands.

What stays as it was: a task mirrored into 1C is 1C's to end; a completion is done once per
task (`complete:<purpose>` in `state.done`); a task Bitrix24 refuses to complete is told to
the РОП as a failed step; a refused STAGE_ID fails the move, as `update_deal` did; the deal's
snapshot follows the STAGE_ID written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio import activity, workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from salesflow.workflows import activity_stubs as act
    from salesflow.workflows.activity_stubs import call
    from salesflow.workflows.batch_models import LeaveStageRequest, LeaveStageResult
    from salesflow.workflows.models import NotifyRequest, OpenTask

if TYPE_CHECKING:
    from salesflow.workflows.deal_effects import DealEffects

BATCHED_MOVE = "lean-batched-move"  # issue 16: STAGE_ID + the left stage's tasks, one batch


@activity.defn(name="leave_stage")
async def leave_stage(req: LeaveStageRequest) -> LeaveStageResult:
    raise NotImplementedError("a stub: the worker registers the real activity of this name")


def _purpose(fx: DealEffects, task: OpenTask) -> str:
    return task.key.removeprefix(fx.key(""))


def pending(fx: DealEffects, keys: list[str]) -> list[OpenTask]:
    """The open tasks of `keys` still to complete here (not mirrored to 1C, not done)."""
    return [
        t
        for t in fx.s.open_tasks
        if t.key in keys
        and f"mirror:{_purpose(fx, t)}" not in fx.s.done
        and f"complete:{_purpose(fx, t)}" not in fx.s.done
    ]


async def leave(fx: DealEffects, stage_id: str | None, keys: list[str]) -> None:
    """Write `stage_id` (None: Bitrix24 has it) and complete the open tasks `keys`. Also
    a КП round's tasks once its answer is in (`DealEffects.complete_tasks`, two or more)."""
    s = fx.s
    tasks = pending(fx, keys)
    if stage_id is None and not tasks:
        return
    request = LeaveStageRequest(
        deal_id=s.deal_id, stage_id=stage_id, task_ids=[t.task_id for t in tasks]
    )
    try:
        result = await call(leave_stage, request)
    except ActivityError as err:
        if stage_id is not None:
            raise  # a STAGE_ID refused for good fails the move, as `update_deal` did
        purposes = ", ".join(_purpose(fx, t) for t in tasks)
        await fx.report_failure(f"complete:{purposes}", err)  # as `once` did per task
        return
    if stage_id is not None and s.deal is not None:
        s.deal.stage_id = stage_id
    completed = set(result.completed)
    for task in tasks:
        purpose = _purpose(fx, task)
        if task.task_id in completed:
            s.done.append(f"complete:{purpose}")
            s.open_tasks = [t for t in s.open_tasks if t.key != task.key]
        elif task.task_id in result.failed:
            await _tell_failure(fx, f"complete:{purpose}", result.failed[task.task_id])


async def _tell_failure(fx: DealEffects, purpose: str, text: str) -> None:
    """As `DealEffects.report_failure` words it, for a command refused inside a batch."""
    fx.record(fx.s.stage, f"{purpose} failed: {text}")
    await fx.once(
        f"failure:{purpose}",
        act.notify_users,
        NotifyRequest(
            key=fx.key(f"failure:{purpose}"),
            user_ids=[fx.rules.people.rop],
            message=f"salesflow: сделка №{fx.s.deal_id}: шаг «{purpose}» не выполнен: {text}",
        ),
    )
