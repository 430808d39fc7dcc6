"""Issue 12 item 3 through the Bitrix24 emulator: the deal's fields are set and its tasks
completed with Bitrix24 REST, the workflow reads them with the real Bitrix24 activities (1C,
mail and the board are the workflow tests' doubles); the ONCRMDEALUPDATE / ONTASKUPDATE event,
which carries only the ID, is the signal the relay would send."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from emulators.asgi_server import serve
from emulators.bitrix24.app import create_app
from salesflow.activities.bitrix24 import Bitrix24Activities
from salesflow.config.settings import Settings
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.worker import WORKFLOW_FAILURE_EXCEPTION_TYPES, WORKFLOWS
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import AcceptLead, Bitrix24Event, DealInput, MoveStage
from salesflow.workflows.sandbox import workflow_runner
from tests.workflows.conftest import calendar_rules, new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import until

IN_WORK = {
    "UF_CRM_PRIORITY": 11,
    "UF_CRM_KP": "КП-000123",
    "CONTACT_ID": 1,
    "UF_CRM_DELIVERY_TERM": "30 дней",
    "UF_CRM_DIRECTION": "Россия, Москва",
}


@pytest.fixture
async def b24(skip_env: WorkflowEnvironment) -> AsyncIterator[tuple[Bitrix24Client, Any]]:
    async with serve(create_app(rate_per_second=None)) as server:
        client = Bitrix24Client(f"{server.url}/rest/1/devsecret/", rate_per_second=50, burst=50)
        real = Bitrix24Activities(client, Settings()).all()
        deal_id = int(
            await client.call(
                "crm.deal.add",
                {
                    "fields": {
                        "TITLE": "Поставка",
                        "CATEGORY_ID": 1,
                        "STAGE_ID": "C1:NEW",
                        "OPPORTUNITY": 640000,
                        "ASSIGNED_BY_ID": 3,
                    }
                },
            )
        )
        names = {getattr(a, "__temporal_activity_definition").name for a in real}
        doubles = [
            a
            for a in FakePortal(new_deal(deal_id)).activities()
            if getattr(a, "__temporal_activity_definition").name not in names
        ]
        queue = f"fields-{uuid.uuid4()}"
        try:
            async with Worker(
                skip_env.client,
                task_queue=queue,
                workflows=WORKFLOWS,
                activities=[*real, *doubles],
                workflow_failure_exception_types=WORKFLOW_FAILURE_EXCEPTION_TYPES,
                workflow_runner=workflow_runner(),
            ):
                handle = await skip_env.client.start_workflow(
                    DealWorkflow.run,
                    DealInput(deal_id=deal_id, rules=calendar_rules()),
                    id=f"deal-{deal_id}-{uuid.uuid4().hex[:6]}",
                    task_queue=queue,
                )
                try:
                    yield client, handle
                finally:
                    await handle.terminate()
        finally:
            await client.aclose()


async def tasks_of(client: Bitrix24Client, deal_id: int) -> dict[str, dict[str, Any]]:
    found = await client.list_all(
        "tasks.task.list",
        {
            "filter": {"UF_CRM_TASK": f"D_{deal_id}"},
            "select": ["ID", "XML_ID", "RESPONSIBLE_ID", "STATUS"],
        },
    )
    return {str(t["xmlId"]).split(":", 2)[2]: t for t in found}


async def test_r_kp_4_r_x6_r_x1_fields_and_tasks_set_in_the_emulator_drive_the_deal(b24) -> None:
    client, handle = b24
    deal_id = int(handle.id.split("-")[1])

    async def change(**fields: Any) -> None:
        await client.call("crm.deal.update", {"id": deal_id, "fields": fields})
        await handle.signal(
            DealWorkflow.bitrix24_event, Bitrix24Event(event="ONCRMDEALUPDATE", entity_id=deal_id)
        )

    await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=3))
    await until(handle, lambda v: any(d.name == "kp_agreement" for d in v.deadlines))
    await client.call("crm.deal.update", {"id": deal_id, "fields": IN_WORK})
    await handle.execute_update(DealWorkflow.move_stage, MoveStage(to="KP"))
    await until(handle, lambda v: v.kp_round == 1)

    # «Статус КП» = «Не согласовано» (option 22) answers round 1; round 2 clears the field
    await change(UF_CRM_KP_STATUS=22)
    await until(handle, lambda v: v.kp_round == 2)
    deal = await client.call("crm.deal.get", {"id": deal_id})
    assert not deal["UF_CRM_KP_STATUS"]
    # «Возврат на задачу»: the objection task completed in Bitrix24 starts round 2's task
    await until(handle, lambda v: any(t.key.endswith(":kp:objection:1") for t in v.open_tasks))
    objection = int((await tasks_of(client, deal_id))["kp:objection:1"]["id"])
    await client.call("tasks.task.complete", {"taskId": objection})
    await handle.signal(
        DealWorkflow.bitrix24_event, Bitrix24Event(event="ONTASKUPDATE", entity_id=objection)
    )
    await until(handle, lambda v: any(t.key.endswith(":kp:feedback:2") for t in v.open_tasks))

    # the Да/Нет field, toggled: one task for the lawyer
    for value in ("Y", "N", "Y"):
        await change(UF_CRM_NEED_LAWYER=value)
    await until(handle, lambda v: any(":request:lawyer:r1" in t.key for t in v.open_tasks))
    await change(UF_CRM_NEED_LAWYER="Y")

    # a task completed in Bitrix24 closes its step
    tasks = await tasks_of(client, deal_id)
    await client.call("tasks.task.complete", {"taskId": int(tasks["kp:send_kp"]["id"])})
    await handle.signal(
        DealWorkflow.bitrix24_event,
        Bitrix24Event(event="ONTASKUPDATE", entity_id=int(tasks["kp:send_kp"]["id"])),
    )
    await until(handle, lambda v: not any(t.key.endswith(":kp:send_kp") for t in v.open_tasks))

    # the responsible changed: the manager's open tasks go to the new one
    await change(ASSIGNED_BY_ID=4)
    view = await until(
        handle, lambda v: v.manager_id == 4 and all(t.responsible_id != 3 for t in v.open_tasks)
    )
    tasks = await tasks_of(client, deal_id)
    assert [k for k in tasks if k.startswith("request:")] == ["request:lawyer:r1"]
    assert tasks["request:lawyer:r1"]["responsibleId"] == "9"
    # Completed tasks stay the old manager's: «Отправить КП» done by a person, IN_WORK's
    # «Проверить товарные позиции» completed when the deal left IN_WORK (complete-left-stage-tasks).
    for purpose in ("kp:send_kp", "iw:check_products"):
        assert tasks[purpose]["responsibleId"] == "3", purpose
    assert tasks["kp:feedback:2"]["responsibleId"] == "4"
    assert tasks["kp:objection:1"]["responsibleId"] == "3"  # completed before the change
    assert any("responsible changed in Bitrix24" in h.cause for h in view.history)
