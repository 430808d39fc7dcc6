"""Rolling deploys (issue 10, item 6): an older worker reads what a newer one wrote — a deal's
state carried through continue-as-new, activity results, signals and updates with fields it does
not know — and goes on, ignoring them."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from salesflow.worker import WORKFLOWS
from salesflow.workflows.models import DealInput, Stage
from salesflow.workflows.sandbox import workflow_runner
from tests.workflows.conftest import _terminate_all, calendar_rules, new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import until

HISTORY = Path(__file__).resolve().parents[1] / "histories" / "full-lifecycle-deal.json"
NEWER = {"added_by_a_newer_worker": {"any": ["shape"]}}


def newer_state(deal_id: int) -> dict[str, Any]:
    """A deal at IN_WORK as a newer worker hands it over in continue-as-new: fields this worker
    does not know at every level, and a person's move to KP not yet taken."""
    rules = calendar_rules().model_dump(mode="json")
    deal = new_deal(deal_id).model_dump(mode="json") | {"stage_id": "C1:PREPARATION"}
    return {
        "deal_id": deal_id,
        "rules": rules | NEWER,
        "state": {
            "deal_id": deal_id,
            "stage": "IN_WORK",
            "manager_id": 3,
            "deal": deal | NEWER,
            "stage_entered_at": "2026-12-01T07:00:00Z",
            "history": [
                {"at": "2026-12-01T07:00:00Z", "stage": "IN_WORK", "cause": "accepted"} | NEWER
            ],
            "intents": {"moved_to": "KP"} | NEWER,
            "counters": {"deal_reads": 1},
        }
        | NEWER,
    } | NEWER


def test_a_newer_state_decodes_with_its_unknown_fields_ignored() -> None:
    inp = DealInput.model_validate_json(json.dumps(newer_state(2701)))
    assert inp.state is not None
    assert inp.state.stage is Stage.IN_WORK
    assert inp.state.intents.moved_to is Stage.KP
    assert "added_by_a_newer_worker" not in inp.state.model_dump_json()


async def test_a_newer_state_carried_into_this_worker_goes_on(
    skip_env: WorkflowEnvironment,
) -> None:
    portal = FakePortal(new_deal(2702))
    queue = f"test-{uuid.uuid4()}"
    async with Worker(
        skip_env.client,
        task_queue=queue,
        workflows=WORKFLOWS,
        activities=portal.activities(),
        workflow_failure_exception_types=[Exception],
        workflow_runner=workflow_runner(),
    ):
        handle = await skip_env.client.start_workflow(
            "DealWorkflow",
            newer_state(2702),
            id=f"deal-2702-{uuid.uuid4().hex[:6]}",
            task_queue=queue,
        )
        try:
            view = await until(handle, lambda v: v.stage == "KP" and v.kp_round == 1)
        finally:
            await _terminate_all(skip_env, handle)
    assert view.history[0].cause == "accepted"  # the carried history goes on
    assert view.manager_id == 3


def _with_unknown_fields(data: dict[str, Any]) -> int:
    """Add a field to every JSON object payload in the history (inputs, activity results,
    signals, updates) and to the rules in the workflow's input; returns how many."""
    changed = 0

    def visit(node: Any) -> None:
        nonlocal changed
        if isinstance(node, dict):
            if "data" in node and isinstance(node.get("metadata"), dict):
                value = json.loads(base64.b64decode(node["data"]))
                if isinstance(value, dict):
                    if isinstance(value.get("rules"), dict):
                        value["rules"] |= NEWER
                    node["data"] = base64.b64encode(json.dumps(value | NEWER).encode()).decode()
                    changed += 1
                return
            for child in node.values():
                visit(child)
        elif isinstance(node, list):
            for child in node:
                visit(child)

    visit(data["events"])
    return changed


async def test_a_history_whose_payloads_carry_unknown_fields_replays() -> None:
    data = json.loads(HISTORY.read_text(encoding="utf-8"))
    assert _with_unknown_fields(data) > 100
    replayer = Replayer(
        workflows=WORKFLOWS,
        workflow_runner=workflow_runner(),
        data_converter=pydantic_data_converter,
    )
    await replayer.replay_workflow(WorkflowHistory.from_json("with-unknown-fields", data))
