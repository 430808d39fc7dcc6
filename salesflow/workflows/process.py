"""`DealProcess`: a tracked sub-process of a deal — «Заказ Импорт», «Производство», «Закупки»
(R-X7). It sets the responsible service's task, linked to the deal, follows it to completion
and signals the deal (`process_done`)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from salesflow.workflows import activity_stubs as act
    from salesflow.workflows.activity_stubs import call
    from salesflow.workflows.models import ProcessInput, ProcessResult
    from salesflow.workflows.names import SIGNAL_PROCESS_DONE, TASK_COMPLETED


@workflow.defn(name="DealProcess")
class DealProcess:
    @workflow.run
    async def run(self, inp: ProcessInput) -> ProcessResult:
        task_id = await call(act.create_task, inp.task, summary=False)
        while True:
            status = await call(act.read_task_status, task_id, summary=False)
            if status == TASK_COMPLETED:
                break
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(inp)
            await workflow.sleep(timedelta(minutes=inp.poll_minutes), summary="follow the task")
        result = ProcessResult(
            kind=inp.kind, workflow_id=workflow.info().workflow_id, task_id=task_id, done=True
        )
        await workflow.get_external_workflow_handle(inp.parent_id).signal(
            SIGNAL_PROCESS_DONE, result
        )
        return result
