"""`LogistTaskMirror`: the logist's Bitrix24 task mirrored into 1C (R-X6, R-AC-3).

It creates the 1C task (marker = the key), then polls 1C with backoff — `first`, doubling
while nothing changes, at most `longest`, back to `first` after a change — and shows the
progress in the Bitrix24 task: accepted → started, each new line of РезультатВыполнения →
a comment, executed → completed. It returns when 1C says executed.

No comment is written twice: the lines already mirrored travel in `MirrorProgress`
through continue-as-new, and the activity also skips texts the task already has.
Outages of 1C or Bitrix24 are retried without end (`ONEC_RETRY`); a permanent failure —
the 1C task cannot be created or is gone — is reported to the parent (`error`) and fails
the mirror; a Bitrix24 task that is gone only stops the reflecting, 1C is still followed.
A 1C configuration problem creating the task is told to the РОП once and creating is retried
every `config_retry`, or at once on `onec_configuration_fixed` (docs/ONEC.md).
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

from salesflow.workflows import patches

MIRROR_CONFIG_RETRY = "mirror-onec-config-retry"

with workflow.unsafe.imports_passed_through():
    from salesflow.workflows import activity_stubs as act
    from salesflow.workflows.models import NotifyRequest
    from salesflow.workflows.names import SIGNAL_ONEC_CONFIG_FIXED
    from salesflow.workflows.onec_models import (
        LOGIST_TASK_MIRROR,
        CreateOneCTaskRequest,
        LogistMirrorInput,
        LogistMirrorResult,
        MirrorProgress,
        OneCTaskStatus,
        ReflectProgressRequest,
    )
    from salesflow.workflows.outage import ONEC_RETRY, ONEC_TIMEOUT, is_configuration_problem

BITRIX24_TIMEOUT = timedelta(seconds=60)


@workflow.defn(name=LOGIST_TASK_MIRROR)
class LogistTaskMirror:
    @workflow.init
    def __init__(self, inp: LogistMirrorInput) -> None:
        self.inp = inp
        self.progress = inp.progress or MirrorProgress()
        self._fixed = 0  # `onec_configuration_fixed` signals seen

    @workflow.signal(name=SIGNAL_ONEC_CONFIG_FIXED)
    def onec_configuration_fixed(self) -> None:
        self._fixed += 1

    @workflow.run
    async def run(self, inp: LogistMirrorInput) -> LogistMirrorResult:
        p = self.progress
        while p.ref is None:
            try:
                p.ref = await self._create()
            except ActivityError as err:  # only non-retryable failures get here
                if is_configuration_problem(err) and patches.patched(MIRROR_CONFIG_RETRY):
                    await self._wait_for_onec_fix(err)
                    continue
                await self._report(self._result(executed=False, error=_reason(err)))
                raise
        run_polls = 0
        while True:
            try:
                status = await workflow.execute_activity(
                    act.read_onec_task,
                    p.ref,
                    start_to_close_timeout=ONEC_TIMEOUT,
                    retry_policy=ONEC_RETRY,
                )
            except ActivityError as err:  # e.g. the task was deleted in 1C
                await self._report(self._result(executed=False, error=_reason(err)))
                raise
            p.polls += 1
            run_polls += 1
            changed = await self._reflect(status)
            if status.executed:
                return await self._finish(status)
            p.delay = self._next_delay(changed)
            workflow.set_current_details(
                f"1C task {p.ref}: {len(p.mirrored)} comment(s) mirrored, next poll in {p.delay}"
            )
            await workflow.sleep(p.delay, summary="next 1C poll")
            if (
                workflow.info().is_continue_as_new_suggested()
                or run_polls >= inp.poll.polls_per_run
            ):
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(inp.model_copy(update={"progress": p}))

    @workflow.query
    def state(self) -> MirrorProgress:
        return self.progress

    async def _wait_for_onec_fix(self, err: ActivityError) -> None:
        p, inp = self.progress, self.inp
        if not p.told and inp.rop_id and inp.config_problem_text:
            await workflow.execute_activity(
                act.notify_users,
                NotifyRequest(
                    key=f"{inp.key}:configuration_problem",
                    user_ids=[inp.rop_id],
                    message=inp.config_problem_text.replace("{problem}", _reason(err)),
                ),
                start_to_close_timeout=BITRIX24_TIMEOUT,
                retry_policy=ONEC_RETRY,
            )
        p.told = True
        workflow.set_current_details(f"1C configuration problem: {_reason(err)}")
        seen = self._fixed
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._fixed > seen,
                timeout=inp.config_retry,
                timeout_summary="retry after the 1C configuration fix",
            )

    async def _create(self) -> str:
        inp = self.inp
        return await workflow.execute_activity(
            act.create_onec_task,
            CreateOneCTaskRequest(
                key=inp.key,
                deal_id=inp.deal_id,
                bitrix_task_id=inp.bitrix_task_id,
                title=inp.title,
                description=inp.description,
                deadline=inp.deadline,
                responsible_id=inp.responsible_id,
                executor=inp.executor,
            ),
            start_to_close_timeout=ONEC_TIMEOUT,
            retry_policy=ONEC_RETRY,
        )

    async def _reflect(self, status: OneCTaskStatus) -> bool:
        """Show what is new in 1C in the Bitrix24 task; True when something was new."""
        p = self.progress
        seen = set(p.mirrored)
        new = [line for line in dict.fromkeys(status.comments) if line not in seen]
        start = status.accepted and not p.started
        if not (new or start or status.executed):
            return False
        if p.reflect_error is None:
            try:
                await workflow.execute_activity(
                    act.reflect_task_progress,
                    ReflectProgressRequest(
                        key=self.inp.key,
                        bitrix_task_id=self.inp.bitrix_task_id,
                        status=status,
                        new_comments=new,
                    ),
                    start_to_close_timeout=BITRIX24_TIMEOUT,
                    retry_policy=ONEC_RETRY,
                )
            except ActivityError as err:  # e.g. the Bitrix24 task was deleted
                p.reflect_error = _reason(err)
                workflow.logger.warning("Bitrix24 task %s: %s", self.inp.bitrix_task_id, err)
        p.mirrored.extend(new)
        p.started = p.started or status.accepted
        return True

    def _next_delay(self, changed: bool) -> timedelta:
        poll = self.inp.poll
        previous = self.progress.delay
        if changed or previous is None:
            return poll.first
        return min(previous * poll.factor, poll.longest)

    async def _finish(self, status: OneCTaskStatus) -> LogistMirrorResult:
        result = self._result(status.executed, self.progress.reflect_error)
        await self._report(result)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    def _result(self, executed: bool, error: str | None = None) -> LogistMirrorResult:
        return LogistMirrorResult(
            key=self.inp.key,
            bitrix_task_id=self.inp.bitrix_task_id,
            ref=self.progress.ref or "",
            executed=executed,
            comments=list(self.progress.mirrored),
            error=error,
        )

    async def _report(self, result: LogistMirrorResult) -> None:
        """Signal the result to the parent (by workflow ID: it may have continued-as-new)."""
        parent = workflow.info().parent
        if not self.inp.report_signal or parent is None:
            return
        try:
            await workflow.get_external_workflow_handle(parent.workflow_id).signal(
                self.inp.report_signal, result
            )
        except FailureError as err:  # the deal's workflow has closed meanwhile
            workflow.logger.warning("cannot report to %s: %s", parent.workflow_id, err)


def _reason(err: ActivityError) -> str:
    cause = err.cause
    return str(cause.message if isinstance(cause, ApplicationError) else cause or err)
