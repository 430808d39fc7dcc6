"""1C's $filter language: tokens, parser and evaluator over stored objects.

A bare GUID never equals a composite field (use cast); functions 1C lacks (tolower, length,
indexof…) are refused with 400; an unknown name is a 400 that repeats it; a bare number
against a string is a 400 that repeats the number; string and datetime literals are never
repeated (shared/research/onec.md §2, §4).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from emulators.onec.codec import (
    TYPE_PREFIX,
    UNDEFINED,
    ZERO_GUID,
    empty_row,
    is_guid,
)
from emulators.onec.errors import ODataFault, bad_guid, bad_option, unknown_segment
from emulators.onec.schema import EntityType, Prop, Table


class Shape(Protocol):
    @property
    def name(self) -> str: ...

    def prop(self, name: str) -> Prop | None: ...

    def nav(self, name: str) -> Prop | None: ...

    def table(self, name: str) -> Table | None: ...


@dataclass(frozen=True)
class RowShape:
    """A row of a tabular part, seen as an entity of the set `<Object>_<Table>`."""

    owner: EntityType
    tab: Table

    @property
    def name(self) -> str:
        return f"{self.owner.name}_{self.tab.name}"

    def prop(self, name: str) -> Prop | None:
        if name == "Ref_Key":
            return Prop("Ref_Key", "ref", target=self.owner.name)
        if name == "LineNumber":
            return Prop("LineNumber", "int64")
        return self.tab.prop(name)

    def nav(self, name: str) -> Prop | None:
        prop = self.prop(name + "_Key")
        return prop if prop is not None and prop.type == "ref" else None

    def table(self, name: str) -> Table | None:
        return None


Lookup = Callable[[str, str], tuple[EntityType, Mapping[str, Any]] | None]


class Guid(str):
    """A guid'…' literal."""


class Composite(NamedTuple):
    type: str
    key: Any


# -- tokens ---------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<typed>(?:guid|datetime|datetimeoffset|time|X|binary)'(?:[^']|'')*')
    | (?P<string>'(?:[^']|'')*')
    | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDfFlL]?)
    | (?P<name>[^\W\d]\w*)
    | (?P<punct>[(),/:])
    )""",
    re.VERBOSE,
)
COMPARE = {"eq", "ne", "gt", "ge", "lt", "le"}
ARITH = {"add", "sub", "mul", "div", "mod"}
UNSUPPORTED = {
    "length",
    "indexof",
    "replace",
    "tolower",
    "toupper",
    "trim",
    "years",
    "days",
    "hours",
    "minutes",
    "seconds",
    "floor",
    "ceiling",
    "any",
    "all",
}


def tokenize(text: str, option: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise bad_option(option)
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


# -- AST ------------------------------------------------------------------------------------


@dataclass
class Scope:
    shape: Shape
    obj: Mapping[str, Any]
    lookup: Lookup
    vars: dict[str, tuple[Shape, Mapping[str, Any]]]
    blank: bool = False  # validating names against the schema, not evaluating data


class Node:
    def eval(self, scope: Scope) -> Any:
        raise NotImplementedError


@dataclass
class Lit(Node):
    value: Any

    def eval(self, scope: Scope) -> Any:
        return self.value


@dataclass
class Path(Node):
    segments: list[str]

    def eval(self, scope: Scope) -> Any:
        first, rest = self.segments[0], self.segments[1:]
        if first in scope.vars:
            shape, obj = scope.vars[first]
            if not rest:
                raise bad_option("$filter")
            return resolve(shape, obj, rest, scope)
        return resolve(scope.shape, scope.obj, self.segments, scope)


@dataclass
class Lambda(Node):
    path: Path
    kind: str
    var: str | None
    body: Node | None

    def eval(self, scope: Scope) -> Any:
        owner = scope.shape
        table = owner.table(self.path.segments[0]) if len(self.path.segments) == 1 else None
        if table is None or not isinstance(owner, EntityType):
            raise unknown_segment("/".join(self.path.segments))
        shape = RowShape(owner, table)
        rows = [new_row(table)] if scope.blank else scope.obj[table.name]
        if self.body is None or self.var is None:
            return bool(rows)
        results = []
        for row in rows:
            inner = Scope(
                scope.shape,
                scope.obj,
                scope.lookup,
                {**scope.vars, self.var: (shape, row)},
                scope.blank,
            )
            results.append(truthy(self.body.eval(inner)))
        return any(results) if self.kind == "any" else all(results)


@dataclass
class Not(Node):
    inner: Node

    def eval(self, scope: Scope) -> Any:
        return not truthy(self.inner.eval(scope))


@dataclass
class Bin(Node):
    op: str
    left: Node
    right: Node

    def eval(self, scope: Scope) -> Any:
        if self.op == "and":
            left = truthy(self.left.eval(scope))
            right = truthy(self.right.eval(scope))
            return left and right
        if self.op == "or":
            left = truthy(self.left.eval(scope))
            right = truthy(self.right.eval(scope))
            return left or right
        a, b = self.left.eval(scope), self.right.eval(scope)
        if self.op in COMPARE:
            return compare(self.op, a, b, self.left, self.right)
        return arith(self.op, a, b)


@dataclass
class Call(Node):
    name: str
    args: list[Node]

    def eval(self, scope: Scope) -> Any:
        values = [arg.eval(scope) for arg in self.args]
        try:
            return FUNCTIONS[self.name](*values)
        except (TypeError, ValueError, AttributeError, IndexError):
            if scope.blank:
                return None
            raise ODataFault(500, "-1", "Ошибка выполнения функции в $filter") from None


def require_predicates(node: Node) -> None:
    """A bare property as a condition (`Posted`, `not (DeletionMark)`) is refused: no public
    evidence shows 1C accepting it, every recorded client writes `Posted eq true`
    (onec-real.md), so the emulator does not accept it either."""
    if isinstance(node, Path):
        raise bad_option("$filter")
    if isinstance(node, Bin) and node.op in ("and", "or"):
        require_predicates(node.left)
        require_predicates(node.right)
    elif isinstance(node, Not):
        require_predicates(node.inner)
    elif isinstance(node, Lambda) and node.body is not None:
        require_predicates(node.body)


def truthy(value: Any) -> bool:
    return value is True


def compare(op: str, a: Any, b: Any, left: Node, right: Node) -> bool:
    for value, other in ((a, right), (b, left)):
        if isinstance(value, str) and isinstance(other, Lit) and _is_number(other.value):
            # 1C refuses a number against a string and repeats the number (P7).
            raise ODataFault(400, "14", f"Ошибка при разборе опции запроса $filter: {other.value}")
    if op == "eq":
        return bool(a == b)
    if op == "ne":
        return bool(a != b)
    try:
        return bool({"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op])
    except TypeError:
        return False


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def arith(op: str, a: Any, b: Any) -> Any:
    try:
        if op == "add":
            return a + b
        if op == "sub":
            return a - b
        if op == "mul":
            return a * b
        if op == "div":
            return a / b
        return a % b
    except (TypeError, ZeroDivisionError):
        return None


def resolve(shape: Shape, obj: Mapping[str, Any], segments: list[str], scope: Scope) -> Any:
    name, rest = segments[0], segments[1:]
    prop = shape.prop(name)
    if prop is not None:
        if rest:
            raise unknown_segment(rest[0])
        return field_value(prop, obj)
    nav = shape.nav(name)
    if nav is not None and nav.target is not None:
        if not rest:
            return Guid(obj[nav.name])
        found = scope.lookup(nav.target, obj[nav.name])
        if found is None:
            return None
        return resolve(found[0], found[1], rest, scope)
    if name.endswith("_Type"):
        base = shape.prop(name.removesuffix("_Type"))
        if base is not None and base.type == "composite":
            return obj[name]
    raise unknown_segment(name)


def field_value(prop: Prop, obj: Mapping[str, Any]) -> Any:
    value = obj[prop.name]
    if prop.type == "composite":
        type_name = obj[prop.name + "_Type"]
        if type_name == UNDEFINED:
            return None
        return Composite(type_name.removeprefix(TYPE_PREFIX), value)
    if prop.type == "ref":
        return Guid(value)
    return value


def new_row(table: Table) -> dict[str, Any]:
    return {"Ref_Key": ZERO_GUID, "LineNumber": 1, **empty_row(table)}


# -- functions ------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _like(value: Any, pattern: Any) -> bool:
    regex = ""
    for ch in _text(pattern):
        regex += {"%": ".*", "_": "."}.get(ch, re.escape(ch))
    return re.fullmatch(regex, _text(value), re.S | re.I) is not None


def _cast(value: Any, type_name: Any) -> Any:
    type_name = _text(type_name).removeprefix(TYPE_PREFIX)
    if type_name.startswith("Edm."):
        return value
    return Composite(type_name, str(value).lower())


def _isof(value: Any, type_name: Any) -> bool:
    return isinstance(value, Composite) and value.type == _text(type_name).removeprefix(TYPE_PREFIX)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "substringof": lambda needle, hay: _text(needle).casefold() in _text(hay).casefold(),
    "startswith": lambda hay, prefix: _text(hay).casefold().startswith(_text(prefix).casefold()),
    "endswith": lambda hay, suffix: _text(hay).casefold().endswith(_text(suffix).casefold()),
    "concat": lambda a, b: _text(a) + _text(b),
    "substring": lambda s, start, n=None: _text(s)[start:][:n],
    "like": _like,
    "year": lambda d: d.year,
    "month": lambda d: d.month,
    "day": lambda d: d.day,
    "hour": lambda d: d.hour,
    "minute": lambda d: d.minute,
    "second": lambda d: d.second,
    "quarter": lambda d: (d.month - 1) // 3 + 1,
    "dayofyear": lambda d: d.timetuple().tm_yday,
    "dayofweek": lambda d: d.isoweekday(),
    "round": lambda x: round(x),
    "cast": _cast,
    "isof": _isof,
}


# -- parser ---------------------------------------------------------------------------------


class Parser:
    def __init__(self, text: str, option: str = "$filter") -> None:
        self.option = option
        self.tokens = tokenize(text, option)
        self.pos = 0

    def parse(self) -> Node:
        if not self.tokens:
            raise bad_option(self.option)
        node = self.expr()
        if self.pos != len(self.tokens):
            raise bad_option(self.option)
        return node

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise bad_option(self.option)
        self.pos += 1
        return token

    def expect(self, value: str) -> None:
        if self.take()[1] != value:
            raise bad_option(self.option)

    def keyword(self, *words: str) -> str | None:
        token = self.peek()
        if token is not None and token[0] == "name" and token[1] in words:
            self.pos += 1
            return token[1]
        return None

    def expr(self) -> Node:
        node = self.conj()
        while self.keyword("or"):
            node = Bin("or", node, self.conj())
        return node

    def conj(self) -> Node:
        node = self.neg()
        while self.keyword("and"):
            node = Bin("and", node, self.neg())
        return node

    def neg(self) -> Node:
        if self.keyword("not"):
            return Not(self.neg())
        return self.comparison()

    def comparison(self) -> Node:
        node = self.additive()
        op = self.keyword(*COMPARE)
        if op:
            node = Bin(op, node, self.additive())
        return node

    def additive(self) -> Node:
        node = self.multiplicative()
        while op := self.keyword("add", "sub"):
            node = Bin(op, node, self.multiplicative())
        return node

    def multiplicative(self) -> Node:
        node = self.primary()
        while op := self.keyword("mul", "div", "mod"):
            node = Bin(op, node, self.primary())
        return node

    def primary(self) -> Node:
        kind, text = self.take()
        if kind == "punct" and text == "(":
            node = self.expr()
            self.expect(")")
            return node
        if kind == "string":
            return Lit(text[1:-1].replace("''", "'"))
        if kind == "typed":
            return Lit(typed_literal(text))
        if kind == "number":
            return Lit(number_literal(text))
        if kind != "name":
            raise bad_option(self.option)
        if text in ("true", "false"):
            return Lit(text == "true")
        if text == "null":
            return Lit(None)
        nxt = self.peek()
        if nxt == ("punct", "("):
            return self.call(text)
        return self.path(text)

    def call(self, name: str) -> Node:
        if name in UNSUPPORTED or name not in FUNCTIONS:
            raise bad_option(self.option)
        self.expect("(")
        args: list[Node] = []
        if self.peek() != ("punct", ")"):
            args.append(self.expr())
            while self.peek() == ("punct", ","):
                self.pos += 1
                args.append(self.expr())
        self.expect(")")
        return Call(name, args)

    def path(self, first: str) -> Node:
        segments = [first]
        while self.peek() == ("punct", "/"):
            self.pos += 1
            kind, text = self.take()
            if kind != "name":
                raise bad_option(self.option)
            if text in ("any", "all") and self.peek() == ("punct", "("):
                return self.lambda_(Path(segments), text)
            segments.append(text)
        return Path(segments)

    def lambda_(self, path: Path, kind: str) -> Node:
        self.expect("(")
        if self.peek() == ("punct", ")"):
            self.pos += 1
            return Lambda(path, kind, None, None)
        var_kind, var = self.take()
        if var_kind != "name":
            raise bad_option(self.option)
        self.expect(":")
        body = self.expr()
        self.expect(")")
        return Lambda(path, kind, var, body)


def typed_literal(text: str) -> Any:
    prefix, _, rest = text.partition("'")
    body = rest[:-1].replace("''", "'")
    if prefix == "guid":
        if not is_guid(body):
            raise bad_guid(body)
        return Guid(body.lower())
    if prefix == "datetime":
        try:
            value = datetime.fromisoformat(body)
        except ValueError:
            raise bad_option("$filter") from None
        return value.replace(tzinfo=None, microsecond=0)
    raise bad_option("$filter")


def number_literal(text: str) -> int | float:
    text = text.rstrip("mMdDfFlL")
    return float(text) if any(ch in text for ch in ".eE") else int(text)
