"""The worker: DealWorkflow and its activities on the `sales-pipeline` task queue.

`python worker.py` or `salesflow worker` runs it until interrupted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.bitrix24 import Bitrix24Activities
from config.settings import Settings, load_settings
from config.temporal_client import connect
from integrations.bitrix24.client import Bitrix24Client
from workflows.deal import DealWorkflow
from workflows.sandbox import workflow_runner

WORKFLOWS: list[type] = [DealWorkflow]


def build_activities(settings: Settings, bitrix24: Bitrix24Client) -> list[Any]:
    return Bitrix24Activities(bitrix24, settings).all()


@asynccontextmanager
async def running_worker(
    client: Client, settings: Settings, task_queue: str | None = None
) -> AsyncIterator[Worker]:
    """A started worker with its own Bitrix24 client; stopped and closed on exit."""
    b24 = settings.bitrix24
    bitrix24 = Bitrix24Client(b24.webhook_url, rate_per_second=b24.rate_per_second, burst=b24.burst)
    worker = Worker(
        client,
        task_queue=task_queue or settings.temporal.task_queue,
        workflows=WORKFLOWS,
        activities=build_activities(settings, bitrix24),
        workflow_runner=workflow_runner(),
    )
    try:
        async with worker:
            yield worker
    finally:
        await bitrix24.aclose()


async def main(settings: Settings | None = None) -> None:
    settings = settings or load_settings()
    client = await connect(settings)
    async with running_worker(client, settings):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
