"""Bitrix24 activities that do a stage's independent effects in one `batch` request (issue 16,
item 5: REST requests per lifecycle; item 3: one activity instead of one per effect).

`batch` runs up to 50 commands in one HTTP request and answers each command on its own
(`result` / `result_error` by key — Bitrix24 REST docs, "batch"; the client splits them back,
`Bitrix24Client.batch`). A command refused for good is reported per command; a retryable
refusal of any command, or a request whose answer was lost, fails the activity retryably:
every command here is safe to repeat (a STAGE_ID written again, a task read before it is
completed), so Temporal's retry is the unknown-outcome handling.
"""

from __future__ import annotations

from typing import Any

from temporalio import activity

from salesflow.activities.errors import remote_errors
from salesflow.integrations.bitrix24.client import BatchResult, Bitrix24Client
from salesflow.workflows.batch_models import LeaveStageRequest, LeaveStageResult
from salesflow.workflows.names import TASK_COMPLETED


def _raise_retryable(outcome: BatchResult) -> None:
    for err in outcome.errors.values():
        if err.retryable:
            with remote_errors():
                raise err


def _status(answer: Any) -> str:
    """A task's STATUS from `tasks.task.get`; no task (deleted) counts as completed."""
    task = answer.get("task") if isinstance(answer, dict) else None
    return str(task.get("status")) if task else TASK_COMPLETED


class Bitrix24Batch:
    """Mixed into `Bitrix24Activities`, which holds the client and registers these."""

    client: Bitrix24Client

    async def _statuses(self, task_ids: list[int]) -> dict[int, str]:
        with remote_errors():
            outcome = await self.client.batch(
                {
                    f"t{tid}": ("tasks.task.get", {"taskId": tid, "select": ["ID", "STATUS"]})
                    for tid in task_ids
                }
            )
        _raise_retryable(outcome)
        return {tid: _status(outcome.result.get(f"t{tid}")) for tid in task_ids}

    @activity.defn(name="leave_stage")
    async def leave_stage(self, req: LeaveStageRequest) -> LeaveStageResult:
        """The new STAGE_ID and the left stage's tasks' statuses in one request, then the
        completions of those still open in one more (none when all are done)."""
        commands: dict[str, tuple[str, dict[str, Any]]] = {}
        if req.stage_id is not None:
            commands["deal"] = (
                "crm.deal.update",
                {"id": req.deal_id, "fields": {"STAGE_ID": req.stage_id}},
            )
        for tid in req.task_ids:
            commands[f"t{tid}"] = ("tasks.task.get", {"taskId": tid, "select": ["ID", "STATUS"]})
        result = LeaveStageResult()
        if not commands:
            return result
        with remote_errors():
            first = await self.client.batch(commands)
        _raise_retryable(first)
        if "deal" in first.errors:
            with remote_errors():
                raise first.errors["deal"]
        open_ids: list[int] = []
        for tid in req.task_ids:
            if f"t{tid}" in first.errors:
                open_ids.append(tid)  # unreadable: try to complete it, its answer decides
            elif _status(first.result.get(f"t{tid}")) == TASK_COMPLETED:
                result.completed.append(tid)
            else:
                open_ids.append(tid)
        if not open_ids:
            return result
        with remote_errors():
            done = await self.client.batch(
                {f"c{tid}": ("tasks.task.complete", {"taskId": tid}) for tid in open_ids}
            )
        _raise_retryable(done)
        refused = [tid for tid in open_ids if f"c{tid}" in done.errors]
        again = await self._statuses(refused) if refused else {}
        for tid in open_ids:
            if tid not in refused or again.get(tid) == TASK_COMPLETED:
                result.completed.append(tid)  # completed now, or by a person meanwhile
            else:
                err = done.errors[f"c{tid}"]
                result.failed[tid] = f"Bitrix24 {err.code or 'error'}: {err.description}"
        return result
