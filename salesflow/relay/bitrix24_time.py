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


class PortalClock:
    """A lower bound of the portal's clock now, from the relay's reads of the portal.

    A read's answer carries the portal's time when it started handling the call (`time.start`),
    which lies between this process's monotonic times of sending and of getting the answer, so
    `start - received` bounds the offset of the portal's clock from below. The bound lets a
    signal sent without a read note when it was sent in the portal's time: the workflow reads
    the deal after the signal, so that read sees every change made before it.
    """

    DRIFT = 1e-3  # seconds per second of age allowed between the clocks (NTP keeps ≪ 1e-4)

    def __init__(self) -> None:
        self._offset: float | None = None  # portal time − monotonic time, at least
        self._at = 0.0  # monotonic time of the read that gave it

    def observe(self, portal_start: float, received: float) -> None:
        """One read: the portal's start time and the monotonic time its answer arrived."""
        self._offset, self._at = portal_start - received, received

    def now_at_least(self, now: float) -> float | None:
        """The portal's time at monotonic `now`, at least; None before any read."""
        if self._offset is None:
            return None
        return now + self._offset - self.DRIFT * max(0.0, now - self._at)
