"""crm.type.list and crm.item.* — smart processes (camelCase, integer ids) and deals.

Smart-process items: stages `DT{etid}_{cat}:CODE` (bare codes auto-prefixed), `parentId2`
links an item to a deal, `xmlId` carries a marker, user fields are `ufCrm{typeId}_…`, and
an update that changes nothing is not saved (no event). Events ONCRMDYNAMICITEM{ADD,UPDATE,
DELETE} and their per-type twins `…_{etid}`; none for system types.

`entityTypeId: 2` serves deals in the same shape; crm.item.update is how a deal moves to
another pipeline (ONCRMDEALMOVETOCATEGORY).
"""

from __future__ import annotations

from typing import Any

from emulators.bitrix24 import deals as emulator_deals
from emulators.bitrix24.files import item_file
from emulators.bitrix24.query import (
    Page,
    filter_fields,
    matches,
    paginate,
    parse_order,
    sort_records,
    unknown_field,
)
from emulators.bitrix24.registry import CallContext, RestError, method, param
from emulators.bitrix24.state import Portal
from emulators.bitrix24.values import (
    as_list,
    camel,
    iso_or_none,
    to_float,
    to_int,
    truthy,
    uf_camel,
    yn,
)

DEAL = 2
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
    "leadId",
    "quoteId",
    "probability",
}
_DATE_FIELDS = {
    "createdTime",
    "updatedTime",
    "movedTime",
    "begindate",
    "closedate",
    "lastActivityTime",
}
_FLAG_FIELDS = {"opened", "isManualOpportunity", "closed"}
_FLOAT_FIELDS = {"opportunity", "taxValue"}
_LIST_FIELDS = {"observers", "contactIds"}
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
_ITEM_FIELDS = (
    "id",
    "xmlId",
    "title",
    "createdBy",
    "updatedBy",
    "movedBy",
    "createdTime",
    "updatedTime",
    "movedTime",
    "categoryId",
    "opened",
    "stageId",
    "previousStageId",
    "begindate",
    "closedate",
    "companyId",
    "contactId",
    "opportunity",
    "isManualOpportunity",
    "taxValue",
    "currencyId",
    "mycompanyId",
    "sourceId",
    "sourceDescription",
    "webformId",
    "assignedById",
    "lastActivityBy",
    "lastActivityTime",
    "observers",
    "contactIds",
    "entityTypeId",
)
# Deal fields whose crm.item names are not simply camelCased.
_DEAL_RENAMES = {
    "DATE_CREATE": "createdTime",
    "DATE_MODIFY": "updatedTime",
    "CREATED_BY_ID": "createdBy",
    "MODIFY_BY_ID": "updatedBy",
    "MOVED_BY_ID": "movedBy",
    "STAGE_SEMANTIC_ID": "stageSemanticId",
    "COMMENTS": "comments",
}


# ------------------------------------------------------------------ shared helpers
def _type(portal: Portal, params: dict[str, Any]) -> int:
    entity_type_id = to_int(param(params, "entityTypeId"), 0) or 0
    if entity_type_id != DEAL and entity_type_id not in portal.smart_types:
        raise RestError("NOT_FOUND", "Smart process not found")
    return entity_type_id


def _userfields(portal: Portal, entity_type_id: int) -> dict[str, dict[str, Any]]:
    """camelName → user field (deal UFs for entityTypeId 2)."""
    if entity_type_id == DEAL:
        fields = portal.deal_userfields
    else:
        fields = portal.item_userfields.get(entity_type_id, [])
    return {uf_camel(uf["FIELD_NAME"]): uf for uf in fields}


def _parent_fields(portal: Portal, entity_type_id: int) -> list[str]:
    if entity_type_id == DEAL:
        return [f"parentId{etid}" for etid in portal.smart_types]
    return [f"parentId{p}" for p in portal.smart_types[entity_type_id]["parents"]]


def _known_fields(portal: Portal, entity_type_id: int) -> set[str]:
    base = set(_deal_names(portal)) if entity_type_id == DEAL else set(_ITEM_FIELDS)
    return (
        base
        | set(_parent_fields(portal, entity_type_id))
        | set(_userfields(portal, entity_type_id))
    )


def _kind(field: str) -> str:
    if field in _INT_FIELDS or field.startswith("parentId"):
        return "int"
    if field in _DATE_FIELDS:
        return "date"
    return "float" if field in _FLOAT_FIELDS else "str"


def _entity_name(portal: Portal, entity_type_id: int) -> str:
    if entity_type_id == DEAL:
        return "Bitrix\\Crm\\Deal"
    return f"Bitrix\\Crm\\Model\\Dynamic\\Items{portal.smart_types[entity_type_id]['id']}Table"


def _check_fields(portal: Portal, entity_type_id: int, names: list[str]) -> None:
    """camelCase methods refuse fields they do not know — upper-case `ID` included."""
    known = _known_fields(portal, entity_type_id)
    for name in names:
        if name != "*" and name not in known:
            raise unknown_field(name, _entity_name(portal, entity_type_id))


def _uf_value(uf: dict[str, Any], value: Any) -> Any:
    kind = uf["USER_TYPE_ID"]
    if uf.get("MULTIPLE"):
        return [_uf_value({**uf, "MULTIPLE": False}, v) for v in as_list(value)]
    if value is None or value == "":
        return None
    if kind in {"integer", "enumeration", "employee"}:
        return to_int(value)
    if kind in {"double", "money"}:
        return to_float(value)
    if kind == "boolean":
        return truthy(value)
    if kind in {"date", "datetime"}:
        return iso_or_none(value)
    return str(value)


def _value(field: str, value: Any) -> Any:
    if field in _FLAG_FIELDS:
        return yn(value)
    if field in _LIST_FIELDS:
        return [i for i in (to_int(v) for v in as_list(value)) if i]
    if value is None or value == "":
        return None
    if field in _INT_FIELDS or field.startswith("parentId"):
        return to_int(value)
    if field in _DATE_FIELDS:
        return iso_or_none(value)
    if field in _FLOAT_FIELDS:
        return to_float(value)
    return value


def _fields(params: dict[str, Any]) -> dict[str, Any]:
    fields = param(params, "fields")
    if not isinstance(fields, dict):
        raise RestError("100", "Could not find value for parameter {fields}")
    return {str(k): v for k, v in fields.items()}


def _original_names(params: dict[str, Any]) -> bool:
    return str(param(params, "useOriginalUfNames") or "").upper() == "Y"


def _present(
    portal: Portal, entity_type_id: int, record: dict[str, Any], original: bool
) -> dict[str, Any]:
    if not original:
        return dict(record)
    ufs = _userfields(portal, entity_type_id)
    return {(ufs[k]["FIELD_NAME"] if k in ufs else k): v for k, v in record.items()}


# ------------------------------------------------------------------ deals as items
def _deal_names(portal: Portal) -> dict[str, str]:
    """camelName → deal field."""
    names = {
        _DEAL_RENAMES.get(f, camel(f)): f
        for f in emulator_deals.standard_fields(portal)
        if not f.startswith("PARENT_ID_")
    }
    names.update({f"parentId{etid}": f"PARENT_ID_{etid}" for etid in portal.smart_types})
    names.update({uf_camel(uf["FIELD_NAME"]): uf["FIELD_NAME"] for uf in portal.deal_userfields})
    names["entityTypeId"] = ""
    return names


def deal_item(
    portal: Portal, deal: dict[str, Any], ctx: CallContext | None = None
) -> dict[str, Any]:
    """A deal as crm.item.get {entityTypeId: 2} returns it (file fields: files.py)."""
    ufs = _userfields(portal, DEAL)
    view: dict[str, Any] = {}
    for name, source in _deal_names(portal).items():
        if not source:
            view[name] = DEAL
        elif name in ufs and ufs[name]["USER_TYPE_ID"] == "file":
            view[name] = item_file(ctx, deal.get(source))
        elif name in ufs:
            view[name] = _uf_value(ufs[name], deal.get(source))
        else:
            view[name] = _value(name, deal.get(source))
    view["contactIds"] = list(portal.deal_contacts.get(int(deal["ID"]), []))
    return view


def _deal_fields_from_item(portal: Portal, fields: dict[str, Any]) -> dict[str, Any]:
    names = _deal_names(portal)
    converted: dict[str, Any] = {}
    for key, value in fields.items():
        source = names.get(key)
        if source:
            converted[source] = value
        elif key == "contactIds":
            converted["CONTACT_IDS"] = value
    return converted


def _deal(portal: Portal, params: dict[str, Any]) -> dict[str, Any]:
    deal = emulator_deals.find_deal(portal, param(params, "id"))
    if deal is None:
        raise RestError("NOT_FOUND", "Element not found")
    return deal


# ------------------------------------------------------------------ smart-process items
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


def _write(
    portal: Portal, entity_type_id: int, item: dict[str, Any], fields: dict[str, Any]
) -> dict[str, Any]:
    """Store writable fields; returns what actually changed (unknown fields are ignored)."""
    ufs = _userfields(portal, entity_type_id)
    parents = set(_parent_fields(portal, entity_type_id))
    changed: dict[str, Any] = {}
    for key, value in fields.items():
        if key in _SERVER_FIELDS or key in {"categoryId", "stageId"}:
            continue
        if key in ufs:
            new = _uf_value(ufs[key], value)
        elif key in _ITEM_FIELDS or key in parents:
            new = _value(key, value)
        else:
            continue
        if item.get(key) != new:
            item[key] = new
            changed[key] = new
    return changed


def _item(portal: Portal, entity_type_id: int, params: dict[str, Any]) -> dict[str, Any]:
    item = portal.items[entity_type_id].get(to_int(param(params, "id"), 0) or 0)
    if item is None:
        raise RestError("NOT_FOUND", "Element not found")
    return item


def _emit(ctx: CallContext, action: str, entity_type_id: int, item_id: int) -> None:
    data = {"FIELDS": {"ID": item_id, "ENTITY_TYPE_ID": entity_type_id}}
    ctx.emit(f"ONCRMDYNAMICITEM{action}", data, item_id)
    ctx.emit(f"ONCRMDYNAMICITEM{action}_{entity_type_id}", data, item_id, log=False)


def _new_item(
    ctx: CallContext, entity_type_id: int, category_id: int, stage: str
) -> dict[str, Any]:
    portal = ctx.portal
    item_id = portal.next_id(f"item_{entity_type_id}")
    now = portal.now_iso()
    item: dict[str, Any] = dict.fromkeys(_ITEM_FIELDS)
    item.update(
        {
            "id": item_id,
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
            "opportunity": 0.0,
            "isManualOpportunity": "N",
            "taxValue": 0.0,
            "currencyId": "RUB",
            "assignedById": ctx.user_id,
            "observers": [],
            "contactIds": [],
            "entityTypeId": entity_type_id,
        }
    )
    for parent in _parent_fields(portal, entity_type_id):
        item[parent] = None
    for name, uf in _userfields(portal, entity_type_id).items():
        item[name] = _uf_value(uf, None)
    return item


# ------------------------------------------------------------------ methods
_TYPE_FIELDS = (
    "id",
    "title",
    "code",
    "entityTypeId",
    "isCategoriesEnabled",
    "isStagesEnabled",
    "isClientEnabled",
    "isLinkWithProductsEnabled",
    "isUseInUserfieldEnabled",
)


def _type_kind(field: str) -> str:
    return "int" if field in {"id", "entityTypeId"} else "str"


@method("crm.type.list")
def type_list(ctx: CallContext, params: dict[str, Any]) -> Page:
    filter_ = param(params, "filter") or {}
    order_param = param(params, "order") or {}
    for name in [*filter_fields(filter_), *(order_param if isinstance(order_param, dict) else {})]:
        if name not in _TYPE_FIELDS:  # e.g. `order: {ID: ASC}` → `I_D` (FB24 issue #196)
            raise unknown_field(name, "Bitrix\\Crm\\Model\\Dynamic\\Type")
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
    types = [t for t in types if matches(t, filter_, _type_kind, upper=False, groups=True)]
    order = parse_order(order_param, upper=False) or [("id", False)]
    types = sort_records(types, order, _type_kind)
    page = paginate(types, param(params, "start"), orm=True)
    return Page({"types": page.result}, page.total, page.next)


@method("crm.item.fields")
def item_fields(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    portal = ctx.portal
    entity_type_id = _type(portal, params)
    ufs = _userfields(portal, entity_type_id)
    names = sorted(_known_fields(portal, entity_type_id))
    result = {}
    for name in names:
        uf = ufs.get(name)
        result[name] = {
            "type": uf["USER_TYPE_ID"] if uf else _field_type(name),
            "isRequired": False,
            "isReadOnly": name in _SERVER_FIELDS,
            "isImmutable": False,
            "isMultiple": name in _LIST_FIELDS,
            "isDynamic": uf is not None,
            "title": (uf.get("TITLE") if uf else None) or name,
            "upperName": uf["FIELD_NAME"] if uf else _upper(name),
        }
    return {"fields": result}


_FIELD_TYPES = {
    "id": "integer",
    "categoryId": "crm_category",
    "stageId": "crm_status",
    "previousStageId": "crm_status",
    "companyId": "crm_company",
    "mycompanyId": "crm_company",
    "contactId": "crm_contact",
    "contactIds": "crm_contact",
    "currencyId": "crm_currency",
    "opportunity": "double",
    "taxValue": "double",
    "opened": "boolean",
    "isManualOpportunity": "boolean",
    "begindate": "date",
    "closedate": "date",
}
_USER_FIELDS = {"createdBy", "updatedBy", "movedBy", "assignedById", "lastActivityBy", "observers"}


def _field_type(name: str) -> str:
    if name in _FIELD_TYPES:
        return _FIELD_TYPES[name]
    if name.startswith("parentId"):
        return "crm_entity"
    if name in _USER_FIELDS:
        return "user"
    kind = _kind(name)
    return {"int": "integer", "float": "double", "date": "datetime"}.get(kind, "string")


def _upper(name: str) -> str:
    out = "".join(f"_{c}" if c.isupper() else c.upper() for c in name)
    return out.lstrip("_")


@method("crm.item.add")
def item_add(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    portal = ctx.portal
    entity_type_id = _type(portal, params)
    fields = _fields(params)
    if entity_type_id == DEAL:
        deal_id = emulator_deals.create_deal(ctx, _deal_fields_from_item(portal, fields))
        return {"item": deal_item(portal, portal.deals[deal_id], ctx)}
    category_id = to_int(fields.get("categoryId")) or _default_category(portal, entity_type_id)
    if not _stages(portal, entity_type_id, category_id):
        raise RestError("CRM_FIELD_ERROR_VALUE_NOT_VALID", "Invalid value for field categoryId")
    stage = _resolve_stage(portal, entity_type_id, category_id, fields.get("stageId"))
    item = _new_item(ctx, entity_type_id, category_id, stage)
    _write(portal, entity_type_id, item, fields)
    portal.items[entity_type_id][item["id"]] = item
    _emit(ctx, "ADD", entity_type_id, item["id"])
    return {"item": _present(portal, entity_type_id, item, _original_names(params))}


@method("crm.item.get")
def item_get(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    portal = ctx.portal
    entity_type_id = _type(portal, params)
    if entity_type_id == DEAL:
        return {"item": deal_item(portal, _deal(portal, params), ctx)}
    item = _item(portal, entity_type_id, params)
    return {"item": _present(portal, entity_type_id, item, _original_names(params))}


@method("crm.item.update")
def item_update(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    portal = ctx.portal
    entity_type_id = _type(portal, params)
    fields = _fields(params)
    if entity_type_id == DEAL:
        deal = _deal(portal, params)
        category = to_int(fields["categoryId"]) if "categoryId" in fields else None
        emulator_deals.update_deal(
            ctx, deal, _deal_fields_from_item(portal, fields), category_id=category
        )
        return {"item": deal_item(portal, deal, ctx)}
    item = _item(portal, entity_type_id, params)
    category_id = item["categoryId"]
    if "categoryId" in fields and to_int(fields["categoryId"]) != category_id:
        category_id = to_int(fields["categoryId"]) or category_id
        if not _stages(portal, entity_type_id, category_id):
            raise RestError("CRM_FIELD_ERROR_VALUE_NOT_VALID", "Invalid value for field categoryId")
    stage = None
    if "stageId" in fields or category_id != item["categoryId"]:
        stage = _resolve_stage(portal, entity_type_id, category_id, fields.get("stageId"))
    changed = _write(portal, entity_type_id, item, fields)
    if category_id != item["categoryId"]:
        item["categoryId"] = changed["categoryId"] = category_id
    if stage is not None and stage != item["stageId"]:
        item["previousStageId"], item["stageId"] = item["stageId"], stage
        item["movedTime"], item["movedBy"] = portal.now_iso(), ctx.user_id
        changed["stageId"] = stage
    if changed:  # an update that changes nothing is not saved and raises no event
        item["updatedTime"], item["updatedBy"] = portal.now_iso(), ctx.user_id
        _emit(ctx, "UPDATE", entity_type_id, item["id"])
    return {"item": _present(portal, entity_type_id, item, _original_names(params))}


@method("crm.item.delete")
def item_delete(ctx: CallContext, params: dict[str, Any]) -> list[Any]:
    portal = ctx.portal
    entity_type_id = _type(portal, params)
    if entity_type_id == DEAL:
        emulator_deals.deal_delete(ctx, {"id": _deal(portal, params)["ID"]})
        return []
    item = _item(portal, entity_type_id, params)
    del portal.items[entity_type_id][item["id"]]
    _emit(ctx, "DELETE", entity_type_id, item["id"])
    return []


@method("crm.item.list")
def item_list(ctx: CallContext, params: dict[str, Any]) -> Page:
    portal = ctx.portal
    entity_type_id = _type(portal, params)
    filter_ = param(params, "filter") or {}
    if not isinstance(filter_, dict | list):
        filter_ = {}
    order_param = param(params, "order") or {}
    select = [str(s) for s in as_list(param(params, "select"))] or ["*"]
    _check_fields(
        portal,
        entity_type_id,
        [*filter_fields(filter_), *(order_param if isinstance(order_param, dict) else {}), *select],
    )
    if entity_type_id == DEAL:
        records = [deal_item(portal, d, ctx) for d in portal.deals.values()]
    else:
        records = list(portal.items[entity_type_id].values())
    rows = [r for r in records if matches(r, filter_, _kind, upper=False, groups=True)]
    order = parse_order(order_param, upper=False) or [("id", False)]
    rows = sort_records(rows, order, _kind)
    page = paginate(rows, param(params, "start"), orm=True)
    original = _original_names(params)
    items = [
        _present(
            portal,
            entity_type_id,
            i if "*" in select else {k: i.get(k) for k in dict.fromkeys(["id", *select])},
            original,
        )
        for i in page.result
    ]
    return Page({"items": items}, page.total, page.next)
