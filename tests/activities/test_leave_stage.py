"""`leave_stage` against the Bitrix24 emulator (issue 16, items 3 and 5): the new STAGE_ID and
the left stage's tasks in one `batch` request, the completions in one more; again after a lost
answer it changes nothing and needs fewer requests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.testing import ActivityEnvironment

from emulators.asgi_server import serve
from emulators.bitrix24.app import create_app
from emulators.bitrix24.state import Portal
from salesflow.activities.bitrix24 import Bitrix24Activities
from salesflow.config.settings import Settings
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.workflows.batch_models import LeaveStageRequest
from salesflow.workflows.models import TaskRequest


@pytest.fixture
async def acts() -> AsyncIterator[tuple[Bitrix24Activities, Portal]]:
    app = create_app(rate_per_second=None)
    async with serve(app) as server:
        client = Bitrix24Client(f"{server.url}/rest/1/devsecret/", rate_per_second=50, burst=50)
        try:
            yield Bitrix24Activities(client, Settings()), app.state.portal
        finally:
            await client.aclose()


async def test_r_x1_leave_stage_writes_the_stage_and_completes_tasks_in_two_requests(
    acts: tuple[Bitrix24Activities, Portal],
) -> None:
    b24, portal = acts
    env = ActivityEnvironment()
    deal_id = int(
        await b24.client.call(
            "crm.deal.add",
            {"fields": {"TITLE": "Поставка", "CATEGORY_ID": 1, "STAGE_ID": "C1:NEW"}},
        )
    )
    task_ids = [
        await env.run(
            b24.create_task,
            TaskRequest(
                key=f"deal:{deal_id}:sh:{kind}",
                deal_id=deal_id,
                title=title,
                responsible_id=3,
                created_by=2,
            ),
        )
        for kind, title in (("act", "Акт"), ("upd", "УПД"))
    ]
    await env.run(b24.complete_task, task_ids[1])  # a person completed one already
    request = LeaveStageRequest(deal_id=deal_id, stage_id="C1:WON", task_ids=[*task_ids, 999_999])
    before = portal.requests
    result = await env.run(b24.leave_stage, request)
    assert portal.requests - before == 2  # STAGE_ID + statuses, then the one completion
    assert sorted(result.completed) == sorted([*task_ids, 999_999])  # deleted counts as done
    assert result.failed == {}
    deal = await b24.client.call("crm.deal.get", {"id": deal_id})
    assert deal["STAGE_ID"] == "C1:WON"
    assert {await env.run(b24.read_task_status, t) for t in task_ids} == {"5"}
    before = portal.requests
    again = await env.run(b24.leave_stage, request)  # a retry after a lost answer
    assert portal.requests - before == 1
    assert sorted(again.completed) == sorted(result.completed)
    assert await env.run(b24.leave_stage, LeaveStageRequest(deal_id=deal_id)) == type(result)()
