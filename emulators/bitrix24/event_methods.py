"""event.bind/unbind/get, events and event.offline.* — application (OAuth) context only.

A webhook calling any of them gets 403 WRONG_AUTH_TYPE, as on a real portal. The offline
queue itself lives in `emulator_subscriptions`; here are the REST semantics of
`Bitrix\\Rest\\Api\\Event` (filters and orders sanitised, clear=0 gated by a feature).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emulators.bitrix24.query import (
    Page,
    matches,
    paginate,
    sanitize_filter,
    sanitize_order,
    sort_records,
)
from emulators.bitrix24.registry import (
    CallContext,
    RestError,
    argument_error,
    method,
    param,
)
from emulators.bitrix24.subscriptions import Binding, OfflineRow
from emulators.bitrix24.values import to_int

ONLINE, OFFLINE = "online", "offline"
EXTENDED_FEATURE = "rest_offline_extended"
LIST_LIMIT = 50
_GET_FIELDS = ("ID", "TIMESTAMP_X", "EVENT_NAME", "MESSAGE_ID")
_LIST_FIELDS = (*_GET_FIELDS, "PROCESS_ID", "ERROR")
_NO_OFFLINE = {"ONOFFLINEEVENT"}

# Events a handler can be bound to, by scope.
EVENTS_BY_SCOPE: dict[str, tuple[str, ...]] = {
    "": ("ONAPPINSTALL", "ONAPPUNINSTALL", "ONAPPUPDATE", "ONAPPTEST", "ONOFFLINEEVENT"),
    "crm": (
        "ONCRMDEALADD",
        "ONCRMDEALUPDATE",
        "ONCRMDEALDELETE",
        "ONCRMDEALMOVETOCATEGORY",
        "ONCRMCONTACTADD",
        "ONCRMCONTACTUPDATE",
        "ONCRMCOMPANYADD",
        "ONCRMCOMPANYUPDATE",
        "ONCRMDYNAMICITEMADD",
        "ONCRMDYNAMICITEMUPDATE",
        "ONCRMDYNAMICITEMDELETE",
    ),
    "task": ("ONTASKADD", "ONTASKUPDATE", "ONTASKDELETE", "ONTASKCOMMENTADD"),
}


def _known_event(ctx: CallContext, name: str) -> bool:
    scopes = {"", *(ctx.scopes or EVENTS_BY_SCOPE)}
    for scope in scopes:
        events = EVENTS_BY_SCOPE.get(scope, ())
        if name in events:
            return True
        if scope == "crm" and any(
            name == f"{base}_{etid}"
            for base in ("ONCRMDYNAMICITEMADD", "ONCRMDYNAMICITEMUPDATE", "ONCRMDYNAMICITEMDELETE")
            for etid in ctx.portal.smart_types
        ):
            return True
    return False


def _upper(params: dict[str, Any]) -> dict[str, Any]:
    return {str(k).upper(): v for k, v in params.items()}


def _event_type(raw: Any) -> str:
    kind = str(raw or "").strip().lower() or ONLINE
    if kind not in {ONLINE, OFFLINE}:
        raise argument_error("Value must be one of {online|offline}", "EVENT_TYPE")
    return kind


@method("events", app_only=True)
def events_list(ctx: CallContext, params: dict[str, Any]) -> list[str]:
    query = _upper(params)
    if query.get("SCOPE"):
        scopes = {str(query["SCOPE"])}
    elif query.get("FULL"):
        scopes = set(EVENTS_BY_SCOPE)
    else:
        scopes = {"", *(ctx.scopes or ())}
    names = [e for scope in EVENTS_BY_SCOPE if scope in scopes for e in EVENTS_BY_SCOPE[scope]]
    return names


@method("event.bind", app_only=True)
def event_bind(ctx: CallContext, params: dict[str, Any]) -> bool:
    query = _upper(params)
    name = str(query.get("EVENT") or "").strip().upper()
    if not name:
        raise argument_error("Argument 'EVENT' is null or empty", "EVENT")
    kind = _event_type(query.get("EVENT_TYPE"))
    handler = str(query.get("HANDLER") or "")
    if kind == OFFLINE:
        if not ctx.is_admin:
            raise RestError(
                "ACCESS_DENIED", "Offline events binding requires administrator access rights", 403
            )
        handler = ""
    elif not handler:
        raise argument_error("Argument 'HANDLER' is null or empty", "HANDLER")
    if not _known_event(ctx, name):
        raise RestError("ERROR_EVENT_NOT_FOUND", "Event not found")
    if kind == OFFLINE and name in _NO_OFFLINE:
        raise argument_error("Offline event cannot be registered for this event.")
    assert ctx.app_id is not None
    connector = ctx.auth_connector if kind == OFFLINE else ""
    for binding in ctx.portal.bindings:
        same = (binding.app_id, binding.event, binding.handler) == (ctx.app_id, name, handler)
        if same and binding.connector == connector:
            raise RestError(
                "ERROR_HANDLER_ALREADY_EXIST",
                "Unable to set event handler: Handler already exists!",
            )
    raw_options = query.get("OPTIONS")
    options = raw_options if isinstance(raw_options, dict) else {}
    allowed = {}
    if name == "ONOFFLINEEVENT" and "minTimeout" in options:
        allowed["minTimeout"] = to_int(options["minTimeout"], 1)
    ctx.portal.bindings.append(
        Binding(
            id=ctx.portal.next_binding_id(),
            event=name,
            app_id=ctx.app_id,
            handler=handler,
            offline=kind == OFFLINE,
            connector=connector,
            user_id=to_int(query.get("AUTH_TYPE"), 0) or 0,
            options=allowed,
        )
    )
    return True


@method("event.unbind", app_only=True)
def event_unbind(ctx: CallContext, params: dict[str, Any]) -> dict[str, int]:
    query = _upper(params)
    name = str(query.get("EVENT") or "").strip().upper()
    if not name:
        raise argument_error("Argument 'EVENT' is null or empty", "EVENT")
    kind = _event_type(query.get("EVENT_TYPE"))
    handler = "" if kind == OFFLINE else str(query.get("HANDLER") or "")
    if kind == ONLINE and not handler:
        raise argument_error("Argument 'HANDLER' is null or empty", "HANDLER")

    def hit(b: Binding) -> bool:
        same = (b.app_id, b.event, b.handler) == (ctx.app_id, name, handler)
        return same and (kind == ONLINE or b.connector == ctx.auth_connector)

    kept = [b for b in ctx.portal.bindings if not hit(b)]
    count = len(ctx.portal.bindings) - len(kept)
    ctx.portal.bindings = kept
    return {"count": count}


@method("event.get", app_only=True)
def event_get(ctx: CallContext, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [b.as_dict() for b in ctx.portal.bindings if b.app_id == ctx.app_id]


# ------------------------------------------------------------------ offline queue
def _row_kind(field: str) -> str:
    if field in {"ID", "ERROR"}:
        return "int"
    return "date" if field == "TIMESTAMP_X" else "str"


def _row_filter(filter_: dict[str, Any]) -> Callable[[OfflineRow], bool]:
    return lambda row: matches(row.view(full=True), filter_, _row_kind)


def _row_order(order: list[tuple[str, bool]]) -> Callable[[list[OfflineRow]], list[OfflineRow]]:
    def sort(rows: list[OfflineRow]) -> list[OfflineRow]:
        pairs = [(row.view(full=True), row) for row in sorted(rows, key=lambda r: r.id)]
        rows_by_view = {id(view): row for view, row in pairs}
        ordered = sort_records([view for view, _ in pairs], order, _row_kind)
        return [rows_by_view[id(view)] for view in ordered]

    return sort


def _require_admin(ctx: CallContext) -> None:
    if not ctx.is_admin:
        raise RestError("ACCESS_DENIED", "Access denied!", 403)


@method("event.offline.get", app_only=True)
def offline_get(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    _require_admin(ctx)
    query = {str(k).lower(): v for k, v in params.items()}
    clear = True if query.get("clear") in (None, "") else bool(to_int(query["clear"], 0))
    process_id = str(query["process_id"]).strip() if query.get("process_id") else None
    if not clear and not ctx.portal.features.get(EXTENDED_FEATURE, False):
        raise RestError(
            "WRONG_LICENSE",
            "This feature is not enabled for the current license: extended offline events handling",
            403,
        )
    limit = LIST_LIMIT if query.get("limit") in (None, "") else to_int(query["limit"], 0)
    if not limit or limit <= 0:
        raise argument_error("Value must be positive integer", "LIMIT")
    keep = _row_filter(sanitize_filter(query.get("filter"), _GET_FIELDS))
    order = _row_order(
        sanitize_order(query.get("order", {"TIMESTAMP_X": "ASC"}), _GET_FIELDS)
        or [("TIMESTAMP_X", False)]
    )
    errors = to_int(query.get("error"), 0) == 1
    queue, app, connector = ctx.portal.offline, ctx.app_id or "", ctx.auth_connector
    returned = process_id
    if process_id is None:
        process_id = queue.reserve(
            app, connector, error=errors, keep=keep, order=order, limit=limit
        )
        returned = None if clear else process_id
    rows = queue.reserved(
        app, connector, process_id, error=errors, keep=keep, order=order, limit=limit
    )
    events = [r.view() for r in rows]
    if clear and rows:
        queue.clear(process_id, app, connector)
    return {"process_id": returned, "events": events}


def _id_list(value: Any, argument: str, *, message_ids: bool) -> list[Any]:
    if not isinstance(value, list | dict):
        what = "MESSAGE_ID values" if message_ids else "integers"
        raise argument_error(f"Value must be array of {what}", argument)
    items = list(value.values()) if isinstance(value, dict) else value
    if message_ids:
        cleaned = [str(v).strip() for v in items]
        if any(len(v) != 32 for v in cleaned):
            raise argument_error("Value must be array of MESSAGE_ID values", argument)
        return cleaned
    numbers = [to_int(v, 0) or 0 for v in items]
    if any(n <= 0 for n in numbers):
        raise argument_error("Value must be array of integers", argument)
    return numbers


def _process_id(query: dict[str, Any]) -> str:
    if query.get("process_id") in (None, ""):
        raise argument_error("Argument 'PROCESS_ID' is null or empty", "PROCESS_ID")
    return str(query["process_id"]).strip()


@method("event.offline.clear", app_only=True)
def offline_clear(ctx: CallContext, params: dict[str, Any]) -> bool:
    _require_admin(ctx)
    query = {str(k).lower(): v for k, v in params.items()}
    process_id = _process_id(query)
    app, connector = ctx.app_id or "", ctx.auth_connector
    if "message_id" in query:
        messages = _id_list(query["message_id"], "message_id", message_ids=True)
        ctx.portal.offline.clear(process_id, app, connector, message_ids=messages)
    elif "id" in query:
        ids = _id_list(query["id"], "id", message_ids=False)
        ctx.portal.offline.clear(process_id, app, connector, ids=ids)
    else:
        ctx.portal.offline.clear(process_id, app, connector)
    return True


@method("event.offline.error", app_only=True)
def offline_error(ctx: CallContext, params: dict[str, Any]) -> bool:
    _require_admin(ctx)
    query = {str(k).lower(): v for k, v in params.items()}
    process_id = _process_id(query)
    raw = query.get("message_id")
    if not isinstance(raw, list | dict):
        raise argument_error("Value must be array of MESSAGE_ID values", "message_id")
    messages = [str(v).strip() for v in (raw.values() if isinstance(raw, dict) else raw)]
    if messages:
        ctx.portal.offline.mark_error(process_id, ctx.app_id or "", ctx.auth_connector, messages)
    return True


@method("event.offline.list", app_only=True)
def offline_list(ctx: CallContext, params: dict[str, Any]) -> Page:
    _require_admin(ctx)
    query = {str(k).lower(): v for k, v in params.items()}
    keep = _row_filter(sanitize_filter(query.get("filter"), _LIST_FIELDS))
    order = _row_order(sanitize_order(query.get("order", {"ID": "ASC"}), _LIST_FIELDS))
    rows = [r for r in ctx.portal.offline.listed(ctx.app_id or "", ctx.auth_connector) if keep(r)]
    page = paginate(order(rows), param(params, "start"), orm=True)
    return Page([r.view(full=True) for r in page.result], page.total, page.next)


@method("feature.get")
def feature_get(ctx: CallContext, params: dict[str, Any]) -> dict[str, str]:
    code = str(param(params, "CODE", "code") or "")
    return {"value": "Y" if ctx.portal.features.get(code, False) else "N"}


@method("app.info", app_only=True)
def app_info(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    app = ctx.portal.apps[ctx.app_id or ""]
    return {
        "ID": 1,
        "CODE": app.client_id,
        "VERSION": 1,
        "STATUS": "L",
        "INSTALLED": True,
        "PAYMENT_EXPIRED": "N",
        "DAYS": None,
        "LICENSE": "ru_project",
        "LICENSE_TYPE": "PROJECT",
        "LICENSE_FAMILY": "project",
    }
