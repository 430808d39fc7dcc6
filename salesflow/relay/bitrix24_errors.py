"""How the relay treats a failed Bitrix24 read: the object is gone, try later, or give up."""

from __future__ import annotations

from enum import Enum

from salesflow.integrations.bitrix24.errors import AuthError, Bitrix24Error, NotFound


class Bitrix24Verdict(Enum):
    NOT_FOUND = "not_found"  # the deal/task does not exist (or is not visible): ignore the event
    TRANSIENT = "transient"  # limits, 5xx, network, a broken webhook secret: keep it pending
    PERMANENT = "permanent"  # the portal refuses this request for good: mark the row failed


def classify(exc: BaseException) -> Bitrix24Verdict:
    if isinstance(exc, NotFound):
        return Bitrix24Verdict.NOT_FOUND
    if not isinstance(exc, Bitrix24Error):
        return Bitrix24Verdict.TRANSIENT  # transport errors and anything unforeseen
    # A bad webhook secret breaks every event alike; once an operator fixes it they all go.
    if exc.retryable or isinstance(exc, AuthError):
        return Bitrix24Verdict.TRANSIENT
    return Bitrix24Verdict.PERMANENT
