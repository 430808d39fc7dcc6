"""Bitrix24 activities against the emulator over real HTTP: idempotency keys hold (R-X1, R-X2)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from emulators.asgi_server import serve
from emulators.bitrix24.app import create_app
from salesflow.activities.bitrix24 import Bitrix24Activities
from salesflow.config.settings import Settings
from salesflow.config.templates import DEFAULT_TEMPLATES
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.workflows.models import (
    ClientMessageRequest,
    DealUpdateRequest,
    NotifyRequest,
    TaskRequest,
)


@pytest.fixture
async def portal_and_acts() -> AsyncIterator[tuple[object, Bitrix24Activities]]:
    app = create_app(rate_per_second=None)
    async with serve(app) as server:
        client = Bitrix24Client(f"{server.url}/rest/1/devsecret/", rate_per_second=50, burst=50)
        try:
            yield app.state.portal, Bitrix24Activities(client, Settings())
        finally:
            await client.aclose()


async def _deal(acts: Bitrix24Activities, **fields: object) -> int:
    base = {"TITLE": "Поставка", "CATEGORY_ID": 1, "STAGE_ID": "C1:NEW", "OPPORTUNITY": 200000}
    return int(await acts.client.call("crm.deal.add", {"fields": {**base, **fields}}))


async def test_r_x1_task_created_once_with_manager_rop_and_deal_link(portal_and_acts) -> None:
    _, acts = portal_and_acts
    deal_id = await _deal(acts)
    env = ActivityEnvironment()
    req = TaskRequest(
        key=f"deal:{deal_id}:iw:check_products",
        deal_id=deal_id,
        title="Проверить товарные позиции",
        responsible_id=3,
        created_by=2,
    )
    first = await env.run(acts.create_task, req)
    again = await env.run(acts.create_task, req)
    assert first == again
    tasks = await acts.client.call(
        "tasks.task.list",
        {
            "filter": {"UF_CRM_TASK": f"D_{deal_id}"},
            "select": ["ID", "RESPONSIBLE_ID", "CREATED_BY", "UF_CRM_TASK"],
        },
    )
    assert len(tasks["tasks"]) == 1
    task = tasks["tasks"][0]
    assert (task["responsibleId"], task["createdBy"], task["ufCrmTask"]) == (
        "3",
        "2",
        [f"D_{deal_id}"],
    )


async def test_r_iw_1_client_message_with_real_manager_card_sent_once(portal_and_acts) -> None:
    portal, acts = portal_and_acts
    deal_id = await _deal(acts, CONTACT_ID=1)
    req = ClientMessageRequest(
        key=f"deal:{deal_id}:iw:client_message",
        deal_id=deal_id,
        manager_id=3,
        subject="Ваша заявка",
        template=DEFAULT_TEMPLATES["client_taken_into_work"],
    )
    env = ActivityEnvironment()
    await env.run(acts.send_client_message, req)
    await env.run(acts.send_client_message, req)
    mails = [m for m in portal.emails if str(m["OWNER_ID"]) == str(deal_id)]
    assert len(mails) == 1
    body = mails[0]["BODY"]
    assert "Петров Иван Сергеевич" in body
    assert "Менеджер по продажам" in body
    assert "+7 (495) 100-00-03" in body and "petrov@example.ru" in body


async def test_client_message_without_contact_is_a_clear_permanent_error(portal_and_acts) -> None:
    _, acts = portal_and_acts
    deal_id = await _deal(acts)
    req = ClientMessageRequest(
        key=f"deal:{deal_id}:x", deal_id=deal_id, manager_id=3, subject="s", template="t"
    )
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(acts.send_client_message, req)
    assert err.value.non_retryable and "no client contact" in err.value.message


async def test_r_x2_same_notification_key_is_one_notification(portal_and_acts) -> None:
    portal, acts = portal_and_acts
    req = NotifyRequest(key="deal:7:new:notify", user_ids=[3, 4], message="Новая заявка")
    env = ActivityEnvironment()
    await env.run(acts.notify_users, req)
    await env.run(acts.notify_users, req)
    visible = [n for n in portal.notifications if n["TAG"] == "deal:7:new:notify"]
    assert sorted(n["USER_ID"] for n in visible) == [3, 4]


async def test_missing_deal_is_non_retryable_with_remote_code(portal_and_acts) -> None:
    _, acts = portal_and_acts
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(
            acts.update_deal, DealUpdateRequest(deal_id=987654, fields={"TITLE": "x"})
        )
    assert err.value.non_retryable
    assert err.value.type and err.value.type.startswith("Bitrix24.")


async def test_fetch_deal_reads_fields_as_strings(portal_and_acts) -> None:
    _, acts = portal_and_acts
    deal_id = await _deal(acts, UF_CRM_KP="КП-000123")
    snap = await ActivityEnvironment().run(acts.fetch_deal, deal_id)
    assert (snap.id, snap.category_id, snap.stage_id, snap.amount) == (
        deal_id,
        1,
        "C1:NEW",
        200000.0,
    )
    assert snap.fields["UF_CRM_KP"] == "КП-000123"


async def test_fetch_deal_names_the_responsible_once_per_worker(portal_and_acts) -> None:
    portal, acts = portal_and_acts
    deal_id = await _deal(acts, ASSIGNED_BY_ID=2)
    env = ActivityEnvironment()
    first = await env.run(acts.fetch_deal, deal_id)
    portal.users[2]["LAST_NAME"] = "Иванова"  # remembered for a while: the name is not re-read
    second = await env.run(acts.fetch_deal, deal_id)
    assert first.assigned_by_name == second.assigned_by_name == "Смирнова Ольга Викторовна"
    missing = await _deal(acts, ASSIGNED_BY_ID=9999)
    assert (await env.run(acts.fetch_deal, missing)).assigned_by_name == ""


async def test_r_x2_maintenance_503_is_retried_at_once_not_settled(portal_and_acts) -> None:
    """A 503 page says nothing was run: the retry may create at once (no settle window)."""
    portal, acts = portal_and_acts
    deal_id = await _deal(acts)
    req = TaskRequest(
        key=f"deal:{deal_id}:iw:check_products",
        deal_id=deal_id,
        title="Проверить товарные позиции",
        responsible_id=3,
        created_by=2,
    )
    portal.inject_fault(1, status=503, method="tasks.task.add")  # the web server's HTML page
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(acts.create_task, req)
    assert refused.value.type != "UnknownOutcome" and not refused.value.non_retryable
    assert await ActivityEnvironment().run(acts.create_task, req) > 0
