"""Emulator transport: routes, parameter styles, envelopes, auth, limits, faults, admin."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from tests.integrations.bitrix24.conftest import Emulator, Rest, StartEmulator


ISO_MSK = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+03:00$")


async def test_success_envelope_has_result_and_time(rest: Rest) -> None:
    status, body = await rest("crm.deal.add", {"fields": {"TITLE": "Тест", "CATEGORY_ID": 1}})
    assert status == 200
    assert isinstance(body["result"], int)
    assert set(body) == {"result", "time"}
    time_info = body["time"]
    assert {
        "start",
        "finish",
        "duration",
        "processing",
        "date_start",
        "date_finish",
        "operating",
    } <= set(time_info)
    assert ISO_MSK.match(time_info["date_start"]) and ISO_MSK.match(time_info["date_finish"])
    assert time_info["finish"] >= time_info["start"]


async def test_route_variants_and_parameter_styles(emu: Emulator, http: httpx.AsyncClient) -> None:
    base = emu.webhook.rstrip("/")
    created = await http.post(
        f"{base}/CRM.Deal.Add.json", data={"fields[TITLE]": "Форма", "fields[CATEGORY_ID]": "1"}
    )
    deal_id = created.json()["result"]
    for response in (
        await http.get(f"{base}/crm.deal.get", params={"id": deal_id}),
        await http.get(f"{base}/crm.deal.get.json/", params={"ID": deal_id}),
        await http.post(f"{base}/crm.deal.get", json={"id": deal_id}),
        # JSON is merged over the query; malformed JSON counts as no parameters
        await http.post(
            f"{base}/crm.deal.get?id={deal_id}",
            content=b"{oops",
            headers={"Content-Type": "application/json"},
        ),
        await http.post(f"{base}/crm.deal.get?id=999999", json={"id": deal_id}),
        await http.post(f"{base}/crm.deal.get", files={"id": (None, str(deal_id))}),
    ):
        assert response.status_code == 200, response.text
        assert response.json()["result"]["TITLE"] == "Форма"
    assert emu.portal.calls["crm.deal.get"] == 6


async def test_bad_secret_is_401_invalid_credentials(rest: Rest) -> None:
    status, body = await rest("crm.deal.list", secret="wrong")
    assert status == 401
    assert body == {
        "error": "INVALID_CREDENTIALS",
        "error_description": "Invalid request credentials",
    }
    status, _ = await rest("crm.deal.list", user=2)
    assert status == 401


async def test_unknown_method_is_404(rest: Rest) -> None:
    status, body = await rest("crm.deal.frobnicate")
    assert status == 404
    assert body == {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}


async def test_oauth_route_without_token_is_401(emu: Emulator, http: httpx.AsyncClient) -> None:
    response = await http.post(f"{emu.url}/rest/crm.deal.list", json={})
    assert response.status_code == 401
    assert response.json()["error"] == "NO_AUTH_FOUND"


async def test_error_styles(rest: Rest) -> None:
    assert await rest("crm.deal.get", {"id": 987654}) == (
        400,
        {"error": "", "error_description": "Not found"},
    )
    assert await rest("crm.deal.get", {"id": "abc"}) == (
        400,
        {"error": "", "error_description": "ID is not defined or invalid."},
    )
    assert await rest("tasks.task.add", {"fields": {"RESPONSIBLE_ID": 3}}) == (
        400,
        {"error": "ERROR_CORE", "error_description": "Task title not specified<br>"},
    )
    status, body = await rest("tasks.task.add", {})
    assert (status, body["error"]) == (400, "100")
    status, body = await rest("tasks.task.complete", {"taskId": 424242})
    assert (status, body) == (
        400,
        {"error": "0", "error_description": "Action on the task is not allowed"},
    )


async def test_br_tail_is_hex_escaped_like_php(emu: Emulator, http: httpx.AsyncClient) -> None:
    response = await http.post(
        f"{emu.webhook}tasks.task.add", json={"fields": {"RESPONSIBLE_ID": 3}}
    )
    assert "\\u003Cbr\\u003E" in response.text


async def test_bucket_overflow_gives_503(
    start_emulator: StartEmulator, http: httpx.AsyncClient
) -> None:
    emu = await start_emulator(rate_per_second=0.5, burst=50)
    url = f"{emu.webhook}user.current"
    statuses = [(await http.post(url, json={})).status_code for _ in range(51)]
    assert statuses[:50] == [200] * 50
    assert statuses[50] == 503
    response = await http.post(url, json={})
    assert response.json() == {
        "error": "QUERY_LIMIT_EXCEEDED",
        "error_description": "Too many requests",
    }
    assert emu.portal.rejected["user.current"] == 2


async def test_batch_costs_one_bucket_unit(
    start_emulator: StartEmulator, http: httpx.AsyncClient
) -> None:
    emu = await start_emulator(rate_per_second=0.5, burst=3)
    cmd = {f"u{i}": "user.current" for i in range(40)}
    url = f"{emu.webhook}batch"
    statuses = [(await http.post(url, json={"cmd": cmd})).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 503]
    assert emu.portal.batch_calls["user.current"] == 120


async def test_rate_limit_off_allows_bursts(emu: Emulator, http: httpx.AsyncClient) -> None:
    url = f"{emu.webhook}user.current"
    responses = await asyncio.gather(*(http.post(url, json={}) for _ in range(80)))
    assert {r.status_code for r in responses} == {200}


async def test_injected_faults_then_recovery(emu: Emulator, http: httpx.AsyncClient) -> None:
    await http.post(f"{emu.url}/_emulator/faults", json={"count": 2, "status": 503})
    url = f"{emu.webhook}user.current"
    first, second, third = [await http.post(url, json={}) for _ in range(3)]
    assert first.status_code == second.status_code == 503
    assert first.headers["content-type"].startswith("text/html")
    assert "<html>" in first.text
    assert third.status_code == 200
    emu.portal.inject_fault(1, status=500, body="<h1>oops</h1>", method="crm.deal.list")
    assert (await http.post(url, json={})).status_code == 200
    assert (await http.post(f"{emu.webhook}crm.deal.list", json={})).status_code == 500


async def test_admin_state_handler_and_reset(
    emu: Emulator, http: httpx.AsyncClient, rest: Rest
) -> None:
    await rest("crm.deal.add", {"fields": {"TITLE": "Для сброса"}})
    state = (await http.get(f"{emu.url}/_emulator/state")).json()
    assert state["deals"][0]["TITLE"] == "Для сброса"
    assert state["calls"] == {"crm.deal.add": 1}
    settings = await http.post(
        f"{emu.url}/_emulator/handler",
        json={"url": "http://127.0.0.1:9/h", "application_token": "t2"},
    )
    assert settings.json()["handler_url"] == "http://127.0.0.1:9/h"
    assert emu.portal.application_token == "t2"
    limited = await http.post(
        f"{emu.url}/_emulator/rate-limit", json={"rate_per_second": 5, "burst": 250}
    )
    assert limited.json() == {"rate_per_second": 5.0, "burst": 250}
    await http.post(f"{emu.url}/_emulator/reset")
    state = (await http.get(f"{emu.url}/_emulator/state")).json()
    assert state["deals"] == [] and state["calls"] == {}
    assert len(emu.portal.users) == 12


async def test_service_methods(rest: Rest) -> None:
    _, scope = await rest("scope")
    assert "crm" in scope["result"] and "task" in scope["result"]
    _, methods = await rest("methods")
    assert {"crm.deal.add", "batch", "tasks.task.add"} <= set(methods["result"])
    _, profile = await rest("profile")
    assert profile["result"]["ADMIN"] is True


async def test_hostile_parameters_are_a_400(emu: Emulator, http: httpx.AsyncClient) -> None:
    deep = "filter" + "[x]" * 40 + "=1"
    response = await http.get(f"{emu.webhook}crm.deal.list?{deep}")
    assert response.status_code == 400
    assert response.json()["error"] == "ERROR_ARGUMENT"
