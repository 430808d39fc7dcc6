"""`read_task` against the Bitrix24 emulator: a task's STATUS, DEADLINE and responsible as a
person left them (issue 14 item 2: the workflow's deadline follows a moved DEADLINE)."""

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


async def test_r_x4_read_task_shows_the_deadline_a_person_moved(acts: Bitrix24Activities) -> None:
    env = ActivityEnvironment()
    deal_id = int(
        await acts.client.call(
            "crm.deal.add",
            {"fields": {"TITLE": "Поставка", "CATEGORY_ID": 1, "STAGE_ID": "C1:NEW"}},
        )
    )
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    task_id = await env.run(
        acts.create_task,
        TaskRequest(
            key=f"deal:{deal_id}:kp:send_kp",
            deal_id=deal_id,
            title="Отправить КП клиенту",
            responsible_id=3,
            created_by=2,
            deadline=due,
        ),
    )
    first = await env.run(acts.read_task, task_id)
    assert (first.status, first.deadline, first.responsible_id) == ("2", due, 3)
    moved = due + timedelta(days=3)
    await acts.client.call(  # the manager moves the DEADLINE and hands the task on
        "tasks.task.update",
        {"taskId": task_id, "fields": {"DEADLINE": moved.isoformat(), "RESPONSIBLE_ID": 4}},
    )
    later = await env.run(acts.read_task, task_id)
    assert (later.deadline, later.responsible_id) == (moved, 4)
    gone = await env.run(acts.read_task, 999_999)
    assert gone.status == "5"  # a deleted task counts as completed
