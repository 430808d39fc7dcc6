"""Recorded histories replay against today's workflow code (DESIGN: code changes are patched).

The histories under tests/histories/ come from the end-to-end full-lifecycle run
(`SALESFLOW_RECORD_HISTORIES=1 pytest tests/e2e/test_full_pipeline.py -k 640k`). A change that
would make them fail to replay must be wrapped in `workflow.patched(...)`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from salesflow.worker import WORKFLOWS
from salesflow.workflows.sandbox import workflow_runner

HISTORIES = sorted((Path(__file__).resolve().parents[1] / "histories").glob("*.json"))


def test_histories_are_recorded() -> None:
    names = {path.stem for path in HISTORIES}
    assert {"full-lifecycle-deal", "full-lifecycle-approval"} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    history = WorkflowHistory.from_json(path.stem, data)
    replayer = Replayer(
        workflows=WORKFLOWS,
        workflow_runner=workflow_runner(),
        data_converter=pydantic_data_converter,
    )
    await replayer.replay_workflow(history)
