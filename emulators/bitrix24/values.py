"""Value conventions of the Bitrix24 emulator: portal time zone, PHP-ish scalars, JSON output."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

PORTAL_TZ = dt.timezone(dt.timedelta(hours=3))
_DATE_RU = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?$")


def iso(ts: float | dt.datetime) -> str:
    """ISO-8601 in the portal's zone, seconds precision: `2025-09-09T16:31:11+03:00`."""
    moment = ts if isinstance(ts, dt.datetime) else dt.datetime.fromtimestamp(ts, PORTAL_TZ)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=PORTAL_TZ)
    return moment.astimezone(PORTAL_TZ).replace(microsecond=0).isoformat()


def parse_datetime(value: Any) -> dt.datetime | None:
    """Parse what a portal accepts as a date/datetime (ISO or `DD.MM.YYYY [HH:MM[:SS]]`)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        if not text:
            return None
        match = _DATE_RU.match(text)
        try:
            if match:
                day, month, year, hour, minute, second = match.groups()
                moment = dt.datetime(
                    int(year),
                    int(month),
                    int(day),
                    int(hour or 0),
                    int(minute or 0),
                    int(second or 0),
                )
            else:
                moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=PORTAL_TZ)
    return moment.astimezone(PORTAL_TZ)


def iso_or_none(value: Any) -> str | None:
    moment = parse_datetime(value)
    return iso(moment) if moment else None


def to_int(value: Any, default: int | None = None) -> int | None:
    """PHP-like intval for ids: "42" → 42; junk → default."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        try:
            return int(float(str(value).strip()))
        except (TypeError, ValueError):
            return default


def to_money(value: Any) -> str:
    """Money as the CRM returns it: "1000000.00"."""
    try:
        amount = Decimal(str(value).strip() or "0")
    except (InvalidOperation, ValueError):
        amount = Decimal(0)
    return f"{amount.quantize(Decimal('0.01')):f}"


def to_float(value: Any, default: float = 0.0) -> float:
    try:
        return float(str(value).strip())
    except (TypeError, ValueError):
        return default


def truthy(value: Any) -> bool:
    """PHP-ish flag reading that also understands Y/N."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    return text not in {"", "0", "n", "false", "no", "off"}


def yn(value: Any) -> str:
    return "Y" if truthy(value) else "N"


def as_str(value: Any) -> str | None:
    """A scalar as the classic CRM returns it: a string, or None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def as_list(value: Any) -> list[Any]:
    """PHP arrays arrive as lists or as dicts with numeric keys; scalars become one item."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping):
        return list(value.values())
    return [value]


def camel(name: str) -> str:
    """`RESPONSIBLE_ID` → `responsibleId`, `UF_CRM_TASK` → `ufCrmTask`."""
    head, *rest = name.lower().split("_")
    return head + "".join(part.capitalize() for part in rest)


def php_value(value: Any) -> Any:
    """Empty PHP arrays serialise as `[]`, so an empty dict must too."""
    if isinstance(value, Mapping):
        if not value:
            return []
        return {str(k): php_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [php_value(v) for v in value]
    return value


def php_json(payload: Any) -> bytes:
    """JSON as PHP's json_encode with JSON_HEX_TAG|JSON_HEX_AMP writes it."""
    text = json.dumps(php_value(payload), ensure_ascii=True, separators=(",", ":"))
    for char, escape in (("<", "\\u003C"), (">", "\\u003E"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text.encode("ascii")


def names(text: str) -> tuple[str, ...]:
    """Field-name lists written as one whitespace-separated string."""
    return tuple(text.split())


def uf_camel(name: str) -> str:
    """A user field as crm.item.* names it: `UF_CRM_1_1700000001` → `ufCrm1_1700000001`,
    `UF_CRM_PRIORITY` → `ufCrmPriority` (digits after digits keep their underscore)."""
    parts = name.lower().split("_")
    out = parts[0]
    for previous, part in itertools.pairwise(parts):
        if part.isdigit() and previous.isdigit():
            out += "_" + part
        else:
            out += part.capitalize()
    return out
