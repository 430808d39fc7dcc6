"""The product catalogue: crm.product.add|get|list|update|delete|fields.

Deprecated but working methods (DOCS `api-reference/crm/outdated/products/crm-product-*.md`,
bitrix24/b24restdocs; the successor is catalog.product.*). Only the documented standard fields
(`crm-product-fields.md`): ID, NAME (required), ACTIVE, CATALOG_ID, CURRENCY_ID, PRICE,
DESCRIPTION, DESCRIPTION_TYPE, MEASURE, SECTION_ID, SORT, VAT_ID, VAT_INCLUDED, XML_ID
("External code" — the standard 1C exchange keeps the 1C reference there), CREATED_BY,
MODIFIED_BY, DATE_CREATE, TIMESTAMP_X. Product properties (PROPERTY_n) are not emulated.
"""

from __future__ import annotations

from typing import Any

from emulators.bitrix24.query import Page, matches, paginate, parse_order, sort_records
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
from emulators.bitrix24.values import as_list, names, to_float, to_int, yn

PRODUCT_FIELDS = names(
    "ID NAME ACTIVE CATALOG_ID CURRENCY_ID PRICE DESCRIPTION DESCRIPTION_TYPE MEASURE "
    "SECTION_ID SORT VAT_ID VAT_INCLUDED XML_ID CREATED_BY MODIFIED_BY DATE_CREATE TIMESTAMP_X"
)
_WRITABLE = frozenset(PRODUCT_FIELDS) - {"ID", "CREATED_BY", "MODIFIED_BY", "DATE_CREATE"}
_INTS = frozenset(names("ID CATALOG_ID MEASURE SECTION_ID SORT VAT_ID CREATED_BY MODIFIED_BY"))
CATALOG_ID = 24  # the CRM catalogue's iblock on a fresh portal


def products(portal: Portal) -> dict[int, dict[str, Any]]:
    return portal.products


def _kind(field: str) -> str:
    return "int" if field in _INTS else "float" if field == "PRICE" else "str"


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in fields.items():
        name = str(key).upper()
        if name not in _WRITABLE:
            continue  # unknown keys are ignored, as the classic CRM does
        if name in _INTS:
            values[name] = str(to_int(value, 0))
        elif name == "PRICE":
            values[name] = to_float(value, 0.0)
        elif name in ("ACTIVE", "VAT_INCLUDED"):
            values[name] = yn(value)
        else:
            values[name] = None if value is None else str(value)
    return values


def add_product(portal: Portal, fields: dict[str, Any], user_id: int = 1) -> int:
    values = _clean(fields)
    if not str(values.get("NAME") or "").strip():
        raise RestError("", "Field 'NAME' is required.")
    product_id = portal.next_id("product")
    now = portal.now_iso()
    products(portal)[product_id] = {
        "ID": str(product_id),
        "NAME": "",
        "ACTIVE": "Y",
        "CATALOG_ID": str(CATALOG_ID),
        "CURRENCY_ID": "RUB",
        "PRICE": None,
        "DESCRIPTION": None,
        "DESCRIPTION_TYPE": "text",
        "MEASURE": None,
        "SECTION_ID": None,
        "SORT": "500",
        "VAT_ID": None,
        "VAT_INCLUDED": "Y",
        "XML_ID": None,
        "CREATED_BY": str(user_id),
        "MODIFIED_BY": str(user_id),
        "DATE_CREATE": now,
        "TIMESTAMP_X": now,
        **values,
    }
    return product_id


def _product(portal: Portal, params: dict[str, Any]) -> dict[str, Any]:
    product_id = to_int(param(params, "id", "ID"), 0) or 0
    if product_id <= 0:
        raise bad_id()
    found = products(portal).get(product_id)
    if found is None:
        raise not_found()
    return found


@method("crm.product.fields")
def product_fields(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {
            "type": {"int": "integer", "float": "double"}.get(_kind(name), "string"),
            "isRequired": name == "NAME",
            "isReadOnly": name not in _WRITABLE,
            "isImmutable": False,
            "isMultiple": False,
            "isDynamic": False,
            "title": name,
        }
        for name in PRODUCT_FIELDS
    }


@method("crm.product.add")
def product_add(ctx: CallContext, params: dict[str, Any]) -> int:
    return add_product(ctx.portal, fields_param(params), ctx.user_id)


@method("crm.product.get")
def product_get(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    return dict(_product(ctx.portal, params))


@method("crm.product.update")
def product_update(ctx: CallContext, params: dict[str, Any]) -> bool:
    product = _product(ctx.portal, params)
    values = _clean(fields_param(params))
    if "NAME" in values and not str(values["NAME"] or "").strip():
        raise RestError("", "Field 'NAME' is required.")
    product.update(values)
    product["MODIFIED_BY"] = str(ctx.user_id)
    product["TIMESTAMP_X"] = ctx.portal.now_iso()
    return True


@method("crm.product.delete")
def product_delete(ctx: CallContext, params: dict[str, Any]) -> bool:
    product = _product(ctx.portal, params)
    del products(ctx.portal)[int(product["ID"])]
    return True


@method("crm.product.list")
def product_list(ctx: CallContext, params: dict[str, Any]) -> Page:
    filter_ = param(params, "filter") or {}
    rows = [
        p for p in products(ctx.portal).values() if matches(p, filter_ if filter_ else {}, _kind)
    ]
    order = parse_order(param(params, "order")) or [("ID", False)]
    rows = sort_records(rows, order, _kind)
    wanted = [str(s).upper() for s in as_list(param(params, "select"))]
    if wanted and "*" not in wanted:
        fields = ["ID", *(f for f in wanted if f in PRODUCT_FIELDS and f != "ID")]
        rows = [{f: p.get(f) for f in fields} for p in rows]
    else:
        rows = [dict(p) for p in rows]
    return paginate(rows, param(params, "start"))
