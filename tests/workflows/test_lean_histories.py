"""Lean histories (issue 16 item 3): one generation marker per run instead of one marker per
patch name (salesflow/workflows/patches.py), and a rules snapshot that carries only the
templates differing from the code's defaults (models.DealRules.lean_templates)."""

from __future__ import annotations

import json
import uuid

from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker

from salesflow.config.snapshot import rules_version
from salesflow.config.templates import DEFAULT_TEMPLATES
from salesflow.worker import WORKFLOWS
from salesflow.workflows import patches
from salesflow.workflows.models import DealInput, DealRules
from salesflow.workflows.sandbox import workflow_runner
from tests.workflows.conftest import calendar_rules, new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import drive_to

OUTSIDE = "lean-test-a-later-patch"  # a name added after generation 5


def patch_markers(history: WorkflowHistory) -> list[str]:
    """The patch ids of a history's `patched` markers, in order."""
    ids = []
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
            continue
        attrs = event.marker_recorded_event_attributes
        if attrs.marker_name != "core_patch":
            continue
        payload = attrs.details["patch-data"].payloads[0]  # {"id": …, "deprecated": …}
        ids.append(json.loads(payload.data)["id"])
    return ids


@workflow.defn(name="LeanPatchProbe")
class PatchProbe:
    @workflow.run
    async def run(self) -> list[bool]:
        checks = [patches.patched("deal-board"), patches.patched("why-decisions")]
        checks.append(patches.patched(OUTSIDE))
        await workflow.sleep(1)
        checks.append(patches.patched("deal-board"))  # memoized, no new marker
        return checks


async def test_r_inv_history_one_generation_marker_for_every_known_patch(
    skip_env: WorkflowEnvironment,
) -> None:
    queue = f"lean-{uuid.uuid4().hex[:8]}"
    async with Worker(
        skip_env.client,
        task_queue=queue,
        workflows=[PatchProbe],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle = await skip_env.client.start_workflow(
            PatchProbe.run, id=f"lean-probe-{uuid.uuid4().hex[:6]}", task_queue=queue
        )
        assert await handle.result() == [True, True, True, True]
        history = await handle.fetch_history()
    # the generation marker answers for the known names; a later name records its own
    assert patch_markers(history) == [patches.GENERATION, OUTSIDE]
    replayer = Replayer(workflows=[PatchProbe], workflow_runner=UnsandboxedWorkflowRunner())
    await replayer.replay_workflow(history)


async def test_r_inv_history_a_new_deal_records_no_marker_per_patch(run_deal) -> None:
    portal = FakePortal(new_deal(1601))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "KP")
        history = await handle.fetch_history()
    assert patch_markers(history) == [patches.GENERATION]
    replayer = Replayer(
        workflows=WORKFLOWS,
        workflow_runner=workflow_runner(),
        data_converter=pydantic_data_converter,
    )
    await replayer.replay_workflow(history)


def test_r_inv_history_snapshot_carries_only_templates_that_differ() -> None:
    rules = calendar_rules()
    assert rules.lean_templates and rules.templates == DEFAULT_TEMPLATES
    carried = json.loads(rules.model_dump_json())
    assert carried["templates"] == {}
    back = DealRules.model_validate(carried)
    assert back.templates == DEFAULT_TEMPLATES
    assert rules_version(back) == rules.version
    # the version is that of the full form: how templates travel is not a rule
    full = rules.model_copy(update={"lean_templates": False})
    assert json.loads(full.model_dump_json())["templates"] == DEFAULT_TEMPLATES
    assert rules_version(full) == rules.version
    # a configured text travels, and a changed text changes the version
    own = rules.model_copy(update={"templates": {**rules.templates, "stage_NEW": "Новая!"}})
    assert json.loads(own.model_dump_json())["templates"] == {"stage_NEW": "Новая!"}
    assert rules_version(own) != rules.version


def test_r_inv_history_an_older_snapshot_keeps_its_templates_as_they_were() -> None:
    carried = json.loads(
        calendar_rules().model_copy(update={"lean_templates": False}).model_dump_json()
    )
    del carried["lean_templates"]
    carried["templates"] = {"stage_NEW": "Новая"}  # a snapshot from before a template existed
    old = DealRules.model_validate(carried)
    assert not old.lean_templates and old.templates == {"stage_NEW": "Новая"}
    inp = DealInput(deal_id=1, rules=old)
    assert DealInput.model_validate_json(inp.model_dump_json()).rules.templates == old.templates
