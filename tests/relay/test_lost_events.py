"""No lost events: the offline-queue drain and the deal scan make up for dropped deliveries and
for changes made while the relay was down, and signal each missed change once.

Real parts only: the Bitrix24 emulator over HTTP (outbound delivery with drops and delays, the
offline queue in the local application's OAuth context), SQLite and PostgreSQL, the shared
Temporal dev server without a worker (the histories show the `bitrix24_event` signals).

A safety-net sighting of a deal's modification is settled by a signal whose read of the deal
came after that modification's second had ended (two changes within one second share their
DATE_MODIFY). Where a test wants exactly one signal, it lets that second pass before the drain
or the scan, as the 30 s / 5 min intervals always do in service.

Deal IDs of this module: 7_200_000 … 7_200_999.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from emulators.asgi_server import free_port
from emulators.bitrix24.seed import LOCAL_APP_ACCESS_TOKEN
from salesflow.config.settings import Settings
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.relay.app import EVENTS_PATH
from salesflow.relay.offline import LIST_AND_CLEAR, PROCESS_CURSOR
from salesflow.store import cursors, inbox
from salesflow.store.db import make_engine
from salesflow.workflows.names import SIGNAL_BITRIX24_EVENT, deal_workflow_id
from tests.relay.conftest import (
    SALES_CATEGORY,
    Emulator,
    Relay,
    deal_signals,
    relay_settings,
    running_relay,
    until,
)
from tests.store.databases import PG_URL, database

BASE = 7_200_000
SECOND = 1.1  # long enough for the second of the last change to be over
IDLE = 3600.0  # loop interval of these tests: the start-up run, then `run_once` by hand


def lost_settings(emulator: Emulator, *, offline: bool = True, scan: bool = True) -> Settings:
    settings = relay_settings(
        emulator.webhook_url,
        offline_interval_seconds=IDLE if offline else 0,
        scan_interval_seconds=IDLE if scan else 0,
        scan_lookback_minutes=60,
        scan_overlap_seconds=60,
    )
    bitrix24 = settings.bitrix24.model_copy(update={"app_access_token": LOCAL_APP_ACCESS_TOKEN})
    return settings.model_copy(update={"bitrix24": bitrix24})


def portal_client(emulator: Emulator) -> Bitrix24Client:
    """Someone working in the portal through the webhook."""
    return Bitrix24Client(emulator.webhook_url, rate_per_second=200, burst=400)


async def started(relay: Relay) -> None:
    """The drain and the scan have made their start-up runs."""
    jobs = [job for job in (relay.app.state.offline, relay.app.state.scan) if job is not None]

    async def ran() -> bool:
        return all(job.runs >= 1 for job in jobs)

    await until(ran)


async def idle(relay: Relay, timeout: float = 15.0) -> None:
    """Every inbox row is settled (forwarded or ignored)."""

    async def settled() -> bool:
        return (await inbox.counts(relay.engine))["pending"] == 0

    await until(settled, timeout)


async def delivered(emulator: Emulator) -> None:
    """The portal has attempted every outbound event it queued."""
    await emulator.server.app.state.events.drain()


async def signal_times(client: Client, deal_id: int) -> list[datetime]:
    handle = client.get_workflow_handle(deal_workflow_id(deal_id))
    found = []
    async for event in handle.fetch_history_events():
        attrs = event.workflow_execution_signaled_event_attributes
        if (
            event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
            and attrs.signal_name == SIGNAL_BITRIX24_EVENT
        ):
            found.append(event.event_time.ToDatetime(tzinfo=UTC))
    return found


async def signal_counts(client: Client, deals: list[int]) -> dict[int, int]:
    return {deal_id: len(await deal_signals(client, deal_id)) for deal_id in deals}


async def add_deals(
    client: Bitrix24Client, emulator: Emulator, first: int, count: int
) -> list[int]:
    emulator.portal.bump_id("deal", first - 1)
    deals = []
    for index in range(count):
        fields = {"CATEGORY_ID": SALES_CATEGORY, "TITLE": f"lost events {index}"}
        deals.append(int(await client.call("crm.deal.add", {"fields": fields})))
    assert deals == list(range(first, first + count))
    return deals


async def rows_total(engine: AsyncEngine) -> int:
    return sum((await inbox.counts(engine)).values())


# ---- (1) outbound delivery drops 30 % --------------------------------------------------------


@pytest.mark.parametrize("offline", [True, False], ids=["drain+scan", "scan-only"])
async def test_dropped_deliveries_are_made_up_and_a_second_scan_adds_nothing(
    offline: bool, tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    portal = emulator.portal
    portal.event_drop_rate, portal.event_rng = 0.3, random.Random(11)
    async with (
        database("sqlite", tmp_path) as engine,
        running_relay(lost_settings(emulator, offline=offline), engine, dev_env.client) as relay,
        portal_client(emulator) as b24,
    ):
        portal.handler_url = relay.server.url + EVENTS_PATH
        await started(relay)
        deals = await add_deals(b24, emulator, BASE + (100 if offline else 200) + 1, 12)
        changed: dict[int, datetime] = {}
        for round_ in range(3):  # deal i changes 1 + i % 3 times
            for index, deal_id in enumerate(deals):
                if index % 3 >= round_:
                    fields = {"TITLE": f"round {round_}"}
                    await b24.call("crm.deal.update", {"id": deal_id, "fields": fields})
                    changed[deal_id] = datetime.now(UTC)
        await delivered(emulator)
        await idle(relay)
        last = {d.entity_id: d for d in portal.deliveries}
        missed = [deal_id for deal_id in deals if last[deal_id].error == "dropped"]
        assert missed, "the seed drops no deal's latest change: pick another"

        await asyncio.sleep(SECOND)
        if offline:
            await relay.app.state.offline.run_once()
        first = await relay.app.state.scan.run_once()
        await idle(relay)

        assert first.seen == len(deals)
        for deal_id in deals:  # R: a signal came after the deal's latest change
            assert max(await signal_times(dev_env.client, deal_id)) >= changed[deal_id], deal_id
        counts, rows = await signal_counts(dev_env.client, deals), await rows_total(engine)

        second = await relay.app.state.scan.run_once()
        await idle(relay)

        assert (second.seen, second.recorded) == (len(deals), 0)
        assert await signal_counts(dev_env.client, deals) == counts
        assert await rows_total(engine) == rows
        health = (await relay.http.get("/healthz")).json()
        assert health["scan"]["cursor"] == second.cursor and health["scan"]["runs"] == 3
        made_up = health["scan"]["rows_recorded"]
        if offline:
            made_up += health["offline_queue"]["rows_recorded"]
        assert made_up >= len(missed)
        assert health["offline_queue"]["enabled"] is offline


# ---- (2) the relay is down while deals change -----------------------------------------------


async def test_changes_made_while_the_relay_was_down_are_signalled_once(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    portal, port = emulator.portal, free_port()
    settings = lost_settings(emulator)
    async with database("sqlite", tmp_path) as engine, portal_client(emulator) as b24:
        async with running_relay(settings, engine, dev_env.client, port) as relay:
            portal.handler_url = relay.server.url + EVENTS_PATH
            await started(relay)
            deals = await add_deals(b24, emulator, BASE + 301, 6)
            await delivered(emulator)
            await asyncio.sleep(SECOND)
            await relay.app.state.offline.run_once()
            await relay.app.state.scan.run_once()
            await idle(relay)
        before = await signal_counts(dev_env.client, deals)
        assert all(before.values())

        changed = deals[:4]  # the relay is stopped: these deliveries fail, the queue keeps them
        for deal_id in [*changed, *changed[:2]]:
            await b24.call("crm.deal.update", {"id": deal_id, "fields": {"COMMENTS": "offline"}})
        await delivered(emulator)
        assert all(d.error for d in portal.deliveries if d.event == "ONCRMDEALUPDATE")
        await asyncio.sleep(SECOND)

        async with running_relay(settings, engine, dev_env.client, port) as relay:
            await started(relay)
            await idle(relay)
            after = await signal_counts(dev_env.client, deals)
            health = (await relay.http.get("/healthz")).json()

    assert {d: after[d] - before[d] for d in deals} == {
        **{deal_id: 1 for deal_id in changed},
        **{deal_id: 0 for deal_id in deals[4:]},
    }
    assert not portal.offline.rows
    # Both nets see each change; which one records it first (and whether the other reopens a
    # row read within the change's second) varies — the signals above are what must be exact.
    assert health["offline_queue"]["rows_recorded"] + health["scan"]["rows_recorded"] >= 4


# ---- (3) offline-queue semantics ------------------------------------------------------------


async def test_an_event_delivered_online_and_queued_offline_is_forwarded_once(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    portal = emulator.portal
    portal.event_delay = SECOND  # as on a portal: the POST comes a moment after the change
    async with (
        database("sqlite", tmp_path) as engine,
        running_relay(lost_settings(emulator, scan=False), engine, dev_env.client) as relay,
        portal_client(emulator) as b24,
    ):
        portal.handler_url = relay.server.url + EVENTS_PATH
        await started(relay)
        (deal_id,) = await add_deals(b24, emulator, BASE + 401, 1)
        await delivered(emulator)
        await idle(relay)  # the deal's workflow runs: a task event can reach it
        fields = {"TITLE": "call the client", "RESPONSIBLE_ID": 3, "UF_CRM_TASK": [f"D_{deal_id}"]}
        await b24.call("tasks.task.add", {"fields": fields})
        await delivered(emulator)
        await idle(relay)
        assert len(portal.offline.rows) == 2  # the same ONCRMDEALADD and ONTASKADD, queued

        drained = await relay.app.state.offline.run_once()
        await idle(relay)
        rows = sorted(await inbox.recent(engine), key=lambda r: r.id or 0)

    assert (drained.read, drained.recorded, drained.cleared) == (2, 2, 2)
    assert not portal.offline.rows
    signals = await deal_signals(dev_env.client, deal_id)
    assert [s["event"] for s in signals] == ["ONCRMDEALADD", "ONTASKADD"]
    assert [(r.event, r.status, r.payload_data().get("source")) for r in rows] == [
        ("ONCRMDEALADD", "forwarded", None),
        ("ONTASKADD", "forwarded", None),
        ("ONCRMDEALADD", "ignored", "offline"),
        ("ONTASKADD", "ignored", "offline"),
    ]
    assert f"deal {deal_id} was signalled after its change" in (rows[2].reason or "")
    assert "was signalled after its change" in (rows[3].reason or "")


async def test_queue_rows_are_cleared_only_after_they_are_recorded(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    portal = emulator.portal
    settings = lost_settings(emulator, scan=False)
    deals = [BASE + 501, BASE + 502, BASE + 503]
    async with database("sqlite", tmp_path) as engine:
        async with running_relay(settings, engine, dev_env.client) as relay:
            await started(relay)  # the offline events are bound now
            for deal_id in deals:
                emulator.add_deal(deal_id)  # made in the portal, known only to the queue
            async with _inbox_unavailable(engine):
                assert await relay.app.state.offline.run_once() is None
                health = (await relay.http.get("/healthz")).json()
            process_id = await cursors.get(engine, PROCESS_CURSOR)

        assert "inbox_event" in health["offline_queue"]["last_error"]
        assert process_id and len(process_id) == 32
        assert [(r.process_id, r.error) for r in portal.offline.rows.values()] == [
            (process_id, 0)
        ] * 3  # reserved, not cleared: the batch waits for the relay

        async with running_relay(settings, engine, dev_env.client) as relay:
            await started(relay)  # the start-up run finishes the reserved batch
            await idle(relay)
            result = relay.app.state.offline.last_result

        assert (result.read, result.recorded, result.cleared) == (3, 3, 3)
        assert not portal.offline.rows
        assert await cursors.get(engine, PROCESS_CURSOR) is None
        assert await signal_counts(dev_env.client, deals) == {d: 1 for d in deals}


async def test_without_the_extended_feature_rows_are_listed_recorded_then_cleared(
    tmp_path: Path,
    emulator: Emulator,
    dev_env: WorkflowEnvironment,
    caplog: pytest.LogCaptureFixture,
) -> None:
    portal = emulator.portal
    portal.features["rest_offline_extended"] = False
    deals = [BASE + 601, BASE + 602]
    async with (
        database("sqlite", tmp_path) as engine,
        running_relay(lost_settings(emulator, scan=False), engine, dev_env.client) as relay,
    ):
        await started(relay)
        for deal_id in deals:
            emulator.add_deal(deal_id)
        unusable = _queue_row_without_id(emulator)
        with caplog.at_level(logging.WARNING, logger="salesflow.relay"):
            result = await relay.app.state.offline.run_once()
        await idle(relay)

    assert (result.mode, result.read, result.recorded, result.cleared) == (LIST_AND_CLEAR, 3, 2, 3)
    assert "lacks rest_offline_extended" in caplog.text
    assert f"'ID': '{unusable}'" in caplog.text  # what was dropped is in the log
    assert not portal.offline.rows
    assert await signal_counts(dev_env.client, deals) == {d: 1 for d in deals}


async def test_a_queue_row_naming_no_object_goes_to_the_error_rows(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    portal = emulator.portal
    async with (
        database("sqlite", tmp_path) as engine,
        running_relay(lost_settings(emulator, scan=False), engine, dev_env.client) as relay,
    ):
        await started(relay)
        emulator.add_deal(BASE + 701)
        unusable = _queue_row_without_id(emulator)
        result = await relay.app.state.offline.run_once()
        await idle(relay)

    assert (result.read, result.recorded, result.cleared, result.errors) == (2, 1, 1, 1)
    assert [(str(r.id), r.error, r.process_id) for r in portal.offline.rows.values()] == [
        (unusable, 1, "")
    ]
    assert len(await deal_signals(dev_env.client, BASE + 701)) == 1


async def test_a_change_within_the_second_of_the_last_signal_is_signalled_again(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    portal, deal_id = emulator.portal, BASE + 751
    second = int(time.time()) + 2  # every change below is stamped with this second
    portal.clock = lambda: float(second)
    async with (
        database("sqlite", tmp_path) as engine,
        running_relay(lost_settings(emulator), engine, dev_env.client) as relay,
        portal_client(emulator) as b24,
    ):
        portal.handler_url = relay.server.url + EVENTS_PATH
        await started(relay)
        await add_deals(b24, emulator, deal_id, 1)
        await delivered(emulator)
        await relay.app.state.offline.run_once()
        await idle(relay)
        signals = len(await deal_signals(dev_env.client, deal_id))
        portal.event_drop_rate = 1.0
        await b24.call("crm.deal.update", {"id": deal_id, "fields": {"TITLE": "same second"}})
        await delivered(emulator)

        again = await relay.app.state.offline.run_once()  # same deal, same second: a duplicate
        await idle(relay)
        after_drain = len(await deal_signals(dev_env.client, deal_id))
        await until(lambda: _past(second + 1), timeout=5)
        rescan = await relay.app.state.scan.run_once()  # read within that second: once more
        await idle(relay)
        after_scan = len(await deal_signals(dev_env.client, deal_id))
        settled = await relay.app.state.scan.run_once()  # read after it: settled
        await idle(relay)

    assert again.recorded == 1 and after_drain == signals + 1
    assert rescan.recorded == 1 and after_scan == signals + 2
    assert settled.recorded == 0
    assert len(await deal_signals(dev_env.client, deal_id)) == signals + 2


async def _past(moment: float) -> bool:
    return time.time() >= moment


# ---- (4) the scan's cursor outlives the relay -----------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_the_scan_cursor_survives_a_restart(
    kind: str, tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    portal = emulator.portal
    first = BASE + (800 if kind == "sqlite" else 900)
    settings = lost_settings(emulator, offline=False)
    portal.clock = lambda: time.time() - 600  # ten minutes ago: older than the overlap
    for deal_id in range(first + 1, first + 4):
        emulator.add_deal(deal_id)
    portal.clock = time.time
    emulator.add_deal(first + 4)
    newest = portal.deals[first + 4]["DATE_MODIFY"]
    await asyncio.sleep(SECOND)

    async with database(kind, tmp_path) as engine:
        async with running_relay(settings, engine, dev_env.client) as relay:
            await started(relay)
            await idle(relay)
            before = relay.app.state.scan.last_result
        async with (
            _reopened(engine) as again,
            running_relay(settings, again, dev_env.client) as relay,
        ):
            stored = (await relay.http.get("/healthz")).json()["scan"]["cursor"]
            await started(relay)
            after = relay.app.state.scan.last_result

    assert (before.seen, before.recorded, before.cursor) == (4, 4, newest)
    assert stored == newest
    assert (after.seen, after.recorded, after.cursor) == (1, 0, newest)  # from the cursor on
    deals = list(range(first + 1, first + 5))
    assert await signal_counts(dev_env.client, deals) == {d: 1 for d in deals}


# ---- helpers ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _inbox_unavailable(engine: AsyncEngine) -> AsyncIterator[None]:
    """The inbox table is gone for a while (a real database failure, not a stub)."""
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE inbox_event RENAME TO inbox_event_away"))
    try:
        yield
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE inbox_event_away RENAME TO inbox_event"))


def _queue_row_without_id(emulator: Emulator) -> str:
    """A queue row whose data names no object; its ID."""
    portal = emulator.portal
    binding = next(b for b in portal.bindings if b.offline and b.event == "ONCRMDEALUPDATE")
    return str(portal.offline.record(binding, "ONCRMDEALUPDATE", {"FIELDS": {}}, 1).id)


@contextlib.asynccontextmanager
async def _reopened(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """A new engine on the same database (the relay process started again)."""
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            schema = (await conn.execute(text("SELECT current_schema()"))).scalar_one()
        options: dict[str, Any] = {"connect_args": {"server_settings": {"search_path": schema}}}
        fresh = make_engine(PG_URL, **options)
    else:
        fresh = make_engine(engine.url.render_as_string(hide_password=False))
    try:
        yield fresh
    finally:
        await fresh.dispose()
