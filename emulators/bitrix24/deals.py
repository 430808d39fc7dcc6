"""crm.deal.*, deal product rows, deal user fields, pipelines (crm.category.*) and crm.status.*."""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Any

from emulators.bitrix24.files import store_file
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
from emulators.bitrix24.state import Portal
from emulators.bitrix24.values import (
    PORTAL_TZ,
    as_list,
    as_str,
    iso,
    iso_or_none,
    to_float,
    to_int,
    to_money,
    truthy,
    yn,
)

# field → (type, read-only, title, extra metadata)
_FIELDS: dict[str, tuple[str, bool, str, dict[str, Any]]] = {
    "ID": ("integer", True, "ID", {}),
    "TITLE": ("string", False, "Название", {}),
    "TYPE_ID": ("crm_status", False, "Тип", {"statusType": "DEAL_TYPE"}),
    "CATEGORY_ID": ("crm_category", False, "Воронка", {"isImmutable": True}),
    "STAGE_ID": ("crm_status", False, "Стадия сделки", {"statusType": "DEAL_STAGE"}),
    "STAGE_SEMANTIC_ID": ("string", True, "Группа стадии", {}),
    "IS_NEW": ("char", True, "Новая сделка", {}),
    "IS_RECURRING": ("char", False, "Регулярная сделка", {}),
    "IS_RETURN_CUSTOMER": ("char", False, "Повторная сделка", {}),
    "IS_REPEATED_APPROACH": ("char", False, "Повторное обращение", {}),
    "PROBABILITY": ("integer", False, "Вероятность", {}),
    "CURRENCY_ID": ("crm_currency", False, "Валюта", {}),
    "OPPORTUNITY": ("double", False, "Сумма", {}),
    "IS_MANUAL_OPPORTUNITY": ("char", False, "Сумма заполнена вручную", {}),
    "TAX_VALUE": ("double", False, "Ставка налога", {}),
    "COMPANY_ID": ("crm_company", False, "Компания", {}),
    "CONTACT_ID": ("crm_contact", False, "Контакт", {"isDeprecated": True}),
    "CONTACT_IDS": ("crm_contact", False, "Контакты", {"isMultiple": True}),
    "QUOTE_ID": ("crm_quote", True, "Предложение", {}),
    "BEGINDATE": ("date", False, "Дата начала", {}),
    "CLOSEDATE": ("date", False, "Предполагаемая дата закрытия", {}),
    "OPENED": ("char", False, "Доступна для всех", {}),
    "CLOSED": ("char", False, "Сделка закрыта", {}),
    "COMMENTS": ("string", False, "Комментарий", {}),
    "ASSIGNED_BY_ID": ("user", False, "Ответственный", {}),
    "CREATED_BY_ID": ("user", True, "Кем создана", {}),
    "MODIFY_BY_ID": ("user", True, "Кем изменена", {}),
    "MOVED_BY_ID": ("user", True, "Кто сменил стадию", {}),
    "DATE_CREATE": ("datetime", True, "Дата создания", {}),
    "DATE_MODIFY": ("datetime", True, "Дата изменения", {}),
    "MOVED_TIME": ("datetime", True, "Дата смены стадии", {}),
    "SOURCE_ID": ("crm_status", False, "Источник", {"statusType": "SOURCE"}),
    "SOURCE_DESCRIPTION": ("string", False, "Дополнительно об источнике", {}),
    "LEAD_ID": ("crm_lead", True, "Лид", {}),
    "ADDITIONAL_INFO": ("string", False, "Дополнительная информация", {}),
    "LOCATION_ID": ("location", False, "Местоположение", {}),
    "ORIGINATOR_ID": ("string", False, "Внешний источник", {}),
    "ORIGIN_ID": ("string", False, "Идентификатор элемента во внешнем источнике", {}),
    "UTM_SOURCE": ("string", False, "Рекламная система", {}),
    "UTM_MEDIUM": ("string", False, "Тип трафика", {}),
    "UTM_CAMPAIGN": ("string", False, "Обозначение рекламной кампании", {}),
    "UTM_CONTENT": ("string", False, "Содержание кампании", {}),
    "UTM_TERM": ("string", False, "Условие поиска кампании", {}),
    "LAST_ACTIVITY_TIME": ("datetime", True, "Последняя активность", {}),
    "LAST_ACTIVITY_BY": ("user", True, "Автор последней активности", {}),
}
# Written by the server (or write-only) and never taken from `fields` on update.
_SERVER_FIELDS = {name for name, spec in _FIELDS.items() if spec[1]} | {"CLOSED"}
_FLAG_FIELDS = {name for name, spec in _FIELDS.items() if spec[0] == "char"}
_INT_TYPES = {
    "integer",
    "user",
    "crm_company",
    "crm_contact",
    "crm_category",
    "crm_lead",
    "crm_quote",
    "employee",
    "enumeration",
    "crm_entity",
}
_SEMANTIC_ID = {None: "P", "S": "S", "F": "F"}


def _parent_fields(portal: Portal) -> list[str]:
    return [f"PARENT_ID_{etid}" for etid in portal.smart_types]


def standard_fields(portal: Portal) -> list[str]:
    """Standard fields in `crm.deal.get` order (CONTACT_IDS is write-only)."""
    names = [name for name in _FIELDS if name != "CONTACT_IDS"]
    return names + _parent_fields(portal)


def kind_of(portal: Portal, field: str) -> str:
    uf_type = portal.userfield_types().get(field)
    field_type = uf_type or (_FIELDS[field][0] if field in _FIELDS else None)
    if field.startswith("PARENT_ID_") or field_type in _INT_TYPES:
        return "int"
    if field_type in {"double", "money"}:
        return "float"
    if field_type in {"date", "datetime"}:
        return "date"
    if field_type == "boolean":
        return "bool"
    return "str"


def _uf_value(uf: dict[str, Any], value: Any) -> Any:
    if uf["MULTIPLE"] == "Y":
        return [v for v in (_uf_scalar(uf, item) for item in as_list(value)) if v is not None]
    if isinstance(value, list):
        value = value[0] if value else None
    return _uf_scalar(uf, value)


def _uf_scalar(uf: dict[str, Any], value: Any) -> Any:
    uf_type = uf["USER_TYPE_ID"]
    if uf_type == "boolean":
        return "1" if truthy(value) else "0"
    if value is None or value == "":
        return None
    if uf_type in {"date", "datetime"}:
        return iso_or_none(value)
    if uf_type in {"integer", "enumeration", "employee"}:
        number = to_int(value)
        return None if number is None else str(number)
    if uf_type in {"double", "money"}:
        return str(to_float(value))
    return as_str(value)


def _standard_value(field: str, value: Any) -> Any:
    field_type = _FIELDS[field][0] if field in _FIELDS else "crm_entity"
    if field in _FLAG_FIELDS:
        return yn(value)
    if value is None or value == "":
        return None if field not in {"OPPORTUNITY", "TAX_VALUE"} else "0.00"
    if field in {"OPPORTUNITY", "TAX_VALUE"}:
        return to_money(value)
    if field_type in {"date", "datetime"}:
        return iso_or_none(value)
    if field_type in _INT_TYPES:
        number = to_int(value)
        return None if number is None else str(number)
    return as_str(value)


def stage_semantics(portal: Portal, stage_id: str) -> str | None:
    row = portal.stage_index.get(stage_id)
    return row["SEMANTICS"] if row else None


def resolve_stage(portal: Portal, category_id: int, stage: Any) -> str:
    """Validate a stage for a pipeline; bare codes are prefixed (`WON` → `C1:WON`)."""
    stages = portal.category_stages(portal.deal_stage_entity(category_id))
    if not stages:
        raise RestError("", f"Category {category_id} has no stages.")
    if stage in (None, ""):
        return stages[0]["STATUS_ID"]
    code = str(stage).strip()
    if category_id and ":" not in code:
        code = f"C{category_id}:{code}"
    if code not in {row["STATUS_ID"] for row in stages}:
        raise RestError("", f"Stage '{code}' does not belong to pipeline {category_id}.")
    return code


def _apply_stage(deal: dict[str, Any], portal: Portal, stage: str) -> None:
    semantics = stage_semantics(portal, stage)
    deal["STAGE_ID"] = stage
    deal["STAGE_SEMANTIC_ID"] = _SEMANTIC_ID.get(semantics, "P")
    deal["CLOSED"] = "Y" if semantics in {"S", "F"} else "N"


def _set_contacts(portal: Portal, deal: dict[str, Any], value: Any) -> None:
    ids = [i for i in (to_int(v) for v in as_list(value)) if i]
    portal.deal_contacts[int(deal["ID"])] = ids
    deal["CONTACT_ID"] = str(ids[0]) if ids else None


def _today_midnight(ts: float, days: int = 0) -> str:
    day = dt.datetime.fromtimestamp(ts, PORTAL_TZ).date() + dt.timedelta(days=days)
    return iso(dt.datetime(day.year, day.month, day.day, tzinfo=PORTAL_TZ))


def create_deal(ctx: CallContext, fields: dict[str, Any], deal_id: int | None = None) -> int:
    """Insert a deal as crm.deal.add does; returns its id and emits ONCRMDEALADD."""
    portal = ctx.portal
    fields = {str(k).upper(): v for k, v in fields.items()}
    if deal_id is None:
        deal_id = portal.next_id("deal")
    else:
        portal.bump_id("deal", deal_id)
    category_id = to_int(fields.get("CATEGORY_ID"), 0) or 0
    if category_id not in portal.deal_categories:
        raise RestError("", f"Category with ID {category_id} is not found.")
    stage = resolve_stage(portal, category_id, fields.get("STAGE_ID"))
    now = portal.now()
    caller = str(ctx.user_id)
    deal: dict[str, Any] = {name: None for name in standard_fields(portal)}
    deal.update(
        {
            "ID": str(deal_id),
            "TITLE": f"Сделка #{deal_id}",
            "CATEGORY_ID": str(category_id),
            "IS_NEW": "Y",
            "IS_RECURRING": "N",
            "IS_RETURN_CUSTOMER": "N",
            "IS_REPEATED_APPROACH": "N",
            "CURRENCY_ID": "RUB",
            "OPPORTUNITY": "0.00",
            "IS_MANUAL_OPPORTUNITY": "N",
            "TAX_VALUE": "0.00",
            "COMPANY_ID": "0",
            "BEGINDATE": _today_midnight(now),
            "CLOSEDATE": _today_midnight(now, 7),
            "OPENED": "Y",
            "ASSIGNED_BY_ID": caller,
            "CREATED_BY_ID": caller,
            "MODIFY_BY_ID": caller,
            "MOVED_BY_ID": caller,
            "DATE_CREATE": iso(now),
            "DATE_MODIFY": iso(now),
            "MOVED_TIME": iso(now),
            "LAST_ACTIVITY_TIME": iso(now),
            "LAST_ACTIVITY_BY": caller,
        }
    )
    for uf in portal.deal_userfields:
        deal[uf["FIELD_NAME"]] = _uf_value(uf, None)
    _write_fields(portal, deal, fields, on_add=True)
    _apply_stage(deal, portal, stage)
    if "CONTACT_IDS" in fields or "CONTACT_ID" in fields:
        _set_contacts(portal, deal, fields.get("CONTACT_IDS", fields.get("CONTACT_ID")))
    portal.deals[deal_id] = deal
    portal.product_rows.setdefault(deal_id, [])
    ctx.emit("ONCRMDEALADD", {"FIELDS": {"ID": deal_id}}, deal_id)
    return deal_id


def _write_fields(
    portal: Portal, deal: dict[str, Any], fields: dict[str, Any], *, on_add: bool
) -> dict[str, Any]:
    """Normalise and store writable fields; returns what actually changed."""
    ufs = {uf["FIELD_NAME"]: uf for uf in portal.deal_userfields}
    parents = set(_parent_fields(portal))
    changed: dict[str, Any] = {}
    for key, value in fields.items():
        if key in ufs and ufs[key]["USER_TYPE_ID"] == "file":
            new = store_file(portal, int(deal["ID"]), key, value, deal.get(key))
        elif key in ufs:
            new = _uf_value(ufs[key], value)
        elif key in _FIELDS or key in parents:
            if key in _SERVER_FIELDS or key in {
                "STAGE_ID",
                "CATEGORY_ID",
                "CONTACT_IDS",
                "CONTACT_ID",
            }:
                continue  # derived, immutable, or handled by the caller
            new = _standard_value(key, value)
        else:
            continue  # unknown fields are ignored, as the portal does
        if key == "TITLE" and not new and on_add:
            continue
        if deal.get(key) != new:
            changed[key] = new
            deal[key] = new
    return changed


def _deal_id(params: dict[str, Any]) -> int:
    deal_id = to_int(param(params, "id", "ID"))
    if not deal_id or deal_id <= 0:
        raise bad_id()
    return deal_id


def _deal(portal: Portal, params: dict[str, Any]) -> dict[str, Any]:
    deal = portal.deals.get(_deal_id(params))
    if deal is None:
        raise not_found()
    return deal


@method("crm.deal.add")
def deal_add(ctx: CallContext, params: dict[str, Any]) -> int:
    return create_deal(ctx, fields_param(params))


@method("crm.deal.get")
def deal_get(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    return dict(_deal(ctx.portal, params))


def update_deal(
    ctx: CallContext,
    deal: dict[str, Any],
    fields: dict[str, Any],
    *,
    category_id: int | None = None,
) -> None:
    """Apply an update as the portal does; an update that changes nothing is not saved.

    crm.deal.update never passes `category_id` (CATEGORY_ID is immutable there); moving to
    another pipeline is crm.item.update {entityTypeId: 2}, which raises
    ONCRMDEALMOVETOCATEGORY besides ONCRMDEALUPDATE.
    """
    portal = ctx.portal
    fields = {str(k).upper(): v for k, v in fields.items()}
    moved = category_id is not None and category_id != int(deal["CATEGORY_ID"])
    if moved and category_id not in portal.deal_categories:
        raise RestError("", f"Category with ID {category_id} is not found.")
    target_category = category_id if moved and category_id is not None else int(deal["CATEGORY_ID"])
    stage = None
    if "STAGE_ID" in fields or moved:
        stage = resolve_stage(portal, target_category, fields.get("STAGE_ID"))
    changed = _write_fields(portal, deal, fields, on_add=False)
    if moved:
        deal["CATEGORY_ID"] = str(target_category)
        changed["CATEGORY_ID"] = deal["CATEGORY_ID"]
    if stage is not None and stage != deal["STAGE_ID"]:
        _apply_stage(deal, portal, stage)
        deal["MOVED_TIME"] = portal.now_iso()
        deal["MOVED_BY_ID"] = str(ctx.user_id)
        changed["STAGE_ID"] = stage
    if "CONTACT_IDS" in fields or "CONTACT_ID" in fields:
        old = list(portal.deal_contacts.get(int(deal["ID"]), []))
        _set_contacts(portal, deal, fields.get("CONTACT_IDS", fields.get("CONTACT_ID")))
        if portal.deal_contacts[int(deal["ID"])] != old:
            changed["CONTACT_IDS"] = portal.deal_contacts[int(deal["ID"])]
    if not changed:
        return  # an update that changes nothing is not saved and raises no event
    deal_id = int(deal["ID"])
    deal["DATE_MODIFY"] = portal.now_iso()
    deal["MODIFY_BY_ID"] = str(ctx.user_id)
    deal["IS_NEW"] = "N"
    if moved:
        ctx.emit(
            "ONCRMDEALMOVETOCATEGORY",
            {
                "FIELDS": {
                    "ID": deal_id,
                    "CATEGORY_ID": int(deal["CATEGORY_ID"]),
                    "STAGE_ID": deal["STAGE_ID"],
                }
            },
            deal_id,
        )
    ctx.emit("ONCRMDEALUPDATE", {"FIELDS": {"ID": deal_id}}, deal_id)


def find_deal(portal: Portal, deal_id: Any) -> dict[str, Any] | None:
    return portal.deals.get(to_int(deal_id, 0) or 0)


@method("crm.deal.update")
def deal_update(ctx: CallContext, params: dict[str, Any]) -> bool:
    update_deal(ctx, _deal(ctx.portal, params), fields_param(params))
    return True


@method("crm.deal.delete")
def deal_delete(ctx: CallContext, params: dict[str, Any]) -> bool:
    portal = ctx.portal
    deal_id = int(_deal(portal, params)["ID"])
    del portal.deals[deal_id]
    portal.product_rows.pop(deal_id, None)
    portal.deal_contacts.pop(deal_id, None)
    for comment_id, comment in list(portal.timeline_comments.items()):
        if comment["ENTITY_TYPE"] == "deal" and comment["ENTITY_ID"] == str(deal_id):
            del portal.timeline_comments[comment_id]
    for activity_id, activity in list(portal.activities.items()):
        if activity["OWNER_TYPE_ID"] == "2" and activity["OWNER_ID"] == str(deal_id):
            del portal.activities[activity_id]
    ctx.emit("ONCRMDEALDELETE", {"FIELDS": {"ID": deal_id}}, deal_id)
    return True


def _deal_filter_value(portal: Portal, record: dict[str, Any], field: str) -> Any:
    if field == "CONTACT_ID" and int(record["ID"]) in portal.deal_contacts:
        return [str(c) for c in portal.deal_contacts[int(record["ID"])]] or None
    return record.get(field)


@method("crm.deal.list")
def deal_list(ctx: CallContext, params: dict[str, Any]) -> Page:
    portal = ctx.portal
    filter_ = param(params, "filter") or {}
    if not isinstance(filter_, dict):
        filter_ = {}
    kinds = partial(kind_of, portal)
    rows = [
        deal
        for deal in portal.deals.values()
        if matches(deal, filter_, kinds, partial(_deal_filter_value, portal))
    ]
    order = parse_order(param(params, "order")) or [("ID", False)]
    rows = sort_records(rows, order, kinds)
    fields = select_fields(
        param(params, "select"),
        standard_fields(portal),
        [uf["FIELD_NAME"] for uf in portal.deal_userfields],
    )
    page = paginate(rows, param(params, "start"))
    known = set(standard_fields(portal)) | set(portal.userfield_types())
    projected = [{f: deal.get(f) for f in fields if f in known} for deal in page.result]
    return Page(projected, page.total, page.next)


@method("crm.deal.fields")
def deal_fields(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    portal = ctx.portal
    result: dict[str, Any] = {}
    for name, (field_type, read_only, title, extra) in _FIELDS.items():
        result[name] = {
            "type": field_type,
            "isRequired": False,
            "isReadOnly": read_only,
            "isImmutable": bool(extra.get("isImmutable")),
            "isMultiple": bool(extra.get("isMultiple")),
            "isDynamic": False,
            "title": title,
            **{k: v for k, v in extra.items() if k not in {"isImmutable", "isMultiple"}},
        }
    for name in _parent_fields(portal):
        etid = int(name.rsplit("_", 1)[1])
        result[name] = {
            "type": "crm_entity",
            "isRequired": False,
            "isReadOnly": False,
            "isImmutable": False,
            "isMultiple": False,
            "isDynamic": False,
            "title": portal.smart_types[etid]["title"],
            "settings": {"parentEntityTypeId": etid},
        }
    for uf in portal.deal_userfields:
        entry: dict[str, Any] = {
            "type": uf["USER_TYPE_ID"],
            "isRequired": uf["MANDATORY"] == "Y",
            "isReadOnly": False,
            "isImmutable": False,
            "isMultiple": uf["MULTIPLE"] == "Y",
            "isDynamic": True,
            "title": uf["FIELD_NAME"],
            "listLabel": uf["LIST_COLUMN_LABEL"],
            "formLabel": uf["EDIT_FORM_LABEL"],
            "filterLabel": uf["LIST_FILTER_LABEL"],
            "settings": uf["SETTINGS"],
        }
        if "LIST" in uf:
            entry["items"] = [{"ID": o["ID"], "VALUE": o["VALUE"]} for o in uf["LIST"]]
        result[uf["FIELD_NAME"]] = entry
    return result


# ------------------------------------------------------------------ product rows
def _row(portal: Portal, deal_id: int, index: int, raw: dict[str, Any]) -> dict[str, Any]:
    raw = {str(k).upper(): v for k, v in raw.items()}
    row_id = portal.next_id("product_row")
    price = to_float(raw.get("PRICE"), 0.0)
    quantity = to_float(raw.get("QUANTITY"), 1.0) if raw.get("QUANTITY") not in (None, "") else 1.0
    discount_type = to_int(raw.get("DISCOUNT_TYPE_ID"), 2) or 2
    discount_rate = to_float(raw.get("DISCOUNT_RATE"), 0.0)
    discount_sum = to_float(raw.get("DISCOUNT_SUM"), 0.0)
    tax_rate = raw.get("TAX_RATE")
    tax_included = yn(raw.get("TAX_INCLUDED", "N"))
    exclusive = to_float(raw.get("PRICE_EXCLUSIVE"), price) if "PRICE_EXCLUSIVE" in raw else price
    if tax_rate not in (None, "") and tax_included == "Y" and "PRICE_EXCLUSIVE" not in raw:
        exclusive = round(price / (1 + to_float(tax_rate) / 100), 2)
    netto = to_float(raw.get("PRICE_NETTO"), exclusive + discount_sum)
    product_id = to_int(raw.get("PRODUCT_ID"), 0) or 0
    # research/bitrix24.md: PRODUCT_NAME is taken from the catalogue product, else `[rowId]`.
    product = portal.products.get(product_id) if product_id else None
    name = raw.get("PRODUCT_NAME") or (product["NAME"] if product else None) or f"[{row_id}]"
    return {
        "ID": row_id,
        "OWNER_ID": deal_id,
        "OWNER_TYPE": "D",
        "PRODUCT_ID": product_id,
        "PRODUCT_NAME": str(name),
        "ORIGINAL_PRODUCT_NAME": str(name),
        "PRODUCT_DESCRIPTION": raw.get("PRODUCT_DESCRIPTION"),
        "PRICE": price,
        "PRICE_EXCLUSIVE": exclusive,
        "PRICE_NETTO": netto,
        "PRICE_BRUTTO": to_float(raw.get("PRICE_BRUTTO"), price + discount_sum),
        "PRICE_ACCOUNT": f"{price:.2f}",
        "QUANTITY": quantity,
        "DISCOUNT_TYPE_ID": discount_type,
        "DISCOUNT_RATE": discount_rate,
        "DISCOUNT_SUM": discount_sum,
        "TAX_RATE": None if tax_rate in (None, "") else to_float(tax_rate),
        "TAX_INCLUDED": tax_included,
        "CUSTOMIZED": "Y",
        "MEASURE_CODE": to_int(raw.get("MEASURE_CODE"), 796),
        "MEASURE_NAME": raw.get("MEASURE_NAME") or "шт",
        "SORT": to_int(raw.get("SORT"), (index + 1) * 10),
        "XML_ID": raw.get("XML_ID"),
        "TYPE": 1,
        "STORE_ID": None,
        "RESERVE_ID": None,
        "DATE_RESERVE_END": None,
        "RESERVE_QUANTITY": None,
    }


@method("crm.deal.productrows.set")
def productrows_set(ctx: CallContext, params: dict[str, Any]) -> bool:
    portal = ctx.portal
    deal = _deal(portal, params)
    deal_id = int(deal["ID"])
    rows_param = param(params, "rows")
    if rows_param not in (None, "") and not isinstance(rows_param, list | dict):
        raise RestError("", "The parameter 'rows' must be array.")
    raw_rows = [r for r in as_list(rows_param) if isinstance(r, dict)]
    portal.product_rows[deal_id] = [_row(portal, deal_id, i, r) for i, r in enumerate(raw_rows)]
    if deal["IS_MANUAL_OPPORTUNITY"] != "Y":
        total = sum(r["PRICE"] * r["QUANTITY"] for r in portal.product_rows[deal_id])
        amount = to_money(round(total, 2))
        if amount != deal["OPPORTUNITY"]:
            deal["OPPORTUNITY"] = amount
            deal["DATE_MODIFY"] = portal.now_iso()
            ctx.emit("ONCRMDEALUPDATE", {"FIELDS": {"ID": deal_id}}, deal_id)
    return True


@method("crm.deal.productrows.get")
def productrows_get(ctx: CallContext, params: dict[str, Any]) -> list[dict[str, Any]]:
    deal = _deal(ctx.portal, params)
    return [dict(r) for r in ctx.portal.product_rows.get(int(deal["ID"]), [])]


# ------------------------------------------------------------------ user fields
@method("crm.deal.userfield.list")
def userfield_list(ctx: CallContext, params: dict[str, Any]) -> Page:
    filter_ = param(params, "filter") or {}
    filter_ = (
        {k: v for k, v in filter_.items() if str(k).upper() != "LANG"}
        if isinstance(filter_, dict)
        else {}
    )
    rows = [uf for uf in ctx.portal.deal_userfields if matches(uf, filter_, lambda f: "str")]
    order = parse_order(param(params, "order")) or [("SORT", False)]
    rows = sort_records(rows, order, lambda f: "int" if f in {"ID", "SORT"} else "str")
    return paginate(rows, param(params, "start"))


@method("crm.deal.userfield.get")
def userfield_get(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    wanted = str(to_int(param(params, "id", "ID"), 0))
    for uf in ctx.portal.deal_userfields:
        if uf["ID"] == wanted:
            return uf
    raise RestError("ERROR_NOT_FOUND", "The user field was not found.")


# ------------------------------------------------------------------ pipelines and statuses
def _category_view(category: dict[str, Any], entity_type_id: int) -> dict[str, Any]:
    return {
        "id": category["id"],
        "name": category["name"],
        "sort": category["sort"],
        "entityTypeId": entity_type_id,
        "isDefault": category["isDefault"],
        "originId": "",
        "originatorId": "",
    }


def _categories(portal: Portal, params: dict[str, Any]) -> list[dict[str, Any]]:
    entity_type_id = to_int(param(params, "entityTypeId"))
    if entity_type_id == 2:
        rows = [_category_view(c, 2) for c in portal.deal_categories.values()]
    elif entity_type_id in portal.smart_types:
        rows = [
            _category_view(c, entity_type_id)
            for c in portal.item_categories.values()
            if c["entityTypeId"] == entity_type_id
        ]
    elif entity_type_id and entity_type_id >= 128:
        raise RestError("NOT_FOUND", "Smart process not found")
    else:
        raise RestError("ENTITY_TYPE_NOT_SUPPORTED", "Entity type is not supported")
    return sorted(rows, key=lambda c: (c["sort"], c["id"]))


@method("crm.category.list")
def category_list(ctx: CallContext, params: dict[str, Any]) -> Page:
    page = paginate(_categories(ctx.portal, params), param(params, "start"), orm=True)
    return Page({"categories": page.result}, page.total, page.next)


@method("crm.category.get")
def category_get(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    wanted = to_int(param(params, "id"))
    for category in _categories(ctx.portal, params):
        if category["id"] == wanted:
            return {"category": category}
    raise RestError("NOT_FOUND", "Category not found")


@method("crm.dealcategory.stage.list")
def dealcategory_stage_list(ctx: CallContext, params: dict[str, Any]) -> list[dict[str, Any]]:
    category_id = to_int(param(params, "id", "ID"), 0) or 0
    if category_id not in ctx.portal.deal_categories:
        raise RestError("", "Category is not found.")
    rows = ctx.portal.category_stages(ctx.portal.deal_stage_entity(category_id))
    return [{"NAME": r["NAME"], "SORT": r["SORT"], "STATUS_ID": r["STATUS_ID"]} for r in rows]


def _status_kind(field: str) -> str:
    return "int" if field in {"ID", "SORT", "CATEGORY_ID"} else "str"


@method("crm.status.list")
def status_list(ctx: CallContext, params: dict[str, Any]) -> Page:
    filter_ = param(params, "filter") or {}
    if not isinstance(filter_, dict):
        filter_ = {}
    rows = [row for row in ctx.portal.statuses if matches(row, filter_, _status_kind)]
    order = parse_order(param(params, "order")) or [("SORT", False)]
    rows = sort_records(rows, order, _status_kind)
    return paginate(rows, param(params, "start"))


@method("crm.status.entity.items")
def status_entity_items(ctx: CallContext, params: dict[str, Any]) -> list[dict[str, Any]]:
    entity_id = str(param(params, "entityId", "ENTITY_ID") or "")
    return [
        {"NAME": r["NAME"], "SORT": int(r["SORT"]), "STATUS_ID": r["STATUS_ID"]}
        for r in ctx.portal.category_stages(entity_id)
    ]
