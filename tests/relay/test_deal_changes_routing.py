"""Issue 14 item 7 at the relay: a deleted deal and a deal moved out of «Продажа» are signalled
to their running workflow (which ends there, tests/workflows/test_deal_changes.py), never
starting one; a deal moved into «Продажа» starts its workflow — a new run after the one that
ended when the deal left.

Deal IDs of this module: 7_710_000 … 7_710_999.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from salesflow.config.snapshot import build_rules
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.relay.app import EVENTS_PATH
from salesflow.relay.forwarder import REOPENED
from salesflow.store import inbox
from salesflow.workflows.models import Bitrix24Event, DealInput, DealView, Stage
from salesflow.workflows.names import SIGNAL_BITRIX24_EVENT, WORKFLOW_TYPE, deal_workflow_id
from tests.relay.conftest import (
    SALES_CATEGORY,
    Emulator,
    deal_signals,
    relay_settings,
    running_relay,
    until,
)
from tests.store.databases import database

BASE = 7_710_000
OTHER_CATEGORY = 0  # «Общая»


async def _no_pending(engine: AsyncEngine) -> bool:
    return (await inbox.counts(engine))["pending"] == 0


async def test_r_x8_relay_routes_delete_and_moves_out_and_in(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    deleted, moved, never = BASE + 1, BASE + 2, BASE + 3
    for deal_id in (deleted, moved, never):
        emulator.add_deal(deal_id)
    settings = relay_settings(emulator.webhook_url)
    async with (
        database("sqlite", tmp_path) as engine,
        running_relay(settings, engine, dev_env.client) as relay,
        Bitrix24Client(emulator.webhook_url, rate_per_second=200, burst=400) as b24,
    ):
        emulator.portal.handler_url = relay.server.url + EVENTS_PATH
        emulator.portal.subscribed_events |= {"ONCRMDEALMOVETOCATEGORY", "ONCRMDEALDELETE"}

        async def idle() -> None:
            await emulator.server.app.state.events.drain()
            await until(lambda: _no_pending(engine))

        async def move(deal_id: int, category: int) -> None:
            fields = {"categoryId": category}
            await b24.call("crm.item.update", {"entityTypeId": 2, "id": deal_id, "fields": fields})
            await idle()

        for deal_id in (deleted, moved):
            row_id = (await relay.post(emulator.body("ONCRMDEALADD", deal_id))).json()["id"]
            await relay.settled(row_id)
        await b24.call("crm.deal.delete", {"id": deleted})
        await b24.call("crm.deal.delete", {"id": never})  # no workflow: none is started
        await idle()
        await move(moved, OTHER_CATEGORY)
        first = dev_env.client.get_workflow_handle(deal_workflow_id(moved))
        first_run = (await first.describe()).run_id
        await first.terminate(reason="test: the workflow ended as the deal left")
        await asyncio.sleep(1.1)  # a later second: not a repeat of the move out's update event
        await move(moved, SALES_CATEGORY)
        rows = await inbox.recent(engine)
        second = await dev_env.client.get_workflow_handle(deal_workflow_id(moved)).describe()

    def settled(deal_id: int, event: str) -> list[tuple[str, str | None]]:
        return [(r.status, r.reason) for r in rows if r.entity_id == deal_id and r.event == event]

    assert settled(deleted, "ONCRMDEALDELETE") == [("forwarded", None)]
    assert [s["event"] for s in await deal_signals(dev_env.client, deleted)] == [
        "ONCRMDEALADD",
        "ONCRMDEALDELETE",
    ]
    assert settled(never, "ONCRMDEALDELETE") == [
        ("ignored", f"no running deal workflow ({deal_workflow_id(never)})")
    ]
    assert settled(moved, "ONCRMDEALMOVETOCATEGORY") == [("forwarded", None)] * 2
    # moved in: a new run, started by the move and signalled by the update after it
    assert second.run_id != first_run
    assert [s["event"] for s in await deal_signals(dev_env.client, moved)] == [
        "ONCRMDEALMOVETOCATEGORY",
        "ONCRMDEALUPDATE",
    ]


@workflow.defn(name=WORKFLOW_TYPE)
class ClosedDeal:
    """Stands in for `DealWorkflow`: a first run closes at WON, a reopened run waits."""

    @workflow.run
    async def run(self, inp: DealInput) -> DealView:
        if inp.reopened_from is not None:
            await workflow.wait_condition(lambda: False)
        return DealView(
            deal_id=inp.deal_id,
            stage=Stage.WON,
            manager_id=3,
            amount=0.0,
            document_set=None,
            open_tasks=[],
            deadlines=[],
            payment_schedule=[],
            history=[],
        )

    @workflow.signal(name=SIGNAL_BITRIX24_EVENT)
    def bitrix24_event(self, event: Bitrix24Event) -> None:
        pass


async def _first_input(client: Client, deal_id: int) -> dict:
    handle = client.get_workflow_handle(deal_workflow_id(deal_id))
    async for event in handle.fetch_history_events():
        attrs = event.workflow_execution_started_event_attributes
        return json.loads(attrs.input.payloads[0].data)
    raise AssertionError("no history")


async def test_r_won_relay_starts_a_new_run_for_a_deal_moved_back_from_won(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    reopened, still_won = BASE + 11, BASE + 12
    queue = f"closed-deals-{uuid.uuid4().hex[:6]}"
    base = relay_settings(emulator.webhook_url)
    settings = base.model_copy(
        update={"temporal": base.temporal.model_copy(update={"task_queue": queue})}
    )
    rules = build_rules(settings)
    async with (
        database("sqlite", tmp_path) as engine,
        Worker(
            dev_env.client,
            task_queue=queue,
            workflows=[ClosedDeal],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ),
        running_relay(settings, engine, dev_env.client) as relay,
    ):
        for deal_id, stage in ((reopened, "SHIPPED"), (still_won, "WON")):
            emulator.add_deal(deal_id)
            emulator.portal.deals[deal_id]["STAGE_ID"] = rules.stages[stage]
            first = await dev_env.client.start_workflow(
                WORKFLOW_TYPE,
                DealInput(deal_id=deal_id, rules=rules),
                id=deal_workflow_id(deal_id),
                task_queue=queue,
                result_type=DealView,
            )
            assert (await first.result()).stage == Stage.WON
        rows = []
        for deal_id in (reopened, still_won):
            row_id = (await relay.post(emulator.body("ONCRMDEALUPDATE", deal_id))).json()["id"]
            rows.append(await relay.settled(row_id))
        started = await _first_input(dev_env.client, reopened)
        await dev_env.client.get_workflow_handle(deal_workflow_id(reopened)).terminate()

    assert [(r.status, r.reason) for r in rows] == [
        ("forwarded", REOPENED),
        ("ignored", "deal workflow closed"),
    ]
    assert started["reopened_from"] == "WON"
