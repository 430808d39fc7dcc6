"""The relay end to end: emulator events in, inbox rows, deal workflows on the dev server.

No worker runs: a signal-with-start creates the execution, whose history shows the signal.
Deal IDs of this module: 7_100_000 … 7_100_999 (the dev server is shared by the session).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from salesflow.store import inbox
from salesflow.store.inbox import InboxEvent
from salesflow.workflows.names import DEAL_ID, deal_workflow_id
from tests.relay.conftest import (
    SALES_CATEGORY,
    Emulator,
    Relay,
    deal_signals,
    relay_settings,
    running_relay,
    unreachable_temporal,
    until,
    workflow_exists,
)
from tests.store.databases import database

BASE = 7_100_000


async def test_a_forged_token_is_refused_and_nothing_is_recorded(
    relay: Relay, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    deal_id = BASE + 1
    emulator.add_deal(deal_id)

    forged = await relay.post(emulator.body("ONCRMDEALADD", deal_id, token="forged"))
    missing = await relay.post(emulator.body("ONCRMDEALADD", deal_id).split(b"&auth")[0])

    assert (forged.status_code, missing.status_code) == (401, 401)
    assert sum((await inbox.counts(relay.engine)).values()) == 0
    await asyncio.sleep(0.3)  # a wrongly started forward would have landed by now
    assert not await workflow_exists(dev_env.client, deal_id)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_portal_event_starts_the_deal_workflow_with_its_signal(
    kind: str, tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    deal_id = BASE + (10 if kind == "sqlite" else 11)
    settings = relay_settings(emulator.webhook_url)
    async with (
        database(kind, tmp_path) as engine,
        running_relay(settings, engine, dev_env.client) as relay,
    ):
        # The portal itself sends ONCRMDEALADD when the deal is created over REST.
        emulator.portal.handler_url = relay.server.url + "/bitrix24/events"
        emulator.portal.bump_id("deal", deal_id - 1)
        async with emulator_client(emulator) as b24:
            fields = {"CATEGORY_ID": 1, "TITLE": "Поставка насосов", "OPPORTUNITY": 640000}
            assert await b24.call("crm.deal.add", {"fields": fields}) == deal_id

        await until(lambda: _has_rows(relay, 1))
        (row,) = await inbox.recent(engine)
        row = await relay.settled(row.id or 0)

        assert emulator.portal.deliveries[-1].status == 200
        assert (row.event, row.entity_id, row.status) == ("ONCRMDEALADD", deal_id, "forwarded")
        assert row.forwarded_at is not None and "auth" not in row.payload_data()
        handle = dev_env.client.get_workflow_handle(deal_workflow_id(deal_id))
        description = await handle.describe()
        assert description.workflow_type == "DealWorkflow"
        assert description.task_queue == "sales-pipeline"
        assert description.typed_search_attributes[DEAL_ID] == deal_id
        # The Web UI's list and page (#10): the deal as first read, a link without the secret.
        summary = await description.static_summary()
        assert summary == f"«Поставка насосов» · 640\u00a0000 RUB · «Продажа» №{deal_id}"
        details = await description.static_details() or ""
        assert f"/crm/deal/details/{deal_id}/" in details and "/rest/" not in details
        signals = await deal_signals(dev_env.client, deal_id)
        assert signals == [{"event": "ONCRMDEALADD", "entity_id": deal_id, "ts": row.ts}]


async def test_the_same_body_twice_makes_one_row_and_one_signal(
    relay: Relay, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    deal_id = BASE + 20
    emulator.add_deal(deal_id)
    body = emulator.body("ONCRMDEALADD", deal_id)

    first = await relay.post(body)
    await relay.settled(first.json()["id"])
    again = await asyncio.gather(*(relay.post(body) for _ in range(5)))

    assert first.json()["status"] == "recorded"
    assert {r.json()["status"] for r in again} == {"duplicate"}
    assert {r.json()["id"] for r in again} == {first.json()["id"]}
    assert await inbox.counts(relay.engine) == {
        "pending": 0,
        "forwarded": 1,
        "ignored": 0,
        "failed": 0,
    }
    assert len(await deal_signals(dev_env.client, deal_id)) == 1


async def test_concurrent_redeliveries_make_one_signal(
    relay: Relay, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    deal_id = BASE + 25
    emulator.add_deal(deal_id)
    body = emulator.body("ONCRMDEALADD", deal_id)

    answers = await asyncio.gather(*(relay.post(body) for _ in range(8)))

    statuses = sorted(r.json()["status"] for r in answers)
    assert statuses == ["duplicate"] * 7 + ["recorded"]
    await relay.settled(answers[0].json()["id"])
    assert len(await deal_signals(dev_env.client, deal_id)) == 1


async def test_a_deal_of_another_pipeline_is_recorded_and_ignored(
    relay: Relay, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    deal_id = BASE + 30
    emulator.add_deal(deal_id, category_id=0)

    answer = await relay.post(emulator.body("ONCRMDEALUPDATE", deal_id))
    row = await relay.settled(answer.json()["id"])

    assert answer.status_code == 200 and answer.json()["status"] == "recorded"
    assert row.status == "ignored"
    assert row.reason == f"deal {deal_id} is in category 0, not «Продажа» ({SALES_CATEGORY})"
    assert not await workflow_exists(dev_env.client, deal_id)


async def test_a_deal_missing_in_bitrix24_is_ignored(relay: Relay, emulator: Emulator) -> None:
    answer = await relay.post(emulator.body("ONCRMDEALUPDATE", BASE + 35))
    row = await relay.settled(answer.json()["id"])
    assert (row.status, row.reason) == ("ignored", f"deal {BASE + 35} not found in Bitrix24")


async def test_events_the_pipeline_does_not_use_are_ignored(
    relay: Relay, emulator: Emulator
) -> None:
    answer = await relay.post(emulator.body("ONCRMLEADADD", BASE + 38))
    row = await relay.settled(answer.json()["id"])
    assert (row.status, row.reason) == ("ignored", "ONCRMLEADADD is not used by the pipeline")


async def test_a_closed_deal_workflow_is_not_restarted(
    relay: Relay, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    deal_id = BASE + 40
    emulator.add_deal(deal_id)
    started = await relay.post(emulator.body("ONCRMDEALADD", deal_id, ts=1))
    await relay.settled(started.json()["id"])
    handle = dev_env.client.get_workflow_handle(deal_workflow_id(deal_id))
    first_run = (await handle.describe()).run_id
    await handle.terminate("deal closed")

    later = await relay.post(emulator.body("ONCRMDEALUPDATE", deal_id, ts=2))
    row = await relay.settled(later.json()["id"])

    assert (row.status, row.reason) == ("ignored", "deal workflow closed")
    after = await handle.describe()
    assert (after.run_id, after.status) == (first_run, WorkflowExecutionStatus.TERMINATED)


async def test_a_task_event_signals_the_running_deal_workflow(
    relay: Relay, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    deal_id, task_id = BASE + 50, BASE + 51
    emulator.add_deal(deal_id)
    emulator.add_task(task_id, ["C_7", f"D_{deal_id}"])
    started = await relay.post(emulator.body("ONCRMDEALADD", deal_id, ts=10))
    await relay.settled(started.json()["id"])

    answer = await relay.post(emulator.body("ONTASKUPDATE", task_id, ts=11))
    row = await relay.settled(answer.json()["id"])

    assert row.status == "forwarded"
    assert await deal_signals(dev_env.client, deal_id) == [
        {"event": "ONCRMDEALADD", "entity_id": deal_id, "ts": 10},
        {"event": "ONTASKUPDATE", "entity_id": task_id, "ts": 11},
    ]


async def test_a_task_without_a_running_deal_workflow_is_ignored(
    relay: Relay, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    deal_id, task_id, loose_task = BASE + 60, BASE + 61, BASE + 62
    emulator.add_deal(deal_id)
    emulator.add_task(task_id, [f"D_{deal_id}"])
    emulator.add_task(loose_task, [])

    bound = await _settle(relay, emulator.body("ONTASKADD", task_id))
    loose = await _settle(relay, emulator.body("ONTASKADD", loose_task))
    gone = await _settle(relay, emulator.body("ONTASKUPDATE", BASE + 63))

    assert (bound.status, bound.reason) == ("ignored", f"no running deal workflow (deal-{deal_id})")
    assert (loose.status, loose.reason) == ("ignored", f"task {loose_task} is not bound to a deal")
    assert (gone.status, gone.reason) == ("ignored", f"task {BASE + 63} not found in Bitrix24")
    assert not await workflow_exists(dev_env.client, deal_id)


async def test_while_temporal_is_unreachable_the_row_waits_then_goes(
    relay: Relay, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    deal_id = BASE + 70
    emulator.add_deal(deal_id)
    forwarder = relay.app.state.forwarder
    forwarder.temporal_client = await unreachable_temporal()

    answer = await relay.post(emulator.body("ONCRMDEALADD", deal_id))
    row_id = answer.json()["id"]
    await until(lambda: _attempted(relay, row_id, 2))
    waiting = await relay.row(row_id)
    health = (await relay.http.get("/healthz")).json()

    assert answer.status_code == 200 and waiting.status == "pending"
    assert "Failed client connect" in (waiting.reason or "")
    assert health["inbox"]["pending"] == 1 and health["forwarder"]["last_error"]
    assert not await workflow_exists(dev_env.client, deal_id)

    forwarder.temporal_client = dev_env.client
    row = await relay.settled(row_id)

    assert row.status == "forwarded" and row.reason is None
    assert len(await deal_signals(dev_env.client, deal_id)) == 1


async def test_bitrix24_outage_is_retried(
    relay: Relay, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    deal_id = BASE + 75
    emulator.add_deal(deal_id)
    emulator.portal.inject_fault(2, status=503, method="crm.deal.get")

    answer = await relay.post(emulator.body("ONCRMDEALADD", deal_id))
    row = await relay.settled(answer.json()["id"])

    assert (row.status, row.attempts) == ("forwarded", 3)
    assert await workflow_exists(dev_env.client, deal_id)


async def test_a_restarted_relay_forwards_what_it_recorded_before(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    deal_id = BASE + 80
    emulator.add_deal(deal_id)
    settings = relay_settings(emulator.webhook_url)
    async with database("sqlite", tmp_path) as engine:
        async with running_relay(settings, engine, await unreachable_temporal()) as first:
            answer = await first.post(emulator.body("ONCRMDEALADD", deal_id))
            row_id = answer.json()["id"]
            await until(lambda: _attempted(first, row_id, 1))
        assert (await first.row(row_id)).status == "pending"

        async with running_relay(settings, engine, dev_env.client) as second:
            row = await second.settled(row_id)

    assert row.status == "forwarded"
    assert len(await deal_signals(dev_env.client, deal_id)) == 1


async def test_bad_requests_name_what_is_wrong(relay: Relay, emulator: Emulator) -> None:
    body = emulator.body("ONCRMDEALADD", BASE + 90).replace(b"&ts=", b"&tz=")

    missing_ts = await relay.post(body)
    not_a_form = await relay.http.post("/bitrix24/events", json={"event": "ONCRMDEALADD"})

    assert missing_ts.status_code == 400 and missing_ts.json()["detail"] == "missing ts"
    assert not_a_form.status_code == 415
    assert sum((await inbox.counts(relay.engine)).values()) == 0


async def test_healthz_reports_the_database_and_the_inbox(relay: Relay) -> None:
    answer = await relay.http.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ok",
        "database": "ok",
        "temporal": "ok",
        "portal": "ok",
        "inbox": {"pending": 0, "forwarded": 0, "ignored": 0, "failed": 0},
        "forwarder": {"last_error": None},
        "offline_queue": {"enabled": False},
        "scan": {"enabled": False},
    }


async def _settle(relay: Relay, body: bytes) -> InboxEvent:
    answer = await relay.post(body)
    assert answer.status_code == 200, answer.text
    return await relay.settled(answer.json()["id"])


async def _has_rows(relay: Relay, count: int) -> bool:
    return sum((await inbox.counts(relay.engine)).values()) >= count


async def _attempted(relay: Relay, row_id: int, attempts: int) -> bool:
    row = await relay.row(row_id)
    return row.attempts >= attempts and row.claimed_until is None


def emulator_client(emulator: Emulator):  # type: ignore[no-untyped-def]
    from salesflow.integrations.bitrix24.client import Bitrix24Client

    return Bitrix24Client(emulator.webhook_url, rate_per_second=200, burst=400)
