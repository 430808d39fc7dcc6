"""Issue 10 item 6: the production worker and the workflow tests' worker fail workflows the same
way — both pass the one WORKFLOW_FAILURE_EXCEPTION_TYPES (and the same workflows and sandbox)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import salesflow.worker as production
import tests.workflows.conftest as workflow_tests
from salesflow.config.settings import Settings


class _Captured(Exception):
    pass


def _capturing_worker(seen: list[dict[str, Any]]) -> type:
    class CapturingWorker:
        def __init__(self, client: object, **options: Any) -> None:
            seen.append(options)

        async def __aenter__(self) -> None:
            raise _Captured

        async def __aexit__(self, *exc: object) -> None:
            return None

    return CapturingWorker


async def test_production_and_test_workers_share_the_failure_types(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(production, "Worker", _capturing_worker(seen))
    monkeypatch.setattr(workflow_tests, "Worker", _capturing_worker(seen))
    settings = Settings.model_validate(
        {"database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"}}
    )
    with pytest.raises(_Captured):
        async with production.running_worker(SimpleNamespace(), settings):
            pass
    portal = SimpleNamespace(activities=list, deal=SimpleNamespace(id=1))
    with pytest.raises(_Captured):
        async with workflow_tests.deal_running(SimpleNamespace(client=None), portal):
            pass
    worker, tests = seen
    assert worker["workflow_failure_exception_types"] is production.WORKFLOW_FAILURE_EXCEPTION_TYPES
    assert tests["workflow_failure_exception_types"] is production.WORKFLOW_FAILURE_EXCEPTION_TYPES
    assert worker["workflows"] == tests["workflows"] == production.WORKFLOWS
