"""Workflow-side handling of a 1C outage: retry under a policy, tell a person once.

    result = await run_with_outage_watch(
        activity_stubs.load_kp_into_deal, req,
        after=timedelta(minutes=rules.onec_outage_notify_minutes),
        notify=lambda: self._notify("kp:onec_outage", [manager], ...),
    )

The activity runs under `ONEC_RETRY` (unlimited attempts, backoff up to a few minutes),
so Temporal does the retrying — no loop here. A timer races it: when the timer wins,
`notify()` is awaited once and the call keeps waiting for the activity. A non-retryable
failure still raises `ActivityError`. Deterministic: timers and `workflow.wait` only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

ONEC_TIMEOUT = timedelta(seconds=90)  # a cold 1C answers in 30+ s; the client gives up at 30
ONEC_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=3),
    maximum_attempts=0,  # unlimited: an outage of hours ends in success, not a failure
)

# A request wrong for this base (activities/onec.py): waits for the fix, never an outage.
ONEC_CONFIGURATION_PROBLEM = "1C.ConfigurationProblem"

Notify = Callable[[], Awaitable[Any]]
A = TypeVar("A")
R = TypeVar("R")


async def run_with_outage_watch(
    activity: Callable[[A], Awaitable[R]],
    arg: A,
    *,
    notify: Notify,
    after: timedelta,
    start_to_close_timeout: timedelta = ONEC_TIMEOUT,
    retry_policy: RetryPolicy = ONEC_RETRY,
) -> R:
    """Run one activity (a stub of `activity_stubs`); if it has not finished `after` from now,
    `notify()` once."""
    handle = workflow.start_activity(
        activity,
        arg,
        start_to_close_timeout=start_to_close_timeout,
        retry_policy=retry_policy,
        summary=activity.__name__,
    )
    done, _ = await workflow.wait([handle], timeout=after.total_seconds())
    if done:
        return await handle
    await notify()
    return await handle


def is_configuration_problem(err: ActivityError) -> bool:
    cause = err.cause
    return isinstance(cause, ApplicationError) and cause.type == ONEC_CONFIGURATION_PROBLEM
