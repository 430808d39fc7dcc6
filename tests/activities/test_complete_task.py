"""`complete_task` against the Bitrix24 emulator: a left stage's task is completed once; a task
already completed (or deleted) is left as it is (issue 14, loose ends)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.testing import ActivityEnvironment

from emulators.asgi_server import serve
from emulators.bitrix24.app import create_app
from salesflow.activities.bitrix24 import Bitrix24Activities
from salesflow.config.settings import Settings
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.workflows.models import TaskDeadlineRequest, TaskRequest


@pytest.fixture
async def acts() -> AsyncIterator[Bitrix24Activities]:
    app = create_app(rate_per_second=None)
    async with serve(app) as server:
        client = Bitrix24Client(f"{server.url}/rest/1/devsecret/", rate_per_second=50, burst=50)
        try:
            yield Bitrix24Activities(client, Settings())
        finally:
            await client.aclose()


async def test_r_x1_complete_task_once_then_leaves_it_completed(acts: Bitrix24Activities) -> None:
    env = ActivityEnvironment()
    deal_id = int(
        await acts.client.call(
            "crm.deal.add",
            {"fields": {"TITLE": "Поставка", "CATEGORY_ID": 1, "STAGE_ID": "C1:NEW"}},
        )
    )
    task_id = await env.run(
        acts.create_task,
        TaskRequest(
            key=f"deal:{deal_id}:iw:check_products",
            deal_id=deal_id,
            title="Проверить товарные позиции",
            responsible_id=3,
            created_by=2,
        ),
    )
    assert await env.run(acts.read_task_status, task_id) != "5"
    await env.run(acts.complete_task, task_id)
    assert await env.run(acts.read_task_status, task_id) == "5"
    await env.run(acts.complete_task, task_id)  # again: no error (a retry after a lost answer)
    await env.run(acts.complete_task, 999_999)  # a deleted task counts as completed


async def test_r_x4_set_task_deadline_reads_first_and_leaves_a_completed_task(
    acts: Bitrix24Activities,
) -> None:
    env = ActivityEnvironment()
    deal_id = int(
        await acts.client.call(
            "crm.deal.add",
            {"fields": {"TITLE": "Поставка", "CATEGORY_ID": 1, "STAGE_ID": "C1:NEW"}},
        )
    )
    first_due = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
    task_id = await env.run(
        acts.create_task,
        TaskRequest(
            key=f"deal:{deal_id}:inv:get_payment:1",
            deal_id=deal_id,
            title="Получить оплату от клиента",
            responsible_id=3,
            created_by=2,
            deadline=first_due,
        ),
    )
    moved = first_due + timedelta(days=7)
    request = TaskDeadlineRequest(task_id=task_id, deadline=moved)
    assert await env.run(acts.set_task_deadline, request) is True
    assert await env.run(acts.set_task_deadline, request) is False  # already there
    assert (await env.run(acts.read_task, task_id)).deadline == moved
    await env.run(acts.complete_task, task_id)
    later = TaskDeadlineRequest(task_id=task_id, deadline=moved + timedelta(days=1))
    assert await env.run(acts.set_task_deadline, later) is False  # completed: left as it is
    assert (await env.run(acts.read_task, task_id)).deadline == moved
