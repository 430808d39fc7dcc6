from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from salesflow.config.settings import Settings
from salesflow.config.snapshot import build_rules
from salesflow.worker import WORKFLOW_FAILURE_EXCEPTION_TYPES, WORKFLOWS
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import DealInput, DealRules, DealSnapshot
from salesflow.workflows.sandbox import workflow_runner
from tests.workflows.doubles import FakePortal


def calendar_rules(**rule_overrides: object) -> DealRules:
    """Rules with calendar-time deadlines, so tests don't depend on today's weekday."""
    settings = Settings.model_validate(
        {
            "rules": {
                "take_into_work": {"minutes": 60, "working_time": False},
                "kp_feedback_task": {"minutes": 60, "working_time": False},
                "reminders": {"working_hours_only": False},
                **rule_overrides,
            }
        }
    )
    return build_rules(settings)


def new_deal(deal_id: int, **fields: object) -> DealSnapshot:
    return DealSnapshot(
        id=deal_id,
        title=f"Поставка оборудования #{deal_id}",
        stage_id="C1:NEW",
        category_id=1,
        assigned_by_id=1,
        amount=640000.0,
        fields={k: v for k, v in fields.items()},  # type: ignore[misc]
    )


async def _terminate_all(env: WorkflowEnvironment, handle) -> None:
    """Leave nothing running: a workflow whose worker is gone would stop time skipping."""
    with contextlib.suppress(Exception):
        view = await handle.query(DealWorkflow.state)
        for process in view.processes:
            with contextlib.suppress(Exception):
                await env.client.get_workflow_handle(process.workflow_id).terminate()
    with contextlib.suppress(Exception):
        await handle.terminate()


@asynccontextmanager
async def deal_running(
    env: WorkflowEnvironment,
    portal: FakePortal,
    rules: DealRules | None = None,
    workflow_id: str | None = None,
    **inp: Any,
) -> AsyncIterator:
    """A worker with the product's workflows and `portal`'s doubles, and a deal started on it
    (as `workflow_id`, else a unique id); everything the deal started is terminated after."""
    queue = f"test-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=WORKFLOWS,
        activities=portal.activities(),
        workflow_failure_exception_types=WORKFLOW_FAILURE_EXCEPTION_TYPES,
        workflow_runner=workflow_runner(),
    ):
        rules = rules or calendar_rules()
        if portal.people is None:  # the configuration's people: those of the rules
            portal.people = rules.people.model_copy(deep=True)
        handle = await env.client.start_workflow(
            DealWorkflow.run,
            DealInput(deal_id=portal.deal.id, rules=rules, **inp),
            id=workflow_id or f"deal-{portal.deal.id}-{uuid.uuid4().hex[:6]}",
            task_queue=queue,
        )
        try:
            yield handle
        finally:
            await _terminate_all(env, handle)


@pytest.fixture
def run_deal(skip_env: WorkflowEnvironment) -> Callable:
    def start(portal: FakePortal, rules: DealRules | None = None, **inp: Any):
        return deal_running(skip_env, portal, rules, **inp)

    return start
