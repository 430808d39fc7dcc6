"""List-method mechanics of the emulator: filter operators, order, select and 50-row pages.

Filters: `>= > <= <`, `@` IN, `!@` NOT IN, `%` substring, `=%`/`%=` LIKE with own `%`,
`!%`/`!=%`/`!%=` NOT LIKE, `=` (default), `!=`/`!`; for crm.item.list also sub-filters
under numeric keys with `"logic": "OR"` (or AND). Orders must be ASC or DESC.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from emulators.bitrix24.registry import RestError, argument_error
from emulators.bitrix24.values import as_list, parse_datetime, to_float

PAGE_SIZE = 50

# Longest prefixes first, so `>=` is not read as `>` + `=FIELD`.
_OPERATORS = ("!=%", "!%=", ">=", "<=", "!@", "!=", "!%", "=%", "%=", ">", "<", "@", "%", "=", "!")

Kind = str  # "int" | "float" | "date" | "bool" | "str"
KindOf = Callable[[str], Kind]


@dataclass(frozen=True)
class Page:
    """A page of a list method: the envelope lifts `total`/`next` to the top level."""

    result: Any
    total: int
    next: int | None


def split_operator(key: str) -> tuple[str, str]:
    for op in _OPERATORS:
        if key.startswith(op) and len(key) > len(op):
            return op, key[len(op) :]
    return "=", key


def _typed(value: Any, kind: Kind) -> Any:
    if value is None or value == "":
        return None
    if kind == "int":
        number = to_float(value, default=float("nan"))
        return None if number != number else number
    if kind == "float":
        number = to_float(value, default=float("nan"))
        return None if number != number else number
    if kind == "date":
        return parse_datetime(value)
    if kind == "bool":
        text = str(value).strip().upper()
        return "1" if text in {"1", "Y", "TRUE"} else "0"
    return str(value).casefold()


def _like(pattern: str, text: str) -> bool:
    regex = "".join(
        ".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern.casefold()
    )
    return re.fullmatch(regex, text.casefold(), flags=re.DOTALL) is not None


def _compare(op: str, have: Any, want: Any) -> bool:
    if have is None or want is None:
        return False
    try:
        if op == ">":
            return have > want
        if op == ">=":
            return have >= want
        if op == "<":
            return have < want
        if op == "<=":
            return have <= want
    except TypeError:
        return False
    return False


def _match_one(op: str, have_raw: Any, want_raw: Any, kind: Kind) -> bool:
    haves = have_raw if isinstance(have_raw, list) else [have_raw]
    typed_haves = [_typed(h, kind) for h in haves] or [None]
    if op in {"=", "!", "!=", "@", "!@"}:
        wants = as_list(want_raw) if isinstance(want_raw, list | Mapping) else [want_raw]
        if op in {"@", "!@"} and not isinstance(want_raw, list | Mapping):
            wants = [w.strip() for w in str(want_raw).split(",")]
        typed_wants = [_typed(w, kind) for w in wants] or [None]
        hit = any(h == w for h in typed_haves for w in typed_wants)
        if op in {"=", "@"} and typed_wants == [None] and kind == "bool":
            hit = any(h in {None, "0"} for h in typed_haves)
        return hit if op in {"=", "@"} else not hit
    texts = ["" if h is None else str(h) for h in haves]
    want_text = "" if want_raw is None else str(want_raw)
    if op == "%":
        return any(want_text.casefold() in t.casefold() for t in texts)
    if op in {"!%"}:
        return not any(want_text.casefold() in t.casefold() for t in texts)
    if op in {"=%", "%="}:
        return any(_like(want_text, t) for t in texts)
    if op in {"!=%", "!%="}:
        return not any(_like(want_text, t) for t in texts)
    want = _typed(want_raw, kind)
    return any(_compare(op, h, want) for h in typed_haves)


def _as_mapping(value: Any) -> Mapping[str, Any] | None:
    if isinstance(value, Mapping):
        return value
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return None


def _is_group(key: str, value: Any) -> bool:
    return key.isdigit() and isinstance(value, Mapping | list)


_Record = TypeVar("_Record", bound=Mapping[str, Any])


def matches(
    record: _Record,
    filter_: Mapping[str, Any] | list[Any],
    kind_of: KindOf,
    getter: Callable[[_Record, str], Any] | None = None,
    *,
    upper: bool = True,
    groups: bool = False,
) -> bool:
    """True if the record passes the filter (keys carry operator prefixes).

    Field names are upper-cased (classic methods) unless `upper` is False (camelCase ones).
    With `groups`, numeric keys hold sub-filters combined by their `logic` (AND or OR).
    """
    get = getter or (lambda rec, field: rec.get(field))
    conditions = _as_mapping(filter_) or {}
    logic = "AND"
    results: list[bool] = []
    for key, want in conditions.items():
        key = str(key)
        if groups and key.lower() == "logic":
            logic = str(want).strip().upper()
            continue
        if groups and _is_group(key, want):
            sub = _as_mapping(want) or {}
            results.append(matches(record, sub, kind_of, getter, upper=upper, groups=True))
            continue
        op, field = split_operator(key)
        if upper:
            field = field.upper()
        results.append(_match_one(op, get(record, field), want, kind_of(field)))
    if logic == "OR":
        return any(results) if results else True
    return all(results)


def filter_fields(filter_: Any) -> list[str]:
    """Every field name a (possibly nested) filter mentions, operators stripped."""
    names: list[str] = []
    for key, value in (_as_mapping(filter_) or {}).items():
        key = str(key)
        if key.lower() == "logic":
            continue
        if _is_group(key, value):
            names.extend(filter_fields(value))
        else:
            names.append(split_operator(key)[1])
    return names


def check_direction(value: Any) -> bool:
    direction = str(value).strip().upper()
    if direction not in {"ASC", "DESC"}:
        raise argument_error("Order direction should be one of {ASC|DESC}")
    return direction == "DESC"


def parse_order(order: Any, *, upper: bool = True) -> list[tuple[str, bool]]:
    """`{"DATE_CREATE": "DESC"}` → [("DATE_CREATE", descending=True)]; bad directions fail."""
    if not isinstance(order, Mapping):
        return []
    return [(str(k).upper() if upper else str(k), check_direction(v)) for k, v in order.items()]


def sanitize_filter(
    filter_: Any,
    fields: Iterable[str],
    operations: Iterable[str] = ("", "=", ">", "<", ">=", "<=", "@", "%"),
) -> dict[str, Any]:
    """IRestService::sanitizeFilter: only listed fields and operations, keys upper-cased."""
    if filter_ in (None, ""):
        return {}
    if not isinstance(filter_, Mapping):
        raise argument_error("The filter is not an array.")
    allowed_fields, allowed_ops = set(fields), set(operations)
    result: dict[str, Any] = {}
    for key, value in filter_.items():
        key = str(key).upper()
        match = re.match(r"^([^a-zA-Z]*)(.*)$", key)
        operation, field = (match.group(1), match.group(2)) if match else ("", key)
        if operation not in allowed_ops:
            raise argument_error(f"Filter operation not allowed: {operation}")
        if field not in allowed_fields:
            raise argument_error(f"Filter field not allowed: {field}")
        result[(operation or "=") + field] = value
    return result


def sanitize_order(order: Any, fields: Iterable[str]) -> list[tuple[str, bool]]:
    """IRestService::sanitizeOrder: listed fields only, directions ASC|DESC."""
    if order in (None, ""):
        return []
    if not isinstance(order, Mapping):
        raise argument_error("The order is not an array.")
    allowed = set(fields)
    parsed = []
    for key, value in order.items():
        field = str(key).upper()
        if field not in allowed:
            raise argument_error(f"Order field not allowed: {field}")
        parsed.append((field, check_direction(value)))
    return parsed


def orm_name(field: str) -> str:
    """How the ORM spells a camelCase field in its errors: `stageId` → `STAGE_ID`."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", field).upper()


def unknown_field(field: str, entity: str) -> RestError:
    """The error camelCase methods give for a field they do not know (e.g. upper-case ID)."""
    return RestError(
        100, f"Unknown field definition `{orm_name(field)}` ({field}) for {entity} Entity."
    )


def sort_records(
    records: list[dict[str, Any]],
    order: list[tuple[str, bool]],
    kind_of: KindOf,
) -> list[dict[str, Any]]:
    ordered = list(records)
    for field, descending in reversed(order):
        kind = kind_of(field)

        def key(rec: Mapping[str, Any], field: str = field, kind: Kind = kind) -> tuple[int, Any]:
            value = _typed(rec.get(field), kind)
            return (0, "") if value is None else (1, value)

        ordered.sort(key=key, reverse=descending)
    return ordered


def paginate(rows: list[Any], start: Any, *, orm: bool = False) -> Page:
    """Fixed 50-row pages; `start=-1` skips the count (total 0, no next).

    Classic methods turn `start` into a page number (`intval(start / 50) + 1`), so an odd
    start is rounded down to its page; ORM-based ones (crm.item.list, …) use it as an offset.
    """
    try:
        offset = int(str(start).strip()) if start not in (None, "") else 0
    except ValueError:
        offset = 0
    if offset == -1:
        return Page(rows[:PAGE_SIZE], 0, None)
    offset = max(offset, 0)
    if not orm:
        offset -= offset % PAGE_SIZE
    page = rows[offset : offset + PAGE_SIZE]
    following = offset + len(page)
    return Page(page, len(rows), following if following < len(rows) else None)


def select_fields(
    select: Any,
    standard: Iterable[str],
    user_fields: Iterable[str],
    *,
    always: Iterable[str] = ("ID",),
) -> list[str]:
    """Resolve a select list: `*` = standard non-multiple fields, `UF_*` = user fields."""
    standard = list(standard)
    user_fields = list(user_fields)
    wanted = [str(s).upper() for s in as_list(select)] or ["*", "UF_*"]
    fields: list[str] = [f for f in always]
    for item in wanted:
        if item == "*":
            names = standard
        elif item == "UF_*":
            names = user_fields
        else:
            names = [item]
        fields.extend(n for n in names if n not in fields)
    return fields
