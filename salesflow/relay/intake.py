"""What the relay accepts: a Bitrix24 outbound event POST, checked and reduced to its facts."""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus, unquote_to_bytes

from salesflow.integrations.bitrix24 import php_form

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
TASK_EVENT_PREFIX = "ONTASK"
# Where each kind of event carries the ID of its object (bitrix24.md §7, §9).
ID_SECTIONS = ("FIELDS", "FIELDS_AFTER", "FIELDS_BEFORE")
TOKEN_KEY = "auth[application_token]"
EVENT_KEY = "event"
# The form of an event: a portal sends about ten parameters, two levels deep, short keys.
MAX_FORM_PARAMS = 200
MAX_KEY_DEPTH = 8
MAX_KEY_LENGTH = 200
MAX_EVENT_NAME = 64  # Bitrix24 event names are upper-case words (ONCRMDEALUPDATE: 15)
INT64_MAX = 2**63 - 1
_EVENT_NAME = re.compile(r"[A-Z0-9_]+")
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit and int() take ١٢٣ too


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


def count_params(body: bytes) -> None:
    """BadEvent when the body has more parameters than any event (counted, not split)."""
    if body.count(b"&") >= MAX_FORM_PARAMS:
        raise BadEvent(f"more than {MAX_FORM_PARAMS} form parameters")


def scan_fields(
    body: bytes, keys: frozenset[str] = frozenset({TOKEN_KEY, EVENT_KEY})
) -> dict[str, bytes]:
    """The raw (percent-decoded) values of `keys` in a urlencoded body, without decoding the form.

    One pass over the pairs; a key longer than any encoding of the wanted ones is skipped
    unread; the last duplicate wins, as in parse_str. Cheap enough to run before the caller
    is known.
    """
    longest = 3 * max(len(key) for key in keys)
    found: dict[str, bytes] = {}
    for piece in body.split(b"&"):
        raw_key, _, raw_value = piece.partition(b"=")
        if not raw_key or len(raw_key) > longest:
            continue
        key = unquote_plus(raw_key.decode("latin-1"), encoding="utf-8", errors="replace")
        if key in keys:
            found[key] = unquote_to_bytes(raw_value.replace(b"+", b" "))
    return found


def check_token_raw(given: bytes | None, expected: str) -> None:
    """Constant-time comparison of the scanned `auth[application_token]` with the token."""
    if not given:
        raise Unauthorized("missing auth[application_token]")
    if not hmac.compare_digest(given, expected.encode("utf-8")):
        raise Unauthorized("wrong auth[application_token]")


def decode_form(body: bytes) -> dict[str, Any]:
    """A urlencoded body with PHP-bracket keys as nested dicts (`data[FIELDS][ID]`), within
    the limits of an event's form (parameters, key depth, key length)."""
    count_params(body)
    try:
        body.decode("utf-8")
        return php_form.decode(
            body,
            max_params=MAX_FORM_PARAMS,
            max_depth=MAX_KEY_DEPTH,
            max_key_length=MAX_KEY_LENGTH,
        )
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
    """ASCII digits within int64 (`ts` may be 0); else a problem naming the field."""
    text = raw.strip(" \t")
    value = int(text) if _DIGITS.fullmatch(text) and len(text) <= 19 else -1
    if value > INT64_MAX:
        value = -1
    if value < 0 or (value == 0 and name != "ts"):
        problems.append(
            f"{name} must be a positive integer of ASCII digits up to {INT64_MAX},"
            f" got {_shown(raw)}"
        )
    return value


def _shown(raw: str) -> str:
    return repr(raw) if len(raw) <= 40 else repr(raw[:40]) + f"… ({len(raw)} characters)"


def event_name_problem(event: str) -> str | None:
    """Why `event` (stripped, upper-cased) is not a Bitrix24 event name, or None."""
    if len(event) > MAX_EVENT_NAME:
        return f"event must be at most {MAX_EVENT_NAME} characters, got {len(event)}"
    if not _EVENT_NAME.fullmatch(event):
        return f"event must be letters A-Z, digits and _, got {_shown(event)}"
    return None


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
    bad_name = event_name_problem(event)
    if bad_name is not None:
        raise BadEvent(bad_name)
    entity_id = _positive_int(raw_id, _id_key(event), problems)
    ts = _positive_int(raw_ts, "ts", problems)
    if problems:
        raise BadEvent("; ".join(problems))
    payload = {key: value for key, value in form.items() if key != "auth"}
    return InboundEvent(event=event, entity_id=entity_id, ts=ts, payload=payload)
