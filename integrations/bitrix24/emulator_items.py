"""crm.type.list and crm.item.* for smart processes (camelCase, integer ids)."""

from __future__ import annotations

from typing import Any

from integrations.bitrix24.emulator_query import Page, matches, paginate, parse_order, sort_records
from integrations.bitrix24.emulator_registry import CallContext, RestError, method, param
from integrations.bitrix24.emulator_state import Portal
from integrations.bitrix24.emulator_values import (
    as_list,
    iso_or_none,
    to_float,
    to_int,
    yn,
)

_INT_FIELDS = {
    "id",
    "createdBy",
    "updatedBy",
    "movedBy",
    "categoryId",
    "companyId",
    "contactId",
    "mycompanyId",
    "assignedById",
    "lastActivityBy",
    "webformId",
}
_DATE_FIELDS = {
    "createdTime",
    "updatedTime",
    "movedTime",
    "begindate",
    "closedate",
    "lastActivityTime",
}
_FLAG_FIELDS = {"opened", "isManualOpportunity"}
_SERVER_FIELDS = {
    "id",
    "createdBy",
    "updatedBy",
    "movedBy",
    "createdTime",
    "updatedTime",
    "movedTime",
    "previousStageId",
    "entityTypeId",
    "lastActivityBy",
    "lastActivityTime",
}


def _type(portal: Portal, params: dict[str, Any]) -> int:
    entity_type_id = to_int(param(params, "entityTypeId"), 0) or 0
    if entity_type_id not in portal.smart_types:
        raise RestError("NOT_FOUND", "Smart process not found")
    return entity_type_id


def _stages(portal: Portal, entity_type_id: int, category_id: int) -> list[str]:
    entity = f"DYNAMIC_{entity_type_id}_STAGE_{category_id}"
    return [row["STATUS_ID"] for row in portal.category_stages(entity)]


def _default_category(portal: Portal, entity_type_id: int) -> int:
    categories = [c for c in portal.item_categories.values() if c["entityTypeId"] == entity_type_id]
    default = next((c for c in categories if c["isDefault"] == "Y"), categories[0])
    return int(default["id"])


def _resolve_stage(portal: Portal, entity_type_id: int, category_id: int, stage: Any) -> str:
    stages = _stages(portal, entity_type_id, category_id)
    if stage in (None, ""):
        return stages[0]
    code = str(stage)
    if ":" not in code:
        code = f"DT{entity_type_id}_{category_id}:{code}"
    if code not in stages:
        raise RestError(
            "CRM_FIELD_ERROR_VALUE_NOT_VALID", f"Invalid value for field stageId: {stage}"
        )
    return code


def _value(field: str, value: Any) -> Any:
    if field in _FLAG_FIELDS:
        return yn(value)
    if field in {"observers", "contactIds"}:
        return [i for i in (to_int(v) for v in as_list(value)) if i]
    if value is None or value == "":
        return None
    if field in _INT_FIELDS or field.startswith("parentId"):
        return to_int(value)
    if field in _DATE_FIELDS:
        return iso_or_none(value)
    if field in {"opportunity", "taxValue"}:
        return to_float(value)
    return value


def _write(item: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    changed: dict[str, Any] = {}
    for key, value in fields.items():
        if key in _SERVER_FIELDS or key in {"categoryId", "stageId"}:
            continue
        new = _value(key, value)
        if item.get(key) != new:
            item[key] = new
            changed[key] = new
    return changed


def _fields(params: dict[str, Any]) -> dict[str, Any]:
    fields = param(params, "fields")
    if not isinstance(fields, dict):
        raise RestError("100", "Could not find value for parameter {fields}")
    return {str(k): v for k, v in fields.items()}


def _item(portal: Portal, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    entity_type_id = _type(portal, params)
    item = portal.items[entity_type_id].get(to_int(param(params, "id"), 0) or 0)
    if item is None:
        raise RestError("NOT_FOUND", "Element not found")
    return entity_type_id, item


def _event_data(entity_type_id: int, item_id: int) -> dict[str, Any]:
    return {"FIELDS": {"ID": item_id, "ENTITY_TYPE_ID": entity_type_id}}


@method("crm.type.list")
def type_list(ctx: CallContext, params: dict[str, Any]) -> Page:
    types = [
        {
            "id": t["id"],
            "title": t["title"],
            "code": t["code"],
            "entityTypeId": t["entityTypeId"],
            "isCategoriesEnabled": "Y",
            "isStagesEnabled": "Y",
            "isClientEnabled": "Y",
            "isLinkWithProductsEnabled": "N",
            "isUseInUserfieldEnabled": "Y",
        }
        for t in ctx.portal.smart_types.values()
    ]
    page = paginate(types, param(params, "start"))
    return Page({"types": page.result}, page.total, page.next)


@method("crm.item.add")
def item_add(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    portal = ctx.portal
    entity_type_id = _type(portal, params)
    fields = _fields(params)
    category_id = to_int(fields.get("categoryId")) or _default_category(portal, entity_type_id)
    if not _stages(portal, entity_type_id, category_id):
        raise RestError("CRM_FIELD_ERROR_VALUE_NOT_VALID", "Invalid value for field categoryId")
    stage = _resolve_stage(portal, entity_type_id, category_id, fields.get("stageId"))
    item_id = portal.next_id(f"item_{entity_type_id}")
    now = portal.now_iso()
    item: dict[str, Any] = {
        "id": item_id,
        "xmlId": None,
        "title": f"Элемент #{item_id}",
        "createdBy": ctx.user_id,
        "updatedBy": ctx.user_id,
        "movedBy": ctx.user_id,
        "createdTime": now,
        "updatedTime": now,
        "movedTime": now,
        "categoryId": category_id,
        "opened": "Y",
        "stageId": stage,
        "previousStageId": "",
        "begindate": now,
        "closedate": None,
        "companyId": None,
        "contactId": None,
        "opportunity": 0.0,
        "isManualOpportunity": "N",
        "taxValue": 0.0,
        "currencyId": "RUB",
        "assignedById": ctx.user_id,
        "observers": [],
        "contactIds": [],
        "entityTypeId": entity_type_id,
    }
    _write(item, fields)
    portal.items[entity_type_id][item_id] = item
    ctx.emit("ONCRMDYNAMICITEMADD", _event_data(entity_type_id, item_id), item_id)
    return {"item": dict(item)}


@method("crm.item.get")
def item_get(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"item": dict(_item(ctx.portal, params)[1])}


@method("crm.item.update")
def item_update(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    portal = ctx.portal
    entity_type_id, item = _item(portal, params)
    fields = _fields(params)
    stage = None
    if "stageId" in fields:
        stage = _resolve_stage(portal, entity_type_id, item["categoryId"], fields["stageId"])
    changed = _write(item, fields)
    if stage is not None and stage != item["stageId"]:
        item["previousStageId"], item["stageId"] = item["stageId"], stage
        item["movedTime"], item["movedBy"] = portal.now_iso(), ctx.user_id
        changed["stageId"] = stage
    if changed:
        item["updatedTime"], item["updatedBy"] = portal.now_iso(), ctx.user_id
        ctx.emit("ONCRMDYNAMICITEMUPDATE", _event_data(entity_type_id, item["id"]), item["id"])
    return {"item": dict(item)}


@method("crm.item.delete")
def item_delete(ctx: CallContext, params: dict[str, Any]) -> list[Any]:
    entity_type_id, item = _item(ctx.portal, params)
    del ctx.portal.items[entity_type_id][item["id"]]
    ctx.emit("ONCRMDYNAMICITEMDELETE", _event_data(entity_type_id, item["id"]), item["id"])
    return []


def _item_kind(field: str) -> str:
    if field in _INT_FIELDS or field.startswith("parentId"):
        return "int"
    if field in _DATE_FIELDS:
        return "date"
    return "float" if field in {"opportunity", "taxValue"} else "str"


@method("crm.item.list")
def item_list(ctx: CallContext, params: dict[str, Any]) -> Page:
    portal = ctx.portal
    entity_type_id = _type(portal, params)
    filter_ = param(params, "filter") or {}
    if not isinstance(filter_, dict):
        filter_ = {}
    rows = [
        i
        for i in portal.items[entity_type_id].values()
        if matches(i, filter_, _item_kind, upper=False)
    ]
    order = parse_order(param(params, "order"), upper=False) or [("id", False)]
    rows = sort_records(rows, order, _item_kind)
    select = [str(s) for s in as_list(param(params, "select"))]
    page = paginate(rows, param(params, "start"))
    items = [
        dict(i) if not select or "*" in select else {k: i.get(k) for k in ["id", *select]}
        for i in page.result
    ]
    return Page({"items": items}, page.total, page.next)
