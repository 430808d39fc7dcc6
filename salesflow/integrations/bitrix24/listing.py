"""How `list_all` walks a list: the ID cursor where the method supports it, offsets otherwise.

ID cursor (DOCS `settings/performance/huge-data.md`): `order {ID: ASC}`, `filter {>ID: last}`,
`start=-1` (no COUNT per page). The first page is read with `start=0` for the total, so the
number of pages is known; the following pages are chained inside one `batch` with
`$result[pN][49][ID]` references (50 pages, 2,500 rows per HTTP request).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PAGE_SIZE = 50


@dataclass(frozen=True)
class CursorSpec:
    """Where a list keeps its ID: in the row (`row_key`), in filter/order (`field`)."""

    field: str
    row_key: str
    wrapper: str | None = None  # `{items: […]}` / `{tasks: […]}` results
    descending_default: bool = False

    def filter_key(self, descending: bool) -> str:
        return ("<" if descending else ">") + self.field

    def reference(self, page_key: str) -> str:
        """`$result[p3][49][ID]` — the last row's ID of a full page."""
        wrapper = f"[{self.wrapper}]" if self.wrapper else ""
        return f"$result[{page_key}]{wrapper}[{PAGE_SIZE - 1}][{self.row_key}]"


_CLASSIC = CursorSpec("ID", "ID")
CURSOR_METHODS: dict[str, CursorSpec] = {
    "crm.deal.list": _CLASSIC,
    "crm.lead.list": _CLASSIC,
    "crm.contact.list": _CLASSIC,
    "crm.company.list": _CLASSIC,
    "crm.activity.list": _CLASSIC,
    "crm.timeline.comment.list": _CLASSIC,
    "crm.item.list": CursorSpec("id", "id", "items"),
    "tasks.task.list": CursorSpec("ID", "id", "tasks", descending_default=True),
}


@dataclass(frozen=True)
class CursorPlan:
    spec: CursorSpec
    descending: bool
    base: dict[str, Any]  # the caller's params with the cursor order, without start

    def page(self, cursor: Any) -> dict[str, Any]:
        """Params of the page after `cursor` (an ID, or a `$result[...]` reference)."""
        filter_ = dict(self.base.get("filter") or {})
        filter_[self.spec.filter_key(self.descending)] = cursor
        return {**self.base, "filter": filter_, "start": -1}


def _direction(order: Any, spec: CursorSpec) -> bool | None:
    """The cursor direction the caller's order allows (None: the order is not by ID)."""
    if not order:
        return spec.descending_default
    if not isinstance(order, Mapping) or len(order) != 1:
        return None
    (key, value), *_ = order.items()
    if str(key).lower() != spec.field.lower():
        return None
    direction = str(value).strip().upper()
    return {"ASC": False, "DESC": True}.get(direction)


def cursor_plan(method: str, params: Mapping[str, Any]) -> CursorPlan | None:
    """A cursor plan when the method and the caller's order/filter allow one."""
    spec = CURSOR_METHODS.get(method.lower())
    if spec is None:
        return None
    descending = _direction(params.get("order"), spec)
    filter_ = params.get("filter") or {}
    if descending is None or not isinstance(filter_, Mapping):
        return None
    if any(str(k).lstrip("<>=!@%").lower() == spec.field.lower() for k in filter_):
        return None  # the caller filters by ID already
    base = {k: v for k, v in params.items() if k != "start"}
    base["order"] = {spec.field: "DESC" if descending else "ASC"}
    select = base.get("select")
    if select and spec.field not in select and spec.row_key not in select and "*" not in select:
        base["select"] = [spec.field, *select]
    return CursorPlan(spec, descending, base)


def remaining_pages(total: int | None, have: int) -> int:
    if not total:
        return 0
    return max(0, math.ceil((total - have) / PAGE_SIZE))
