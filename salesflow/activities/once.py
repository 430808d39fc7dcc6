"""Exactly once when an answer is lost (R-X2): a create is repeated only after its key was not
found for longer than the remote system can take to finish a call.

A create whose answer was lost (`UnknownOutcome` of the Bitrix24 client, `OneCUnknownOutcome` of
the 1C client: a read timeout, a reset after sending, a 5xx that does not say "refused") may
still land: the portal carries a call on for up to 60 s after the client gave up. So `once`:
1. looks the key up; found: that is the result;
2. not found, and an earlier attempt of this activity lost a create of this key less than
   `settle` seconds ago: fails retryably with `next_retry_delay` (Temporal's retry is the wait,
   no sleep here) — the next attempt looks again;
3. otherwise creates; a lost answer records "unknown since" in the heartbeat details (they
   reach the next attempt) and fails retryably the same way.

A worker that dies in the middle of a create leaves no marker: the attempt ends by its
start-to-close timeout (60 s), no sooner than the portal's own cut-off (a bound lowered below
that by `temporal.activity_attempt_seconds` gives this case up).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from salesflow.integrations.bitrix24.errors import UnknownOutcome
from salesflow.integrations.onec.errors import OneCUnknownOutcome

T = TypeVar("T")
UNKNOWN_OUTCOME = "UnknownOutcome"
MIN_POLL_SECONDS = 1.0  # Temporal does not retry sooner than a second
POLLS_PER_WINDOW = 6


@dataclass(frozen=True)
class Settle:
    """How long a lost create may still land (seconds), and how often to look meanwhile."""

    seconds: float

    @property
    def poll(self) -> float:
        return max(MIN_POLL_SECONDS, self.seconds / POLLS_PER_WINDOW)


def _unknown_since(key: str) -> float | None:
    if not activity.in_activity():  # called directly (tests, tools): no earlier attempt
        return None
    for detail in activity.info().heartbeat_details:
        if isinstance(detail, dict) and detail.get("key") == key and "since" in detail:
            return float(detail["since"])
    return None


def _look_again(key: str, since: float, settle: Settle, cause: str) -> ApplicationError:
    if activity.in_activity():
        activity.heartbeat({"key": key, "since": since})
    waited = time.time() - since
    delay = max(MIN_POLL_SECONDS, min(settle.poll, settle.seconds - waited))
    return ApplicationError(
        f"{key}: {cause}; looking the key up again in {delay:.0f} s"
        f" (settle window {settle.seconds:.0f} s)",
        {"key": key, "since": since},
        type=UNKNOWN_OUTCOME,
        next_retry_delay=timedelta(seconds=delay),
    )


async def once(
    settle: Settle,
    key: str,
    lookup: Callable[[], Awaitable[T | None]],
    create: Callable[[], Awaitable[T]],
) -> T:
    """The existing result for `key`, else `create()` — never a second create while a lost one
    may still land."""
    found = await lookup()
    if found is not None:
        return found
    since = _unknown_since(key)
    if since is not None and time.time() - since < settle.seconds:
        raise _look_again(key, since, settle, "an earlier create's outcome is still unknown")
    try:
        return await create()
    except (UnknownOutcome, OneCUnknownOutcome) as err:
        raise _look_again(
            key, time.time(), settle, f"the create's answer was lost ({err})"
        ) from err


def found(value: Any) -> bool | None:
    """For lookups of effects that return nothing: True when present, None when not."""
    return True if value else None
