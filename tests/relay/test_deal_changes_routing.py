"""Issue 14 item 7 at the relay: a deleted deal and a deal moved out of «Продажа» are signalled
to their running workflow (which ends there, tests/workflows/test_deal_changes.py), never
starting one; a deal moved into «Продажа» starts its workflow — a new run after the one that
ended when the deal left.

Deal IDs of this module: 7_710_000 … 7_710_999.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.relay.app import EVENTS_PATH
from salesflow.store import inbox
from salesflow.workflows.names import deal_workflow_id
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
