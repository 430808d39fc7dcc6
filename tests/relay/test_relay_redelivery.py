"""The same update body delivered again (issue 11, finding 8): recognised and not signalled
twice, unless it may be a second change within the second of the last signal's read."""

from __future__ import annotations

import time

from temporalio.testing import WorkflowEnvironment

from salesflow.store import inbox
from tests.relay.conftest import Emulator, Relay, deal_signals, until

BASE = 7_600_000


async def _stays_forwarded(relay: Relay, row_id: int) -> bool:
    return (await relay.row(row_id)).status == inbox.InboxStatus.FORWARDED.value


async def test_five_identical_update_posts_make_one_signal(
    relay: Relay, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    deal_id = BASE + 1
    emulator.add_deal(deal_id)
    body = emulator.body("ONCRMDEALUPDATE", deal_id, ts=int(time.time()) - 10)

    first = await relay.post(body)
    row_id = first.json()["id"]
    await relay.settled(row_id)
    again = []
    for _ in range(4):  # one by one, each after the last was forwarded
        again.append(await relay.post(body))
        await relay.settled(row_id)
    await relay.settled(row_id)

    assert [a.json() for a in again] == [{"status": "duplicate", "id": row_id}] * 4
    assert len(await deal_signals(dev_env.client, deal_id)) == 1
    assert (await relay.row(row_id)).reason is None


async def test_repeats_within_the_events_second_are_read_again_once_after_it(
    relay: Relay, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    """A repeat may be a second change within the second of the first one (Bitrix24 stamps by
    the second and sends only the ID): the deal is read once more after that second — once,
    however many repeats came — and a repeat after that read is a duplicate."""
    deal_id = BASE + 2
    emulator.add_deal(deal_id)
    second = int(time.time()) + 2  # every POST below comes within it or before it
    body = emulator.body("ONCRMDEALUPDATE", deal_id, ts=second)

    first = await relay.post(body)
    row_id = first.json()["id"]
    await relay.settled(row_id)
    repeats = [await relay.post(body) for _ in range(4)]
    await until(lambda: _after(second + 1), timeout=6)
    await until(lambda: _stays_forwarded(relay, row_id), timeout=5)
    signals_then = len(await deal_signals(dev_env.client, deal_id))
    late = await relay.post(body)
    await relay.settled(row_id)

    assert {r.json()["status"] for r in repeats} == {"duplicate"}
    assert late.json()["status"] == "duplicate"
    assert signals_then == 2
    assert len(await deal_signals(dev_env.client, deal_id)) == 2


async def _after(moment: float) -> bool:
    return time.time() >= moment
