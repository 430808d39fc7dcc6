"""REST method registry of the emulator: handler signature, call context and error type.

Each method has a scope (derived from its name unless given) and may be limited to the
application (OAuth) context, as event.* are; the transport checks both before invoking.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emulators.bitrix24.state import Portal

# Scope "" is the global scope: every caller may use those methods.
GLOBAL_SCOPE = ""
_SCOPE_PREFIXES = (
    ("crm.", "crm"),
    ("tasks.", "task"),
    ("task.", "task"),
    ("im.", "im"),
    ("user.", "user"),
    ("department.", "department"),
    ("calendar.", "calendar"),
)
_GLOBAL_METHODS = {"user.current", "user.admin", "user.access"}


class RestError(Exception):
    """An error envelope `{"error": code, "error_description": description}` with a status.

    `code` may be an int (camelCase methods answer `"error": 100`); `extra` adds keys such as
    the `argument` of an ArgumentException.
    """

    def __init__(
        self,
        code: str | int,
        description: str,
        status: int = 400,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(code, description, status)
        self.code = code
        self.description = description
        self.status = status
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "error_description": self.description, **self.extra}


def argument_error(description: str, argument: str | None = None) -> RestError:
    """ERROR_ARGUMENT as an ArgumentException renders it (400, with the argument name)."""
    extra = {"argument": argument} if argument else None
    return RestError("ERROR_ARGUMENT", description, 400, extra)


def wrong_auth_type() -> RestError:
    return RestError("WRONG_AUTH_TYPE", "Current authorization type is denied for this method", 403)


def not_found() -> RestError:
    """The classic CRM answer for a missing record."""
    return RestError("", "Not found")


def bad_id() -> RestError:
    return RestError("", "ID is not defined or invalid.")


@dataclass
class PendingEvent:
    """An outbound event raised by a call, delivered after the response is sent.

    `handler` None means the portal's outgoing webhook (`portal.handler_url`); otherwise an
    online `event.bind` handler of application `app_id`, whose body carries app auth.
    """

    name: str
    data: dict[str, Any]
    entity_id: int | None
    handler: str | None = None
    app_id: str | None = None
    handler_id: int | None = None


@dataclass
class CallContext:
    """Who calls, on which portal, and what the call produced besides its result.

    `app_id` is the calling local application's client_id (None for a webhook);
    `auth_connector` comes with the call and breaks offline-event loops.
    """

    portal: Portal
    user_id: int
    host: str = "127.0.0.1"
    scheme: str = "http"
    in_batch: bool = False
    events: list[PendingEvent] = field(default_factory=list)
    app_id: str | None = None
    auth_connector: str = ""
    scopes: frozenset[str] | None = None
    caller_key: str = "webhook"

    @property
    def is_app(self) -> bool:
        return self.app_id is not None

    @property
    def is_admin(self) -> bool:
        return self.user_id in self.portal.admins

    def emit(
        self, name: str, data: dict[str, Any], entity_id: int | None, *, log: bool = True
    ) -> None:
        """Record the event, queue online deliveries and write the offline queue.

        `log` False skips `portal.event_log` (per-type twins of an event already logged).
        """
        portal = self.portal
        if log:
            portal.event_log.append(
                {"event": name, "entity_id": entity_id, "ts": int(portal.now())}
            )
        if name in portal.subscribed_events:
            self.events.append(PendingEvent(name, data, entity_id))
        for binding in portal.bindings:
            if binding.event != name:
                continue
            if binding.offline:
                own = binding.app_id == self.app_id and binding.connector == self.auth_connector
                if not own:
                    portal.offline.record(binding, name, data, self.user_id)
                    self._notify_offline(binding.app_id)
            else:
                self.events.append(
                    PendingEvent(name, data, entity_id, binding.handler, binding.app_id, binding.id)
                )

    def _notify_offline(self, app_id: str) -> None:
        """ONOFFLINEEVENT to the app's online handler, at most once per `minTimeout`."""
        portal = self.portal
        for binding in portal.bindings:
            if binding.event != "ONOFFLINEEVENT" or binding.app_id != app_id or binding.offline:
                continue
            timeout = float(binding.options.get("minTimeout", 1))
            now = portal.now()
            if now - binding.last_sent >= timeout:
                binding.last_sent = now
                self.events.append(
                    PendingEvent(
                        "ONOFFLINEEVENT", {}, None, binding.handler, binding.app_id, binding.id
                    )
                )


Handler = Callable[[CallContext, dict[str, Any]], Any]
METHODS: dict[str, Handler] = {}


@dataclass(frozen=True)
class MethodInfo:
    scope: str
    app_only: bool = False
    admin_only: bool = False


METHOD_INFO: dict[str, MethodInfo] = {}


def scope_of(name: str) -> str:
    if name in _GLOBAL_METHODS:
        return GLOBAL_SCOPE
    for prefix, scope in _SCOPE_PREFIXES:
        if name.startswith(prefix):
            return scope
    return GLOBAL_SCOPE


def method(
    *names: str,
    scope: str | None = None,
    app_only: bool = False,
    admin_only: bool = False,
) -> Callable[[Handler], Handler]:
    """Register a handler under one or more (case-insensitive) method names."""

    def register(handler: Handler) -> Handler:
        for name in names:
            key = name.lower()
            METHODS[key] = handler
            METHOD_INFO[key] = MethodInfo(
                scope if scope is not None else scope_of(key), app_only, admin_only
            )
        return handler

    return register


def fields_param(params: dict[str, Any], *, name: str = "fields") -> dict[str, Any]:
    """The `fields` object of an add/update call; classic CRM refuses anything else."""
    fields = params.get(name)
    if fields is None:
        fields = params.get(name.upper())
    if not isinstance(fields, dict):
        raise RestError("", f"Parameter '{name}' must be array.")
    return fields


def param(params: dict[str, Any], *names: str) -> Any:
    """The first present parameter among case variants (`id`, `ID`, …)."""
    for name in names:
        if name in params:
            return params[name]
    lowered = {str(k).lower(): v for k, v in params.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def check_access(ctx: CallContext, name: str) -> None:
    """Scope, auth type and admin checks that run before a method (also inside batch)."""
    info = METHOD_INFO.get(name.lower())
    if info is None:
        raise RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
    if info.app_only and not ctx.is_app:
        raise wrong_auth_type()
    if ctx.scopes is not None and info.scope and info.scope not in ctx.scopes:
        who = "access token" if ctx.is_app else "webhook token"
        raise RestError(
            "insufficient_scope",
            f"The request requires higher privileges than provided by the {who}",
            ctx.portal.insufficient_scope_status,
        )
    if info.admin_only and not ctx.is_admin:
        raise RestError("ACCESS_DENIED", "Access denied!", 403)


def invoke(ctx: CallContext, name: str, params: dict[str, Any]) -> Any:
    """Run a registered method; an unknown one is ERROR_METHOD_NOT_FOUND (404)."""
    handler = METHODS.get(name.lower())
    if handler is None:
        raise RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
    check_access(ctx, name)
    return handler(ctx, params)
