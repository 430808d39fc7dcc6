"""Async Bitrix24 REST client: one HTTP client, one throttle per portal, coalesced calls.

- Every HTTP request passes one leaky-bucket throttle shared by all clients of a portal in
  the process, sized under the portal's bucket so it never overflows it.
- Concurrent `call`s are coalesced into `batch` requests of up to 50 commands
  (`coalescer.py`); results and errors are split back to each caller.
- `list_all` walks large lists with the ID cursor, 50 chained pages per request
  (`listing.py`).
- No retries here: callers (Temporal activities) retry on `Bitrix24Error.retryable`,
  waiting `Bitrix24Error.retry_after` seconds when the error implies a delay. A request whose
  answer was lost after it left is an `UnknownOutcome` (the portal may have done it).
- The webhook secret is registered with `config.redact` and an access token travels as
  `auth=`, which it masks: no log line or error carries them (httpx logs every URL).

Webhook: `Bitrix24Client("https://portal/rest/1/secret/")`. Local application (OAuth):
`Bitrix24Client("https://portal/rest/", access_token=token)` — the token goes as `auth=`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import re
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from salesflow.config import redact
from salesflow.integrations.bitrix24 import php_form, throttle
from salesflow.integrations.bitrix24.coalescer import (
    BATCH_MAX_COMMANDS,
    MAX_COMMAND_CHARS,
    Coalescer,
    Pending,
    coalescable,
)
from salesflow.integrations.bitrix24.errors import (
    Bitrix24Error,
    OperationTimeLimit,
    PortalMoved,
    QueryLimitExceeded,
    ServerError,
    UnknownOutcome,
    error_from_response,
    unknown_outcome,
)
from salesflow.integrations.bitrix24.listing import (
    PAGE_SIZE,
    CursorPlan,
    cursor_plan,
    remaining_pages,
)
from salesflow.integrations.bitrix24.throttle import PortalThrottle, Throttle

__all__ = [
    "BATCH_MAX_COMMANDS",
    "PAGE_SIZE",
    "BatchResult",
    "Bitrix24Client",
    "Bitrix24Response",
    "batch_command",
    "limiter_capacity",
    "list_items",
]

_METHOD = re.compile(r"^[A-Za-z0-9_.]+$")
_LIST_KEYS = ("tasks", "items", "categories", "types", "products")
_REDIRECTS = {301, 302, 303, 307, 308}
# Inner batch errors carry no HTTP status; these codes have a known one.
_BATCH_ERROR_STATUS = {
    "OPERATION_TIME_LIMIT": 429,
    "ERROR_METHOD_NOT_FOUND": 404,
    "ERROR_BATCH_METHOD_NOT_ALLOWED": 405,
    "INSUFFICIENT_SCOPE": 401,
    "WRONG_AUTH_TYPE": 403,
}

# One throttle per (event loop, portal origin, settings): every client of a portal in a
# worker shares it, so all their calls queue in one bucket.
_THROTTLES: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, float, int], PortalThrottle]
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
    """Client-side bucket size: the portal's, minus headroom for other callers of the portal
    (the bucket is per portal and source IP: a relay on the same host shares it)."""
    return max(1, burst - max(2, math.ceil(burst * 0.1)))


def shared_throttle(origin: str, rate_per_second: float, burst: int) -> Throttle:
    installed = throttle.shared(origin, rate_per_second, limiter_capacity(burst))
    if installed is not None:  # one bucket for every process of the portal
        return installed
    loop = asyncio.get_running_loop()
    throttles = _THROTTLES.setdefault(loop, {})
    key = (origin, rate_per_second, burst)
    if key not in throttles:
        throttles[key] = PortalThrottle(rate_per_second, limiter_capacity(burst))
    return throttles[key]


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


# Failures of a request as a whole (the bucket, the transport, auth) — never a command's own.
_REQUEST_FAILURES = {
    "QUERY_LIMIT_EXCEEDED",
    "OVERLOAD_LIMIT",
    "TIMEOUT",
    "TRANSPORT_ERROR",
    "INVALID_RESPONSE",
    "PORTAL_MOVED",
    "PORTAL_DELETED",
    "INVALID_CREDENTIALS",
    "NO_AUTH_FOUND",
    "EXPIRED_TOKEN",
    "INVALID_TOKEN",
    "INVALID_REQUEST",
}


def _request_failure(error: Bitrix24Error) -> bool:
    if getattr(error, "command_error", False):
        return False
    return isinstance(error, UnknownOutcome) or error.code.upper() in _REQUEST_FAILURES


# Failures after the request left: the portal may have carried it out.
_AFTER_SENDING = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


def _answer_lost(error: Bitrix24Error) -> bool:
    """A 5xx or a non-JSON 200 that does not say the call was refused: 503 says so (the
    bucket's QUERY_LIMIT_EXCEEDED, the web server's maintenance page — nothing was run)."""
    if type(error) is not ServerError:
        return False
    return error.status == 200 or (error.status >= 500 and error.status != 503)


def _retry_after_header(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class Bitrix24Client:
    """Calls one portal through an incoming webhook or a local application's token."""

    def __init__(
        self,
        webhook_url: str,
        *,
        rate_per_second: float = 2.0,
        burst: int = 50,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        coalesce: bool = True,
        coalesce_window: float = 0.005,
        access_token: str | None = None,
    ) -> None:
        parts = urlsplit(webhook_url)
        if not parts.scheme or not parts.netloc:
            raise ValueError(f"not a webhook URL: {webhook_url!r}")
        # The webhook secret is masked everywhere; a token travels as `auth=`, which the
        # redaction masks by its place (a per-user token is not registered: no unbounded set).
        redact.register(redact.webhook_secret(webhook_url))
        self._base = webhook_url.rstrip("/") + "/"
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._rate = rate_per_second
        self._burst = burst
        self._token = access_token
        self._http = httpx.AsyncClient(
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json"},
            follow_redirects=False,
        )
        self._coalescer = (
            Coalescer(
                self._send_one,
                self._send_chunk,
                self._throttle,
                self._release,
                window=coalesce_window,
            )
            if coalesce
            else None
        )
        # method → `operating_reset_at` from its last success: when a 429 may lift.
        self._operating_reset: dict[str, float] = {}
        self.http_requests = 0

    async def __aenter__(self) -> Bitrix24Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._coalescer is not None:
            await self._coalescer.aclose()
        await self._http.aclose()

    @property
    def access_token(self) -> str | None:
        """The local application's token sent as `auth=` (None: a webhook client)."""
        return self._token

    @access_token.setter
    def access_token(self, token: str) -> None:
        """Replace the token (after a refresh); requests sent from now on carry it."""
        if self._token is None:
            raise ValueError("a webhook client has no access token to replace")
        self._token = token

    @property
    def _throttled(self) -> bool:
        return bool(self._rate and self._rate > 0 and self._burst > 0)

    async def _throttle(self) -> None:
        """Wait for a slot of the portal's bucket; the request's `_post` gives it back."""
        if self._throttled:
            await shared_throttle(self._origin, self._rate, self._burst).acquire()

    def _release(self) -> None:
        if self._throttled:
            shared_throttle(self._origin, self._rate, self._burst).release()

    # ------------------------------------------------------------------ one HTTP request
    async def _post(self, method: str, params: Mapping[str, Any]) -> Bitrix24Response:
        """POST one method with a JSON body; raise the typed error.

        Called only after `_throttle()`; releases that slot when the answer is in.
        """
        try:
            body = json.dumps(dict(params), default=_json_default, ensure_ascii=False)
            url = self._base + method
            if self._token is not None:
                url += "?" + php_form.encode({"auth": self._token})
            self.http_requests += 1
            response = await self._http.post(
                url, content=body.encode(), headers={"Content-Type": "application/json"}
            )
        except _AFTER_SENDING as exc:
            code = "TIMEOUT" if isinstance(exc, httpx.TimeoutException) else "TRANSPORT_ERROR"
            raise UnknownOutcome(code, f"{method}: {type(exc).__name__}: {exc}", 0) from exc
        except httpx.TimeoutException as exc:
            raise ServerError("TIMEOUT", f"{method}: {type(exc).__name__}", 0) from exc
        except httpx.HTTPError as exc:
            raise ServerError("TRANSPORT_ERROR", f"{method}: {exc!r}", 0) from exc
        finally:
            self._release()
        if response.status_code in _REDIRECTS:
            location = response.headers.get("location")
            raise PortalMoved(
                "PORTAL_MOVED",
                f"{method}: the portal answers from another address: {location}",
                response.status_code,
                location,
            )
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if (
            not isinstance(payload, dict)
            or "error" in payload
            or "result" not in payload
            or response.status_code != 200
        ):
            error = error_from_response(response.status_code, response.content)
            if _answer_lost(error):
                error = unknown_outcome(error)
            raise self._annotate(error, method, _retry_after_header(response))
        time_info = payload.get("time") if isinstance(payload.get("time"), dict) else None
        self._remember_operating(method, time_info)
        return Bitrix24Response(
            result=payload["result"],
            total=_as_int(payload.get("total")),
            next=_as_int(payload.get("next")),
            time=time_info,
        )

    def _remember_operating(self, method: str, time_info: Mapping[str, Any] | None) -> None:
        if time_info and time_info.get("operating_reset_at") is not None:
            reset = _as_int(time_info.get("operating_reset_at"))
            if reset is not None:
                self._operating_reset[method.lower()] = float(reset)

    def _annotate(
        self, error: Bitrix24Error, method: str, header_delay: float | None = None
    ) -> Bitrix24Error:
        """Fill `retry_after`: the header's value, else what the error itself implies."""
        if header_delay is not None:
            error.retry_after = header_delay
        elif isinstance(error, OperationTimeLimit):
            reset_at = error.reset_at or self._operating_reset.get(method.lower())
            if reset_at:
                error.reset_at = reset_at
                error.retry_after = max(1.0, reset_at - time.time())
        elif isinstance(error, QueryLimitExceeded):
            # One slot of the portal's bucket drains in 1/rate seconds.
            error.retry_after = max(1.0, 1.0 / self._rate) if self._rate else 1.0
        return error

    # ------------------------------------------------------------------ coalescer hooks
    async def _send_one(self, method: str, params: Mapping[str, Any]) -> Bitrix24Response:
        return await self._post(method, params)

    async def _send_chunk(
        self, chunk: list[Pending]
    ) -> list[tuple[Bitrix24Response | None, BaseException | None]]:
        keys = [f"c{index}" for index in range(len(chunk))]
        cmd = {key: pending.command for key, pending in zip(keys, chunk, strict=True)}
        raw = await self._post("batch", {"halt": 0, "cmd": cmd})
        sections = raw.result if isinstance(raw.result, dict) else {}
        results = _section(sections.get("result"))
        errors = _section(sections.get("result_error"))
        totals = _section(sections.get("result_total"))
        nexts = _section(sections.get("result_next"))
        times = _section(sections.get("result_time"))
        outcomes: list[tuple[Bitrix24Response | None, BaseException | None]] = []
        for key, pending in zip(keys, chunk, strict=True):
            if key in errors:
                outcomes.append((None, self._inner_error(pending.method, errors[key])))
                continue
            time_info = times.get(key) if isinstance(times.get(key), dict) else None
            self._remember_operating(pending.method, time_info)
            response = Bitrix24Response(
                result=results.get(key),
                total=_as_int(totals.get(key)),
                next=_as_int(nexts.get(key)),
                time=time_info,
            )
            outcomes.append((response, None))
        return outcomes

    def _inner_error(self, method: str, body: Any) -> Bitrix24Error:
        """A command's own error from `result_error` (not a failure of the whole request)."""
        body = body if isinstance(body, dict) else {"error": "", "error_description": str(body)}
        status = _BATCH_ERROR_STATUS.get(str(body.get("error", "")).upper(), 400)
        error = self._annotate(error_from_response(status, body), method)
        error.command_error = True
        return error

    # ------------------------------------------------------------------ public API
    async def call_raw(
        self, method: str, params: Mapping[str, Any] | None = None
    ) -> Bitrix24Response:
        """One method call; the whole envelope (`result`, `total`, `next`, `time`).

        Coalesced with concurrent calls into one `batch` unless its params cannot travel
        inside one (empty containers, `$result[...]` strings) or coalescing is off.
        """
        _check_method(method)
        params = dict(params or {})
        if self._coalescer is not None and coalescable(method, params):
            command = batch_command(method, params)
            if len(command) <= MAX_COMMAND_CHARS:
                return await self._coalescer.submit(method, params, command)
        await self._throttle()
        return await self._post(method, params)

    async def download(self, url: str) -> tuple[str, bytes]:
        """A file by a signed link of the portal (a file field's `urlMachine`): a plain GET
        with the headers the portal wants (b24restdocs api-reference/files/how-to-upload-files.md
        "Response Content"). Returns (file name, content). Only links on this portal are
        followed; the link carries a token, so no error or log line shows it."""
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self._origin:
            raise Bitrix24Error("FILE_LINK_FOREIGN", "the file link is not on this portal")
        headers = {
            "User-Agent": "Mozilla/5.0 (compatible; salesflow)",
            "Accept": "*/*",
            "Accept-Language": "ru-RU,ru;q=0.9",
            "Referer": self._origin + "/",
        }
        try:
            response = await self._http.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise ServerError("FILE_DOWNLOAD_FAILED", type(exc).__name__, 503) from None
        self.http_requests += 1
        if response.status_code >= 500:
            raise ServerError("FILE_DOWNLOAD_FAILED", f"HTTP {response.status_code}", 503)
        if response.status_code != 200:
            raise Bitrix24Error("FILE_DOWNLOAD_FAILED", f"HTTP {response.status_code}", 404)
        disposition = response.headers.get("content-disposition", "")
        name = ""
        if "filename*=UTF-8''" in disposition:
            name = unquote(disposition.split("filename*=UTF-8''", 1)[1].split(";")[0])
        elif "filename=" in disposition:
            name = disposition.split("filename=", 1)[1].split(";")[0].strip('"')
        return name, response.content

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """The `result` of one method call."""
        return (await self.call_raw(method, params)).result

    async def batch(
        self,
        commands: Mapping[str, tuple[str, Mapping[str, Any]]],
        *,
        halt: bool = False,
    ) -> BatchResult:
        """Run commands as `batch`, at most 50 per HTTP request, split back by key.

        Without `halt` and without `$result[...]` references the commands join the
        coalescing queue (they may share requests with concurrent calls). Otherwise they
        go in their own requests: references resolve only within one request (50
        commands), and with `halt` the first failing command stops the rest, later
        chunks included.
        """
        items = [(str(key), method, dict(params)) for key, (method, params) in commands.items()]
        for _, method, _ in items:
            _check_method(method)
        if (
            not halt
            and self._coalescer is not None
            and all(coalescable(method, params) for _, method, params in items)
        ):
            return await self._batch_coalesced(items)
        return await self._batch_direct(items, halt)

    async def _batch_coalesced(self, items: list[tuple[str, str, dict[str, Any]]]) -> BatchResult:
        outcomes = await asyncio.gather(
            *(self.call_raw(method, params) for _, method, params in items),
            return_exceptions=True,
        )
        outcome = BatchResult()
        for (key, _, _), answer in zip(items, outcomes, strict=True):
            if isinstance(answer, Bitrix24Error) and not _request_failure(answer):
                outcome.errors[key] = answer
            elif isinstance(answer, BaseException):
                raise answer  # the request itself failed (503, HTML, transport): as before
            else:
                outcome.result[key] = answer.result
                if answer.total is not None:
                    outcome.total[key] = answer.total
                if answer.next is not None:
                    outcome.next[key] = answer.next
        return outcome

    async def _batch_direct(
        self, items: list[tuple[str, str, dict[str, Any]]], halt: bool
    ) -> BatchResult:
        outcome = BatchResult()
        for offset in range(0, len(items), BATCH_MAX_COMMANDS):
            chunk = items[offset : offset + BATCH_MAX_COMMANDS]
            cmd = {key: batch_command(method, params) for key, method, params in chunk}
            await self._throttle()
            raw = await self._post("batch", {"halt": 1 if halt else 0, "cmd": cmd})
            sections = raw.result if isinstance(raw.result, dict) else {}
            results = _section(sections.get("result"))
            errors = _section(sections.get("result_error"))
            totals = _section(sections.get("result_total"))
            nexts = _section(sections.get("result_next"))
            for key, method, _ in chunk:
                if key in errors:
                    outcome.errors[key] = self._inner_error(method, errors[key])
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
        """Every row of a list method.

        Methods with an ID (crm.deal.list, crm.item.list, tasks.task.list, …) ordered by ID
        (or in their default order) are walked with the ID cursor after the first page:
        `filter {>ID: last}`, `start=-1`, 50 chained pages per `batch` request (or one page
        per request without `use_batch`). Other lists page by `start` offsets.
        """
        params = dict(params or {})
        plan = cursor_plan(method, params)
        base = plan.base if plan is not None else {k: v for k, v in params.items() if k != "start"}
        first = await self.call_raw(method, {**base, "start": 0})
        rows = list(list_items(first.result))
        if first.next is None:
            return rows
        if plan is not None:
            return rows + await self._cursor_pages(method, plan, rows, first.total, use_batch)
        return rows + await self._offset_pages(method, base, first, use_batch)

    async def _cursor_pages(
        self,
        method: str,
        plan: CursorPlan,
        first_rows: list[Any],
        total: int | None,
        use_batch: bool,
    ) -> list[Any]:
        rows: list[Any] = []
        pages_left = remaining_pages(total, len(first_rows)) if total else 1
        last = first_rows[-1][plan.spec.row_key]
        while pages_left > 0:
            size = min(pages_left, BATCH_MAX_COMMANDS if use_batch else 1)
            commands: dict[str, tuple[str, Mapping[str, Any]]] = {}
            for index in range(size):
                cursor = last if index == 0 else plan.spec.reference(f"p{index - 1}")
                commands[f"p{index}"] = (method, plan.page(cursor))
            if size == 1:
                pages = [list_items(await self.call(method, commands["p0"][1]))]
            else:
                answer = await self._batch_direct(list(_items(commands)), halt=True)
                pages = []
                for key in commands:
                    if key in answer.errors:
                        raise answer.errors[key]
                    pages.append(list_items(answer.result.get(key)))
            for page in pages:
                rows.extend(page)
                pages_left -= 1
                if len(page) < PAGE_SIZE:
                    return rows  # the list ended early (rows were deleted meanwhile)
                last = page[-1][plan.spec.row_key]
        return rows

    async def _offset_pages(
        self, method: str, base: dict[str, Any], first: Bitrix24Response, use_batch: bool
    ) -> list[Any]:
        rows: list[Any] = []
        if not use_batch or not first.total:
            following: int | None = first.next
            while following is not None:
                page = await self.call_raw(method, {**base, "start": following})
                rows.extend(list_items(page.result))
                following = page.next
            return rows
        assert first.next is not None
        starts = range(first.next, first.total, PAGE_SIZE)
        commands = {f"page{start}": (method, {**base, "start": start}) for start in starts}
        pages = await self.batch(commands)
        for key in commands:
            if key in pages.errors:
                raise pages.errors[key]
            rows.extend(list_items(pages.result.get(key)))
        return rows


def _items(
    commands: Mapping[str, tuple[str, Mapping[str, Any]]],
) -> list[tuple[str, str, dict[str, Any]]]:
    return [(key, method, dict(params)) for key, (method, params) in commands.items()]
