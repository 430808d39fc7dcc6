"""Typed errors of the 1C OData client, built from the HTTP status and 1C's `odata.error` body.

`retryable` tells the caller (a Temporal activity) whether a retry can help: outages,
timeouts, 5xx without a business meaning, lock conflicts and "no free licence" can;
a wrong request, missing rights or a refused business operation (500 with code "-1") cannot.
"""

from __future__ import annotations

import json
import re
from html import unescape
from typing import Any

from salesflow.config.redact import redact

# Russian messages of 500/-1 that mean "the base is busy now", not "your data is wrong".
_TRANSIENT_MARKERS = (
    "лицензи",  # Не обнаружено свободной лицензии!
    "no free licen",
    "конфликт блокировок",
    "предоставления блокировки",  # Превышено максимальное время ожидания предоставления блокировки
    "deadlock",
    "сеанс работы завершен",
    "соединение с сервером",
)


class OneCError(Exception):
    """Any failure talking to 1C. `code` is 1C's internal code as a string ("9", "-1"), if any."""

    default_retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retryable: bool | None = None,
        url: str | None = None,
    ) -> None:
        message = redact(message)  # no secret in an error (`config.redact`)
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retryable = self.default_retryable if retryable is None else retryable
        self.url = None if url is None else redact(url)

    def __str__(self) -> str:
        parts = [f"HTTP {self.status}" if self.status is not None else "no response"]
        if self.code is not None:
            parts.append(f"code {self.code}")
        return f"1C: {self.message} ({', '.join(parts)})"

    def details(self) -> dict[str, Any]:
        """Plain data for an ApplicationError's details or a log line."""
        return {
            "type": type(self).__name__,
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
            "url": self.url,
        }


class OneCUnavailable(OneCError):
    """No usable answer: connection refused/reset, 502/503/504, the base busy. Retry later."""

    default_retryable = True


class OneCTimeout(OneCUnavailable):
    """The request did not finish within the client's timeout (1C's cold start can exceed 30 s)."""


class OneCUnknownOutcome(OneCUnavailable):
    """A write whose answer was lost after it was sent (timeout, reset, 500/502/504): 1C may
    have carried it out. Retryable; a create looks its key up again before repeating."""


class OneCServerError(OneCError):
    """A 5xx that is neither an outage nor a business refusal (e.g. a bare 500 from IIS)."""

    default_retryable = True


class OneCAuthError(OneCError):
    """401/403: wrong credentials, or missing rights/RLS (1C code "20")."""


class OneCNotFound(OneCError):
    """404: no object with that key (code "9"), or an unknown/unpublished entity set."""

    @property
    def instance_missing(self) -> bool:
        """1C looked and found no object with that key — not an unknown set or a bad URL."""
        return self.code == "9"


class OneCBadRequest(OneCError):
    """400/501: 1C could not parse or does not support the request; fix the request."""


class OneCUrlRefused(OneCBadRequest):
    """The web server in front of 1C refused the URL with an HTML page (no odata.error):
    behind IIS a query string over 2 048 bytes answers an HTML 404. Never "not found"."""


class OneCConflict(OneCError):
    """412: the object changed since it was read (only when the base enforces If-Match)."""

    default_retryable = True


class OneCBusinessError(OneCError):
    """500 with code "-1": a handler refused (posting, writing); a person must act."""


class OneCProtocolError(OneCError):
    """A 2xx whose body is not what OData returns (e.g. an HTML login page with 200)."""


def parse_error_body(body: bytes | str) -> tuple[str | None, str | None]:
    """Return (code, message) from a JSON `odata.error` or Atom `m:error` body, if present."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = text.lstrip("\ufeff").strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return None, None
        if not isinstance(data, dict):
            return None, None
        err = data.get("odata.error") or data.get("error")
        if not isinstance(err, dict):
            return None, None
        code = err.get("code")
        message = err.get("message")
        if isinstance(message, dict):
            message = message.get("value")
        return (None if code is None else str(code)), (None if message is None else str(message))
    if text.startswith("<") and "error" in text[:400]:
        return _xml_tag(text, "code"), _xml_tag(text, "message")
    return None, None


def _xml_tag(text: str, tag: str) -> str | None:
    match = re.search(rf"<(?:\w+:)?{tag}[^>]*>(.*?)</(?:\w+:)?{tag}>", text, re.S)
    if match is None:
        return None
    return unescape(match.group(1)).strip()


def error_from_response(status: int, body: bytes, url: str | None = None) -> OneCError:
    """Map a non-2xx answer of 1C (or of the web server in front of it) to a typed error."""
    code, message = parse_error_body(body)
    text = message or _default_message(status)
    kwargs: dict[str, Any] = {"status": status, "code": code, "url": url}
    if status in (401, 403):
        return OneCAuthError(text, **kwargs)
    if status == 404:
        if code is None and _looks_html(body):
            return OneCUrlRefused(
                "the web server refused the URL (HTML 404): the query may be over 2 048 bytes"
                " or the publication path is wrong",
                **kwargs,
            )
        return OneCNotFound(text, **kwargs)
    if status == 412:
        return OneCConflict(text, **kwargs)
    if status in (502, 503, 504) or status == 429:
        return OneCUnavailable(text, **kwargs)
    if status >= 500 and status != 501:
        if code == "-1" or (code is None and message is not None):
            if _is_transient(text):
                return OneCUnavailable(text, **kwargs)
            return OneCBusinessError(text, **kwargs)
        return OneCServerError(text, **kwargs)
    return OneCBadRequest(text, **kwargs)


def _looks_html(body: bytes) -> bool:
    head = body[:200].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<body" in head


# 1C's codes for "this request names something the base does not have" (ITS 17.4; P4).
CONFIGURATION_CODES = frozenset({"6", "14"})
_SEGMENT_RE = re.compile(r"Сегмент пути '?([^'!]+?)'? не найден")


def configuration_problem(error: OneCError) -> str | None:
    """The 1C name a request used that this base lacks (or "" when 1C does not say which),
    when the error means "the request is wrong for this base"; None for any other error."""
    if isinstance(error, OneCUrlRefused):
        return None
    unknown_set = error.status == 404 and error.code not in (None, "9")  # "9": no such object
    if not unknown_set and (error.code not in CONFIGURATION_CODES or error.status != 400):
        return None
    match = _SEGMENT_RE.search(error.message)
    return match.group(1).strip() if match else ""


def _is_transient(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in _TRANSIENT_MARKERS)


def _default_message(status: int) -> str:
    return {
        401: "Ошибка аутентификации",
        403: "Доступ запрещен",
        404: "Не найдено",
        502: "Bad Gateway",
        503: "Сервис недоступен",
        504: "Gateway Timeout",
    }.get(status, f"HTTP {status}")
