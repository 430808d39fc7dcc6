"""Continue-as-new with people acting (issue 10, item 5), on a real dev server whose
`limit.historyCount.suggestContinueAsNew` is low, so continue-as-new is suggested at every turn.

Each case holds one update in flight (`request_tasks`, its Bitrix24 task held back) while the main
loop waits at continue-as-new, then sends the update under test: every update is answered, its
intent is carried into the new run, and the deal goes on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateHandle, WorkflowUpdateStage
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import (
    AcceptLead,
    DealView,
    KpFeedback,
    LoseDeal,
    MoveStage,
    RejectLead,
    RequestTasks,
)
from salesflow.workflows.names import SEARCH_ATTRIBUTES
from tests.conftest import _binary
from tests.workflows.conftest import deal_running, new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import at_stage, drive_to, until

SUGGEST_AFTER = 10  # history events of a run before continue-as-new is suggested


@pytest.fixture(scope="module")
async def can_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=list(SEARCH_ATTRIBUTES),
        ui=False,
        dev_server_log_level="error",
        dev_server_extra_args=[
            "--dynamic-config-value",
            f"limit.historyCount.suggestContinueAsNew={SUGGEST_AFTER}",
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@asynccontextmanager
async def running(env: WorkflowEnvironment, portal: FakePortal) -> AsyncIterator[WorkflowHandle]:
    async with deal_running(env, portal) as handle:
        try:
            yield handle
        finally:  # the held handler's activity lets go before the worker stops
            if portal.request_gate is not None:
                portal.request_gate.set()


async def run_length(handle: WorkflowHandle[Any, Any]) -> tuple[str, int]:
    """The current run's ID and its number of history events."""
    described = await handle.describe()
    return described.run_id, described.history_length


async def hold_a_handler(
    handle: WorkflowHandle[Any, Any], portal: FakePortal
) -> WorkflowUpdateHandle:
    portal.request_gate = asyncio.Event()
    return await handle.start_update(
        DealWorkflow.request_tasks,
        RequestTasks(engineers=True),
        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
    )


async def answered(*updates: WorkflowUpdateHandle) -> list[DealView]:
    return [await u.result() for u in updates]


Send = Callable[[WorkflowHandle[Any, Any]], Any]


def send(update: Any, arg: Any) -> Send:
    async def start(handle: WorkflowHandle[Any, Any]) -> WorkflowUpdateHandle:
        return await handle.start_update(update, arg, wait_for_stage=WorkflowUpdateStage.ACCEPTED)

    return start


@pytest.mark.parametrize(
    ("sends", "target"),
    [
        ([send(DealWorkflow.accept_lead, AcceptLead(manager_id=3))], "IN_WORK"),
        ([send(DealWorkflow.reject_lead, RejectLead(reason="Нецелевой запрос"))], "LOSE"),
        ([send(DealWorkflow.lose_deal, LoseDeal(reason="NO_MONEY"))], "LOSE"),
    ],
    ids=["accept_lead", "reject_lead", "lose_deal"],
)
async def test_update_at_new_while_continue_as_new_waits_for_another_handler(
    can_env: WorkflowEnvironment, sends: list[Send], target: str
) -> None:
    portal = FakePortal(new_deal(7001))
    portal.fetch_gate = asyncio.Event()
    async with running(can_env, portal) as handle:
        held = await hold_a_handler(handle, portal)
        portal.fetch_gate.set()
        # The deal entered NEW; the main loop is at continue-as-new, held by `request_tasks`.
        await until(handle, lambda v: bool(v.history))
        first_run, events = await run_length(handle)
        assert events >= SUGGEST_AFTER
        updates = [await s(handle) for s in sends]
        portal.request_gate.set()  # type: ignore[union-attr]
        await answered(held, *updates)
        view = await at_stage(handle, target)
        assert (await handle.describe()).run_id != first_run
    assert view.stage == target
    if target == "IN_WORK":
        assert view.manager_id == 3


@pytest.mark.parametrize(
    ("sends", "target"),
    [
        ([send(DealWorkflow.kp_feedback, KpFeedback(agreed=True))], "CONTRACT"),
        ([send(DealWorkflow.move_stage, MoveStage(to="IN_WORK"))], "IN_WORK"),
        ([send(DealWorkflow.lose_deal, LoseDeal(reason="COMPETITOR"))], "LOSE"),
        (
            [
                send(DealWorkflow.kp_feedback, KpFeedback(agreed=False)),
                send(DealWorkflow.lose_deal, LoseDeal(reason="TOO_LONG")),
            ],
            "LOSE",
        ),
    ],
    ids=["kp_feedback", "move_stage", "lose_deal", "kp_feedback+lose_deal"],
)
async def test_update_at_kp_while_continue_as_new_waits_for_another_handler(
    can_env: WorkflowEnvironment, sends: list[Send], target: str
) -> None:
    portal = FakePortal(new_deal(7002))
    async with running(can_env, portal) as handle:
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: v.kp_round > 0)
        held = await hold_a_handler(handle, portal)
        await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=False))
        # Round 1's objection task is open: the main loop is at continue-as-new, held by
        # `request_tasks`.
        await until(handle, lambda v: any("objection" in t.key for t in v.open_tasks))
        first_run, events = await run_length(handle)
        assert events >= SUGGEST_AFTER
        updates = [await s(handle) for s in sends]
        portal.request_gate.set()  # type: ignore[union-attr]
        await answered(held, *updates)
        view = await at_stage(handle, target)
        assert (await handle.describe()).run_id != first_run
    assert view.stage == target
    if target == "CONTRACT":
        assert "КП feedback round 2: agreed" in [h.cause for h in view.history]
    if len(sends) == 2:
        assert "КП feedback round 2: not agreed" in [h.cause for h in view.history]
