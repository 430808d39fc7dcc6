"""Typed Bitrix24 REST errors and the mapping from a raw error response to them."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from salesflow.config.redact import redact


class Bitrix24Error(Exception):
    """A Bitrix24 REST error: `code` is the portal's `error` string, `status` the HTTP status.

    `retry_after` is the delay in seconds the error implies before the same call can succeed
    (the bucket's drain time on 503 QUERY_LIMIT_EXCEEDED, the wait until `operating_reset_at`
    on 429 OPERATION_TIME_LIMIT, a `Retry-After` header); None when it implies nothing.
    The client never retries: a caller (a Temporal retry policy) uses it as the next delay.
    The description is redacted (`config.redact`): no secret travels in an error.
    """

    _retryable: ClassVar[bool] = False
    # True on a command's own error inside a batch (`result_error`), not the request's.
    command_error: bool = False

    def __init__(
        self,
        code: str,
        description: str = "",
        status: int = 400,
        *,
        retry_after: float | None = None,
    ) -> None:
        description = redact(description)
        super().__init__(code, description, status)
        self.code = code
        self.description = description
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self._retryable

    def __str__(self) -> str:
        code = self.code or '""'
        return f"{code}: {self.description} (HTTP {self.status})"


class QueryLimitExceeded(Bitrix24Error):
    """503 QUERY_LIMIT_EXCEEDED: the portal's leaky bucket overflowed."""

    _retryable = True


class OperationTimeLimit(Bitrix24Error):
    """429 OPERATION_TIME_LIMIT: the method's execution-time budget is spent until `reset_at`."""

    _retryable = True

    def __init__(
        self,
        code: str,
        description: str = "",
        status: int = 429,
        reset_at: float | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(code, description, status, retry_after=retry_after)
        self.reset_at = reset_at


class ServerError(Bitrix24Error):
    """5xx, a non-JSON body, or a transport failure: worth retrying later."""

    _retryable = True


class UnknownOutcome(ServerError):
    """The request was sent and its answer lost: a read timeout, a connection reset after
    sending, a 5xx other than 503 (or a 200 that is not JSON): nothing says it was refused. The
    portal may have carried the call out, or may still be carrying it out (up to 60 s in the
    cloud). Retryable; a create must find its key in the portal, for longer than the portal
    can take to finish a call, before it creates again (`activities.once`)."""


def unknown_outcome(error: Bitrix24Error) -> UnknownOutcome:
    return UnknownOutcome(
        error.code, error.description, error.status, retry_after=error.retry_after
    )


class PortalMoved(Bitrix24Error):
    """302 to another domain: the portal was renamed; `location` holds the new address
    (redacted: a portal's Location repeats the webhook secret).

    Not retryable: the webhook URL in the configuration must change.
    """

    def __init__(
        self,
        code: str,
        description: str = "",
        status: int = 302,
        location: str | None = None,
    ) -> None:
        super().__init__(code, description, status)
        self.location = None if location is None else redact(location)


class MethodNotFound(Bitrix24Error):
    pass


class AuthError(Bitrix24Error):
    pass


class AccessDenied(Bitrix24Error):
    pass


class NotFound(Bitrix24Error):
    pass


class BadRequest(Bitrix24Error):
    pass


_LIMIT_CODES = {"QUERY_LIMIT_EXCEEDED", "OVERLOAD_LIMIT"}
_SERVER_CODES = {"INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER"}
_AUTH_CODES = {
    "INVALID_CREDENTIALS",
    "NO_AUTH_FOUND",
    "EXPIRED_TOKEN",
    "INVALID_TOKEN",
    "INSUFFICIENT_SCOPE",
    "INVALID_REQUEST",
}
_ACCESS_CODES = {"ACCESS_DENIED", "WRONG_AUTH_TYPE", "ALLOWED_ONLY_INTRANET_USER", "ACCESS_ERROR"}
_NOT_FOUND_CODES = {"NOT_FOUND", "OWNER_NOT_FOUND", "USER_NOT_FOUND", "ERROR_EVENT_NOT_FOUND"}


def _parse_body(body: bytes | str | dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    if isinstance(body, dict):
        return body, ""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else str(body)
    try:
        parsed = json.loads(text)
    except ValueError:
        return None, text
    return (parsed, text) if isinstance(parsed, dict) else (None, text)


def _clean(description: Any) -> str:
    text = "" if description is None else str(description)
    text = text.strip()
    while text.lower().endswith("<br>"):
        text = text[:-4].rstrip()
    return text


def _by_description(status: int, code: str, description: str) -> Bitrix24Error:
    """Codes that carry no meaning themselves ("", "0", "100", ERROR_CORE): read the text."""
    text = description.lower()
    if code == "ERROR_CORE" and status >= 500:
        return ServerError(code, description, status)
    if "not found" in text or "не найден" in text:
        return NotFound(code, description, status)
    # Tasks answer "Action on the task is not allowed" for a missing task as well.
    if code == "0" and "not allowed" in text:
        return NotFound(code, description, status)
    if "access denied" in text or "доступ запрещ" in text:
        return AccessDenied(code, description, status)
    return _by_status(status, code, description)


def _by_status(status: int, code: str, description: str) -> Bitrix24Error:
    if status == 429:
        return OperationTimeLimit(code, description, status)
    if status >= 500 or status == 0:
        return ServerError(code, description, status)
    if status == 401:
        return AuthError(code, description, status)
    if status == 403:
        return AccessDenied(code, description, status)
    if status == 404:
        return NotFound(code, description, status)
    return BadRequest(code, description, status)


def error_from_response(status: int, body: bytes | str | dict[str, Any]) -> Bitrix24Error:
    """Map an error response (status + JSON/HTML body) to a typed error.

    Branches on the `error` string first and falls back to the HTTP status.
    """
    parsed, text = _parse_body(body)
    if parsed is None or "error" not in parsed:
        snippet = " ".join(text.split())[:200]
        if status == 200 or status >= 500 or status == 0:
            return ServerError("INVALID_RESPONSE", snippet or "non-JSON response", status)
        return _by_status(status, "INVALID_RESPONSE", snippet or "non-JSON response")

    raw_code = parsed.get("error")
    code = "" if raw_code is None else str(raw_code)
    description = _clean(parsed.get("error_description"))
    upper = code.upper()

    if upper in _LIMIT_CODES:
        return QueryLimitExceeded(code, description, status)
    if upper == "OPERATION_TIME_LIMIT":
        time_info = parsed.get("time")
        reset_at = time_info.get("operating_reset_at") if isinstance(time_info, dict) else None
        return OperationTimeLimit(
            code, description, status, float(reset_at) if reset_at is not None else None
        )
    if upper in _SERVER_CODES:
        return ServerError(code, description, status)
    if upper == "ERROR_METHOD_NOT_FOUND":
        return MethodNotFound(code, description, status)
    if upper in _AUTH_CODES:
        return AuthError(code, description, status)
    if upper in _ACCESS_CODES:
        return AccessDenied(code, description, status)
    if upper in _NOT_FOUND_CODES:
        return NotFound(code, description, status)
    if code in {"", "0", "100"} or upper == "ERROR_CORE":
        return _by_description(status, code, description)
    return _by_status(status, code, description)
