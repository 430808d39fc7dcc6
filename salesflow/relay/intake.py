"""What the relay accepts: a Bitrix24 outbound event POST, checked and reduced to its facts."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from salesflow.integrations.bitrix24 import php_form

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
TASK_EVENT_PREFIX = "ONTASK"
# Where each kind of event carries the ID of its object (bitrix24.md §7, §9).
ID_SECTIONS = ("FIELDS", "FIELDS_AFTER", "FIELDS_BEFORE")


class Unauthorized(Exception):
    """The POST does not carry the configured application token."""


class BadEvent(Exception):
    """The POST is not a usable Bitrix24 event; the message names what is wrong or missing."""


@dataclass(frozen=True)
class InboundEvent:
    event: str
    entity_id: int
    ts: int
    payload: dict[str, Any]  # the decoded form without `auth` (tokens are never stored)


def decode_form(body: bytes) -> dict[str, Any]:
    """A urlencoded body with PHP-bracket keys as nested dicts (`data[FIELDS][ID]`)."""
    try:
        body.decode("utf-8")
        return php_form.decode(body)
    except ValueError as exc:  # UnicodeDecodeError included
        raise BadEvent(f"body is not a UTF-8 urlencoded form: {exc}") from exc


def check_token(form: Mapping[str, Any], expected: str) -> None:
    """Constant-time comparison of `auth[application_token]` with the configured token."""
    auth = form.get("auth")
    given = auth.get("application_token") if isinstance(auth, Mapping) else None
    if not isinstance(given, str) or not given:
        raise Unauthorized("missing auth[application_token]")
    if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        raise Unauthorized("wrong auth[application_token]")


def _id_key(event: str) -> str:
    section = "FIELDS_AFTER" if event.startswith(TASK_EVENT_PREFIX) else "FIELDS"
    return f"data[{section}][ID]"


def _entity_id(data: Any) -> str | None:
    if not isinstance(data, Mapping):
        return None
    for section in ID_SECTIONS:
        fields = data.get(section)
        if isinstance(fields, Mapping) and isinstance(fields.get("ID"), str):
            return str(fields["ID"])
    return None


def _positive_int(raw: str, name: str, problems: list[str]) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value < 0 or (value == 0 and name != "ts"):
        problems.append(f"{name} must be a positive integer, got {raw!r}")
    return value


def parse_event(form: Mapping[str, Any]) -> InboundEvent:
    """The event name, its object's ID and `ts`; BadEvent lists every missing or bad field."""
    raw_event = form.get("event")
    event = raw_event.strip().upper() if isinstance(raw_event, str) else ""
    raw_id = _entity_id(form.get("data"))
    raw_ts = form.get("ts") if isinstance(form.get("ts"), str) else None
    missing = [
        name
        for name, present in (("event", event), (_id_key(event), raw_id), ("ts", raw_ts))
        if not present
    ]
    if missing or raw_id is None or raw_ts is None:
        raise BadEvent("missing " + ", ".join(missing))
    problems: list[str] = []
    entity_id = _positive_int(raw_id, _id_key(event), problems)
    ts = _positive_int(raw_ts, "ts", problems)
    if problems:
        raise BadEvent("; ".join(problems))
    payload = {key: value for key, value in form.items() if key != "auth"}
    return InboundEvent(event=event, entity_id=entity_id, ts=ts, payload=payload)
