"""batch (parse_url + parse_str per command, `$result[...]` references) and service methods."""

from __future__ import annotations

import re
import time
from typing import Any

from emulators.bitrix24.limits import OperatingState
from emulators.bitrix24.query import Page
from emulators.bitrix24.registry import (
    METHODS,
    CallContext,
    RestError,
    invoke,
    method,
    param,
)
from emulators.bitrix24.seed import DEFAULT_WEBHOOK_SCOPES
from emulators.bitrix24.values import iso, truthy
from salesflow.integrations.bitrix24 import php_form

BATCH_MAX_LENGTH = 50
_NOT_IN_BATCH = {"batch", "upload", "download"}
_REFERENCE = re.compile(r"\$(result|next|total|time|error)([^\s]*)", re.IGNORECASE)
_PATH = re.compile(r"\[([^\]]+)\]")
_SECTIONS = ("result", "error", "total", "next", "time")


def timing(start: float, finish: float, operating: OperatingState | None = None) -> dict[str, Any]:
    """The portal's `time` object for a call that ran from `start` to `finish`.

    `operating` is the method's running execution-time sum; `operating_reset_at` (when the
    oldest basket expires) is left out while nothing is counted, as the cloud does.
    """
    duration = max(finish - start, 0.0)
    result: dict[str, Any] = {
        "start": round(start, 6),
        "finish": round(finish, 6),
        "duration": duration,
        "processing": duration,
        "date_start": iso(start),
        "date_finish": iso(finish),
    }
    if operating is not None and operating.reset_at is not None and operating.operating > 0:
        result["operating_reset_at"] = int(operating.reset_at)
    result["operating"] = round(operating.operating, 6) if operating is not None else 0
    return result


def operating_error(state: OperatingState) -> RestError:
    """429 OPERATION_TIME_LIMIT, with the state the client needs to know when to come back."""
    extra: dict[str, Any] = {}
    if state.reset_at is not None:
        extra["time"] = {"operating": state.operating, "operating_reset_at": int(state.reset_at)}
    return RestError(
        "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.", 429, extra
    )


def run_counted(ctx: CallContext, name: str, params: dict[str, Any]) -> tuple[Any, OperatingState]:
    """Invoke a method under its operating-time limit: (outcome, OperatingState).

    The check runs before the call; the call that crosses the limit still finishes and
    only the next call of the method is refused. Unknown methods are not counted.
    """
    operating = ctx.portal.operating
    state = OperatingState(0.0, None)
    if name in METHODS:
        blocked = operating.blocked(ctx.caller_key, name)
        if blocked is not None:
            raise operating_error(blocked)
    started = time.time()
    try:
        outcome = invoke(ctx, name, params)
    finally:
        if name in METHODS:
            state = operating.record(ctx.caller_key, name, time.time() - started)
    return outcome, state


def _lookup(container: Any, key: str) -> Any:
    if isinstance(container, dict):
        if key in container:
            return container[key]
        if key.lstrip("-").isdigit() and int(key) in container:
            return container[int(key)]
        return None
    if isinstance(container, list) and key.lstrip("-").isdigit():
        index = int(key)
        return container[index] if 0 <= index < len(container) else None
    return None


def _resolve(value: str, state: dict[str, dict[Any, Any]]) -> Any:
    """Replace `$result[key][FIELD]…` as the portal does (a whole-value reference keeps type)."""
    for match in list(_REFERENCE.finditer(value)):
        path = _PATH.findall(match.group(2))
        if not path:
            continue
        found: Any = state[match.group(1).lower()]
        for key in path:
            step = _lookup(found, key)
            if step is None:
                break
            found = step
        if match.group(0) == value:
            return found
        if isinstance(found, int | float) and not isinstance(found, bool):
            found = str(found)
        if isinstance(found, str):
            value = value.replace(match.group(0), found)
    return value


def substitute(params: Any, state: dict[str, dict[Any, Any]]) -> Any:
    if isinstance(params, dict):
        return {k: substitute(v, state) for k, v in params.items()}
    if isinstance(params, list):
        return [substitute(v, state) for v in params]
    if isinstance(params, str) and "$" in params:
        return _resolve(params, state)
    return params


def php_array(section: dict[Any, Any]) -> Any:
    """Keys 0..n-1 in order make a PHP list (a JSON array); anything else an object."""
    keys = list(section)
    if keys and keys == list(range(len(keys))):
        return [section[k] for k in keys]
    return {str(k): v for k, v in section.items()}


def _commands(cmd: Any) -> list[tuple[Any, str]]:
    if isinstance(cmd, list):
        return [(index, str(command)) for index, command in enumerate(cmd)]
    if isinstance(cmd, dict):
        return [(key, str(command)) for key, command in cmd.items()]
    return []


def _run_command(
    ctx: CallContext, command: str, state: dict[str, dict[Any, Any]]
) -> tuple[Any, OperatingState]:
    name, _, query = command.partition("?")
    name = name.strip().strip("/").lower()
    for suffix in (".json", ".xml"):
        name = name.removesuffix(suffix)
    if name in _NOT_IN_BATCH:
        raise RestError(
            "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage", 405
        )
    try:
        params = php_form.decode(query)
    except ValueError as exc:
        raise RestError("ERROR_ARGUMENT", f"Wrong command parameters: {exc}") from exc
    params.pop("auth", None)
    ctx.portal.batch_calls[name] += 1
    return run_counted(ctx, name, substitute(params, state))


@method("batch")
def batch(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    if ctx.in_batch:
        raise RestError(
            "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage", 405
        )
    halt = truthy(param(params, "halt"))
    state: dict[str, dict[Any, Any]] = {section: {} for section in _SECTIONS}
    ctx.in_batch = True
    try:
        for index, (key, command) in enumerate(_commands(param(params, "cmd"))):
            if index >= BATCH_MAX_LENGTH:
                state["error"][key] = RestError(
                    "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded"
                ).body()
                continue
            started = time.time()
            try:
                outcome, operating = _run_command(ctx, command, state)
            except RestError as error:
                state["error"][key] = error.body()
                if halt:
                    break
                continue
            if isinstance(outcome, Page):
                state["result"][key] = outcome.result
                state["total"][key] = outcome.total
                if outcome.next is not None:
                    state["next"][key] = outcome.next
            else:
                state["result"][key] = outcome
            state["time"][key] = timing(started, time.time(), operating)
    finally:
        ctx.in_batch = False
    return {
        "result": php_array(state["result"]),
        "result_error": php_array(state["error"]),
        "result_total": php_array(state["total"]),
        "result_next": php_array(state["next"]),
        "result_time": php_array(state["time"]),
    }


@method("scope")
def scope(ctx: CallContext, params: dict[str, Any]) -> list[str]:
    """The caller's scopes (the webhook's or the application's)."""
    if ctx.scopes is None:
        return sorted(DEFAULT_WEBHOOK_SCOPES)
    return sorted(ctx.scopes)


@method("methods")
def methods(ctx: CallContext, params: dict[str, Any]) -> list[str]:
    return sorted(METHODS)


@method("server.time")
def server_time(ctx: CallContext, params: dict[str, Any]) -> str:
    return iso(ctx.portal.now())


@method("profile")
def profile(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    user = ctx.portal.users[ctx.user_id]
    return {
        "ID": str(user["ID"]),
        "ADMIN": ctx.user_id == ctx.portal.webhook_user_id,
        "NAME": user.get("NAME", ""),
        "LAST_NAME": user.get("LAST_NAME", ""),
        "PERSONAL_GENDER": "",
        "TIME_ZONE": "Europe/Moscow",
        "TIME_ZONE_OFFSET": 10800,
    }
