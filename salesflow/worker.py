"""The worker: DealWorkflow, its child workflows and activities on the `sales-pipeline` queue.

`salesflow worker` (or `python -m salesflow.worker`) runs it until interrupted. It needs Temporal
and the database at start (and migrates the schema); either missing is one line naming the
setting, and exit status 2.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Interceptor, Worker

from salesflow.activities.bitrix24 import Bitrix24Activities
from salesflow.activities.board import BoardActivities
from salesflow.activities.mail import MailActivities
from salesflow.activities.onec import OneCActivities
from salesflow.config.log import configure_logging
from salesflow.config.settings import Settings, load_settings
from salesflow.config.temporal_client import connect
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.integrations.onec.client import OneCClient
from salesflow.store.db import database_engine, init_db
from salesflow.store.portal_bucket import shared_by_database
from salesflow.workflows import sandbox
from salesflow.workflows.approval import InternalApproval
from salesflow.workflows.attempt_timeouts import AttemptTimeouts
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.logist_mirror import LogistTaskMirror
from salesflow.workflows.process import DealProcess

WORKFLOWS: list[type] = [DealWorkflow, InternalApproval, DealProcess, LogistTaskMirror]


# Workflow tasks at once in one worker process. Workflow code runs under the GIL, so more
# tasks at once do not finish sooner: the SDK's default of 100 let a burst of new deals share
# one core a hundred ways, every task took 5–7.5 s (TMPRL1104), some passed the 10 s task
# timeout and were retried, and the worker parked fewer deals (issue 16). Tasks beyond these
# wait on the server's task queue (a second worker process takes them) rather than in the GIL.
WORKFLOW_TASK_SLOTS = 8


# What an exception raised by workflow code does, in production and in the tests alike: only
# Temporal's failures (ApplicationError, an activity's or child's failure) fail the workflow or
# the update; anything else — a bug, a state this worker cannot read during a rolling deploy, a
# non-determinism — fails the workflow task, which is retried until a worker that can handle it
# takes over, so a deal is never failed by a deploy. The workflows refuse people's input in
# update validators and with ApplicationError, never by another exception.
WORKFLOW_FAILURE_EXCEPTION_TYPES: Sequence[type[BaseException]] = ()


def build_activities(
    settings: Settings,
    bitrix24: Bitrix24Client,
    onec: OneCClient | None = None,
    engine: AsyncEngine | None = None,
) -> list[Any]:
    activities = Bitrix24Activities(bitrix24, settings).all()
    if onec is not None:
        activities += OneCActivities(onec, bitrix24, settings).all()
    if engine is not None:
        activities += MailActivities(settings.smtp, engine, bitrix24).all()
        activities += BoardActivities(engine).all()
    return activities


def worker_interceptors(settings: Settings) -> list[Interceptor]:
    bound = settings.temporal.activity_attempt_seconds
    return [AttemptTimeouts(timedelta(seconds=bound))] if bound else []


def onec_client(settings: Settings) -> OneCClient:
    """The worker's one 1C client (one 1C session); it connects on first use."""
    conf = settings.onec
    return OneCClient(conf.odata_url, conf.user, conf.password, timezone=conf.timezone)


@asynccontextmanager
async def running_worker(
    client: Client, settings: Settings, task_queue: str | None = None
) -> AsyncIterator[Worker]:
    """A started worker with its own Bitrix24 and 1C clients and database engine (the mail
    outbox); all stopped and closed on exit."""
    engine = database_engine(settings.database)
    b24 = settings.bitrix24
    bitrix24 = Bitrix24Client(
        b24.webhook_url,
        rate_per_second=b24.rate_per_second,
        burst=b24.burst,
        timeout=b24.timeout_seconds,
    )
    onec = onec_client(settings)
    try:
        await init_db(engine)
        bucket: AbstractContextManager[object] = (
            shared_by_database(engine) if b24.shared_bucket else nullcontext()
        )
        worker = Worker(
            client,
            task_queue=task_queue or settings.temporal.task_queue,
            workflows=WORKFLOWS,
            activities=build_activities(settings, bitrix24, onec, engine),
            workflow_failure_exception_types=WORKFLOW_FAILURE_EXCEPTION_TYPES,
            workflow_runner=sandbox.workflow_runner(),
            max_concurrent_workflow_tasks=WORKFLOW_TASK_SLOTS,
            interceptors=worker_interceptors(settings),
        )
        with bucket:
            async with worker:
                yield worker
    finally:
        await onec.aclose()
        await bitrix24.aclose()
        await engine.dispose()


async def main(settings: Settings | None = None) -> None:
    settings = settings or load_settings()
    seen = settings.observability
    configure_logging(seen.log_level, seen.structured_logs)
    extra: dict[str, Any] = {}
    if seen.worker_metrics_bind:
        telemetry = TelemetryConfig(metrics=PrometheusConfig(bind_address=seen.worker_metrics_bind))
        extra["runtime"] = Runtime(telemetry=telemetry)
    client = await connect(settings, **extra)
    async with running_worker(client, settings):
        await asyncio.Event().wait()


def run() -> None:
    """`python -m salesflow.worker`: a configuration or start-up failure is one line, exit 2."""
    import sys

    from salesflow.config.settings import ConfigError, StartupError

    try:
        asyncio.run(main())
    except (ConfigError, StartupError) as err:
        print(err, file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    run()
