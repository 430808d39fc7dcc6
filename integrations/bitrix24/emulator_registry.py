"""REST method registry of the emulator: handler signature, call context and error type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from integrations.bitrix24.emulator_state import Portal


class RestError(Exception):
    """An error envelope `{"error": code, "error_description": description}` with a status."""

    def __init__(self, code: str, description: str, status: int = 400) -> None:
        super().__init__(code, description, status)
        self.code = code
        self.description = description
        self.status = status

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "error_description": self.description}


def not_found() -> RestError:
    """The classic CRM answer for a missing record."""
    return RestError("", "Not found")


def bad_id() -> RestError:
    return RestError("", "ID is not defined or invalid.")


@dataclass
class PendingEvent:
    """An outbound event raised by a call, delivered after the response is sent."""

    name: str
    data: dict[str, Any]
    entity_id: int | None


@dataclass
class CallContext:
    """Who calls, on which portal, and what the call produced besides its result."""

    portal: Portal
    user_id: int
    host: str = "127.0.0.1"
    scheme: str = "http"
    in_batch: bool = False
    events: list[PendingEvent] = field(default_factory=list)

    def emit(self, name: str, data: dict[str, Any], entity_id: int | None) -> None:
        self.portal.event_log.append(
            {"event": name, "entity_id": entity_id, "ts": int(self.portal.now())}
        )
        if name in self.portal.subscribed_events:
            self.events.append(PendingEvent(name, data, entity_id))


Handler = Callable[[CallContext, dict[str, Any]], Any]
METHODS: dict[str, Handler] = {}


def method(*names: str) -> Callable[[Handler], Handler]:
    """Register a handler under one or more (case-insensitive) method names."""

    def register(handler: Handler) -> Handler:
        for name in names:
            METHODS[name.lower()] = handler
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


def invoke(ctx: CallContext, name: str, params: dict[str, Any]) -> Any:
    """Run a registered method; an unknown one is ERROR_METHOD_NOT_FOUND (404)."""
    handler = METHODS.get(name.lower())
    if handler is None:
        raise RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
    return handler(ctx, params)
