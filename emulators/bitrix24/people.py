"""user.*, department.get and im.notify.* (notifications with TAG replacement)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from emulators.bitrix24.query import Page, matches, paginate, sort_records
from emulators.bitrix24.registry import CallContext, RestError, method, param
from emulators.bitrix24.state import Portal
from emulators.bitrix24.values import as_list, as_str, to_int

_USER_RESERVED = {"SORT", "ORDER", "FILTER", "START", "ADMIN_MODE", "SELECT", "AUTH", "NAME_SEARCH"}
_ATTACH_LIMIT = 30_000


# ------------------------------------------------------------------ users
def user_view(portal: Portal, user: dict[str, Any]) -> dict[str, Any]:
    return {
        "ID": str(user["ID"]),
        "XML_ID": user.get("XML_ID"),
        "ACTIVE": bool(user.get("ACTIVE", True)),
        "NAME": user.get("NAME", ""),
        "LAST_NAME": user.get("LAST_NAME", ""),
        "SECOND_NAME": user.get("SECOND_NAME", ""),
        "EMAIL": user.get("EMAIL", ""),
        "LAST_LOGIN": None,
        "DATE_REGISTER": "2024-01-09T00:00:00+03:00",
        "IS_ONLINE": "N",
        "TIME_ZONE_OFFSET": "10800",
        "PERSONAL_GENDER": user.get("PERSONAL_GENDER", ""),
        "PERSONAL_BIRTHDAY": "",
        "PERSONAL_PHONE": user.get("PERSONAL_PHONE", ""),
        "PERSONAL_MOBILE": user.get("PERSONAL_MOBILE", ""),
        "PERSONAL_CITY": user.get("PERSONAL_CITY", "Москва"),
        "WORK_PHONE": user.get("WORK_PHONE", ""),
        "WORK_POSITION": user.get("WORK_POSITION", ""),
        "WORK_COMPANY": user.get("WORK_COMPANY", ""),
        "UF_DEPARTMENT": [int(d) for d in as_list(user.get("UF_DEPARTMENT"))],
        "USER_TYPE": user.get("USER_TYPE", "employee"),
    }


def _user_kind(field: str) -> str:
    if field in {"ID", "UF_DEPARTMENT"}:
        return "int"
    return "bool" if field == "ACTIVE" else "str"


@method("user.get")
def user_get(ctx: CallContext, params: dict[str, Any]) -> Page:
    portal = ctx.portal
    filter_ = param(params, "FILTER", "filter")
    if not isinstance(filter_, dict):
        filter_ = {k: v for k, v in params.items() if str(k).upper() not in _USER_RESERVED}
    rows = [user_view(portal, u) for u in portal.users.values()]
    rows = [u for u in rows if matches(u, filter_, _user_kind)]
    sort_field = str(param(params, "sort", "SORT") or "ID").upper()
    descending = str(param(params, "order", "ORDER") or "ASC").upper() == "DESC"
    rows = sort_records(rows, [(sort_field, descending)], _user_kind)
    return paginate(rows, param(params, "start", "START"))


@method("user.current")
def user_current(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    return user_view(ctx.portal, ctx.portal.users[ctx.user_id])


@method("department.get")
def department_get(ctx: CallContext, params: dict[str, Any]) -> Page:
    rows = [
        {
            "ID": str(d["ID"]),
            "NAME": d["NAME"],
            "SORT": int(d.get("SORT", 500)),
            "PARENT": as_str(d.get("PARENT")),
            "UF_HEAD": as_str(d.get("UF_HEAD")),
        }
        for d in ctx.portal.departments.values()
    ]
    filter_ = {
        k: v for k, v in params.items() if str(k).upper() in {"ID", "NAME", "PARENT", "UF_HEAD"}
    }
    kinds = _department_kind
    rows = [d for d in rows if matches(d, filter_, kinds)]
    sort_field = str(param(params, "sort", "SORT") or "SORT").upper()
    descending = str(param(params, "order", "ORDER") or "ASC").upper() == "DESC"
    rows = sort_records(rows, [(sort_field, descending)], kinds)
    return paginate(rows, param(params, "START", "start"))


def _department_kind(field: str) -> str:
    return "int" if field in {"ID", "SORT", "PARENT", "UF_HEAD"} else "str"


# ------------------------------------------------------------------ notifications
def _app_tag(client_id: str, tag: Any) -> str | None:
    if tag in (None, ""):
        return None
    app_key = hashlib.md5(f"custom{client_id}".encode()).hexdigest()[:5]
    return f"MP|{app_key}|{tag}"


def _check_attach(attach: Any) -> None:
    if attach in (None, ""):
        return
    if isinstance(attach, str):
        try:
            attach = json.loads(attach)
        except ValueError as exc:
            raise RestError("ATTACH_ERROR", "Incorrect attach params") from exc
    if not isinstance(attach, dict | list):
        raise RestError("ATTACH_ERROR", "Incorrect attach params")
    if len(json.dumps(attach, ensure_ascii=False)) > _ATTACH_LIMIT:
        raise RestError("ATTACH_OVERSIZE", "You have exceeded the maximum allowable size of attach")


def _notify(ctx: CallContext, params: dict[str, Any], kind: str) -> int | bool:
    portal = ctx.portal
    p = {str(k).upper(): v for k, v in params.items()}
    user_id = to_int(p.get("TO", p.get("USER_ID")), 0) or 0
    if user_id <= 0:
        raise RestError("USER_ID_EMPTY", "User ID can't be empty")
    message = str(p.get("MESSAGE") or "").strip()
    if not message:
        raise RestError("MESSAGE_EMPTY", "Message can't be empty")
    _check_attach(p.get("ATTACH"))
    if user_id not in portal.users:
        return False
    # A webhook has no application: TAG/SUB_TAG only count when CLIENT_ID names one.
    client_id = str(p.get("CLIENT_ID") or "")
    notify_tag = _app_tag(client_id, p.get("TAG")) if client_id else None
    notify_sub_tag = _app_tag(client_id, p.get("SUB_TAG")) if client_id else None
    notification: dict[str, Any] = {
        "ID": portal.next_id("notification"),
        "USER_ID": user_id,
        "TYPE": kind,
        "FROM_USER_ID": 0 if kind == "SYSTEM" else ctx.user_id,
        "MESSAGE": message,
        "MESSAGE_OUT": str(p.get("MESSAGE_OUT") or "").strip(),
        "TAG": as_str(p.get("TAG")),
        "SUB_TAG": as_str(p.get("SUB_TAG")),
        "CLIENT_ID": client_id or None,
        "NOTIFY_TAG": notify_tag,
        "NOTIFY_SUB_TAG": notify_sub_tag,
        "DATE": portal.now_iso(),
    }
    if notify_tag:
        portal.notifications = [
            n
            for n in portal.notifications
            if not (n["USER_ID"] == user_id and n["NOTIFY_TAG"] == notify_tag)
        ]
    portal.notifications.append(notification)
    portal.notification_log.append(dict(notification))
    return int(notification["ID"])


@method("im.notify.system.add")
def notify_system_add(ctx: CallContext, params: dict[str, Any]) -> int | bool:
    return _notify(ctx, params, "SYSTEM")


@method("im.notify.personal.add")
def notify_personal_add(ctx: CallContext, params: dict[str, Any]) -> int | bool:
    return _notify(ctx, params, "USER")


@method("im.notify")
def notify_legacy(ctx: CallContext, params: dict[str, Any]) -> int | bool:
    kind = str(param(params, "TYPE", "type") or "USER").upper()
    return _notify(ctx, params, "SYSTEM" if kind == "SYSTEM" else "USER")


@method("im.notify.delete")
def notify_delete(ctx: CallContext, params: dict[str, Any]) -> bool:
    portal = ctx.portal
    p = {str(k).upper(): v for k, v in params.items()}
    notification_id = to_int(p.get("ID"), 0) or 0
    if notification_id > 0:
        portal.notifications = [n for n in portal.notifications if n["ID"] != notification_id]
        return True
    client_id = str(p.get("CLIENT_ID") or "")
    if not client_id:
        raise RestError("ACCESS_DENIED", "Client ID not specified", 403)
    if p.get("TAG"):
        tag = _app_tag(client_id, p["TAG"])
        portal.notifications = [n for n in portal.notifications if n["NOTIFY_TAG"] != tag]
    elif p.get("SUB_TAG"):
        sub_tag = _app_tag(client_id, p["SUB_TAG"])
        portal.notifications = [n for n in portal.notifications if n["NOTIFY_SUB_TAG"] != sub_tag]
    else:
        raise RestError("PARAMS_ERROR", "Incorrect params")
    return True
