"""Async client of 1C's standard OData interface (`<root>/<pub>/odata/standard.odata/`).

One client per worker: it keeps HTTP connections alive and holds one 1C session
(`IBSession: start` → cookie `ibsession`), so a busy worker does not open a 1C session
(and take a licence) per call. It never retries: errors are typed (`errors.py`) with
`retryable` so the caller's retry policy (Temporal) decides.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from salesflow.config import redact
from salesflow.integrations.onec.errors import (
    OneCError,
    OneCProtocolError,
    OneCServerError,
    OneCTimeout,
    OneCUnavailable,
    OneCUnknownOutcome,
    error_from_response,
)
from salesflow.integrations.onec.filters import Expr, F, literal, or_, render_filter
from salesflow.integrations.onec.parsing import DEFAULT_INT64_FIELDS, parse_entity, serialize_entity
from salesflow.integrations.onec.urls import Key, entity_path, query_string

log = logging.getLogger(__name__)

Entity = dict[str, Any]
Filter = Expr | str | None
Names = str | Iterable[str] | None

SESSION_COOKIE = "ibsession"
# IIS refuses a query string over 2 048 bytes with an HTML 404 (shared/research/onec-real.md);
# key lookups are split to stay below this.
MAX_QUERY_BYTES = 2000
# Failures after a request left: a write may have been carried out.
_AFTER_SENDING = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


def _lost_write(method: str, error: OneCError | None = None) -> bool:
    if method == "GET":
        return False
    if error is None:
        return True
    return type(error) is OneCServerError or error.status in (502, 504)


def _names(value: Names) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return ",".join(value)


class OneCClient:
    """Talks to one 1C publication. Use `async with OneCClient(...) as onec:` or `aclose()`."""

    def __init__(
        self,
        base_url: str,
        user: str,
        password: str,
        *,
        timezone: str = "Europe/Moscow",
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        page_size: int = 100,
        reuse_session: bool = True,
        int_fields: Collection[str] = DEFAULT_INT64_FIELDS,
        max_connections: int = 10,
    ) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.tz = ZoneInfo(timezone)
        self.page_size = page_size
        self.int_fields = frozenset(int_fields)
        self.reuse_session = reuse_session
        self.sessions_started = 0
        self._session: str | None = None
        self._session_supported = True
        self._session_lock = asyncio.Lock()
        redact.register_basic(user, password)
        # UTF-8 before base64: a cp1251 Cyrillic login is refused (IIS 401.5).
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self._http = httpx.AsyncClient(
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Basic {token}", "Accept": "application/json"},
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    async def __aenter__(self) -> OneCClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Finish the 1C session (frees its licence) and close the connections."""
        if self._session is not None:
            headers = {"IBSession": "finish", "Cookie": f"{SESSION_COOKIE}={self._session}"}
            try:
                await self._http.get(self.base_url + "?$format=json", headers=headers, timeout=5)
            except httpx.HTTPError as exc:
                log.debug("1C session finish failed: %s", exc)
            self._session = None
        await self._http.aclose()

    # -- reading -------------------------------------------------------------------------

    async def get(self, entity_set: str, key: Key, *, select: Names = None) -> Entity:
        """One object by key (`Set(guid'…')`); OneCNotFound when there is none."""
        path = entity_path(entity_set, key, self.tz)
        data = await self.request_json("GET", path, {"$select": _names(select)})
        return self.parse(data)

    async def list_page(
        self,
        entity_set: str,
        *,
        filter: Filter = None,
        select: Names = None,
        expand: Names = None,
        orderby: Names = None,
        top: int | None = None,
        skip: int | None = None,
    ) -> list[Entity]:
        """One request: the objects matching `filter`, at most `top` of them after `skip`."""
        params = {
            "$filter": render_filter(filter, self.tz),
            "$select": _names(select),
            "$expand": _names(expand),
            "$orderby": _names(orderby),
            "$top": top,
            "$skip": skip or None,
        }
        data = await self.request_json("GET", entity_path(entity_set), params)
        return [self.parse(item) for item in data.get("value", [])]

    async def iterate(
        self,
        entity_set: str,
        *,
        filter: Filter = None,
        select: Names = None,
        expand: Names = None,
        orderby: Names = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Entity]:
        """All matching objects, page by page with $top/$skip (1C has no server paging).

        Pass `orderby` for a stable order when the data may change while paging; rows seen
        twice (same Ref_Key and LineNumber) are yielded once.
        """
        size = page_size or self.page_size
        skip = 0
        seen: set[tuple[Any, Any]] = set()
        while True:
            page = await self.list_page(
                entity_set,
                filter=filter,
                select=select,
                expand=expand,
                orderby=orderby,
                top=size,
                skip=skip,
            )
            for item in page:
                marker = (item.get("Ref_Key"), item.get("LineNumber"))
                if marker != (None, None):
                    if marker in seen:
                        continue
                    seen.add(marker)
                yield item
            if len(page) < size:
                return
            skip += size

    async def list_all(
        self,
        entity_set: str,
        *,
        filter: Filter = None,
        select: Names = None,
        expand: Names = None,
        orderby: Names = None,
        page_size: int | None = None,
    ) -> list[Entity]:
        return [
            item
            async for item in self.iterate(
                entity_set,
                filter=filter,
                select=select,
                expand=expand,
                orderby=orderby,
                page_size=page_size,
            )
        ]

    async def find_one(
        self,
        entity_set: str,
        filter: Filter,
        *,
        select: Names = None,
        expand: Names = None,
        orderby: Names = None,
    ) -> Entity | None:
        page = await self.list_page(
            entity_set, filter=filter, select=select, expand=expand, orderby=orderby, top=1
        )
        return page[0] if page else None

    async def list_by_keys(
        self,
        entity_set: str,
        keys: Iterable[Any],
        *,
        field: str = "Ref_Key",
        select: Names = None,
        where: Expr | None = None,
        max_query: int = MAX_QUERY_BYTES,
    ) -> list[Entity]:
        """Objects whose `field` is one of `keys` (1C has no `in`: `a eq x or a eq y …`),
        in as many requests as it takes to keep each query string under `max_query` bytes."""
        pending = list(dict.fromkeys(k for k in keys if k not in (None, "")))
        found: list[Entity] = []
        while pending:
            chunk = [pending.pop(0)]
            while (
                pending
                and self._query_bytes(entity_set, [*chunk, pending[0]], field, select, where)
                <= max_query
            ):
                chunk.append(pending.pop(0))
            found += await self.list_all(
                entity_set, filter=self._keys_filter(chunk, field, where), select=select
            )
        return found

    @staticmethod
    def _keys_filter(keys: list[Any], field: str, where: Expr | None) -> Expr:
        condition = or_(*(F(field) == key for key in keys))
        return condition if where is None else condition & where

    def _query_bytes(
        self, entity_set: str, keys: list[Any], field: str, select: Names, where: Expr | None
    ) -> int:
        params = {
            "$filter": render_filter(self._keys_filter(keys, field, where), self.tz),
            "$select": _names(select),
            "$top": 10**6,
            "$skip": 10**6,
            "$format": "json",
        }
        return len(query_string(params))

    async def count(self, entity_set: str, *, filter: Filter = None) -> int:
        """`Set/$count` — 1C answers a bare number (sometimes with a BOM)."""
        response = await self.request(
            "GET",
            entity_path(entity_set, action="$count"),
            {"$filter": render_filter(filter, self.tz)},
            json_format=False,
        )
        text = response.content.decode("utf-8-sig").strip()
        try:
            return int(text)
        except ValueError:
            raise OneCProtocolError(f"$count answered {text[:80]!r}", status=200) from None

    async def slice_last(
        self,
        register: str,
        *,
        period: datetime | date | None = None,
        condition: Filter = None,
        select: Names = None,
    ) -> list[Entity]:
        """`Register/SliceLast()` — the latest record per dimension set (e.g. current prices)."""
        params = {
            "Period": None if period is None else literal(period, self.tz),
            "Condition": render_filter(condition, self.tz),
            "$select": _names(select),
        }
        data = await self.request_json("GET", entity_path(register, action="SliceLast()"), params)
        return [self.parse(item) for item in data.get("value", [])]

    async def metadata(self) -> str:
        """The CSDL XML (huge on real bases: cache it, fetch rarely)."""
        response = await self.request("GET", "$metadata", {}, json_format=False)
        return response.text

    async def ping(self) -> None:
        """Read the service document: proves the URL, credentials and the base respond."""
        await self.request_json("GET", "", {})

    # -- writing -------------------------------------------------------------------------

    async def create(self, entity_set: str, data: Mapping[str, Any]) -> Entity:
        """POST a new object; 1C fills Number/Code and defaults and returns the whole object."""
        body = serialize_entity(data, self.tz, self.int_fields)
        result = await self.request_json("POST", entity_path(entity_set), {}, body=body)
        return self.parse(result)

    async def update(
        self,
        entity_set: str,
        key: Key,
        data: Mapping[str, Any],
        *,
        if_match: str | None = None,
    ) -> Entity:
        """PATCH the given fields. A tabular part sent is replaced whole, so send all rows.

        Live 1C ignores If-Match: compare DataVersion yourself when it matters.
        """
        body = serialize_entity(data, self.tz, self.int_fields)
        headers = {"If-Match": if_match} if if_match else None
        path = entity_path(entity_set, key, self.tz)
        result = await self.request_json("PATCH", path, {}, body=body, headers=headers)
        return self.parse(result)

    async def delete(self, entity_set: str, key: Key) -> None:
        """Physical delete (set DeletionMark with `update` to mark instead)."""
        await self.request("DELETE", entity_path(entity_set, key, self.tz), {})

    async def post_document(self, entity_set: str, key: Key, *, operational: bool = False) -> None:
        """`Document(guid'…')/Post` — a refused posting raises OneCBusinessError (500, "-1")."""
        path = entity_path(entity_set, key, self.tz, action="Post")
        await self.request("POST", path, {"PostingModeOperational": operational})

    async def unpost_document(self, entity_set: str, key: Key) -> None:
        await self.request("POST", entity_path(entity_set, key, self.tz, action="Unpost"), {})

    async def execute_task(self, key: Key, entity_set: str = "Task_ЗадачаИсполнителя") -> None:
        await self.request("POST", entity_path(entity_set, key, self.tz, action="ExecuteTask"), {})

    # -- plumbing ------------------------------------------------------------------------

    def parse(self, raw: Mapping[str, Any]) -> Entity:
        return parse_entity(raw, self.tz, self.int_fields)

    async def request_json(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any],
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """A request answered with JSON; the parsed body (an empty dict for no content)."""
        response = await self.request(method, path, params, body=body, headers=headers)
        if not response.content:
            return {}
        try:
            # Every JSON number of 1C is an Edm.Double (Int64 come as strings): read as Decimal.
            data = json.loads(
                response.content.decode("utf-8-sig"), parse_float=Decimal, parse_int=Decimal
            )
        except ValueError:
            raise OneCProtocolError(
                "1C answered with something that is not JSON: "
                + response.text[:120].replace("\n", " "),
                status=response.status_code,
                url=str(response.url),
            ) from None
        if not isinstance(data, dict):
            raise OneCProtocolError("unexpected JSON shape", status=response.status_code)
        return data

    async def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any],
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        json_format: bool = True,
    ) -> httpx.Response:
        """Send one request under the shared 1C session; raise a OneCError for failures."""
        query = dict(params)
        if json_format:
            query["$format"] = "json"
        qs = query_string(query)
        url = self.base_url + path + ("?" + qs if qs else "")
        content = None
        send_headers = dict(headers or {})
        if body is not None:
            content = json.dumps(body, ensure_ascii=False).encode("utf-8")
            send_headers["Content-Type"] = "application/json; charset=utf-8"
        if self._needs_session():
            # The first call opens the session; concurrent first calls wait for its cookie.
            async with self._session_lock:
                if self._needs_session():
                    return await self._send(method, url, content, send_headers, start=True)
        return await self._send(method, url, content, send_headers, start=False)

    def _needs_session(self) -> bool:
        return self.reuse_session and self._session_supported and self._session is None

    async def _send(
        self, method: str, url: str, content: bytes | None, headers: dict[str, str], *, start: bool
    ) -> httpx.Response:
        if start:
            headers["IBSession"] = "start"
        elif self._session is not None:
            headers["Cookie"] = f"{SESSION_COOKIE}={self._session}"
        try:
            response = await self._http.request(method, url, content=content, headers=headers)
        except _AFTER_SENDING as exc:
            if _lost_write(method):
                raise OneCUnknownOutcome(f"1C's answer was lost: {exc!r}", url=url) from exc
            if isinstance(exc, httpx.TimeoutException):
                raise OneCTimeout(f"1C did not answer in time: {exc!r}", url=url) from exc
            raise OneCUnavailable(f"1C is unreachable: {exc!r}", url=url) from exc
        except httpx.TimeoutException as exc:
            raise OneCTimeout(f"1C did not answer in time: {exc!r}", url=url) from exc
        except httpx.TransportError as exc:
            raise OneCUnavailable(f"1C is unreachable: {exc!r}", url=url) from exc
        self._http.cookies.clear()
        cookie = response.cookies.get(SESSION_COOKIE)
        if cookie:
            if self._session != cookie:
                self.sessions_started += 1
            self._session = cookie
        elif start:
            # Some publications never return the cookie (then vrd reuseSessions pools them).
            self._session_supported = False
        if response.status_code >= 400:
            error = error_from_response(response.status_code, response.content, url)
            if response.status_code == 401 or "сеанс" in error.message.lower():
                self._session = None
            if _lost_write(method, error):
                raise OneCUnknownOutcome(
                    error.message, status=error.status, code=error.code, url=url
                ) from error
            raise error
        self._check_body(response, url)
        return response

    @staticmethod
    def _check_body(response: httpx.Response, url: str) -> None:
        content_type = response.headers.get("content-type", "")
        if "html" in content_type or response.content[:15].lower().startswith(b"<!doctype html"):
            raise OneCProtocolError(
                "1C answered with an HTML page (often an authentication page)",
                status=response.status_code,
                url=url,
            )
