"""tasks.task.* (UPPER_CASE in, camelCase strings out) and task.commentitem.*."""

from __future__ import annotations

import uuid
from typing import Any

from emulators.bitrix24.query import Page, matches, paginate, sort_records
from emulators.bitrix24.registry import CallContext, RestError, method, param
from emulators.bitrix24.state import Portal
from emulators.bitrix24.values import (
    as_list,
    as_str,
    camel,
    iso_or_none,
    names,
    parse_datetime,
    to_int,
    yn,
)

PENDING, IN_PROGRESS, AWAITING_CONTROL, COMPLETED, DEFERRED = 2, 3, 4, 5, 6

BASE_FIELDS = names(
    "ID PARENT_ID TITLE DESCRIPTION MARK PRIORITY MULTITASK NOT_VIEWED REPLICATE STAGE_ID "
    "CREATED_BY CREATED_DATE RESPONSIBLE_ID CHANGED_BY CHANGED_DATE STATUS_CHANGED_BY "
    "CLOSED_BY CLOSED_DATE ACTIVITY_DATE DATE_START DEADLINE START_DATE_PLAN "
    "END_DATE_PLAN GUID XML_ID COMMENTS_COUNT SERVICE_COMMENTS_COUNT "
    "ALLOW_CHANGE_DEADLINE ALLOW_TIME_TRACKING TASK_CONTROL ADD_IN_REPORT "
    "FORKED_BY_TEMPLATE_ID TIME_ESTIMATE TIME_SPENT_IN_LOGS MATCH_WORK_TIME "
    "FORUM_TOPIC_ID FORUM_ID SITE_ID SUBORDINATE EXCHANGE_MODIFIED EXCHANGE_ID "
    "OUTLOOK_VERSION VIEWED_DATE SORTING DURATION_FACT IS_MUTED IS_PINNED "
    "IS_PINNED_IN_GROUP FLOW_ID DESCRIPTION_IN_BBCODE STATUS STATUS_CHANGED_DATE "
    "DURATION_PLAN DURATION_TYPE FAVORITE GROUP_ID AUDITORS ACCOMPLICES"
)
SYSTEM_UF = ("UF_CRM_TASK", "UF_TASK_WEBDAV_FILES", "UF_MAIL_MESSAGE")
_EXTRA_SELECTABLE = ("TAGS", "SUB_STATUS")
_WRITABLE = frozenset(
    names(
        "ACCOMPLICES ADD_IN_REPORT ALLOW_CHANGE_DEADLINE ALLOW_TIME_TRACKING AUDITORS "
        "CREATED_BY DATE_START DEADLINE DESCRIPTION DESCRIPTION_IN_BBCODE DURATION_PLAN "
        "DURATION_TYPE END_DATE_PLAN GROUP_ID MARK MATCH_WORK_TIME PARENT_ID PRIORITY "
        "RESPONSIBLE_ID SITE_ID STAGE_ID START_DATE_PLAN STATUS TAGS TASK_CONTROL "
        "TIME_ESTIMATE TITLE UF_CRM_TASK UF_MAIL_MESSAGE UF_TASK_WEBDAV_FILES XML_ID"
    )
)
_DATES = frozenset(
    names(
        "ACTIVITY_DATE CHANGED_DATE CLOSED_DATE CREATED_DATE DATE_START DEADLINE "
        "END_DATE_PLAN EXCHANGE_MODIFIED START_DATE_PLAN STATUS_CHANGED_DATE VIEWED_DATE"
    )
)
_INTS = frozenset(
    names(
        "CHANGED_BY CLOSED_BY COMMENTS_COUNT CREATED_BY DURATION_PLAN FLOW_ID FORUM_TOPIC_ID "
        "GROUP_ID ID PARENT_ID PRIORITY REAL_STATUS RESPONSIBLE_ID STAGE_ID STATUS "
        "STATUS_CHANGED_BY TIME_ESTIMATE"
    )
)
_FLAGS = frozenset(
    names(
        "ADD_IN_REPORT ALLOW_CHANGE_DEADLINE ALLOW_TIME_TRACKING DESCRIPTION_IN_BBCODE "
        "FAVORITE IS_MUTED IS_PINNED IS_PINNED_IN_GROUP MATCH_WORK_TIME MULTITASK NOT_VIEWED "
        "REPLICATE SUBORDINATE TASK_CONTROL"
    )
)
_LISTS = {"AUDITORS", "ACCOMPLICES", "TAGS", "UF_CRM_TASK", "UF_TASK_WEBDAV_FILES"}
_NOT_ALLOWED = "Action on the task is not allowed"


def _core_error(text: str) -> RestError:
    return RestError("ERROR_CORE", f"{text}<br>")


def _value(field: str, value: Any) -> Any:
    if field in _LISTS:
        return [str(v) for v in as_list(value) if v not in (None, "")]
    if field in _FLAGS:
        return yn(value)
    if value is None or value == "":
        return None
    if field in _DATES:
        return iso_or_none(value)
    if field in _INTS:
        number = to_int(value)
        return None if number is None else str(number)
    return as_str(value)


def _user_ref(portal: Portal, user_id: Any) -> dict[str, Any]:
    uid = to_int(user_id, 0) or 0
    user = portal.users.get(uid, {})
    return {
        "id": str(uid),
        "name": portal.user_name(uid),
        "link": f"/company/personal/user/{uid}/",
        "icon": "/bitrix/images/tasks/default_avatar.png",
        "workPosition": user.get("WORK_POSITION", ""),
    }


def _sub_status(portal: Portal, task: dict[str, Any]) -> str:
    deadline = parse_datetime(task.get("DEADLINE"))
    status = int(task["STATUS"])
    if deadline and status in {PENDING, IN_PROGRESS} and deadline.timestamp() < portal.now():
        return "-1"
    return str(status)


def _selected(select: Any) -> list[str]:
    wanted = [str(s) for s in as_list(select)]
    if not wanted or "*" in wanted:
        fields = list(BASE_FIELDS)
        wanted = [w for w in wanted if w != "*"]
    else:
        fields = ["ID"]
    for name in wanted:
        upper = "SUB_STATUS" if name.lower() == "substatus" else name.upper()
        if upper in SYSTEM_UF:
            fields.extend(f for f in SYSTEM_UF if f not in fields)
        elif upper not in fields and (upper in BASE_FIELDS or upper in _EXTRA_SELECTABLE):
            fields.append(upper)
    return fields


def task_view(portal: Portal, task: dict[str, Any], select: Any = None) -> dict[str, Any]:
    """A task as tasks.task.* return it: camelCase keys, string values."""
    view: dict[str, Any] = {}
    for field in _selected(select):
        view[camel(field)] = _sub_status(portal, task) if field == "SUB_STATUS" else task.get(field)
    view["group"] = []
    view["creator"] = _user_ref(portal, task["CREATED_BY"])
    view["responsible"] = _user_ref(portal, task["RESPONSIBLE_ID"])
    view["accomplicesData"] = {u: _user_ref(portal, u) for u in task["ACCOMPLICES"]}
    view["auditorsData"] = {u: _user_ref(portal, u) for u in task["AUDITORS"]}
    view["newCommentsCount"] = 0
    return view


def _check(portal: Portal, task: dict[str, Any]) -> None:
    if not (task.get("TITLE") or "").strip():
        raise _core_error("Task title not specified")
    if not task.get("RESPONSIBLE_ID"):
        raise _core_error("Assignee not specified")
    if to_int(task["RESPONSIBLE_ID"], 0) not in portal.users:
        raise _core_error('User specified in the "Assignee" field not found')
    if to_int(task["STATUS"], 0) not in {1, 2, 3, 4, 5, 6, 7}:
        raise _core_error("Invalid status")
    parent = to_int(task.get("PARENT_ID"), 0)
    if parent and parent not in portal.tasks:
        raise _core_error('Task specified in the "Parent Task" field not found')


def _fields(params: dict[str, Any]) -> dict[str, Any]:
    fields = param(params, "fields")
    if not isinstance(fields, dict) or not fields:
        raise RestError("100", "Could not find value for parameter {fields} (internal error)")
    return {str(k).upper(): v for k, v in fields.items()}


def create_task(ctx: CallContext, fields: dict[str, Any], task_id: int | None = None) -> int:
    """Insert a task as tasks.task.add does; returns its id and emits ONTASKADD."""
    portal = ctx.portal
    fields = {str(k).upper(): v for k, v in fields.items()}
    now = portal.now_iso()
    task: dict[str, Any] = {f: None for f in (*BASE_FIELDS, *SYSTEM_UF, "TAGS")}
    task.update({f: "N" for f in _FLAGS})
    task.update(
        {
            "PRIORITY": "1",
            "STAGE_ID": "0",
            "CREATED_BY": str(ctx.user_id),
            "CREATED_DATE": now,
            "CHANGED_BY": str(ctx.user_id),
            "CHANGED_DATE": now,
            "ACTIVITY_DATE": now,
            "STATUS": str(PENDING),
            "STATUS_CHANGED_DATE": now,
            "GUID": f"{{{uuid.uuid4()}}}",
            "SITE_ID": "s1",
            "SUBORDINATE": "Y",
            "OUTLOOK_VERSION": "1",
            "DESCRIPTION": "",
            "DESCRIPTION_IN_BBCODE": "Y",
            "DURATION_TYPE": "days",
            "GROUP_ID": "0",
            "TIME_ESTIMATE": "0",
            "AUDITORS": [],
            "ACCOMPLICES": [],
            "TAGS": [],
            "UF_CRM_TASK": [],
            "UF_TASK_WEBDAV_FILES": [],
            "UF_MAIL_MESSAGE": None,
        }
    )
    for key, value in fields.items():
        if key in _WRITABLE:
            task[key] = _value(key, value)
    if not task["CREATED_BY"]:
        task["CREATED_BY"] = str(ctx.user_id)
    _check(portal, task)
    if task_id is None:
        task_id = portal.next_id("task")
    else:
        portal.bump_id("task", task_id)
    task["ID"] = str(task_id)
    portal.tasks[task_id] = task
    portal.task_comments.setdefault(task_id, [])
    ctx.emit(
        "ONTASKADD",
        {
            "FIELDS_BEFORE": "undefined",
            "FIELDS_AFTER": {"ID": task_id},
            "IS_ACCESSIBLE_BEFORE": "N",
            "IS_ACCESSIBLE_AFTER": "undefined",
        },
        task_id,
    )
    return task_id


def _task_id(params: dict[str, Any]) -> int:
    raw = param(params, "taskId", "TASKID", "id")
    if raw is None:
        raise RestError("100", "Could not find value for parameter {taskId} (internal error)")
    task_id = to_int(raw)
    if task_id is None or task_id <= 0:
        raise RestError("0", "wrong task id")
    return task_id


def _task(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    task = ctx.portal.tasks.get(_task_id(params))
    if task is None:
        raise RestError("0", _NOT_ALLOWED)
    return task


def _emit_update(ctx: CallContext, task: dict[str, Any]) -> None:
    task_id = int(task["ID"])
    ctx.emit(
        "ONTASKUPDATE",
        {
            "FIELDS_BEFORE": {"ID": task_id},
            "FIELDS_AFTER": {"ID": task_id},
            "IS_ACCESSIBLE_BEFORE": "undefined",
            "IS_ACCESSIBLE_AFTER": "undefined",
        },
        task_id,
    )


def _touch(ctx: CallContext, task: dict[str, Any]) -> None:
    now = ctx.portal.now_iso()
    task["CHANGED_BY"] = str(ctx.user_id)
    task["CHANGED_DATE"] = now
    task["ACTIVITY_DATE"] = now


def _set_status(ctx: CallContext, task: dict[str, Any], status: int) -> None:
    now = ctx.portal.now_iso()
    task["STATUS"] = str(status)
    task["STATUS_CHANGED_BY"] = str(ctx.user_id)
    task["STATUS_CHANGED_DATE"] = now
    if status == COMPLETED:
        task["CLOSED_BY"], task["CLOSED_DATE"] = str(ctx.user_id), now
    elif status in {PENDING, IN_PROGRESS}:
        task["CLOSED_BY"], task["CLOSED_DATE"] = None, None
    if status == IN_PROGRESS and not task["DATE_START"]:
        task["DATE_START"] = now


@method("tasks.task.add")
def task_add(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    task_id = create_task(ctx, _fields(params))
    return {"task": task_view(ctx.portal, ctx.portal.tasks[task_id])}


@method("tasks.task.get")
def task_get(ctx: CallContext, params: dict[str, Any]) -> Any:
    task = ctx.portal.tasks.get(_task_id(params))
    if task is None:
        return []  # the portal answers an empty result for a missing or hidden task
    return {"task": task_view(ctx.portal, task, param(params, "select"))}


@method("tasks.task.update")
def task_update(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    task = _task(ctx, params)
    fields = _fields(params)
    updated = dict(task)
    for key, value in fields.items():
        if key in _WRITABLE:
            updated[key] = _value(key, value)
    _check(ctx.portal, updated)
    changed = {k for k in updated if updated[k] != task[k]}
    if changed:
        status_changed = "STATUS" in changed
        task.update(updated)
        if status_changed:
            _set_status(ctx, task, int(task["STATUS"]))
        _touch(ctx, task)
        _emit_update(ctx, task)
    return {"task": task_view(ctx.portal, task)}


def _transition(allowed_from: set[int], target: int) -> Any:
    def handler(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        task = _task(ctx, params)
        status = int(task["STATUS"])
        if status not in allowed_from:
            raise RestError("0", _NOT_ALLOWED)
        new_status = target
        if (
            target == COMPLETED
            and task["TASK_CONTROL"] == "Y"
            and (task["CREATED_BY"] != str(ctx.user_id))
        ):
            new_status = AWAITING_CONTROL
        _set_status(ctx, task, new_status)
        _touch(ctx, task)
        _emit_update(ctx, task)
        return {"task": task_view(ctx.portal, task)}

    return handler


_OPEN = {1, PENDING, IN_PROGRESS, DEFERRED}
method("tasks.task.complete")(_transition(_OPEN | {AWAITING_CONTROL}, COMPLETED))
method("tasks.task.start")(_transition({1, PENDING, DEFERRED}, IN_PROGRESS))
method("tasks.task.pause")(_transition({IN_PROGRESS}, PENDING))
method("tasks.task.defer")(_transition({1, PENDING, IN_PROGRESS}, DEFERRED))
method("tasks.task.renew")(_transition({AWAITING_CONTROL, COMPLETED, DEFERRED}, PENDING))
method("tasks.task.approve")(_transition({AWAITING_CONTROL}, COMPLETED))
method("tasks.task.disapprove")(_transition({AWAITING_CONTROL}, PENDING))


@method("tasks.task.delegate")
def task_delegate(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    task = _task(ctx, params)
    user_id = to_int(param(params, "userId", "USERID"), 0) or 0
    if user_id not in ctx.portal.users:
        raise _core_error('User specified in the "Assignee" field not found')
    if task["RESPONSIBLE_ID"] != str(user_id):
        task["RESPONSIBLE_ID"] = str(user_id)
        _touch(ctx, task)
        _emit_update(ctx, task)
    return {"task": task_view(ctx.portal, task)}


@method("tasks.task.delete")
def task_delete(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    task = _task(ctx, params)
    task_id = int(task["ID"])
    del ctx.portal.tasks[task_id]
    ctx.portal.task_comments.pop(task_id, None)
    ctx.emit(
        "ONTASKDELETE",
        {
            "FIELDS_BEFORE": {"ID": task_id},
            "FIELDS_AFTER": "undefined",
            "IS_ACCESSIBLE_BEFORE": "undefined",
            "IS_ACCESSIBLE_AFTER": "undefined",
        },
        task_id,
    )
    return {"task": True}


# ------------------------------------------------------------------ list
_FILTER_ALIASES = {
    "REAL_STATUS": "STATUS",
    "TAG": "TAGS",
    "ACCOMPLICE": "ACCOMPLICES",
    "AUDITOR": "AUDITORS",
}


def _kind(field: str) -> str:
    if field in _INTS or field in {"ACCOMPLICES", "AUDITORS"}:
        return "int"
    return "date" if field in _DATES else "str"


def _filter(params: dict[str, Any]) -> dict[str, Any]:
    raw = param(params, "filter") or {}
    result: dict[str, Any] = {}
    if not isinstance(raw, dict):
        return result
    for key, value in raw.items():
        key = str(key)
        if key.startswith("::"):
            continue  # sub-filter params (favourites) are not emulated
        op = key[: len(key) - len(key.lstrip("!<>=%@"))]
        field = key[len(op) :].upper()
        if field == "TITLE" and not op and "%" in str(value):
            op = "=%"
        result[op + field] = value
    return result


@method("tasks.task.list")
def task_list(ctx: CallContext, params: dict[str, Any]) -> Page:
    portal = ctx.portal

    def getter(task: dict[str, Any], field: str) -> Any:
        if field == "STATUS":
            return _sub_status(portal, task)
        return task.get(_FILTER_ALIASES.get(field, field))

    rows = [t for t in portal.tasks.values() if matches(t, _filter(params), _kind, getter)]
    order_param = param(params, "order")
    order = [
        (_FILTER_ALIASES.get(str(k).upper(), str(k).upper()), str(v).lower() == "desc")
        for k, v in (order_param.items() if isinstance(order_param, dict) else [])
    ] or [("ID", True)]
    rows = sort_records(rows, order, _kind)
    page = paginate(rows, param(params, "start"))
    select = param(params, "select")
    tasks = [task_view(portal, t, select) for t in page.result]
    return Page({"tasks": tasks}, page.total, page.next)


# ------------------------------------------------------------------ comments
def _positional(params: dict[str, Any], index: int, *names: str) -> Any:
    value = params.get(str(index))
    return value if value is not None else param(params, *names)


@method("task.commentitem.add")
def comment_add(ctx: CallContext, params: dict[str, Any]) -> int:
    portal = ctx.portal
    task_id = to_int(_positional(params, 0, "TASKID", "TASK_ID"), 0) or 0
    fields = _positional(params, 1, "FIELDS", "fields")
    task = portal.tasks.get(task_id)
    if task is None:
        raise _core_error(_NOT_ALLOWED)
    if not isinstance(fields, dict):
        raise RestError("100", "Could not find value for parameter {FIELDS} (internal error)")
    fields = {str(k).upper(): v for k, v in fields.items()}
    message = str(fields.get("POST_MESSAGE") or "").strip()
    if not message:
        raise _core_error("Comment text is empty")
    author = to_int(fields.get("AUTHOR_ID"), ctx.user_id) or ctx.user_id
    comment_id = portal.next_id("task_comment")
    portal.task_comments.setdefault(task_id, []).append(
        {
            "ID": str(comment_id),
            "AUTHOR_ID": str(author),
            "AUTHOR_NAME": portal.user_name(author),
            "AUTHOR_EMAIL": portal.users.get(author, {}).get("EMAIL", ""),
            "POST_DATE": portal.now_iso(),
            "POST_MESSAGE": message,
            "POST_MESSAGE_HTML": message,
        }
    )
    task["COMMENTS_COUNT"] = str(len(portal.task_comments[task_id]))
    ctx.emit(
        "ONTASKCOMMENTADD",
        {
            "FIELDS_BEFORE": "undefined",
            "FIELDS_AFTER": {"ID": comment_id, "TASK_ID": task_id},
            "IS_ACCESSIBLE_BEFORE": "undefined",
            "IS_ACCESSIBLE_AFTER": "undefined",
        },
        task_id,
    )
    return comment_id


def _comment_kind(field: str) -> str:
    if field in {"ID", "AUTHOR_ID"}:
        return "int"
    return "date" if field == "POST_DATE" else "str"


@method("task.commentitem.getlist")
def comment_getlist(ctx: CallContext, params: dict[str, Any]) -> list[dict[str, Any]]:
    task_id = to_int(_positional(params, 0, "TASKID", "TASK_ID"), 0) or 0
    if task_id not in ctx.portal.tasks:
        raise _core_error(_NOT_ALLOWED)
    order = _positional(params, 1, "ORDER")
    filter_ = _positional(params, 2, "FILTER")
    rows = [
        c
        for c in ctx.portal.task_comments.get(task_id, [])
        if matches(c, filter_ if isinstance(filter_, dict) else {}, _comment_kind)
    ]
    if isinstance(order, dict):
        rows = sort_records(
            rows,
            [(str(k).upper(), str(v).lower() == "desc") for k, v in order.items()],
            _comment_kind,
        )
    return rows
