"""Stored values ↔ 1C's JSON, with 1C's write-side leniency.

Stored: Int64 as int, dates as naive datetimes (the base's wall clock), references as GUID
strings (the zero GUID when empty), composites as `X` + `X_Type`, DataVersion as a counter.
On the wire: Int64 as strings, dates without a zone, DataVersion as base64 of 8 bytes.
Writes ignore unknown properties, truncate long strings, turn bad Int64 text into 0 and
keep references to objects that do not exist — as live bases do.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from emulators.onec.errors import ODataFault, bad_guid, internal
from emulators.onec.schema import EntityType, Prop, Table

ZERO_GUID = "00000000-0000-0000-0000-000000000000"
EMPTY_DATE = datetime(1, 1, 1)
UNDEFINED = "StandardODATA.Undefined"
TYPE_PREFIX = "StandardODATA."

_GUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_INT_RE = re.compile(r"^\s*-?\d+\s*$")
_NUM_RE = re.compile(r"^\s*-?\d+(\.\d+)?\s*$")


def is_guid(text: object) -> bool:
    return isinstance(text, str) and bool(_GUID_RE.match(text))


def empty_value(prop: Prop) -> Any:
    return {
        "string": "",
        "enum": "",
        "composite": "",
        "int64": 0,
        "double": 0,
        "bool": False,
        "datetime": EMPTY_DATE,
        "ref": ZERO_GUID,
    }[prop.type]


def data_version(counter: int) -> str:
    return base64.b64encode(counter.to_bytes(8, "big")).decode("ascii")


def parse_datetime_text(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is not None:
        raise ValueError("1C dates carry no zone")
    return value.replace(microsecond=0)


# -- writing ------------------------------------------------------------------------------


def decode_value(prop: Prop, raw: Any) -> Any:
    """One incoming JSON value as stored; raises ODataFault where 1C refuses."""
    if isinstance(raw, list | dict):
        raise internal()
    if raw is None:
        return empty_value(prop)
    kind = prop.type
    if kind in ("string", "enum"):
        text = raw if isinstance(raw, str) else str(raw)
        if kind == "enum" and text and prop.values and text not in prop.values:
            raise ODataFault(400, "4", f"Неверное значение '{text}' свойства '{prop.name}'")
        return text[: prop.length] if prop.length else text
    if kind == "int64":
        if isinstance(raw, bool):
            return int(raw)
        if isinstance(raw, int | float):
            return int(raw)
        return int(raw) if _INT_RE.match(str(raw)) else 0
    if kind == "double":
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return round(float(raw), prop.scale)
        return round(float(raw), prop.scale) if _NUM_RE.match(str(raw)) else 0
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("true", "false"):
            return str(raw).lower() == "true"
        raise ODataFault(
            400, "1", f"Не удалось разобрать строку '{raw}' как значение типа Edm.Boolean!"
        )
    if kind == "datetime":
        try:
            return parse_datetime_text(str(raw))
        except ValueError:
            raise ODataFault(
                400, "1", f"Не удалось разобрать строку '{raw}' как значение типа Edm.DateTime!"
            ) from None
    if kind == "ref":
        if not is_guid(raw):
            raise bad_guid(str(raw))
        return str(raw).lower()
    raise ValueError(f"composite {prop.name} is decoded with its _Type")


def decode_composite(prop: Prop, body: Mapping[str, Any]) -> tuple[Any, str]:
    raw = body.get(prop.name)
    type_name = body.get(prop.name + "_Type")
    if isinstance(raw, list | dict):
        raise internal()
    if type_name in (None, "", UNDEFINED):
        if raw in (None, "", ZERO_GUID):
            return "", UNDEFINED
        raise ODataFault(400, "5", f"Не указан тип значения свойства '{prop.name}'")
    type_name = str(type_name)
    if type_name.startswith("Edm."):
        return raw, type_name
    if type_name.startswith(TYPE_PREFIX + "Enum_"):
        # An enumeration value inside a composite is its name (e.g. СтавкаНДС = "НДС20").
        return str(raw or ""), type_name
    if not is_guid(raw):
        raise bad_guid(str(raw))
    return str(raw).lower(), type_name


# Standard properties a client may set; the rest (Ref_Key, DataVersion, Posted…) are 1C's.
WRITABLE_STANDARD = frozenset(
    {
        "DeletionMark",
        "Code",
        "Description",
        "Number",
        "Date",
        "Parent_Key",
        "IsFolder",
        "Executed",
        "Period",
    }
)


def decode_fields(props: tuple[Prop, ...], body: Mapping[str, Any]) -> dict[str, Any]:
    """The known, writable fields present in `body`, decoded; the rest is ignored."""
    out: dict[str, Any] = {}
    for prop in props:
        if prop.type == "composite":
            if prop.name in body or prop.name + "_Type" in body:
                value, type_name = decode_composite(prop, body)
                out[prop.name] = value
                out[prop.name + "_Type"] = type_name
        elif prop.name in body:
            out[prop.name] = decode_value(prop, body[prop.name])
    return out


def decode_rows(table: Table, raw: Any) -> list[dict[str, Any]]:
    """A tabular part as sent: it replaces the stored one; LineNumber must run 1..n."""
    if not isinstance(raw, list):
        raise internal()
    rows = []
    for expected, item in enumerate(raw, start=1):
        if not isinstance(item, Mapping):
            raise internal()
        if "LineNumber" not in item:
            raise internal()
        number = item["LineNumber"]
        if str(number).strip() != str(expected):
            raise ODataFault(
                400,
                "4",
                f"Неверное значение свойства 'LineNumber' строки табличной части "
                f"'{table.name}': {number}",
            )
        row = empty_row(table)
        row.update(decode_fields(table.props, item))
        row["LineNumber"] = expected
        rows.append(row)
    return rows


def empty_row(table: Table) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for prop in table.props:
        row[prop.name] = empty_value(prop)
        if prop.type == "composite":
            row[prop.name + "_Type"] = UNDEFINED
    return row


def new_object(etype: EntityType) -> dict[str, Any]:
    """An object with every field at its empty value (1C's defaults)."""
    obj: dict[str, Any] = {}
    for prop in etype.all_props():
        obj[prop.name] = empty_value(prop)
        if prop.type == "composite":
            obj[prop.name + "_Type"] = UNDEFINED
    for table in etype.tables:
        obj[table.name] = []
    return obj


# -- reading ------------------------------------------------------------------------------


@dataclass
class Selection:
    """What to output: `props` None = all; `tables` maps a part to its fields (None = all)."""

    props: set[str] | None = None
    tables: dict[str, set[str] | None] | None = None
    expand: dict[str, Selection] = field(default_factory=dict)

    def wants(self, name: str) -> bool:
        return self.props is None or name in self.props

    def table_fields(self, name: str) -> tuple[bool, set[str] | None]:
        if self.tables is None:
            return True, None
        if name in self.tables:
            return True, self.tables[name]
        return False, None


def encode_value(prop: Prop, value: Any) -> Any:
    if prop.name == "DataVersion":
        return data_version(int(value or 0))
    if prop.type == "int64":
        return str(value)
    if prop.type == "double":
        number = round(float(value), prop.scale)
        return int(number) if number.is_integer() else number
    if prop.type == "datetime":
        return value.isoformat(timespec="seconds")
    return value


@dataclass
class Encoder:
    """Builds 1C JSON objects; `lookup(set, key)` resolves references for $expand."""

    lookup: Callable[[str, str], tuple[EntityType, dict[str, Any]] | None]
    links: bool = True

    def object(
        self,
        etype: EntityType,
        obj: Mapping[str, Any],
        selection: Selection | None = None,
        canonical: str | None = None,
    ) -> dict[str, Any]:
        sel = selection or Selection()
        out = self._fields(etype.head + etype.props, obj, sel)
        for table in etype.tables:
            wanted, fields = sel.table_fields(table.name)
            if wanted:
                out[table.name] = [
                    self.row(etype, table, obj["Ref_Key"], row, fields) for row in obj[table.name]
                ]
        out.update(self._fields(etype.tail, obj, sel))
        self._expand(etype, obj, sel, out)
        if self.links and canonical:
            self._links(etype.head + etype.props, obj, sel, canonical, out)
        return out

    def row(
        self,
        etype: EntityType,
        table: Table,
        ref: str,
        row: Mapping[str, Any],
        fields: set[str] | None = None,
    ) -> dict[str, Any]:
        # No navigation links inside tabular rows (onec-real.md).
        out: dict[str, Any] = {"Ref_Key": ref, "LineNumber": str(row["LineNumber"])}
        out.update(self._fields(table.props, row, Selection(props=fields)))
        return out

    def _fields(
        self, props: tuple[Prop, ...], obj: Mapping[str, Any], sel: Selection
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for prop in props:
            if not sel.wants(prop.name):
                continue
            out[prop.name] = encode_value(prop, obj[prop.name])
            if prop.type == "composite":
                out[prop.name + "_Type"] = obj[prop.name + "_Type"]
        return out

    def _expand(
        self, etype: EntityType, obj: Mapping[str, Any], sel: Selection, out: dict[str, Any]
    ) -> None:
        for nav, sub in sel.expand.items():
            prop = etype.nav(nav)
            if prop is None or prop.target is None:
                continue
            found = self.lookup(prop.target, obj[prop.name])
            out[nav] = None if found is None else self.object(found[0], found[1], sub)

    def _links(
        self,
        props: tuple[Prop, ...],
        obj: Mapping[str, Any],
        sel: Selection,
        canonical: str,
        out: dict[str, Any],
    ) -> None:
        for prop in props:
            # Omitted for the empty reference (onec-real.md).
            empty = obj.get(prop.name) in (ZERO_GUID, "", None)
            if prop.type == "ref" and prop.name != "Ref_Key" and sel.wants(prop.name) and not empty:
                out[f"{prop.nav_name}@navigationLinkUrl"] = f"{canonical}/{prop.nav_name}"
