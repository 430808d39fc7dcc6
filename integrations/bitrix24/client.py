"""Async Bitrix24 REST client over an incoming webhook: one HTTP client, one throttle per portal.

No retries here: callers (Temporal activities) retry on `Bitrix24Error.retryable`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiolimiter import AsyncLimiter

from integrations.bitrix24 import php_form
from integrations.bitrix24.errors import Bitrix24Error, ServerError, error_from_response

BATCH_MAX_COMMANDS = 50
PAGE_SIZE = 50
_METHOD = re.compile(r"^[A-Za-z0-9_.]+$")
_LIST_KEYS = ("tasks", "items", "categories", "types", "products")

# One limiter per (event loop, portal origin, settings): every client of a portal in a
# worker shares it, so all their calls queue in one bucket.
_LIMITERS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, float, int], AsyncLimiter]
] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Bitrix24Response:
    """A successful envelope: `result` plus the list/timing extras lifted to the top level."""

    result: Any
    total: int | None = None
    next: int | None = None
    time: dict[str, Any] | None = None


@dataclass
class BatchResult:
    """Per-command outcome of `batch`, keyed like the commands that went in."""

    result: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, Bitrix24Error] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    next: dict[str, int] = field(default_factory=dict)


def limiter_capacity(burst: int) -> int:
    """Client-side bucket size: the portal's, minus headroom for requests still in flight."""
    return max(1, burst - max(2, math.ceil(burst * 0.1)))


def _shared_limiter(origin: str, rate_per_second: float, burst: int) -> AsyncLimiter:
    loop = asyncio.get_running_loop()
    limiters = _LIMITERS.setdefault(loop, {})
    key = (origin, rate_per_second, burst)
    if key not in limiters:
        capacity = limiter_capacity(burst)
        limiters[key] = AsyncLimiter(capacity, capacity / rate_per_second)
    return limiters[key]


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def batch_command(method: str, params: Mapping[str, Any] | None = None) -> str:
    """One `cmd` entry: `method?` + the params as a PHP-bracket query string."""
    _check_method(method)
    query = php_form.encode(params or {})
    return f"{method}?{query}" if query else method


def _check_method(method: str) -> None:
    if not _METHOD.fullmatch(method):
        raise ValueError(f"invalid Bitrix24 method name: {method!r}")


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _section(value: Any) -> dict[str, Any]:
    """A batch section: PHP sends `[]` when empty and a list when keys are 0..n-1."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


def list_items(result: Any) -> list[Any]:
    """The rows of a list result: a plain list, `{tasks: […]}`, `{items: […]}`, …"""
    if result is None or result == {}:
        return []
    if isinstance(result, list):
        return result
    if isinstance(result, dict):
        for key in _LIST_KEYS:
            if isinstance(result.get(key), list):
                return result[key]
        lists = [v for v in result.values() if isinstance(v, list)]
        if len(result) == 1 and lists:
            return lists[0]
        if result and all(isinstance(v, dict) for v in result.values()):
            return list(result.values())
    raise ValueError(f"not a list result: {type(result).__name__}")


class Bitrix24Client:
    """Calls one portal through its incoming-webhook URL (`https://portal/rest/1/secret/`)."""

    def __init__(
        self,
        webhook_url: str,
        *,
        rate_per_second: float = 2.0,
        burst: int = 50,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        parts = urlsplit(webhook_url)
        if not parts.scheme or not parts.netloc:
            raise ValueError(f"not a webhook URL: {webhook_url!r}")
        self._base = webhook_url.rstrip("/") + "/"
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._rate = rate_per_second
        self._burst = burst
        self._http = httpx.AsyncClient(
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json"},
            follow_redirects=False,
        )

    async def __aenter__(self) -> Bitrix24Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _throttle(self) -> None:
        if self._rate and self._rate > 0 and self._burst > 0:
            await _shared_limiter(self._origin, self._rate, self._burst).acquire()

    async def call_raw(
        self, method: str, params: Mapping[str, Any] | None = None
    ) -> Bitrix24Response:
        """POST one method with a JSON body; raise the typed error on any failure."""
        _check_method(method)
        body = json.dumps(dict(params or {}), default=_json_default, ensure_ascii=False)
        await self._throttle()
        try:
            response = await self._http.post(
                self._base + method,
                content=body.encode(),
                headers={"Content-Type": "application/json"},
            )
        except httpx.TimeoutException as exc:
            raise ServerError("TIMEOUT", f"{method}: {type(exc).__name__}", 0) from exc
        except httpx.HTTPError as exc:
            raise ServerError("TRANSPORT_ERROR", f"{method}: {exc!r}", 0) from exc
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or "error" in payload or "result" not in payload:
            raise error_from_response(response.status_code, response.content)
        if response.status_code != 200:
            raise error_from_response(response.status_code, response.content)
        return Bitrix24Response(
            result=payload["result"],
            total=_as_int(payload.get("total")),
            next=_as_int(payload.get("next")),
            time=payload.get("time") if isinstance(payload.get("time"), dict) else None,
        )

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """The `result` of one method call."""
        return (await self.call_raw(method, params)).result

    async def batch(
        self,
        commands: Mapping[str, tuple[str, Mapping[str, Any]]],
        *,
        halt: bool = False,
    ) -> BatchResult:
        """Run commands through `batch`, at most 50 per HTTP request, split back by key.

        `$result[key]` references only resolve within one HTTP batch (50 commands).
        With `halt`, the first failing command stops the rest, later chunks included.
        """
        outcome = BatchResult()
        items = [(str(key), method, params) for key, (method, params) in commands.items()]
        for offset in range(0, len(items), BATCH_MAX_COMMANDS):
            chunk = items[offset : offset + BATCH_MAX_COMMANDS]
            cmd = {key: batch_command(method, params) for key, method, params in chunk}
            raw = await self.call_raw("batch", {"halt": 1 if halt else 0, "cmd": cmd})
            sections = raw.result if isinstance(raw.result, dict) else {}
            results = _section(sections.get("result"))
            errors = _section(sections.get("result_error"))
            totals = _section(sections.get("result_total"))
            nexts = _section(sections.get("result_next"))
            for key, _, _ in chunk:
                if key in errors:
                    error = errors[key] if isinstance(errors[key], dict) else {"error": ""}
                    outcome.errors[key] = error_from_response(400, error)
                elif key in results:
                    outcome.result[key] = results[key]
                if _as_int(totals.get(key)) is not None:
                    outcome.total[key] = int(totals[key])
                if _as_int(nexts.get(key)) is not None:
                    outcome.next[key] = int(nexts[key])
            if halt and outcome.errors:
                break
        return outcome

    async def list_all(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        use_batch: bool = True,
    ) -> list[Any]:
        """Every row of a list method, 50 per page via `start`.

        After the first page, the remaining pages are fetched through `batch` (one HTTP
        request per 50 pages) unless `use_batch` is False, which follows `next` page by page.
        """
        base = {k: v for k, v in dict(params or {}).items() if k != "start"}
        first = await self.call_raw(method, {**base, "start": 0})
        rows = list(list_items(first.result))
        if first.next is None:
            return rows
        if not use_batch or not first.total:
            following: int | None = first.next
            while following is not None:
                page = await self.call_raw(method, {**base, "start": following})
                rows.extend(list_items(page.result))
                following = page.next
            return rows
        starts = range(first.next, first.total, PAGE_SIZE)
        commands = {f"page{start}": (method, {**base, "start": start}) for start in starts}
        pages = await self.batch(commands)
        for key in commands:
            if key in pages.errors:
                raise pages.errors[key]
            rows.extend(list_items(pages.result.get(key)))
        return rows
