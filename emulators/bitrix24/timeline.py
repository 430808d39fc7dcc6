"""crm.timeline.comment.* and crm.activity.* (including e-mails sent to clients)."""

from __future__ import annotations

import re
from typing import Any

from emulators.bitrix24.contacts import owner_exists
from emulators.bitrix24.query import (
    Page,
    matches,
    paginate,
    parse_order,
    select_fields,
    sort_records,
)
from emulators.bitrix24.registry import (
    CallContext,
    RestError,
    bad_id,
    fields_param,
    method,
    not_found,
    param,
)
from emulators.bitrix24.values import as_list, as_str, iso_or_none, names, to_int, yn

_ENTITY_TYPES = {"lead": 1, "deal": 2, "contact": 3, "company": 4}
_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")

_ACTIVITY_FIELDS = names(
    "ID OWNER_ID OWNER_TYPE_ID TYPE_ID PROVIDER_ID PROVIDER_TYPE_ID PROVIDER_GROUP_ID "
    "ASSOCIATED_ENTITY_ID SUBJECT CREATED LAST_UPDATED START_TIME END_TIME DEADLINE "
    "COMPLETED STATUS RESPONSIBLE_ID PRIORITY NOTIFY_TYPE NOTIFY_VALUE DESCRIPTION "
    "DESCRIPTION_TYPE DIRECTION LOCATION SETTINGS ORIGINATOR_ID ORIGIN_ID AUTHOR_ID "
    "EDITOR_ID"
)
_ACTIVITY_INTS = frozenset(
    names(
        "ASSOCIATED_ENTITY_ID AUTHOR_ID DESCRIPTION_TYPE DIRECTION EDITOR_ID ID NOTIFY_TYPE "
        "NOTIFY_VALUE OWNER_ID OWNER_TYPE_ID PRIORITY RESPONSIBLE_ID STATUS TYPE_ID"
    )
)
_ACTIVITY_DATES = {"CREATED", "LAST_UPDATED", "START_TIME", "END_TIME", "DEADLINE"}
_PROVIDERS = {
    1: ("CRM_MEETING", "MEETING"),
    2: ("CRM_CALL", "CALL"),
    3: ("CRM_TASK", "TASK"),
    4: ("CRM_EMAIL", "EMAIL"),
    6: ("CRM_TODO", "TODO"),
}
_EMAIL_TYPE, _OUTGOING = 4, 2


# ------------------------------------------------------------------ timeline comments
def _timeline_owner(ctx: CallContext, entity_type: str, entity_id: int | None) -> None:
    etid = _ENTITY_TYPES.get(entity_type)
    if etid is None and entity_type.startswith("dynamic_"):
        etid = to_int(entity_type.removeprefix("dynamic_"))
    if etid is None:
        raise RestError("INVALID_ARG_VALUE", f"Invalid value of ENTITY_TYPE: {entity_type}")
    if not entity_id or not owner_exists(ctx.portal, etid, entity_id):
        raise RestError("OWNER_NOT_FOUND", "Owner element not found")


@method("crm.timeline.comment.add")
def timeline_comment_add(ctx: CallContext, params: dict[str, Any]) -> int:
    fields = params.get("fields")  # only the lowercase key is accepted
    if not isinstance(fields, dict):
        raise RestError("INVALID_ARG_VALUE", "Required parameter 'fields' is not specified")
    fields = {str(k).upper(): v for k, v in fields.items()}
    entity_type = str(fields.get("ENTITY_TYPE") or "").lower()
    entity_id = to_int(fields.get("ENTITY_ID"))
    _timeline_owner(ctx, entity_type, entity_id)
    comment = str(fields.get("COMMENT") or "").strip()
    if not comment:
        raise RestError("INVALID_ARG_VALUE", "Comment text is empty")
    portal = ctx.portal
    comment_id = portal.next_id("timeline")
    portal.timeline_comments[comment_id] = {
        "ID": str(comment_id),
        "CREATED": portal.now_iso(),
        "ENTITY_ID": str(entity_id),
        "ENTITY_TYPE": entity_type,
        "AUTHOR_ID": str(to_int(fields.get("AUTHOR_ID")) or ctx.user_id),
        "COMMENT": comment,
        "FILES": [],
    }
    return comment_id


@method("crm.timeline.comment.get")
def timeline_comment_get(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    comment = ctx.portal.timeline_comments.get(to_int(param(params, "id", "ID"), 0) or 0)
    if comment is None:
        raise RestError("NOT_FOUND", "Not found")
    return comment


def _comment_kind(field: str) -> str:
    if field in {"ID", "ENTITY_ID", "AUTHOR_ID"}:
        return "int"
    return "date" if field == "CREATED" else "str"


@method("crm.timeline.comment.list")
def timeline_comment_list(ctx: CallContext, params: dict[str, Any]) -> Page:
    filter_ = param(params, "filter") or {}
    if not isinstance(filter_, dict):
        filter_ = {}
    rows = [c for c in ctx.portal.timeline_comments.values() if matches(c, filter_, _comment_kind)]
    rows = sort_records(rows, parse_order(param(params, "order")) or [("ID", False)], _comment_kind)
    fields = select_fields(param(params, "select") or ["*"], list(_COMMENT_FIELDS), [])
    page = paginate(rows, param(params, "start"))
    return Page(
        [{f: c.get(f) for f in fields if f in _COMMENT_FIELDS} for c in page.result],
        page.total,
        page.next,
    )


_COMMENT_FIELDS = ("ID", "CREATED", "ENTITY_ID", "ENTITY_TYPE", "AUTHOR_ID", "COMMENT", "FILES")


# ------------------------------------------------------------------ activities
def _activity_value(field: str, value: Any) -> Any:
    if field == "COMPLETED":
        return yn(value)
    if value is None or value == "":
        return None
    if field in _ACTIVITY_INTS:
        number = to_int(value)
        return None if number is None else str(number)
    if field in _ACTIVITY_DATES:
        return iso_or_none(value)
    if field == "SETTINGS":
        return value if isinstance(value, dict) else {}
    return as_str(value)


def _communications(raw: Any) -> list[dict[str, Any]]:
    result = []
    for item in as_list(raw):
        if isinstance(item, dict):
            item = {str(k).upper(): v for k, v in item.items()}
            result.append(
                {
                    "VALUE": str(item.get("VALUE") or ""),
                    "ENTITY_ID": as_str(item.get("ENTITY_ID")),
                    "ENTITY_TYPE_ID": as_str(item.get("ENTITY_TYPE_ID")),
                    "TYPE": str(item.get("TYPE") or ""),
                }
            )
    return result


def _send_email(ctx: CallContext, activity: dict[str, Any]) -> None:
    recipients = [c["VALUE"] for c in activity["COMMUNICATIONS"] if _EMAIL.fullmatch(c["VALUE"])]
    if not recipients:
        raise RestError("", "Email send error. Recipient e-mail address is not valid.")
    portal = ctx.portal
    responsible = portal.users.get(to_int(activity["RESPONSIBLE_ID"], 0) or 0, {})
    settings = activity.get("SETTINGS") or {}
    portal.emails.append(
        {
            "ACTIVITY_ID": activity["ID"],
            "OWNER_TYPE_ID": activity["OWNER_TYPE_ID"],
            "OWNER_ID": activity["OWNER_ID"],
            "FROM": settings.get("MESSAGE_FROM") or responsible.get("EMAIL") or "",
            "TO": recipients,
            "SUBJECT": activity["SUBJECT"],
            "BODY": activity["DESCRIPTION"],
            "RESPONSIBLE_ID": activity["RESPONSIBLE_ID"],
            "SENT_AT": portal.now_iso(),
        }
    )


@method("crm.activity.add")
def activity_add(ctx: CallContext, params: dict[str, Any]) -> int:
    portal = ctx.portal
    fields = {str(k).upper(): v for k, v in fields_param(params).items()}
    owner_type = to_int(fields.get("OWNER_TYPE_ID"))
    owner_id = to_int(fields.get("OWNER_ID"))
    if not owner_type or not owner_id:
        raise RestError("", "The field OWNER_ID is not defined or invalid.")
    if not owner_exists(portal, owner_type, owner_id):
        raise RestError("", "Owner not found.")
    type_id = to_int(fields.get("TYPE_ID"))
    if type_id not in _PROVIDERS:
        raise RestError("", "The field TYPE_ID is not defined or invalid.")
    communications = _communications(fields.get("COMMUNICATIONS"))
    if type_id in {1, 2, 4} and not communications:
        raise RestError("", "The field COMMUNICATIONS is not defined or invalid.")
    activity_id = portal.next_id("activity")
    now = portal.now_iso()
    provider, provider_type = _PROVIDERS[type_id]
    activity: dict[str, Any] = {f: None for f in _ACTIVITY_FIELDS}
    activity.update(
        {
            "ID": str(activity_id),
            "PROVIDER_ID": provider,
            "PROVIDER_TYPE_ID": provider_type,
            "CREATED": now,
            "LAST_UPDATED": now,
            "START_TIME": now,
            "END_TIME": now,
            "DEADLINE": now,
            "COMPLETED": "N",
            "RESPONSIBLE_ID": str(ctx.user_id),
            "PRIORITY": "2",
            "DESCRIPTION": "",
            "DESCRIPTION_TYPE": "1",
            "DIRECTION": "0",
            "SUBJECT": "",
            "SETTINGS": {},
            "AUTHOR_ID": str(ctx.user_id),
            "EDITOR_ID": str(ctx.user_id),
        }
    )
    for key, value in fields.items():
        if key in _ACTIVITY_FIELDS and key not in {
            "ID",
            "PROVIDER_ID",
            "PROVIDER_TYPE_ID",
            "CREATED",
            "LAST_UPDATED",
            "AUTHOR_ID",
        }:
            activity[key] = _activity_value(key, value)
    activity["OWNER_TYPE_ID"], activity["OWNER_ID"] = str(owner_type), str(owner_id)
    activity["STATUS"] = "2" if activity["COMPLETED"] == "Y" else "1"
    activity["COMMUNICATIONS"] = communications
    is_sent_email = (
        type_id == _EMAIL_TYPE
        and activity["DIRECTION"] == str(_OUTGOING)
        and activity["COMPLETED"] == "Y"
    )
    if is_sent_email:
        _send_email(ctx, activity)
    portal.activities[activity_id] = activity
    return activity_id


def _activity(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    activity_id = to_int(param(params, "id", "ID"))
    if not activity_id or activity_id <= 0:
        raise bad_id()
    activity = ctx.portal.activities.get(activity_id)
    if activity is None:
        raise not_found()
    return activity


@method("crm.activity.get")
def activity_get(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    return dict(_activity(ctx, params))


@method("crm.activity.list")
def activity_list(ctx: CallContext, params: dict[str, Any]) -> Page:
    filter_ = param(params, "filter") or {}
    if not isinstance(filter_, dict):
        filter_ = {}

    def kinds(field: str) -> str:
        if field in _ACTIVITY_INTS:
            return "int"
        return "date" if field in _ACTIVITY_DATES else "str"

    rows = [a for a in ctx.portal.activities.values() if matches(a, filter_, kinds)]
    rows = sort_records(rows, parse_order(param(params, "order")) or [("ID", False)], kinds)
    fields = select_fields(param(params, "select") or ["*"], _ACTIVITY_FIELDS, [])
    allowed = set(_ACTIVITY_FIELDS) | {"COMMUNICATIONS"}
    page = paginate(rows, param(params, "start"))
    return Page(
        [{f: a.get(f) for f in fields if f in allowed} for a in page.result], page.total, page.next
    )
