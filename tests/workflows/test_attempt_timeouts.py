"""A deployment's bound on activity attempts (`temporal.activity_attempt_seconds`): a worker
killed mid-activity leaves its attempt to this timeout, so it decides how soon Temporal retries
elsewhere. The bound lowers the workflows' own timeouts and never raises them."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from salesflow.config.settings import Settings
from salesflow.worker import WORKFLOWS, worker_interceptors
from salesflow.workflows.attempt_timeouts import AttemptTimeouts
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import AcceptLead, DealInput
from salesflow.workflows.sandbox import workflow_runner
from tests.workflows.conftest import calendar_rules, new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import until


async def _attempt_timeouts(env: WorkflowEnvironment, bound: timedelta | None) -> set[float]:
    portal = FakePortal(new_deal(2701))
    queue = f"test-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=WORKFLOWS,
        activities=portal.activities(),
        workflow_runner=workflow_runner(),
        interceptors=[AttemptTimeouts(bound)] if bound else [],
    ):
        handle = await env.client.start_workflow(
            DealWorkflow.run,
            DealInput(deal_id=portal.deal.id, rules=calendar_rules()),
            id=f"deal-{portal.deal.id}-{uuid.uuid4().hex[:6]}",
            task_queue=queue,
        )
        await until(handle, lambda v: bool(v.deadlines))
        await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=3))
        history = await handle.fetch_history()
        await handle.terminate()
    scheduled = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    return {
        e.activity_task_scheduled_event_attributes.start_to_close_timeout.ToTimedelta().total_seconds()
        for e in history.events
        if e.event_type == scheduled
    }


async def test_the_bound_lowers_every_attempt_timeout(skip_env: WorkflowEnvironment) -> None:
    assert await _attempt_timeouts(skip_env, None) == {60.0}
    assert await _attempt_timeouts(skip_env, timedelta(seconds=20)) == {20.0}


async def test_the_bound_never_raises_a_workflow_timeout(skip_env: WorkflowEnvironment) -> None:
    assert await _attempt_timeouts(skip_env, timedelta(minutes=5)) == {60.0}


def test_the_worker_takes_the_bound_from_temporal_activity_attempt_seconds() -> None:
    assert worker_interceptors(Settings()) == []
    (bound,) = worker_interceptors(
        Settings.model_validate({"temporal": {"activity_attempt_seconds": 20}})
    )
    assert isinstance(bound, AttemptTimeouts) and bound.bound == timedelta(seconds=20)
