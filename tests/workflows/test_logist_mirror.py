"""`LogistTaskMirror` (R-X6, R-AC-3): the logist's task mirrored into 1C, progress shown in
Bitrix24 — on the real dev server with the real activities against both emulators, and on
the time-skipping server with test doubles for the polling schedule."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():  # the probe workflow below is sandboxed
    from salesflow.activities.onec import TASKS, task_key_in, task_ref_for
    from tests.activities.systems import Systems, running_systems
from salesflow.workflows.logist_mirror import LogistTaskMirror
from salesflow.workflows.onec_models import (
    CREATE_ONEC_TASK,
    LOGIST_TASK_MIRROR,
    READ_ONEC_TASK,
    REFLECT_TASK_PROGRESS,
    CreateOneCTaskRequest,
    LogistMirrorInput,
    LogistMirrorResult,
    OneCTaskStatus,
    PollSchedule,
    ReflectProgressRequest,
    ReflectProgressResult,
)
from salesflow.workflows.sandbox import workflow_runner


@pytest.fixture
async def systems() -> AsyncIterator[Systems]:
    async with running_systems() as running:
        yield running


async def eventually(check: Callable[[], object], timeout: float = 15.0) -> object:
    async with asyncio.timeout(timeout):
        while not (value := check()):
            await asyncio.sleep(0.05)
    return value


async def test_r_ac_3_logist_completes_in_1c_and_the_bitrix24_task_follows(
    dev_env: WorkflowEnvironment, systems: Systems
) -> None:
    s = systems
    deal_id = await s.new_deal()
    task_id = await s.new_task(deal_id)
    key = f"deal:{deal_id}:ac:ship_goods:1c"
    queue = f"mirror-{uuid.uuid4()}"
    fast = PollSchedule(
        first=timedelta(milliseconds=200),
        longest=timedelta(milliseconds=800),
        polls_per_run=3,  # continue-as-new every few polls, to prove nothing is doubled
    )
    async with Worker(
        dev_env.client,
        task_queue=queue,
        workflows=[LogistTaskMirror],
        activities=s.activities.all(),
        workflow_runner=workflow_runner(),
    ):
        handle = await dev_env.client.start_workflow(
            LogistTaskMirror.run,
            LogistMirrorInput(
                deal_id=deal_id,
                bitrix_task_id=task_id,
                key=key,
                title="Отгрузить товар клиенту",
                responsible_id=5,
                poll=fast,
            ),
            id=f"deal-{deal_id}-logist-task-{task_id}",
            task_queue=queue,
        )
        found = await eventually(lambda: s.base.find(TASKS, Ref_Key=task_ref_for(key)))
        ref = found[0]["Ref_Key"]  # type: ignore[index]
        await s.admin(f"/tasks/{ref}/accept")
        await s.admin(f"/tasks/{ref}/comment", {"text": "Машина заказана на завтра"})
        await eventually(lambda: s.portal.task_comments[task_id])
        # In progress once accepted in 1C (the same activity writes the comment, then the status).
        await eventually(lambda: s.portal.tasks[task_id]["STATUS"] == "3")
        first_run = handle.first_execution_run_id or handle.result_run_id

        async def continued() -> bool:
            return (await handle.describe()).run_id != first_run

        async with asyncio.timeout(15):
            while not await continued():
                await asyncio.sleep(0.1)
        await s.admin(f"/tasks/{ref}/complete", {"comment": "Отгружено, ТТН 123"})
        result = await asyncio.wait_for(handle.result(), timeout=20)

    assert result.executed and result.ref == ref and len(result.comments) == 2
    assert s.portal.tasks[task_id]["STATUS"] == "5"
    messages = [c["POST_MESSAGE"] for c in s.portal.task_comments[task_id]]
    assert messages == [f"Из 1С: {line}" for line in result.comments]
    assert messages[0].endswith("Машина заказана на завтра")
    assert messages[1].endswith("Отгружено, ТТН 123")
    assert [task_key_in(t["Описание"]) for t in s.base.all(TASKS)] == [key]


@dataclass
class ScriptedLogist:
    """A 1C task whose state follows a script of (time since creation, change) steps."""

    script: list[tuple[timedelta, str]]
    created: datetime | None = None
    reads: list[timedelta] = field(default_factory=list)
    posted: list[str] = field(default_factory=list)
    completed: bool = False
    refuse_create: bool = False
    bitrix24_task_gone: bool = False

    def status(self, now: datetime) -> OneCTaskStatus:
        assert self.created is not None
        elapsed = now - self.created
        self.reads.append(elapsed)
        happened = [change for at, change in self.script if at <= elapsed]
        comments = [c for c in happened if c not in ("accept", "done")]
        return OneCTaskStatus(
            ref="task-ref",
            executed="done" in happened,
            accepted="accept" in happened or "done" in happened,
            comments=comments,
        )

    def activities(self) -> list:
        logist = self

        @activity.defn(name=CREATE_ONEC_TASK)
        async def create_onec_task(req: CreateOneCTaskRequest) -> str:
            if logist.refuse_create:
                raise ApplicationError("1C user not found", type="1C.NoUser", non_retryable=True)
            logist.created = logist.created or activity.info().current_attempt_scheduled_time
            return "task-ref"

        @activity.defn(name=READ_ONEC_TASK)
        async def read_onec_task(ref: str) -> OneCTaskStatus:
            return logist.status(activity.info().current_attempt_scheduled_time)

        @activity.defn(name=REFLECT_TASK_PROGRESS)
        async def reflect_task_progress(req: ReflectProgressRequest) -> ReflectProgressResult:
            if logist.bitrix24_task_gone:
                raise ApplicationError("task is gone", type="BitrixTaskMissing", non_retryable=True)
            logist.posted.extend(req.new_comments)  # a double without dedup: doubles would show
            logist.completed = logist.completed or req.status.executed
            return ReflectProgressResult(
                comments_added=len(req.new_comments), completed=req.status.executed
            )

        return [create_onec_task, read_onec_task, reflect_task_progress]


async def test_r_x6_polls_back_off_to_30_minutes_and_mirror_each_comment_once(
    skip_env: WorkflowEnvironment,
) -> None:
    logist = ScriptedLogist(
        [
            (timedelta(minutes=10), "accept"),
            (timedelta(minutes=10), "10:00 Логистов: машина заказана"),
            (timedelta(hours=3), "13:00 Логистов: отгружено"),
            (timedelta(hours=3), "done"),
        ]
    )
    queue = f"mirror-{uuid.uuid4()}"
    async with Worker(
        skip_env.client,
        task_queue=queue,
        workflows=[LogistTaskMirror],
        activities=logist.activities(),
        workflow_runner=workflow_runner(),
    ):
        handle = await skip_env.client.start_workflow(
            LogistTaskMirror.run,
            LogistMirrorInput(
                deal_id=7,
                bitrix_task_id=70,
                key="deal:7:ac:ship_goods:1c",
                title="Отгрузить товар клиенту",
                poll=PollSchedule(polls_per_run=4),
            ),
            id=f"mirror-{uuid.uuid4()}",
            task_queue=queue,
        )
        result = await handle.result()
        last_run = (await handle.describe()).run_id

    assert last_run != handle.result_run_id  # it continued-as-new on the way
    assert result.executed and logist.completed
    assert logist.posted == ["10:00 Логистов: машина заказана", "13:00 Логистов: отгружено"]
    assert result.comments == logist.posted
    # 1, 2, 4, 8, 16, 30, 30 … minutes between quiet polls: about a dozen reads in 3 hours.
    gaps = [b - a for a, b in zip(logist.reads, logist.reads[1:], strict=False)]
    assert len(logist.reads) <= 16, logist.reads
    assert max(gaps) <= timedelta(minutes=30, seconds=5)
    assert gaps[0] <= timedelta(minutes=1, seconds=5)


@workflow.defn(name="MirrorParentProbe")
class MirrorParentProbe:
    """A stand-in for DealWorkflow: starts the mirror (ABANDON) and waits for its report."""

    def __init__(self) -> None:
        self.report: LogistMirrorResult | None = None

    @workflow.run
    async def run(self, inp: LogistMirrorInput) -> LogistMirrorResult:
        await workflow.start_child_workflow(
            LOGIST_TASK_MIRROR,
            inp.model_copy(update={"report_signal": "logist_task_done"}),
            id=f"{workflow.info().workflow_id}-mirror",
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
        await workflow.wait_condition(lambda: self.report is not None)
        assert self.report is not None
        return self.report

    @workflow.signal
    def logist_task_done(self, result: LogistMirrorResult) -> None:
        self.report = result


async def _through_parent(env: WorkflowEnvironment, logist: ScriptedLogist) -> LogistMirrorResult:
    queue = f"mirror-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[MirrorParentProbe, LogistTaskMirror],
        activities=logist.activities(),
        workflow_runner=workflow_runner(),
    ):
        return await env.client.execute_workflow(
            MirrorParentProbe.run,
            LogistMirrorInput(
                deal_id=8, bitrix_task_id=80, key="deal:8:ship:1c", title="Отгрузить"
            ),
            id=f"deal-probe-{uuid.uuid4()}",
            task_queue=queue,
        )


async def test_the_parent_hears_when_the_1c_task_cannot_be_created(
    skip_env: WorkflowEnvironment,
) -> None:
    report = await _through_parent(skip_env, ScriptedLogist([], refuse_create=True))
    assert not report.executed and report.ref == ""
    assert report.error == "1C user not found"


async def test_a_deleted_bitrix24_task_does_not_stop_following_1c(
    skip_env: WorkflowEnvironment,
) -> None:
    logist = ScriptedLogist(
        [(timedelta(minutes=5), "10:00 Логистов: еду"), (timedelta(hours=1), "done")],
        bitrix24_task_gone=True,
    )
    report = await _through_parent(skip_env, logist)
    assert report.executed and report.ref == "task-ref"
    assert report.error == "task is gone"
    assert report.comments == ["10:00 Логистов: еду"]
