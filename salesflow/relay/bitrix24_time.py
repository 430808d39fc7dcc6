"""Bitrix24 date-times as the relay meets them: `DATE_MODIFY`, `TIMESTAMP_X` (ISO 8601 with the
portal's offset, whole seconds) and the values it puts into list filters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def parse(value: Any) -> datetime | None:
    """An aware datetime, or None for anything that is not an ISO 8601 date-time."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def epoch(value: Any) -> int | None:
    """Whole seconds since the epoch (the portal's precision)."""
    moment = parse(value)
    return None if moment is None else int(moment.timestamp())


def filter_value(moment: datetime) -> str:
    """A list filter's date-time: ISO 8601 with an offset, whole seconds."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.replace(microsecond=0).isoformat()
