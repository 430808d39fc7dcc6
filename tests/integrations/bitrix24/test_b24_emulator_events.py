"""Outbound events: exact portal form, after the response, no retry, every attempt recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import httpx

from salesflow.integrations.bitrix24 import php_form

if TYPE_CHECKING:
    from tests.integrations.bitrix24.conftest import Receiver, StartEmulator


async def _call(http: httpx.AsyncClient, webhook: str, method: str, params: dict) -> object:
    response = await http.post(f"{webhook}{method}", json=params)
    assert response.status_code == 200, response.text
    return response.json()["result"]


async def test_deal_events_in_portal_form(
    start_emulator: StartEmulator, receiver: tuple[Receiver, str], http: httpx.AsyncClient
) -> None:
    sink, handler_url = receiver
    emu = await start_emulator(handler_url=handler_url, application_token="tok-123")
    deal_id = await _call(http, emu.webhook, "crm.deal.add", {"fields": {"TITLE": "Событие"}})
    await _call(
        http, emu.webhook, "crm.deal.update", {"id": deal_id, "fields": {"TITLE": "Событие"}}
    )
    await _call(http, emu.webhook, "crm.deal.update", {"id": deal_id, "fields": {"TITLE": "Новое"}})
    await sink.wait_for(2)
    await emu.drain_events()
    assert len(sink.requests) == 2  # the no-op update raised nothing

    added, updated = sink.requests
    assert added["path"] == "/bitrix24/events"
    assert added["headers"]["content-type"] == "application/x-www-form-urlencoded"
    pairs = parse_qsl(added["body"], keep_blank_values=True)
    keys = [key for key, _ in pairs]
    assert keys == [
        "event",
        "event_handler_id",
        "data[FIELDS][ID]",
        "ts",
        "auth[domain]",
        "auth[client_endpoint]",
        "auth[server_endpoint]",
        "auth[member_id]",
        "auth[application_token]",
    ]
    values = dict(pairs)
    assert values["event"] == "ONCRMDEALADD"
    assert values["data[FIELDS][ID]"] == str(deal_id)
    assert values["auth[application_token]"] == "tok-123"
    assert values["auth[domain]"] == f"127.0.0.1:{emu.server.port}"
    assert values["auth[client_endpoint]"] == f"http://127.0.0.1:{emu.server.port}/rest/"
    assert values["auth[server_endpoint]"] == "https://oauth.bitrix.info/rest/"
    assert len(values["auth[member_id]"]) == 32 and values["ts"].isdigit()
    decoded = php_form.decode(updated["body"])
    assert decoded["event"] == "ONCRMDEALUPDATE"
    assert decoded["data"] == {"FIELDS": {"ID": str(deal_id)}}
    assert int(decoded["event_handler_id"]) > 0

    assert [(d.event, d.entity_id, d.status) for d in emu.portal.deliveries] == [
        ("ONCRMDEALADD", deal_id, 200),
        ("ONCRMDEALUPDATE", deal_id, 200),
    ]


async def test_task_events_and_runtime_handler_change(
    start_emulator: StartEmulator, receiver: tuple[Receiver, str], http: httpx.AsyncClient
) -> None:
    sink, handler_url = receiver
    emu = await start_emulator()
    task = {"TITLE": "Задача", "RESPONSIBLE_ID": 3}
    await _call(http, emu.webhook, "tasks.task.add", {"fields": task})  # no handler yet
    await emu.drain_events()
    assert emu.portal.deliveries == []
    response = await http.post(
        f"{emu.url}/_emulator/handler", json={"url": handler_url, "application_token": "t"}
    )
    assert response.status_code == 200
    created = await _call(http, emu.webhook, "tasks.task.add", {"fields": task})
    task_id = int(created["task"]["id"])
    await _call(http, emu.webhook, "tasks.task.complete", {"taskId": task_id})
    await sink.wait_for(2)
    add, update = (php_form.decode(r["body"]) for r in sink.requests)
    assert add["event"] == "ONTASKADD"
    assert add["data"]["FIELDS_BEFORE"] == "undefined"
    assert add["data"]["FIELDS_AFTER"] == {"ID": str(task_id)}
    assert update["event"] == "ONTASKUPDATE"
    assert update["data"]["FIELDS_BEFORE"] == {"ID": str(task_id)}
    assert update["data"]["FIELDS_AFTER"] == {"ID": str(task_id)}
    assert update["auth"]["application_token"] == "t"


async def test_failed_deliveries_are_recorded_not_retried(
    start_emulator: StartEmulator, receiver: tuple[Receiver, str], http: httpx.AsyncClient
) -> None:
    sink, handler_url = receiver
    sink.status = 500
    emu = await start_emulator(handler_url=handler_url)
    deal_id = await _call(http, emu.webhook, "crm.deal.add", {"fields": {"TITLE": "x"}})
    await emu.drain_events()
    emu.portal.handler_url = "http://127.0.0.1:9/unreachable"
    await _call(http, emu.webhook, "crm.deal.update", {"id": deal_id, "fields": {"TITLE": "y"}})
    await emu.drain_events()
    assert len(sink.requests) == 1
    first, second = emu.portal.deliveries
    assert (first.event, first.status, first.error) == ("ONCRMDEALADD", 500, None)
    assert second.event == "ONCRMDEALUPDATE" and second.status is None and second.error
    state = (await http.get(f"{emu.url}/_emulator/state")).json()
    assert [d["event"] for d in state["deliveries"]] == ["ONCRMDEALADD", "ONCRMDEALUPDATE"]


async def test_batch_events_are_delivered_too(
    start_emulator: StartEmulator, receiver: tuple[Receiver, str], http: httpx.AsyncClient
) -> None:
    sink, handler_url = receiver
    emu = await start_emulator(handler_url=handler_url)
    cmd = {f"d{i}": f"crm.deal.add?fields[TITLE]=D{i}" for i in range(3)}
    await _call(http, emu.webhook, "batch", {"cmd": cmd})
    await sink.wait_for(3)
    assert [php_form.decode(r["body"])["event"] for r in sink.requests] == ["ONCRMDEALADD"] * 3


async def _ids_delivered(
    start_emulator: StartEmulator,
    receiver: tuple[Receiver, str],
    http: httpx.AsyncClient,
    **delivery: float,
) -> tuple[list[int], list[tuple[str, str | None]]]:
    sink, handler_url = receiver
    sink.requests.clear()
    emu = await start_emulator(handler_url=handler_url, **delivery)
    emu.portal.subscribed_events = {"ONCRMDEALADD"}
    cmd = {f"d{i}": f"crm.deal.add?fields[TITLE]=D{i}" for i in range(12)}
    await _call(http, emu.webhook, "batch", {"cmd": cmd})
    await emu.drain_events()
    ids = [int(php_form.decode(r["body"])["data"]["FIELDS"]["ID"]) for r in sink.requests]
    return ids, [(d.event, d.error) for d in emu.portal.deliveries]


async def test_delivery_delay_reordering_and_drops_are_seeded(
    start_emulator: StartEmulator, receiver: tuple[Receiver, str], http: httpx.AsyncClient
) -> None:
    in_order, _ = await _ids_delivered(start_emulator, receiver, http, event_delay=0.05)
    assert in_order == sorted(in_order) and len(in_order) == 12
    shuffled, _ = await _ids_delivered(
        start_emulator, receiver, http, event_jitter=0.2, event_seed=7
    )
    assert sorted(shuffled) == sorted(in_order) and shuffled != sorted(shuffled)
    again, _ = await _ids_delivered(start_emulator, receiver, http, event_jitter=0.2, event_seed=7)
    assert [i - min(again) for i in again] == [i - min(shuffled) for i in shuffled]
    kept, attempts = await _ids_delivered(
        start_emulator, receiver, http, event_drop_rate=0.5, event_seed=3
    )
    dropped = [a for a in attempts if a[1] == "dropped"]
    assert 0 < len(kept) < 12 and len(kept) + len(dropped) == 12  # at most once, no retry
