"""Inbox rows from the relay's safety nets: offline-queue rows and deals found by the scan.

Both report that an object was modified at a second (TIMESTAMP_X of the queue row, the deal's
DATE_MODIFY), so both are keyed by `inbox.change_key(kind, id, second)`: a queue row and a scan
seeing the same modification of a deal make one inbox row, a scan re-seeing it adds nothing,
a new modification is new. The payload names the source; the forwarder never drops a row of an
online delivery on the strength of an earlier signal, only rows of these sources.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from salesflow.relay import bitrix24_time
from salesflow.store import inbox, signal_marks
from salesflow.store.inbox import InboxStatus
from salesflow.store.signal_marks import DEAL, TASK
from salesflow.workflows.names import DEAL_EVENTS, TASK_EVENTS  # the events the pipeline uses

SOURCE = "source"
OFFLINE = "offline"
SCAN = "scan"
SCAN_EVENT = "ONCRMDEALUPDATE"
REOPENED = "seen again; the last signal read the object within the second of this change"
# Where each kind of event carries its object's ID (bitrix24.md §7, §9).
_ID_SECTIONS = ("FIELDS", "FIELDS_AFTER", "FIELDS_BEFORE")


class Unusable(ValueError):
    """The offline row lacks what an inbox row needs (the event name, object ID or time)."""


@dataclass(frozen=True)
class Observation:
    kind: str  # "deal" or "task" for the events the pipeline uses, else the event name
    event: str
    entity_id: int
    ts: int  # the modification's second
    payload: dict[str, Any]

    @property
    def key(self) -> str:
        return inbox.change_key(self.kind, self.entity_id, self.ts)

    async def record(self, engine: AsyncEngine) -> tuple[int, bool]:
        """Record it; return `(row id, forward)`, `forward` True when the row is to be sent.

        That is a new row, or a deal's (task's) row seen again after it was forwarded on the
        strength of a read made within the modification's second: a second change within that
        second has the same DATE_MODIFY and may have come after the read, so it goes once more.
        """
        row_id, is_new = await inbox.record(
            engine,
            event=self.event,
            entity_id=self.entity_id,
            ts=self.ts,
            payload=self.payload,
            key=self.key,
        )
        if is_new or self.kind not in {DEAL, TASK}:
            return row_id, is_new
        mark = await signal_marks.get(engine, self.kind, self.entity_id)
        if mark is not None and signal_marks.covers(mark, self.ts):
            return row_id, False
        row = await inbox.get(engine, row_id)
        if row is None or row.status != InboxStatus.FORWARDED.value:
            return row_id, False  # pending: it goes anyway; ignored or failed: it would again
        await inbox.mark(engine, row_id, InboxStatus.PENDING, REOPENED)
        return row_id, True


def is_safety_net(payload: Mapping[str, Any]) -> bool:
    return payload.get(SOURCE) in {OFFLINE, SCAN}


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if number > 0 else None


def _entity_id(data: Any) -> int | None:
    if not isinstance(data, Mapping):
        return None
    for section in _ID_SECTIONS:
        fields = data.get(section)
        if isinstance(fields, Mapping) and fields.get("ID") is not None:
            return _positive_int(fields["ID"])
    return None


def _kind(event: str) -> str:
    if event in DEAL_EVENTS:
        return DEAL
    return TASK if event in TASK_EVENTS else event


def from_offline(row: Mapping[str, Any]) -> Observation:
    """An `event.offline.get` row (ID, TIMESTAMP_X, EVENT_NAME, EVENT_DATA, MESSAGE_ID)."""
    event = str(row.get("EVENT_NAME") or "").strip().upper()
    entity_id = _entity_id(row.get("EVENT_DATA"))
    ts = bitrix24_time.epoch(row.get("TIMESTAMP_X"))
    if not event or entity_id is None or ts is None:
        raise Unusable(f"offline row {row.get('ID')}: no event name, object ID or TIMESTAMP_X")
    payload = {
        SOURCE: OFFLINE,
        "event": event,
        "data": row.get("EVENT_DATA"),
        "ts": ts,
        "timestamp_x": row.get("TIMESTAMP_X"),
        "message_id": row.get("MESSAGE_ID"),
    }
    return Observation(_kind(event), event, entity_id, ts, payload)


def from_scanned_deal(deal: Mapping[str, Any]) -> Observation:
    """A `crm.deal.list` row (ID, DATE_MODIFY) as a synthetic ONCRMDEALUPDATE."""
    deal_id = _positive_int(deal.get("ID"))
    modified = bitrix24_time.epoch(deal.get("DATE_MODIFY"))
    if deal_id is None or modified is None:
        raise Unusable(f"scanned deal {deal.get('ID')!r} has no ID or DATE_MODIFY")
    payload = {
        SOURCE: SCAN,
        "event": SCAN_EVENT,
        "data": {"FIELDS": {"ID": str(deal_id)}},
        "ts": modified,
        "date_modify": deal.get("DATE_MODIFY"),
    }
    return Observation(DEAL, SCAN_EVENT, deal_id, modified, payload)
