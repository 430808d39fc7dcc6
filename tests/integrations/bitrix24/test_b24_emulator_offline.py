"""The offline-event queue: event.bind offline, event.offline.get/clear/error/list."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from salesflow.integrations.bitrix24 import php_form

if TYPE_CHECKING:
    from tests.integrations.bitrix24.conftest import Emulator, Receiver, Rest, StartEmulator


async def _bind_offline(app_rest: Rest, *events: str) -> None:
    for event in events:
        status, body = await app_rest("event.bind", {"event": event, "event_type": "offline"})
        assert (status, body["result"]) == (200, True), body


async def _deal(rest: Rest, title: str = "Сделка") -> int:
    _, body = await rest("crm.deal.add", {"fields": {"TITLE": title, "CATEGORY_ID": 1}})
    return int(body["result"])


async def _touch(rest: Rest, deal_id: int, title: str) -> None:
    status, _ = await rest("crm.deal.update", {"id": deal_id, "fields": {"TITLE": title}})
    assert status == 200


def _names(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["EVENT_NAME"], str(e["EVENT_DATA"]["FIELDS"]["ID"])) for e in events]


async def test_one_row_per_object_and_clear_1_deletes(rest: Rest, app_rest: Rest) -> None:
    await _bind_offline(app_rest, "ONCRMDEALADD", "ONCRMDEALUPDATE")
    first, second = await _deal(rest, "A"), await _deal(rest, "B")
    for title in ("A1", "A2", "A3"):
        await _touch(rest, first, title)
    await _touch(rest, second, "B1")
    _, listed = await app_rest("event.offline.list")
    assert listed["total"] == 4  # two adds, one update row per deal
    assert {r["PROCESS_ID"] for r in listed["result"]} == {""}
    _, got = await app_rest("event.offline.get", {"limit": 3})
    body = got["result"]
    assert body["process_id"] is None
    assert _names(body["events"]) == [
        ("ONCRMDEALADD", str(first)),
        ("ONCRMDEALADD", str(second)),
        ("ONCRMDEALUPDATE", str(first)),
    ]
    row = body["events"][2]
    expected = hashlib.md5(
        b'ONCRMDEALUPDATE|{"FIELDS":{"ID":' + str(first).encode() + b"}}"
    ).hexdigest()
    assert row["MESSAGE_ID"] == expected and len(row["MESSAGE_ID"]) == 32
    assert row["EVENT_ADDITIONAL"] == {"user_id": "1"}
    assert row["TIMESTAMP_X"].endswith("+03:00")
    _, rest_of_it = await app_rest("event.offline.get")
    assert _names(rest_of_it["result"]["events"]) == [("ONCRMDEALUPDATE", str(second))]
    _, empty = await app_rest("event.offline.get")
    assert empty["result"]["events"] == []


async def test_clear_0_reserves_under_a_process_id(rest: Rest, app_rest: Rest) -> None:
    await _bind_offline(app_rest, "ONCRMDEALUPDATE")
    deal_id = await _deal(rest)
    await _touch(rest, deal_id, "x")
    _, got = await app_rest("event.offline.get", {"clear": 0})
    process_id = got["result"]["process_id"]
    assert isinstance(process_id, str) and len(process_id) == 32
    [event] = got["result"]["events"]
    # reserved rows are hidden from other readers…
    _, other = await app_rest("event.offline.get", {"clear": 0})
    assert other["result"]["events"] == []
    # …a change meanwhile makes a new row (the reserved one is being processed)
    await _touch(rest, deal_id, "y")
    _, listed = await app_rest("event.offline.list", {"order": {"ID": "ASC"}})
    assert [r["PROCESS_ID"] for r in listed["result"]] == [process_id, ""]
    # re-reading the batch by its process id
    _, again = await app_rest("event.offline.get", {"clear": 0, "process_id": process_id})
    assert again["result"] == {"process_id": process_id, "events": [event]}
    _, cleared = await app_rest(
        "event.offline.clear", {"process_id": process_id, "message_id": [event["MESSAGE_ID"]]}
    )
    assert cleared["result"] is True
    _, listed = await app_rest("event.offline.list")
    assert [r["PROCESS_ID"] for r in listed["result"]] == [""]
    status, bad = await app_rest(
        "event.offline.clear", {"process_id": process_id, "message_id": ["short"]}
    )
    assert (status, bad["error"]) == (400, "ERROR_ARGUMENT")


async def test_error_marking(rest: Rest, app_rest: Rest) -> None:
    await _bind_offline(app_rest, "ONCRMDEALUPDATE")
    ok_deal, bad_deal = await _deal(rest, "ok"), await _deal(rest, "bad")
    await _touch(rest, ok_deal, "ok1")
    await _touch(rest, bad_deal, "bad1")
    _, got = await app_rest("event.offline.get", {"clear": 0})
    process_id = got["result"]["process_id"]
    failed = next(e for e in got["result"]["events"] if e["EVENT_DATA"]["FIELDS"]["ID"] == bad_deal)
    await app_rest(
        "event.offline.error", {"process_id": process_id, "message_id": [failed["MESSAGE_ID"]]}
    )
    await app_rest("event.offline.clear", {"process_id": process_id})
    _, normal = await app_rest("event.offline.get")
    assert normal["result"]["events"] == []
    _, errors = await app_rest("event.offline.get", {"error": 1})
    assert _names(errors["result"]["events"]) == [("ONCRMDEALUPDATE", str(bad_deal))]


async def test_own_changes_are_skipped_and_webhook_is_refused(rest: Rest, app_rest: Rest) -> None:
    await _bind_offline(app_rest, "ONCRMDEALADD")
    status, own = await app_rest("crm.deal.add", {"fields": {"TITLE": "by the app"}})
    assert status == 200
    webhook_deal = await _deal(rest, "by a person")
    _, got = await app_rest("event.offline.get")
    assert _names(got["result"]["events"]) == [("ONCRMDEALADD", str(webhook_deal))]
    assert own["result"] != webhook_deal
    # another connector of the same app is a different consumer: it sees the app's changes
    status, _ = await app_rest(
        "event.bind", {"event": "ONCRMDEALADD", "event_type": "offline", "auth_connector": "c2"}
    )
    await app_rest("crm.deal.add", {"fields": {"TITLE": "again by the app"}})
    _, other = await app_rest("event.offline.get", {"auth_connector": "c2"})
    assert len(other["result"]["events"]) == 1
    status, body = await rest("event.offline.get")
    assert (status, body["error"]) == (403, "WRONG_AUTH_TYPE")
    status, body = await app_rest("event.bind", {"event": "ONCRMDEALADD", "event_type": "offline"})
    assert body["error"] == "ERROR_HANDLER_ALREADY_EXIST"
    _, bindings = await app_rest("event.get")
    assert bindings["result"] == [
        {"event": "ONCRMDEALADD", "connector_id": "", "offline": 1},
        {"event": "ONCRMDEALADD", "connector_id": "c2", "offline": 1},
    ]
    _, unbound = await app_rest("event.unbind", {"event": "ONCRMDEALADD", "event_type": "offline"})
    assert unbound["result"] == {"count": 1}


async def test_extended_mode_is_a_feature(emu: Emulator, rest: Rest, app_rest: Rest) -> None:
    emu.portal.features["rest_offline_extended"] = False
    status, body = await app_rest("event.offline.get", {"clear": 0})
    assert (status, body["error"]) == (403, "WRONG_LICENSE")
    assert (await app_rest("event.offline.get", {"clear": 1}))[0] == 200
    assert (await rest("feature.get", {"CODE": "rest_offline_extended"}))[1]["result"] == {
        "value": "N"
    }


async def test_onofflineevent_and_app_handlers(
    start_emulator: StartEmulator, receiver: tuple[Receiver, str]
) -> None:
    sink, handler_url = receiver
    emu = await start_emulator()
    import httpx

    async with httpx.AsyncClient(timeout=5) as http:

        async def app(method: str, params: dict[str, Any]) -> Any:
            response = await http.post(
                f"{emu.oauth}{method}",
                json=params,
                headers={"Authorization": "Bearer " + "dev-app-access-token"},
            )
            assert response.status_code == 200, response.text
            return response.json()["result"]

        await app("event.bind", {"event": "ONCRMDEALUPDATE", "event_type": "offline"})
        await app(
            "event.bind",
            {"event": "ONOFFLINEEVENT", "handler": handler_url, "options": {"minTimeout": 60}},
        )
        await app("event.bind", {"event": "ONCRMDEALADD", "handler": handler_url})
        webhook = f"{emu.webhook}"
        created = await http.post(f"{webhook}crm.deal.add", json={"fields": {"TITLE": "x"}})
        deal_id = created.json()["result"]
        for title in ("y", "z"):
            await http.post(
                f"{webhook}crm.deal.update", json={"id": deal_id, "fields": {"TITLE": title}}
            )
        await sink.wait_for(2)
        await emu.drain_events()
    bodies = [php_form.decode(r["body"]) for r in sink.requests]
    assert [b["event"] for b in bodies] == ["ONCRMDEALADD", "ONOFFLINEEVENT"]  # throttled
    add, offline = bodies
    assert add["auth"]["access_token"] == "dev-app-access-token"
    assert add["auth"]["application_token"] == emu.portal.application_token
    assert "refresh_token" not in add["auth"] and "refresh_token" in offline["auth"]
    assert add["data"] == {"FIELDS": {"ID": str(deal_id)}}
