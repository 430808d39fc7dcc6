"""The relay's Prometheus counters: received (by result), settled rows and forwarding lag."""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from tests.relay.conftest import Emulator, Relay

BASE = 7_300_000


async def test_metrics_count_received_rejected_forwarded(
    relay: Relay, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    deal_id = BASE + 1
    emulator.add_deal(deal_id)
    body = emulator.body("ONCRMDEALADD", deal_id)
    first = await relay.post(body)
    await relay.settled(first.json()["id"])
    await relay.post(body)
    await relay.post(emulator.body("ONCRMDEALADD", deal_id, token="forged"))

    text = (await relay.http.get(f"{relay.server.url}/metrics")).text

    def value(line_start: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith(line_start))
        return float(line.rsplit(" ", 1)[1])

    received = "salesflow_relay_events_received_total"
    assert value(f'{received}{{event="ONCRMDEALADD",result="recorded"}}') == 1
    assert value(f'{received}{{event="ONCRMDEALADD",result="duplicate"}}') == 1
    assert value(f'{received}{{event="ONCRMDEALADD",result="rejected"}}') == 1
    assert value('salesflow_relay_rows_settled_total{status="forwarded"}') == 1
    assert value("salesflow_relay_forward_lag_seconds_count") == 1
