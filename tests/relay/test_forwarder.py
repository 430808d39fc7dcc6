"""The forwarder's retry pass without the web app: a Temporal outage stops the pass early.

Deal IDs of this module: 7_101_000 … 7_101_999.
"""

from __future__ import annotations

from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from integrations.bitrix24.client import Bitrix24Client
from relay.forwarder import Forwarder, ForwarderOptions
from store import inbox
from tests.relay.conftest import Emulator, relay_settings, unreachable_temporal
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
