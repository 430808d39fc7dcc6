"""Event subscriptions of local applications (`event.bind`) and the offline-event queue.

The queue follows the portal's table `b_rest_event_offline`: one row per (MESSAGE_ID, app,
connector, process) where MESSAGE_ID = md5(EVENT_NAME|json(EVENT_DATA)); since CRM events
carry only the object's ID, a burst of changes to one object leaves one row (upserted with a
fresh TIMESTAMP_X). Rows are reserved under a 32-character process id, cleared, or marked as
errors exactly as `EventOfflineTable` does.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import string
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from emulators.bitrix24.values import iso, php_json

_PROCESS_ALPHABET = string.ascii_letters + string.digits


@dataclass
class Binding:
    """One `event.bind` row: online (with a handler URL) or offline (queued)."""

    id: int
    event: str
    app_id: str
    handler: str = ""
    offline: bool = False
    connector: str = ""
    user_id: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    last_sent: float = -math.inf

    def as_dict(self) -> dict[str, Any]:
        if self.offline:
            return {"event": self.event, "connector_id": self.connector, "offline": 1}
        return {
            "event": self.event,
            "handler": self.handler,
            "auth_type": str(self.user_id),
            "offline": 0,
        }


@dataclass
class OfflineRow:
    id: int
    timestamp: float
    message_id: str
    app_id: str
    connector: str
    event_name: str
    event_data: Any
    user_id: int
    process_id: str = ""
    error: int = 0

    def view(self, *, full: bool = False) -> dict[str, Any]:
        """The row as event.offline.get (or, with `full`, event.offline.list) returns it."""
        row: dict[str, Any] = {
            "ID": str(self.id),
            "TIMESTAMP_X": iso(self.timestamp),
            "EVENT_NAME": self.event_name,
            "EVENT_DATA": self.event_data,
            "EVENT_ADDITIONAL": {"user_id": str(self.user_id)},
            "MESSAGE_ID": self.message_id,
        }
        if full:
            row["PROCESS_ID"] = self.process_id
            row["ERROR"] = str(self.error)
        return row


def message_id(event_name: str, data: Any) -> str:
    """md5(EVENT_NAME|json(EVENT_DATA)): equal for every change of the same object."""
    return hashlib.md5(f"{event_name}|".encode() + php_json(data)).hexdigest()


def new_process_id() -> str:
    return "".join(secrets.choice(_PROCESS_ALPHABET) for _ in range(32))


RowFilter = Callable[[OfflineRow], bool]
RowOrder = Callable[[list[OfflineRow]], list[OfflineRow]]


@dataclass
class OfflineQueue:
    clock: Callable[[], float] = time.time
    rows: dict[int, OfflineRow] = field(default_factory=dict)
    _next_id: int = 0

    def record(self, binding: Binding, event_name: str, data: Any, user_id: int) -> OfflineRow:
        """Upsert on (MESSAGE_ID, APP_ID, CONNECTOR_ID, PROCESS_ID='')."""
        key = message_id(event_name, data)
        for row in self.rows.values():
            if (row.message_id, row.app_id, row.connector, row.process_id) == (
                key,
                binding.app_id,
                binding.connector,
                "",
            ):
                row.timestamp, row.event_data, row.user_id = self.clock(), data, user_id
                return row
        self._next_id += 1
        row = OfflineRow(
            self._next_id,
            self.clock(),
            key,
            binding.app_id,
            binding.connector,
            event_name,
            data,
            user_id,
        )
        self.rows[row.id] = row
        return row

    def _owned(self, app_id: str, connector: str) -> list[OfflineRow]:
        return [r for r in self.rows.values() if (r.app_id, r.connector) == (app_id, connector)]

    def reserve(
        self,
        app_id: str,
        connector: str,
        *,
        error: bool,
        keep: RowFilter,
        order: RowOrder,
        limit: int,
    ) -> str:
        """Mark up to `limit` free rows with a new process id (EventOfflineTable::markEvents)."""
        process_id = new_process_id()
        free = [
            r
            for r in self._owned(app_id, connector)
            if r.process_id == "" and r.error == int(error) and keep(r)
        ]
        for row in order(free)[:limit]:
            row.process_id = process_id
        return process_id

    def reserved(
        self,
        app_id: str,
        connector: str,
        process_id: str,
        *,
        error: bool,
        keep: RowFilter,
        order: RowOrder,
        limit: int,
    ) -> list[OfflineRow]:
        rows = [
            r
            for r in self._owned(app_id, connector)
            if r.process_id == process_id and r.error == int(error) and keep(r)
        ]
        return order(rows)[:limit]

    def clear(
        self,
        process_id: str,
        app_id: str,
        connector: str,
        *,
        ids: Iterable[int] | None = None,
        message_ids: Iterable[str] | None = None,
    ) -> None:
        wanted_ids = None if ids is None else set(ids)
        wanted_messages = None if message_ids is None else set(message_ids)
        for row in self._owned(app_id, connector):
            if row.process_id != process_id:
                continue
            if wanted_ids is not None and row.id not in wanted_ids:
                continue
            if wanted_messages is not None and row.message_id not in wanted_messages:
                continue
            del self.rows[row.id]

    def mark_error(
        self, process_id: str, app_id: str, connector: str, message_ids: Iterable[str]
    ) -> None:
        """EventOfflineTable::markError: the reserved row becomes a free error row; other
        error-free copies of the same messages are dropped."""
        wanted = set(message_ids)
        for row in self._owned(app_id, connector):
            if row.message_id not in wanted or row.error:
                continue
            if row.process_id == process_id:
                row.error, row.process_id = 1, ""
            else:
                del self.rows[row.id]

    def listed(self, app_id: str, connector: str) -> list[OfflineRow]:
        return self._owned(app_id, connector)

    def reset(self) -> None:
        self.rows.clear()
        self._next_id = 0
