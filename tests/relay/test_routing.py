"""Routing without REST (issue 16 item 1): the relay knows each deal's pipeline from its earlier
reads and from ONCRMDEALMOVETOCATEGORY, keeps it in the database, and reads a deal only when it
has never seen it; an online event of a known deal still marks its signal, so the same change
found later by a safety net is not signalled twice.

Deal IDs of this module: 7_700_000 … 7_700_999.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.relay.app import EVENTS_PATH
from salesflow.relay.forwarder import Forwarder
from salesflow.relay.observations import OFFLINE, SOURCE
from salesflow.store import deal_pipelines, inbox
from salesflow.store.inbox import InboxStatus
from tests.relay.conftest import (
    SALES_CATEGORY,
    Emulator,
    deal_signals,
    relay_settings,
    running_relay,
    until,
)
from tests.store.databases import database

BASE = 7_700_000
OTHER_CATEGORY = 0  # «Общая»


def reads(emulator: Emulator) -> int:
    return emulator.portal.calls["crm.deal.get"]


async def test_R16_a_known_deal_is_routed_without_a_read_also_after_a_restart(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    deal_id, now = BASE + 1, int(time.time())
    emulator.add_deal(deal_id)
    settings = relay_settings(emulator.webhook_url)
    async with database("sqlite", tmp_path) as engine:
        statuses = []
        async with running_relay(settings, engine, dev_env.client) as relay:
            for event, ts in (("ONCRMDEALADD", now - 30), ("ONCRMDEALUPDATE", now - 20)):
                row_id = (await relay.post(emulator.body(event, deal_id, ts=ts))).json()["id"]
                statuses.append((await relay.settled(row_id)).status)
        read_before_restart = reads(emulator)
        async with running_relay(settings, engine, dev_env.client) as relay:
            body = emulator.body("ONCRMDEALUPDATE", deal_id, ts=now - 10)
            row_id = (await relay.post(body)).json()["id"]
            statuses.append((await relay.settled(row_id)).status)
        stored = await deal_pipelines.get(engine, deal_id)

    assert statuses == ["forwarded"] * 3
    assert read_before_restart == 1 and reads(emulator) == 1  # the first event only
    assert stored is not None and stored.category_id == SALES_CATEGORY
    assert f"№{deal_id}" in stored.summary
    assert len(await deal_signals(dev_env.client, deal_id)) == 3


async def test_R16_a_move_to_another_pipeline_is_learned_from_its_event(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    """crm.item.update moves the deal: the portal sends ONCRMDEALMOVETOCATEGORY (with the new
    CATEGORY_ID) and ONCRMDEALUPDATE; the move is signalled to the running workflow (issue 14:
    it ends there), the update after a move out is ignored, unread."""
    deal_id = BASE + 11
    emulator.add_deal(deal_id)
    settings = relay_settings(emulator.webhook_url)
    async with (
        database("sqlite", tmp_path) as engine,
        running_relay(settings, engine, dev_env.client) as relay,
        Bitrix24Client(emulator.webhook_url, rate_per_second=200, burst=400) as b24,
    ):
        emulator.portal.handler_url = relay.server.url + EVENTS_PATH
        emulator.portal.subscribed_events.add("ONCRMDEALMOVETOCATEGORY")  # docs/PRODUCTION.md

        async def idle() -> None:
            await emulator.server.app.state.events.drain()
            await until(lambda: _no_pending(engine))

        async def move(category: int) -> None:
            fields = {"categoryId": category}
            await b24.call("crm.item.update", {"entityTypeId": 2, "id": deal_id, "fields": fields})
            await idle()

        row_id = (await relay.post(emulator.body("ONCRMDEALADD", deal_id))).json()["id"]
        await relay.settled(row_id)
        await move(OTHER_CATEGORY)
        moved_out = await inbox.recent(engine)
        signals_out = len(await deal_signals(dev_env.client, deal_id))
        await asyncio.sleep(1.1)  # a later second: not a repeat of the first update's event
        await move(SALES_CATEGORY)
        rows = await inbox.recent(engine)

    reasons = {(r.event, r.status, r.reason) for r in moved_out if r.id != row_id}
    assert ("ONCRMDEALMOVETOCATEGORY", "forwarded", None) in reasons
    assert (
        "ONCRMDEALUPDATE",
        "ignored",
        f"deal {deal_id} is in category {OTHER_CATEGORY}, not «Продажа» ({SALES_CATEGORY})"
        " as last learned",
    ) in reasons
    assert signals_out == 2  # the ADD and the move out
    back = [r for r in rows if r.event == "ONCRMDEALUPDATE" and r.status == "forwarded"]
    assert len(back) == 1  # moved back in: signalled
    assert reads(emulator) == 1  # the ADD only
    assert len(await deal_signals(dev_env.client, deal_id)) == 4  # + the move in, its update


async def _no_pending(engine: AsyncEngine) -> bool:
    return (await inbox.counts(engine))["pending"] == 0


async def test_R16_an_unread_signal_covers_the_same_change_seen_later_by_a_safety_net(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    """The online event of a known deal is signalled without a read; its mark is the portal's
    time of sending (from the clock of earlier reads). The offline row of that change, drained
    after the change's second ended, is ignored; a change after the signal is signalled."""
    deal_id = BASE + 21
    emulator.add_deal(deal_id)
    settings = relay_settings(emulator.webhook_url)
    async with (
        database("sqlite", tmp_path) as engine,
        Bitrix24Client(emulator.webhook_url, rate_per_second=200, burst=400) as b24,
    ):
        forwarder = Forwarder(settings, engine, dev_env.client, b24)

        async def forward(event: str, ts: int, key: str, offline: bool = False) -> InboxStatus:
            payload = {SOURCE: OFFLINE} if offline else {}
            row_id, _ = await inbox.record(
                engine, event=event, entity_id=deal_id, ts=ts, payload=payload, key=key
            )
            row = await inbox.claim(engine, row_id)
            assert row is not None
            return await forwarder.process(row)

        now = int(time.time())
        first = await forward("ONCRMDEALADD", now - 5, "add")  # read: the pipeline is learned
        await b24.call("crm.deal.update", {"id": deal_id, "fields": {"TITLE": "changed"}})
        changed = int(time.time())
        await asyncio.sleep(1.1)  # the event comes a moment after the change, as on a portal
        reads_then = reads(emulator)
        online = await forward("ONCRMDEALUPDATE", changed, "online")
        unread = reads(emulator) == reads_then
        same = await forward("ONCRMDEALUPDATE", changed, "offline-same", offline=True)
        await asyncio.sleep(1.1)
        await b24.call("crm.deal.update", {"id": deal_id, "fields": {"TITLE": "later"}})
        later = await forward("ONCRMDEALUPDATE", int(time.time()), "offline-new", offline=True)
        await forwarder.close()

    assert (first, online, unread) == (InboxStatus.FORWARDED, InboxStatus.FORWARDED, True)
    assert (same, later) == (InboxStatus.IGNORED, InboxStatus.FORWARDED)
    assert len(await deal_signals(dev_env.client, deal_id)) == 3
