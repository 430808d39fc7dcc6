"""A small, safe builder for 1C's `$filter` (OData v3 syntax as 1C parses it).

    F("Контрагент_Key") == some_guid          -> Контрагент_Key eq guid'…'
    (F("Date") >= dt) & F("Posted").is_true() -> Date ge datetime'…' and Posted eq true
    F("Description").substringof("Ромаш")    -> substringof('Ромаш',Description)
    F("ДокументОснование") == Ref("Document_СчетНаОплатуКлиенту", key)
                                             -> ДокументОснование eq cast(guid'…','Document_…')

Values are always rendered as literals (strings quoted with '' doubling), never pasted.
A str compared with a `…_Key`/`Ref_Key` field is taken as a GUID and validated.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from salesflow.integrations.onec.parsing import ZERO_GUID, Ref, format_datetime, normalize_guid

DEFAULT_TZ = ZoneInfo("Europe/Moscow")


@dataclass(frozen=True, slots=True)
class Guid:
    """A value to render as guid'…' (use for keys held as plain strings)."""

    value: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", normalize_guid(self.value))


def guid(value: str | uuid.UUID | None) -> Guid:
    """guid'…' literal; None means the empty reference (the zero GUID)."""
    return Guid(ZERO_GUID if value is None else str(value))


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def literal(value: Any, tz: ZoneInfo = DEFAULT_TZ) -> str:
    """Render a Python value as a 1C OData literal."""
    if isinstance(value, Expr):
        return value.render(tz)
    if isinstance(value, Guid):
        return f"guid'{value.value}'"
    if isinstance(value, uuid.UUID):
        return f"guid'{value}'"
    if isinstance(value, Ref):
        return f"cast(guid'{normalize_guid(value.key)}',{quote(value.type)})"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        return format(Decimal(repr(value)) if isinstance(value, float) else value, "f")
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, datetime | date):
        return f"datetime'{format_datetime(value, tz)}'"
    if value is None:
        raise ValueError("None has no 1C literal; use guid(None) for an empty reference")
    raise TypeError(f"cannot render {type(value).__name__} as a 1C literal")


class Expr:
    """A boolean or value expression of $filter."""

    def render(self, tz: ZoneInfo = DEFAULT_TZ) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.render()

    def __and__(self, other: Expr) -> Expr:
        return BoolOp("and", (self, other))

    def __or__(self, other: Expr) -> Expr:
        return BoolOp("or", (self, other))

    def __invert__(self) -> Expr:
        return Not(self)


@dataclass(frozen=True, eq=False)
class Raw(Expr):
    """Trusted filter text, pasted as is (only for constant text written in code)."""

    text: str

    def render(self, tz: ZoneInfo = DEFAULT_TZ) -> str:
        return self.text


@dataclass(frozen=True, eq=False)
class BoolOp(Expr):
    op: str
    parts: tuple[Expr, ...]

    def render(self, tz: ZoneInfo = DEFAULT_TZ) -> str:
        rendered = []
        for part in self.parts:
            text = part.render(tz)
            if isinstance(part, BoolOp) and part.op != self.op:
                text = f"({text})"
            rendered.append(text)
        return f" {self.op} ".join(rendered)


@dataclass(frozen=True, eq=False)
class Not(Expr):
    inner: Expr

    def render(self, tz: ZoneInfo = DEFAULT_TZ) -> str:
        return f"not ({self.inner.render(tz)})"


@dataclass(frozen=True, eq=False)
class Compare(Expr):
    field: Field
    op: str
    value: Any

    def render(self, tz: ZoneInfo = DEFAULT_TZ) -> str:
        return f"{self.field.render(tz)} {self.op} {self.field.literal_for(self.value, tz)}"


@dataclass(frozen=True, eq=False)
class Call(Expr):
    name: str
    args: tuple[Any, ...]

    def render(self, tz: ZoneInfo = DEFAULT_TZ) -> str:
        return f"{self.name}({','.join(literal(arg, tz) for arg in self.args)})"


@dataclass(frozen=True, eq=False)
class Lambda(Expr):
    """`Товары/any(d: d/Цена gt 10000)` over a tabular part (1C 8.3.8+)."""

    path: Field
    kind: str
    var: str
    condition: Expr | None

    def render(self, tz: ZoneInfo = DEFAULT_TZ) -> str:
        if self.condition is None:
            return f"{self.path.render(tz)}/{self.kind}()"
        return f"{self.path.render(tz)}/{self.kind}({self.var}: {self.condition.render(tz)})"


class Field(Expr):
    """A property or a path (`Контрагент/ИНН`, `d/Цена` inside any/all)."""

    __slots__ = ("name",)
    # `==` builds a Compare, so a Field is not hashable (object declares __hash__ a method).
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, name: str) -> None:
        if not name or any(ch in name for ch in " '()=,&?#"):
            raise ValueError(f"not a property path: {name!r}")
        self.name = name

    def render(self, tz: ZoneInfo = DEFAULT_TZ) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"F({self.name!r})"

    @property
    def is_key(self) -> bool:
        last = self.name.rsplit("/", 1)[-1]
        return last == "Ref_Key" or last.endswith("_Key")

    def literal_for(self, value: Any, tz: ZoneInfo) -> str:
        if self.is_key and (value is None or isinstance(value, str)):
            value = guid(value)
        return literal(value, tz)

    # The filter DSL: `F("x") == v` builds a Compare, not a bool as object's __eq__ declares.
    def __eq__(self, value: Any) -> Compare:  # type: ignore[override]
        return Compare(self, "eq", value)

    def __ne__(self, value: Any) -> Compare:  # type: ignore[override]  # as __eq__
        return Compare(self, "ne", value)

    def __gt__(self, value: Any) -> Compare:
        return Compare(self, "gt", value)

    def __ge__(self, value: Any) -> Compare:
        return Compare(self, "ge", value)

    def __lt__(self, value: Any) -> Compare:
        return Compare(self, "lt", value)

    def __le__(self, value: Any) -> Compare:
        return Compare(self, "le", value)

    def is_true(self) -> Compare:
        """`X eq true` — the form every recorded 1C client writes (never a bare `X`)."""
        return Compare(self, "eq", True)

    def is_false(self) -> Compare:
        return Compare(self, "eq", False)

    def substringof(self, needle: str) -> Call:
        """True when the field contains `needle` (v3 argument order: needle first)."""
        return Call("substringof", (needle, self))

    def startswith(self, prefix: str) -> Call:
        return Call("startswith", (self, prefix))

    def endswith(self, suffix: str) -> Call:
        return Call("endswith", (self, suffix))

    def isof(self, entity_set: str) -> Call:
        """For composite fields: the value is an object of `entity_set`."""
        return Call("isof", (self, entity_set))

    def any(self, condition: Callable[[Field], Expr] | None = None, var: str = "d") -> Lambda:
        """Tabular part has a row matching `condition(row)`; with no condition, is not empty."""
        return Lambda(self, "any", var, None if condition is None else condition(Field(var)))

    def all(self, condition: Callable[[Field], Expr], var: str = "d") -> Lambda:
        return Lambda(self, "all", var, condition(Field(var)))

    def __truediv__(self, child: str) -> Field:
        return Field(f"{self.name}/{child}")


F = Field


def and_(*parts: Expr) -> Expr:
    return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))


def or_(*parts: Expr) -> Expr:
    return parts[0] if len(parts) == 1 else BoolOp("or", tuple(parts))


def render_filter(value: Expr | str | None, tz: ZoneInfo = DEFAULT_TZ) -> str | None:
    """A builder expression rendered in the base's zone; a str is passed through."""
    if value is None or isinstance(value, str):
        return value
    return value.render(tz)
