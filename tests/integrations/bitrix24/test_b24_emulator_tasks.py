"""Emulated tasks, task comments and notifications."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from tests.integrations.bitrix24.conftest import Emulator, Rest


TASK = {
    "TITLE": "Проверить товарные позиции",
    "RESPONSIBLE_ID": 3,
    "CREATED_BY": 2,
    "DEADLINE": "2025-12-31T18:00:00",
    "UF_CRM_TASK": ["D_42"],
    "XML_ID": "deal:42:check_items:1",
}


async def test_task_add_get_shapes(rest: Rest) -> None:
    status, body = await rest("tasks.task.add", {"fields": TASK})
    assert status == 200
    task = body["result"]["task"]
    assert task["title"] == TASK["TITLE"]
    assert (task["responsibleId"], task["createdBy"], task["status"]) == ("3", "2", "2")
    assert task["deadline"] == "2025-12-31T18:00:00+03:00"
    assert task["xmlId"] == "deal:42:check_items:1"
    assert "ufCrmTask" not in task
    assert task["responsible"]["name"] == "Иван Петров"
    _, body = await rest(
        "tasks.task.get", {"taskId": task["id"], "select": ["ID", "TITLE", "UF_CRM_TASK"]}
    )
    selected = body["result"]["task"]
    assert selected["ufCrmTask"] == ["D_42"] and "ufTaskWebdavFiles" in selected
    assert "deadline" not in selected
    _, body = await rest("tasks.task.get", {"taskId": 99999})
    assert body["result"] == []


async def test_task_list_filters_and_marker(rest: Rest) -> None:
    for index in range(3):
        await rest(
            "tasks.task.add",
            {
                "fields": {
                    **TASK,
                    "XML_ID": f"deal:42:kp:{index}",
                    "UF_CRM_TASK": [f"D_{40 + index}"],
                }
            },
        )
    _, body = await rest(
        "tasks.task.list", {"filter": {"XML_ID": "deal:42:kp:1"}, "select": ["ID", "XML_ID"]}
    )
    assert [t["xmlId"] for t in body["result"]["tasks"]] == ["deal:42:kp:1"]
    assert body["total"] == 1
    _, body = await rest(
        "tasks.task.list",
        {"filter": {"UF_CRM_TASK": "D_42"}, "select": ["ID", "XML_ID", "UF_CRM_TASK"]},
    )
    assert [t["ufCrmTask"] for t in body["result"]["tasks"]] == [["D_42"]]
    _, body = await rest("tasks.task.list", {"filter": {"RESPONSIBLE_ID": 3}})
    ids = [int(t["id"]) for t in body["result"]["tasks"]]
    assert ids == sorted(ids, reverse=True)  # default order: ID desc


async def test_task_update_complete_and_status_codes(rest: Rest, emu: Emulator) -> None:
    _, body = await rest("tasks.task.add", {"fields": TASK})
    task_id = int(body["result"]["task"]["id"])
    _, body = await rest(
        "tasks.task.update", {"taskId": task_id, "fields": {"DEADLINE": "2026-01-15T12:00:00"}}
    )
    assert body["result"]["task"]["deadline"] == "2026-01-15T12:00:00+03:00"
    _, body = await rest("tasks.task.start", {"taskId": task_id})
    assert body["result"]["task"]["status"] == "3"
    _, body = await rest("tasks.task.complete", {"taskId": task_id})
    assert body["result"]["task"]["status"] == "5"
    assert body["result"]["task"]["closedBy"] == "1"
    status, body = await rest("tasks.task.complete", {"taskId": task_id})
    assert (status, body["error"]) == (400, "0")
    _, body = await rest("tasks.task.list", {"filter": {"REAL_STATUS": 5}})
    assert [t["id"] for t in body["result"]["tasks"]] == [str(task_id)]


async def test_task_validation_errors(rest: Rest) -> None:
    status, body = await rest("tasks.task.add", {"fields": {"TITLE": "x"}})
    assert body == {"error": "ERROR_CORE", "error_description": "Assignee not specified<br>"}
    status, body = await rest("tasks.task.add", {"fields": {"TITLE": "x", "RESPONSIBLE_ID": 77}})
    assert status == 400 and body["error"] == "ERROR_CORE"


async def test_task_comments_positional(emu: Emulator, http: httpx.AsyncClient, rest: Rest) -> None:
    _, body = await rest("tasks.task.add", {"fields": TASK})
    task_id = body["result"]["task"]["id"]
    response = await http.post(
        f"{emu.webhook}task.commentitem.add",
        content=f"0={task_id}&1[POST_MESSAGE]=Статус+из+1С&1[AUTHOR_ID]=5".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200 and isinstance(response.json()["result"], int)
    status, _ = await rest("task.commentitem.add", [task_id, {"POST_MESSAGE": "Второй"}])
    assert status == 200
    _, body = await rest("task.commentitem.getlist", [task_id])
    assert [(c["AUTHOR_ID"], c["POST_MESSAGE"]) for c in body["result"]] == [
        ("5", "Статус из 1С"),
        ("1", "Второй"),
    ]
    _, body = await rest("tasks.task.get", {"taskId": task_id})
    assert body["result"]["task"]["commentsCount"] == "2"


async def test_same_tag_notification_replaces_previous(rest: Rest, emu: Emulator) -> None:
    note = {"USER_ID": 3, "TAG": "deal:42:overdue", "CLIENT_ID": "salesflow"}
    first = (await rest("im.notify.system.add", {**note, "MESSAGE": "Просрочено 1 ч"}))[1]
    second = (await rest("im.notify.system.add", {**note, "MESSAGE": "Просрочено 2 ч"}))[1]
    await rest("im.notify.system.add", {**note, "USER_ID": 2, "MESSAGE": "РОП: просрочено"})
    assert isinstance(first["result"], int) and second["result"] != first["result"]
    visible = [(n["USER_ID"], n["MESSAGE"]) for n in emu.portal.notifications]
    assert visible == [(3, "Просрочено 2 ч"), (2, "РОП: просрочено")]
    assert len(emu.portal.notification_log) == 3
    # without CLIENT_ID a webhook's TAG is ignored, so nothing is replaced
    await rest("im.notify.personal.add", {"USER_ID": 4, "MESSAGE": "a", "TAG": "t"})
    await rest("im.notify.personal.add", {"USER_ID": 4, "MESSAGE": "b", "TAG": "t"})
    assert [n["MESSAGE"] for n in emu.portal.notifications if n["USER_ID"] == 4] == ["a", "b"]


async def test_notification_errors(rest: Rest) -> None:
    assert await rest("im.notify.system.add", {"MESSAGE": "x"}) == (
        400,
        {"error": "USER_ID_EMPTY", "error_description": "User ID can't be empty"},
    )
    assert await rest("im.notify.system.add", {"USER_ID": 3, "MESSAGE": "  "}) == (
        400,
        {"error": "MESSAGE_EMPTY", "error_description": "Message can't be empty"},
    )
