"""No secret in a log line, an error, the inbox or an HTTP answer (issue 11, finding 3).

The relay and the worker run in this process against the Bitrix24 emulator (its own webhook
secret, application token and OAuth app) and the shared Temporal dev server, every logger at
DEBUG through the product's log setup: a genuine event, a forged one, the offline drain with an
expired token (refresh: client_secret and refresh_token in the query), a portal redirect whose
Location repeats the webhook secret (for the relay and for an activity), a failing activity.
Then every captured line, every inbox column, /healthz and the activity errors are searched
for each secret, the refreshed tokens included.

Deal IDs of this module: 7_950_000 … 7_950_999.
"""

from __future__ import annotations

import io
import logging
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from emulators.asgi_server import serve
from emulators.bitrix24.app import create_app as create_emulator
from emulators.bitrix24.oauth import OAUTH_PATH
from emulators.bitrix24.seed import (
    LOCAL_APP_ACCESS_TOKEN,
    LOCAL_APP_CLIENT_ID,
    LOCAL_APP_CLIENT_SECRET,
    LOCAL_APP_REFRESH_TOKEN,
)
from salesflow.activities.bitrix24 import Bitrix24Activities
from salesflow.config.log import configure_logging
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.store import app_tokens
from tests.relay.conftest import Emulator, relay_settings, running_relay
from tests.store.databases import database

BASE = 7_950_000
WEBHOOK_SECRET = secrets.token_hex(12)
APP_TOKEN = secrets.token_hex(12)


@contextmanager
def every_log_line() -> Iterator[io.StringIO]:
    """The product's log setup at DEBUG, into a buffer; pytest's handlers back afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("DEBUG", structured=True, stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


@workflow.defn(sandboxed=False)
class SecretsProbe:
    """Activities by name, each tried once; their failures' messages come back."""

    @workflow.run
    async def run(self, calls: list[tuple[str, Any]]) -> list[str]:
        messages = []
        for name, arg in calls:
            try:
                await workflow.execute_activity(
                    name,
                    arg,
                    start_to_close_timeout=timedelta(seconds=10),
                    retry_policy=RetryPolicy(maximum_attempts=1),
                )
                messages.append("ok")
            except ActivityError as err:
                messages.append(f"{err} / {err.cause}")
        return messages


async def _inbox_text(engine: Any) -> str:
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM inbox_event"))).all()
    return "\n".join(repr(tuple(row)) for row in rows)


async def test_no_secret_in_logs_inbox_errors_or_answers(
    tmp_path: Path, dev_env: WorkflowEnvironment
) -> None:
    app = create_emulator(secret=WEBHOOK_SECRET, application_token=APP_TOKEN, rate_per_second=None)
    with every_log_line() as lines:
        async with serve(app) as server, database("sqlite", tmp_path) as engine:
            emulator = Emulator(server, app.state.portal)
            webhook = f"{server.url}/rest/1/{WEBHOOK_SECRET}/"
            settings = relay_settings(webhook, offline_interval_seconds=3600.0)
            b24 = settings.bitrix24.model_copy(
                update={
                    "application_token": APP_TOKEN,
                    "app_access_token": LOCAL_APP_ACCESS_TOKEN,
                    "app_client_id": LOCAL_APP_CLIENT_ID,
                    "app_client_secret": LOCAL_APP_CLIENT_SECRET,
                    "app_refresh_token": LOCAL_APP_REFRESH_TOKEN,
                    "oauth_url": server.url + OAUTH_PATH,
                }
            )
            settings = settings.model_copy(update={"bitrix24": b24})
            moved = f"https://moved.example/rest/1/{WEBHOOK_SECRET}/"
            async with running_relay(settings, engine, dev_env.client) as relay:
                # a genuine event, forwarded (crm.deal.get on the webhook), and a forged one
                emulator.add_deal(BASE + 1)
                genuine = await relay.post(
                    emulator.body("ONCRMDEALUPDATE", BASE + 1, token=APP_TOKEN)
                )
                assert genuine.status_code == 200
                await relay.settled(genuine.json()["id"])
                forged = emulator.body("ONCRMDEALUPDATE", BASE + 2, token="forged-" + APP_TOKEN)
                assert (await relay.post(forged)).status_code == 401
                # the portal moved: its Location repeats the secret
                emulator.add_deal(BASE + 3)
                app.state.portal.inject_fault(1, status=302, location=moved, method="crm.deal.get")
                redirected = await relay.post(
                    emulator.body("ONCRMDEALUPDATE", BASE + 3, token=APP_TOKEN)
                )
                row = await relay.settled(redirected.json()["id"])
                assert row.status == "failed" and "moved.example" in (row.reason or "")
                # the offline drain with an expired token: a refresh, then auth=<new token>
                async with httpx.AsyncClient() as http:
                    expire = await http.post(
                        f"{server.url}/_emulator/token", json={"expired": True}
                    )
                    expire.raise_for_status()
                emulator.add_deal(BASE + 4)
                await relay.app.state.offline.run_once()
                assert [e["outcome"] for e in app.state.portal.oauth_log] == ["refreshed"]
                health = (await relay.http.get("/healthz")).text
                inbox_text = await _inbox_text(engine)
                pair = await app_tokens.get(engine, LOCAL_APP_CLIENT_ID)
                assert pair is not None

            # the worker: a created task, a redirect and a missing deal, each tried once
            queue = f"secrets-{uuid.uuid4()}"
            async with Bitrix24Client(webhook, rate_per_second=0) as client:
                activities = Bitrix24Activities(client, settings).all()
                deal = int(await client.call("crm.deal.add", {"fields": {"TITLE": "x"}}))
                task = {"key": f"deal:{deal}:t", "deal_id": deal, "title": "t"}
                task |= {"responsible_id": 3, "created_by": 2}
                app.state.portal.inject_fault(1, status=302, location=moved, method="crm.deal.get")
                async with Worker(
                    dev_env.client,
                    task_queue=queue,
                    workflows=[SecretsProbe],
                    activities=activities,
                    workflow_runner=UnsandboxedWorkflowRunner(),
                ):
                    errors = await dev_env.client.execute_workflow(
                        SecretsProbe.run,
                        [("create_task", task), ("fetch_deal", deal), ("fetch_deal", 987654)],
                        id=f"secrets-{uuid.uuid4()}",
                        task_queue=queue,
                    )
    assert errors[0] == "ok" and "PORTAL_MOVED" in errors[1] and errors[2] != "ok"
    logged = lines.getvalue()
    assert "HTTP Request: POST" in logged and "event.offline.get" in logged  # httpx at work
    assert "oauth/token" in logged and "PORTAL_MOVED" in logged
    everything = "\n".join([logged, inbox_text, health, *errors])
    wanted = {
        "webhook secret": WEBHOOK_SECRET,
        "application token": APP_TOKEN,
        "configured access token": LOCAL_APP_ACCESS_TOKEN,
        "client secret": LOCAL_APP_CLIENT_SECRET,
        "configured refresh token": LOCAL_APP_REFRESH_TOKEN,
        "refreshed access token": pair.access_token,
        "refreshed refresh token": pair.refresh_token,
    }
    found = {name for name, value in wanted.items() if value in everything}
    assert found == set(), f"secrets found: {found}"
    assert "***" in logged
