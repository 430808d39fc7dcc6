"""`DealProcess`: a tracked sub-process of a deal — «Заказ Импорт», «Производство», «Закупки»
(R-X7). It sets the responsible service's task, linked to the deal, follows it to completion
and signals the deal (`process_done`)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from salesflow.workflows.deal_effects import ACTIVITY_TIMEOUT, RETRY, TASK_COMPLETED
    from salesflow.workflows.models import ProcessInput, ProcessResult


@workflow.defn(name="DealProcess")
class DealProcess:
    @workflow.run
    async def run(self, inp: ProcessInput) -> ProcessResult:
        task_id: int = await workflow.execute_activity(
            "create_task",
            inp.task,
            result_type=int,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )
        while True:
            status: str = await workflow.execute_activity(
                "read_task_status",
                task_id,
                result_type=str,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY,
            )
            if status == TASK_COMPLETED:
                break
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(inp)
            await workflow.sleep(timedelta(minutes=inp.poll_minutes), summary="follow the task")
        result = ProcessResult(
            kind=inp.kind, workflow_id=workflow.info().workflow_id, task_id=task_id, done=True
        )
        await workflow.get_external_workflow_handle(inp.parent_id).signal("process_done", result)
        return result
