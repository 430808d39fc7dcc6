"""The query options of the emulated base: $filter, $orderby, $select/$expand, $top/$skip.

$skip applies before $top; $expand works only for navigations that $select names (when
$select is given) and never on a single entity or a row set (shared/research/onec.md §2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from emulators.onec.codec import Selection, new_object
from emulators.onec.errors import bad_option, unknown_segment
from emulators.onec.filter_lang import (
    Composite,
    Lookup,
    Parser,
    Path,
    RowShape,
    Scope,
    Shape,
    new_row,
    require_predicates,
    truthy,
)
from emulators.onec.schema import EntityType, Table

# -- applying options -----------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """The schema and a way to read objects by reference, for navigation and $expand."""

    types: Mapping[str, EntityType]
    lookup: Lookup

    def blank_lookup(self, set_name: str, key: str) -> tuple[EntityType, Mapping[str, Any]] | None:
        etype = self.types.get(set_name)
        return None if etype is None else (etype, new_object(etype))

    def blank_scope(self, shape: Shape) -> Scope:
        return Scope(shape, blank_object(shape), self.blank_lookup, {}, blank=True)

    def target(self, shape: Shape, nav: str) -> EntityType:
        prop = shape.nav(nav)
        assert prop is not None and prop.target is not None
        return self.types[prop.target]


def compile_filter(text: str, shape: Shape, model: Model) -> Callable[[Mapping[str, Any]], bool]:
    """Parse `$filter` and check its names against the schema; a predicate over objects."""
    node = Parser(text).parse()
    require_predicates(node)
    node.eval(model.blank_scope(shape))

    def predicate(obj: Mapping[str, Any]) -> bool:
        return truthy(node.eval(Scope(shape, obj, model.lookup, {})))

    return predicate


def blank_object(shape: Shape) -> dict[str, Any]:
    if isinstance(shape, EntityType):
        return new_object(shape)
    assert isinstance(shape, RowShape)
    return new_row(shape.tab)


_Row = TypeVar("_Row", bound=Mapping[str, Any])


def order(items: list[_Row], text: str, shape: Shape, model: Model) -> list[_Row]:
    """Sort by `A asc, B/C desc`; an unknown name is a 400 that repeats it."""
    keys: list[tuple[list[str], bool]] = []
    for part in split_list(text):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise bad_option("$orderby")
        segments = words[0].split("/")
        Path(segments).eval(model.blank_scope(shape))
        keys.append((segments, len(words) == 2 and words[1] == "desc"))
    result = list(items)
    for segments, descending in reversed(keys):
        path = Path(segments)

        def key(obj: _Row, p: Path = path) -> Any:
            return sort_key(p.eval(Scope(shape, obj, model.lookup, {})))

        result.sort(key=key, reverse=descending)
    return result


def sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float):
        return (2, value)
    if isinstance(value, datetime):
        return (3, value)
    if isinstance(value, Composite):
        return (4, (value.type, str(value.key)))
    return (5, str(value))


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def selection(
    shape: Shape, model: Model, select: str | None, expand: str | None, *, single: bool = False
) -> Selection:
    """Turn $select/$expand into what to output. $expand works only for navigations that
    $select names (when $select is given), and never on a single entity or a row set."""
    if expand and (single or isinstance(shape, RowShape)):
        raise bad_option("$expand")
    expand_tree = _expand_tree(shape, model, expand)
    if not select:
        return Selection(expand=_full_expand(expand_tree))
    sel = Selection(props=set(), tables={})
    nav_fields: dict[str, list[str]] = {}
    assert sel.props is not None and sel.tables is not None
    for item in split_list(select):
        if item == "*":
            sel.props = None
            sel.tables = None
            continue
        if item == "**":
            sel.props = None
            continue
        head, _, tail = item.partition("/")
        prop = shape.prop(head)
        if prop is not None and not tail:
            if sel.props is not None:
                sel.props.add(head)
        elif (table := shape.table(head)) is not None:
            if sel.tables is not None:
                _select_table(sel.tables, table, tail, item)
        elif shape.nav(head) is not None:
            nav_fields.setdefault(head, [])
            if tail:
                nav_fields[head].append(tail)
        else:
            raise unknown_segment(item)
    for nav, fields in nav_fields.items():
        if nav in expand_tree:
            target = model.target(shape, nav)
            sub = selection(target, model, ",".join(fields), None) if fields else Selection()
            sub.expand = _full_expand(expand_tree[nav])
            sel.expand[nav] = sub
    return sel


def _select_table(tables: dict[str, set[str] | None], table: Table, tail: str, item: str) -> None:
    if not tail:
        tables[table.name] = None
        return
    if table.prop(tail) is None and tail not in ("LineNumber", "Ref_Key"):
        raise unknown_segment(item)
    current = tables.setdefault(table.name, set())
    if current is not None:
        current.add(tail)


def _expand_tree(shape: Shape, model: Model, expand: str | None) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for item in split_list(expand or ""):
        node, current = tree, shape
        for segment in item.split("/"):
            if current.nav(segment) is None:
                raise unknown_segment(item)
            node = node.setdefault(segment, {})
            current = model.target(current, segment)
    return tree


def _full_expand(tree: Mapping[str, Any]) -> dict[str, Selection]:
    return {nav: Selection(expand=_full_expand(sub)) for nav, sub in tree.items()}


def page(items: Iterable[Any], top: str | None, skip: str | None) -> list[Any]:
    """$skip first, then $top, whatever their order in the URL."""
    result = list(items)
    try:
        start = int(skip) if skip else 0
        count = int(top) if top else None
    except ValueError:
        raise bad_option("$top" if top and not top.isdigit() else "$skip") from None
    result = result[start:]
    return result if count is None else result[:count]
