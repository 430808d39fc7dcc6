"""The Bitrix24 activities of issue 14 item 7 against the emulator over real HTTP: a deleted
deal's read says so by type, a task of a deal that left the pipeline is commented and
deferred once, and the people are read with their ACTIVE flag."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from salesflow.workflows.models import PeopleRequest, TaskDeferRequest
from salesflow.workflows.names import DEAL_NOT_FOUND
from tests.activities.test_bitrix24_activities import _deal, portal_and_acts  # noqa: F401


async def test_r_x8_a_deleted_deal_reads_as_deal_not_found(portal_and_acts) -> None:  # noqa: F811
    _, acts = portal_and_acts
    deal_id = await _deal(acts)
    await acts.client.call("crm.deal.delete", {"id": deal_id})
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(acts.fetch_deal, deal_id)
    assert err.value.type == DEAL_NOT_FOUND and err.value.non_retryable


async def test_r_x8_a_task_is_commented_and_deferred_once(portal_and_acts) -> None:  # noqa: F811
    _, acts = portal_and_acts
    added = await acts.client.call(
        "tasks.task.add", {"fields": {"TITLE": "Проверить", "RESPONSIBLE_ID": 1}}
    )
    task_id = int(added["task"]["id"])
    req = TaskDeferRequest(key="deal:1:defer:iw:x", task_id=task_id, comment="Сделка удалена")
    env = ActivityEnvironment()
    await env.run(acts.defer_task, req)
    await env.run(acts.defer_task, req)  # a retry: nothing twice
    task = await acts.client.call("tasks.task.get", {"taskId": task_id, "select": ["STATUS"]})
    comments = await acts.client.call("task.commentitem.getlist", {"TASKID": task_id})
    assert str(task["task"]["status"]) == "6"
    assert [c["POST_MESSAGE"] for c in comments] == ["Сделка удалена"]


async def test_r_x1_people_are_read_with_their_active_flag(portal_and_acts) -> None:  # noqa: F811
    portal, acts = portal_and_acts
    user = next(iter(portal.users.values()))
    user["ACTIVE"] = False
    answer = await ActivityEnvironment().run(
        acts.read_people, PeopleRequest(user_ids=[int(user["ID"])])
    )
    assert answer.people.rop == acts.settings.portal.users.rop
    assert answer.inactive == [int(user["ID"])]
