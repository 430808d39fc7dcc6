"""`complete_task` against the Bitrix24 emulator: a left stage's task is completed once; a task
already completed (or deleted) is left as it is (issue 14, loose ends)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.testing import ActivityEnvironment

from emulators.asgi_server import serve
from emulators.bitrix24.app import create_app
from salesflow.activities.bitrix24 import Bitrix24Activities
from salesflow.config.settings import Settings
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.workflows.models import TaskRequest


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
