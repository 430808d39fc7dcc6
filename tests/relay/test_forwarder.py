"""The forwarder's retry pass without the web app: a Temporal outage stops the pass early.

Deal IDs of this module: 7_101_000 … 7_101_999.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.relay.forwarder import Forwarder, ForwarderOptions, deal_summary
from salesflow.relay.observations import OFFLINE, SCAN, SOURCE
from salesflow.store import inbox
from salesflow.store.inbox import InboxStatus
from tests.relay.conftest import Emulator, deal_signals, relay_settings, unreachable_temporal
from tests.store.databases import database

BASE = 7_101_000


async def test_a_pass_stops_at_the_first_outage_and_leaves_the_rest_untried(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    deals = [BASE + 1, BASE + 2, BASE + 3]
    for deal_id in deals:
        emulator.add_deal(deal_id)
    settings = relay_settings(emulator.webhook_url)
    async with (
        database("sqlite", tmp_path) as engine,
        Bitrix24Client(emulator.webhook_url, rate_per_second=200, burst=400) as b24,
    ):
        ids = [
            (await inbox.record(engine, event="ONCRMDEALADD", entity_id=d, ts=1, payload={}))[0]
            for d in deals
        ]
        slow_retry = ForwarderOptions(backoff_base=60)
        forwarder = Forwarder(settings, engine, await unreachable_temporal(), b24, slow_retry)

        assert await forwarder.drain() == 1
        rows = [await inbox.get(engine, row_id) for row_id in ids]
        assert [(r.status, r.attempts) for r in rows if r] == [
            ("pending", 1),
            ("pending", 0),
            ("pending", 0),
        ]
        assert forwarder.last_error and "Failed client connect" in forwarder.last_error

        forwarder.temporal_client = dev_env.client
        assert await forwarder.drain() == 2  # the first row waits out its backoff
        assert (await inbox.counts(engine))["forwarded"] == 2
        assert forwarder.last_error is None


async def test_two_safety_net_rows_of_one_change_forwarded_at_once_signal_once(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    """The offline queue and the scan saw the same change of a deal; their rows are forwarded
    concurrently: one signal, the other row is ignored as covered (rows of one deal go one at
    a time, and a signal counts before its mark is written)."""
    deal_id = BASE + 11
    emulator.add_deal(deal_id)
    emulator.portal.deals[deal_id]["DATE_MODIFY"] = "2026-01-05T10:00:00+03:00"
    modified = int(datetime.fromisoformat("2026-01-05T10:00:00+03:00").timestamp())
    settings = relay_settings(emulator.webhook_url)
    async with (
        database("sqlite", tmp_path) as engine,
        Bitrix24Client(emulator.webhook_url, rate_per_second=200, burst=400) as b24,
    ):
        rows = []
        for source, ts in ((OFFLINE, modified), (SCAN, modified - 5)):
            row_id, _ = await inbox.record(
                engine,
                event="ONCRMDEALUPDATE",
                entity_id=deal_id,
                ts=ts,
                payload={SOURCE: source},
                key=f"test:{source}:{deal_id}",
            )
            rows.append(await inbox.claim(engine, row_id))
        forwarder = Forwarder(settings, engine, dev_env.client, b24)
        statuses = await asyncio.gather(*(forwarder.process(row) for row in rows if row))
        await forwarder.close()
    assert sorted(statuses) == [InboxStatus.FORWARDED, InboxStatus.IGNORED]
    assert len(await deal_signals(dev_env.client, deal_id)) == 1


def test_the_static_summary_keeps_within_200_bytes() -> None:
    long = {"TITLE": "Оборудование " * 40, "OPPORTUNITY": "1234567.5", "CURRENCY_ID": "USD"}
    summary = deal_summary(7, long)
    assert len(summary.encode()) <= 200
    assert summary.endswith("…» · 1\u00a0234\u00a0568 USD · «Продажа» №7")
    assert deal_summary(8, {}) == "«» · 0 RUB · «Продажа» №8"
