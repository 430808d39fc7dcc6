"""crm.contact.* and crm.company.*: client records with PHONE/EMAIL multi-fields."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

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
    bad_id,
    fields_param,
    method,
    not_found,
    param,
)
from emulators.bitrix24.state import Portal
from emulators.bitrix24.values import as_list, as_str, iso_or_none, names, to_int, yn

MULTI_FIELDS = ("PHONE", "EMAIL", "WEB", "IM")
_DATE_FIELDS = {"BIRTHDATE", "DATE_CREATE", "DATE_MODIFY"}
_SERVER_FIELDS = {
    "ID",
    "CREATED_BY_ID",
    "MODIFY_BY_ID",
    "DATE_CREATE",
    "DATE_MODIFY",
    "HAS_PHONE",
    "HAS_EMAIL",
    "HAS_IMOL",
}


@dataclass(frozen=True)
class ClientKind:
    """What differs between contacts and companies."""

    name: str
    store: str
    fields: tuple[str, ...]
    int_fields: frozenset[str]
    flags: frozenset[str]
    defaults: tuple[tuple[str, Any], ...]


CONTACT = ClientKind(
    name="contact",
    store="contacts",
    fields=names(
        "ID HONORIFIC NAME SECOND_NAME LAST_NAME PHOTO BIRTHDATE TYPE_ID SOURCE_ID "
        "SOURCE_DESCRIPTION POST ADDRESS COMMENTS OPENED EXPORT HAS_PHONE HAS_EMAIL "
        "HAS_IMOL ASSIGNED_BY_ID CREATED_BY_ID MODIFY_BY_ID DATE_CREATE DATE_MODIFY "
        "COMPANY_ID LEAD_ID ORIGINATOR_ID ORIGIN_ID UTM_SOURCE UTM_MEDIUM UTM_CAMPAIGN "
        "UTM_CONTENT UTM_TERM"
    ),
    int_fields=frozenset(
        {"ID", "ASSIGNED_BY_ID", "CREATED_BY_ID", "MODIFY_BY_ID", "COMPANY_ID", "LEAD_ID"}
    ),
    flags=frozenset({"OPENED", "EXPORT", "HAS_PHONE", "HAS_EMAIL", "HAS_IMOL"}),
    defaults=(("TYPE_ID", "CLIENT"), ("SOURCE_ID", "CALL"), ("OPENED", "Y"), ("EXPORT", "Y")),
)
COMPANY = ClientKind(
    name="company",
    store="companies",
    fields=names(
        "ID TITLE COMPANY_TYPE LOGO ADDRESS ADDRESS_LEGAL BANKING_DETAILS INDUSTRY "
        "EMPLOYEES CURRENCY_ID REVENUE OPENED COMMENTS HAS_PHONE HAS_EMAIL HAS_IMOL "
        "IS_MY_COMPANY ASSIGNED_BY_ID CREATED_BY_ID MODIFY_BY_ID DATE_CREATE DATE_MODIFY "
        "LEAD_ID ORIGINATOR_ID ORIGIN_ID UTM_SOURCE UTM_MEDIUM UTM_CAMPAIGN UTM_CONTENT "
        "UTM_TERM"
    ),
    int_fields=frozenset({"ID", "ASSIGNED_BY_ID", "CREATED_BY_ID", "MODIFY_BY_ID", "LEAD_ID"}),
    flags=frozenset({"OPENED", "HAS_PHONE", "HAS_EMAIL", "HAS_IMOL", "IS_MY_COMPANY"}),
    defaults=(
        ("COMPANY_TYPE", "CUSTOMER"),
        ("CURRENCY_ID", "RUB"),
        ("OPENED", "Y"),
        ("IS_MY_COMPANY", "N"),
    ),
)


def _store(portal: Portal, kind: ClientKind) -> dict[int, dict[str, Any]]:
    return getattr(portal, kind.store)


def _value(kind: ClientKind, field: str, value: Any) -> Any:
    if field in kind.flags:
        return yn(value)
    if value is None or value == "":
        return None
    if field in kind.int_fields:
        number = to_int(value)
        return None if number is None else str(number)
    if field in _DATE_FIELDS:
        return iso_or_none(value)
    return as_str(value)


def _write_multi(portal: Portal, record: dict[str, Any], field: str, value: Any) -> None:
    """Add items without ID; change or (with an empty VALUE) delete items with an ID."""
    items: list[dict[str, Any]] = list(record.get(field) or [])
    for raw in as_list(value):
        if not isinstance(raw, dict):
            raw = {"VALUE": raw}
        raw = {str(k).upper(): v for k, v in raw.items()}
        item_id = as_str(raw.get("ID"))
        existing = next((i for i in items if item_id and i["ID"] == item_id), None)
        if existing is not None:
            if raw.get("VALUE") in (None, ""):
                items.remove(existing)
            else:
                existing["VALUE"] = str(raw["VALUE"])
                existing["VALUE_TYPE"] = str(raw.get("VALUE_TYPE") or existing["VALUE_TYPE"])
            continue
        if raw.get("VALUE") in (None, ""):
            continue
        items.append(
            {
                "ID": str(portal.next_id("multifield")),
                "VALUE_TYPE": str(raw.get("VALUE_TYPE") or "WORK"),
                "VALUE": str(raw["VALUE"]),
                "TYPE_ID": field,
            }
        )
    record[field] = items


def _write(
    portal: Portal, kind: ClientKind, record: dict[str, Any], fields: dict[str, Any]
) -> bool:
    changed = False
    for key, value in fields.items():
        if key in MULTI_FIELDS:
            before = [dict(i) for i in record.get(key) or []]
            _write_multi(portal, record, key, value)
            changed = changed or before != record[key]
        elif key in kind.fields and key not in _SERVER_FIELDS:
            new = _value(kind, key, value)
            if record.get(key) != new:
                record[key] = new
                changed = True
    record["HAS_PHONE"] = yn(record.get("PHONE"))
    record["HAS_EMAIL"] = yn(record.get("EMAIL"))
    return changed


def create_client(
    ctx: CallContext, kind: ClientKind, fields: dict[str, Any], record_id: int | None = None
) -> int:
    portal = ctx.portal
    fields = {str(k).upper(): v for k, v in fields.items()}
    if record_id is None:
        record_id = portal.next_id(kind.name)
    else:
        portal.bump_id(kind.name, record_id)
    now = portal.now_iso()
    record: dict[str, Any] = {f: None for f in kind.fields}
    record.update({f: v for f, v in kind.defaults})
    record.update(
        {
            "ID": str(record_id),
            "ASSIGNED_BY_ID": str(ctx.user_id),
            "CREATED_BY_ID": str(ctx.user_id),
            "MODIFY_BY_ID": str(ctx.user_id),
            "DATE_CREATE": now,
            "DATE_MODIFY": now,
        }
    )
    if kind is COMPANY:
        record["TITLE"] = f"Компания #{record_id}"
    _write(portal, kind, record, fields)
    _store(portal, kind)[record_id] = record
    return record_id


def _get(portal: Portal, kind: ClientKind, params: dict[str, Any]) -> dict[str, Any]:
    record_id = to_int(param(params, "id", "ID"))
    if not record_id or record_id <= 0:
        raise bad_id()
    record = _store(portal, kind).get(record_id)
    if record is None:
        raise not_found()
    return record


def _kind_of(kind: ClientKind, field: str) -> str:
    if field in kind.int_fields:
        return "int"
    return "date" if field in _DATE_FIELDS else "str"


def _filter_value(record: dict[str, Any], field: str) -> Any:
    if field in MULTI_FIELDS:
        return [i["VALUE"] for i in record.get(field) or []] or None
    return record.get(field)


def _list(portal: Portal, kind: ClientKind, params: dict[str, Any]) -> Page:
    filter_ = param(params, "filter") or {}
    if not isinstance(filter_, dict):
        filter_ = {}
    kinds = partial(_kind_of, kind)
    rows = [r for r in _store(portal, kind).values() if matches(r, filter_, kinds, _filter_value)]
    rows = sort_records(rows, parse_order(param(params, "order")) or [("ID", False)], kinds)
    fields = select_fields(param(params, "select") or ["*"], kind.fields, [])
    page = paginate(rows, param(params, "start"))
    allowed = set(kind.fields) | set(MULTI_FIELDS)
    projected = [
        {f: r.get(f) if f not in MULTI_FIELDS else r.get(f) or [] for f in fields if f in allowed}
        for r in page.result
    ]
    return Page(projected, page.total, page.next)


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in MULTI_FIELDS or v}


def _update(ctx: CallContext, kind: ClientKind, params: dict[str, Any]) -> bool:
    record = _get(ctx.portal, kind, params)
    fields = {str(k).upper(): v for k, v in fields_param(params).items()}
    if _write(ctx.portal, kind, record, fields):
        record["DATE_MODIFY"] = ctx.portal.now_iso()
        record["MODIFY_BY_ID"] = str(ctx.user_id)
    return True


@method("crm.contact.add")
def contact_add(ctx: CallContext, params: dict[str, Any]) -> int:
    return create_client(ctx, CONTACT, fields_param(params))


@method("crm.contact.get")
def contact_get(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    return _public(_get(ctx.portal, CONTACT, params))


@method("crm.contact.update")
def contact_update(ctx: CallContext, params: dict[str, Any]) -> bool:
    return _update(ctx, CONTACT, params)


@method("crm.contact.list")
def contact_list(ctx: CallContext, params: dict[str, Any]) -> Page:
    return _list(ctx.portal, CONTACT, params)


@method("crm.company.add")
def company_add(ctx: CallContext, params: dict[str, Any]) -> int:
    return create_client(ctx, COMPANY, fields_param(params))


@method("crm.company.get")
def company_get(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    return _public(_get(ctx.portal, COMPANY, params))


@method("crm.company.update")
def company_update(ctx: CallContext, params: dict[str, Any]) -> bool:
    return _update(ctx, COMPANY, params)


@method("crm.company.list")
def company_list(ctx: CallContext, params: dict[str, Any]) -> Page:
    return _list(ctx.portal, COMPANY, params)


def owner_exists(portal: Portal, owner_type_id: int, owner_id: int) -> bool:
    """Whether a CRM owner (1 lead, 2 deal, 3 contact, 4 company, ≥128 smart item) exists."""
    if owner_type_id == 2:
        return owner_id in portal.deals
    if owner_type_id == 3:
        return owner_id in portal.contacts
    if owner_type_id == 4:
        return owner_id in portal.companies
    if owner_type_id in portal.items:
        return owner_id in portal.items[owner_type_id]
    return False
