"""1C's JSON values to Python and back.

1C writes dates without a zone (the server's wall clock), Int64 as strings, an empty
reference as the zero GUID, an empty date as 0001-01-01T00:00:00 and a composite-type
field as a pair `X` + `X_Type` ("StandardODATA.Document_…"). Reading turns these into
aware datetimes, ints, None and `Ref`; writing turns them back.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

ZERO_GUID = "00000000-0000-0000-0000-000000000000"
EMPTY_DATE = "0001-01-01T00:00:00"
TYPE_PREFIX = "StandardODATA."
UNDEFINED_TYPE = "StandardODATA.Undefined"

# Int64 fields that cannot be told from strings without $metadata; extend per client.
DEFAULT_INT64_FIELDS: frozenset[str] = frozenset({"LineNumber", "КодСтроки", "СрокГодности"})

_GUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")


@dataclass(frozen=True, slots=True)
class Ref:
    """A value of a composite-type field: the entity set of the referenced object and its key."""

    type: str
    key: str

    @property
    def odata_type(self) -> str:
        return TYPE_PREFIX + self.type


def is_guid(value: object) -> bool:
    return isinstance(value, str) and bool(_GUID_RE.match(value))


def normalize_guid(value: str | uuid.UUID) -> str:
    """A guid as 1C prints it (lower case, dashed); ValueError for anything else."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if not is_guid(value):
        raise ValueError(f"not a GUID: {value!r}")
    return value.lower()


def parse_guid(value: Any) -> str | None:
    """A reference key: the zero GUID (no reference) and "" become None."""
    if value in (None, "", ZERO_GUID):
        return None
    return str(value)


def parse_datetime(value: Any, tz: ZoneInfo) -> datetime | None:
    """A zone-less 1C date read as wall-clock time in `tz`; the empty date becomes None."""
    if value in (None, "", EMPTY_DATE):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    return datetime.fromisoformat(str(value)).replace(tzinfo=tz)


def parse_int64(value: Any) -> int:
    """Int64 comes as a JSON string ("1"); "" counts as 0."""
    if value in (None, ""):
        return 0
    return int(value)


def parse_composite(value: Any, type_name: Any, tz: ZoneInfo) -> Any:
    """A composite field: `Ref` for objects, None when Undefined/empty, else the primitive."""
    if not isinstance(type_name, str) or type_name in ("", UNDEFINED_TYPE):
        return None
    if type_name.startswith("Edm."):
        if type_name == "Edm.DateTime":
            return parse_datetime(value, tz)
        if type_name == "Edm.Int64":
            return parse_int64(value)
        return value
    key = parse_guid(value)
    if key is None:
        return None
    return Ref(type=type_name.removeprefix(TYPE_PREFIX), key=key)


def parse_entity(
    raw: Mapping[str, Any],
    tz: ZoneInfo,
    int_fields: Collection[str] = DEFAULT_INT64_FIELDS,
) -> dict[str, Any]:
    """Convert one 1C object (nested rows and expanded objects too) to Python values."""
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if name.startswith("odata.") or "@" in name:
            continue
        if name + "_Type" in raw:
            out[name] = parse_composite(value, raw[name + "_Type"], tz)
        elif name == "Ref_Key" or name.endswith("_Key"):
            out[name] = parse_guid(value)
        elif name in int_fields:
            out[name] = parse_int64(value)
        elif isinstance(value, str) and _DATETIME_RE.match(value):
            out[name] = parse_datetime(value, tz)
        elif isinstance(value, list):
            out[name] = [
                parse_entity(item, tz, int_fields) if isinstance(item, Mapping) else item
                for item in value
            ]
        elif isinstance(value, Mapping):
            out[name] = parse_entity(value, tz, int_fields)
        else:
            out[name] = value
    return out


def format_datetime(value: datetime | date, tz: ZoneInfo) -> str:
    """A Python date/datetime as 1C's zone-less literal text, in the base's zone."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(tz).replace(tzinfo=None)
        return value.replace(microsecond=0).isoformat()
    return datetime(value.year, value.month, value.day).isoformat()


def serialize_entity(
    data: Mapping[str, Any],
    tz: ZoneInfo,
    int_fields: Collection[str] = DEFAULT_INT64_FIELDS,
) -> dict[str, Any]:
    """Prepare a body for POST/PATCH.

    None in a `_Key` field becomes the zero GUID, a `Ref` becomes `X` + `X_Type`, dates
    become zone-less text in the base's zone, Decimal a JSON number, and rows of a tabular
    part get LineNumber 1..n when they have none (1C answers 500 without it).
    """
    out: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, Ref):
            out[name] = value.key
            out[name + "_Type"] = value.odata_type
        elif value is None and (name == "Ref_Key" or name.endswith("_Key")):
            out[name] = ZERO_GUID
        elif isinstance(value, list):
            out[name] = _serialize_rows(value, tz, int_fields)
        elif name in int_fields and isinstance(value, int) and not isinstance(value, bool):
            out[name] = str(value)
        else:
            out[name] = _serialize_scalar(value, tz)
    return out


def _serialize_rows(rows: list[Any], tz: ZoneInfo, int_fields: Collection[str]) -> list[Any]:
    result: list[Any] = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            result.append(_serialize_scalar(row, tz))
            continue
        item = serialize_entity(row, tz, int_fields)
        item.setdefault("LineNumber", str(number))
        result.append(item)
    return result


def _serialize_scalar(value: Any, tz: ZoneInfo) -> Any:
    if isinstance(value, datetime | date):
        return format_datetime(value, tz)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value
