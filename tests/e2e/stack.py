"""The real stack for end-to-end tests: Temporal dev server, the Bitrix24 and 1C emulators, an
SMTP server (aiosmtpd), the relay and a worker.

Nothing is stubbed: events travel emulator → relay (HTTP, form-encoded) → inbox → Temporal →
worker → activities → emulators (HTTP) and SMTP. Each stack uses its own task queue and deal-ID
range, so tests can share the session's dev server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from emulators.asgi_server import BackgroundServer, free_port, serve
from emulators.bitrix24.app import create_app as bitrix24_app
from emulators.bitrix24.state import Portal
from emulators.onec.app import create_app as onec_app
from emulators.smtp_sink import Mailbox, smtp_sink
from salesflow.config.settings import Settings
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.relay.app import create_app as relay_app
from salesflow.store.db import make_engine
from salesflow.worker import running_worker
from salesflow.workflows.models import DealView
from salesflow.workflows.names import deal_workflow_id

TOKEN = "e2e-app-token"


@dataclass
class Stack:
    settings: Settings
    client: Client
    portal: Portal
    bitrix24: Bitrix24Client
    relay: BackgroundServer
    emulator: BackgroundServer
    onec: BackgroundServer
    onec_base: Any
    mailbox: Mailbox

    async def add_deal(self, **fields: Any) -> int:
        base = {
            "TITLE": "Поставка оборудования",
            "CATEGORY_ID": 1,
            "STAGE_ID": "C1:NEW",
            "OPPORTUNITY": 640000,
            "CONTACT_ID": 1,
        }
        return int(await self.bitrix24.call("crm.deal.add", {"fields": {**base, **fields}}))

    def handle(self, deal_id: int) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(deal_workflow_id(deal_id), result_type=DealView)

    async def state(self, deal_id: int) -> DealView:
        return await self.handle(deal_id).query("state", result_type=DealView)

    async def wait_for_workflow(self, deal_id: int, seconds: float = 20.0) -> DealView:
        return await self.wait_until(deal_id, lambda _: True, seconds)

    async def wait_until(self, deal_id: int, check: Any, seconds: float = 20.0) -> DealView:
        last: Exception | None = None
        for _ in range(int(seconds * 10)):
            try:
                view = await self.state(deal_id)
                if check(view):
                    return view
            except Exception as err:  # the workflow may not exist yet
                last = err
            await asyncio.sleep(0.1)
        raise AssertionError(f"deal {deal_id} never reached the expected state ({last})")

    async def eventually(self, check: Any, seconds: float = 20.0) -> Any:
        """Poll `check()` until it returns something truthy (side effects land asynchronously)."""
        for _ in range(int(seconds * 10)):
            value = check()
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"condition never held within {seconds} s")

    async def cli(self, *args: str) -> tuple[int, str]:
        """Run the real `salesflow` console script against this stack."""
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": self.settings.temporal.address,
            "TEMPORAL_NAMESPACE": self.settings.temporal.namespace,
            "DATABASE_URL": self.settings.database.url,
            "COLUMNS": "200",
        }
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "salesflow"),
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode()


@contextlib.asynccontextmanager
async def running_stack(
    env: WorkflowEnvironment,
    tmp_path: Path,
    name: str,
    first_deal_id: int,
    rules: dict[str, Any] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> AsyncIterator[Stack]:
    emulator_app = bitrix24_app(application_token=TOKEN, rate_per_second=None)
    portal: Portal = emulator_app.state.portal
    portal.bump_id("deal", first_deal_id)
    onec = onec_app()
    async with contextlib.AsyncExitStack() as stack:
        emulator = await stack.enter_async_context(serve(emulator_app))
        onec_server = await stack.enter_async_context(serve(onec))
        smtp_port = free_port()
        mailbox = stack.enter_context(smtp_sink(smtp_port))
        target = env.client.service_client.config.target_host
        data: dict[str, dict[str, Any]] = {
            "temporal": {"address": target, "task_queue": f"e2e-{name}"},
            "bitrix24": {
                "webhook_url": f"{emulator.url}/rest/1/devsecret/",
                "application_token": TOKEN,
                "rate_per_second": 20,
            },
            "onec": {"odata_url": f"{onec_server.url}/trade/odata/standard.odata/"},
            "smtp": {"host": "127.0.0.1", "port": smtp_port},
            "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}"},
            "rules": rules or {},
        }
        for section, values in (overrides or {}).items():  # extra settings of one test
            data[section] = {**data.get(section, {}), **values}
        settings = Settings.model_validate(data)
        engine = make_engine(settings.database.url)
        stack.push_async_callback(engine.dispose)
        relay = await stack.enter_async_context(
            serve(relay_app(settings, engine=engine, temporal_client=env.client))
        )
        portal.handler_url = f"{relay.url}/bitrix24/events"
        await stack.enter_async_context(running_worker(env.client, settings))
        b24 = Bitrix24Client(settings.bitrix24.webhook_url, rate_per_second=20, burst=50)
        stack.push_async_callback(b24.aclose)
        yield Stack(
            settings,
            env.client,
            portal,
            b24,
            relay,
            emulator,
            onec_server,
            onec.state.base,
            mailbox,
        )
