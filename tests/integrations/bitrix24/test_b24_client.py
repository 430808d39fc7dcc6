"""Bitrix24Client against the emulator over real HTTP (and a mock transport for odd bodies)."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING

import httpx
import pytest

from salesflow.integrations.bitrix24 import (
    AuthError,
    BadRequest,
    Bitrix24Client,
    MethodNotFound,
    NotFound,
    QueryLimitExceeded,
    ServerError,
)
from salesflow.integrations.bitrix24.client import batch_command, limiter_capacity, list_items

if TYPE_CHECKING:
    from tests.integrations.bitrix24.conftest import Emulator, StartEmulator


@pytest.fixture
async def client(emu: Emulator) -> Bitrix24Client:
    async with Bitrix24Client(emu.webhook, rate_per_second=0) as b24:
        yield b24


async def _seed_deals(client: Bitrix24Client, count: int) -> list[int]:
    commands = {
        f"d{i}": ("crm.deal.add", {"fields": {"TITLE": f"Deal {i}", "CATEGORY_ID": 1}})
        for i in range(count)
    }
    outcome = await client.batch(commands)
    assert outcome.errors == {}
    return [outcome.result[f"d{i}"] for i in range(count)]


async def test_call_and_call_raw(client: Bitrix24Client) -> None:
    deal_id = await client.call(
        "crm.deal.add",
        {
            "fields": {
                "TITLE": "Клиент",
                "OPPORTUNITY": Decimal("1500.50"),
                "UF_CRM_KP_DATE": dt.date(2025, 3, 4),
            }
        },
    )
    deal = await client.call("crm.deal.get", {"id": deal_id})
    assert deal["OPPORTUNITY"] == "1500.50"
    assert deal["UF_CRM_KP_DATE"] == "2025-03-04T00:00:00+03:00"
    raw = await client.call_raw("crm.deal.list", {"select": ["ID"]})
    assert raw.result == [{"ID": str(deal_id)}]
    assert (raw.total, raw.next) == (1, None)
    assert raw.time is not None and raw.time["date_start"].endswith("+03:00")


async def test_typed_errors(emu: Emulator, client: Bitrix24Client) -> None:
    async with Bitrix24Client(emu.webhook.replace("devsecret", "bad"), rate_per_second=0) as bad:
        with pytest.raises(AuthError) as auth:
            await bad.call("crm.deal.list")
    assert (auth.value.code, auth.value.status) == ("INVALID_CREDENTIALS", 401)
    with pytest.raises(MethodNotFound):
        await client.call("crm.deal.nothing")
    with pytest.raises(NotFound) as missing:
        await client.call("crm.deal.get", {"id": 999999})
    assert (missing.value.code, missing.value.description) == ("", "Not found")
    assert not missing.value.retryable
    with pytest.raises(BadRequest) as invalid:
        await client.call("crm.deal.get", {"id": 0})
    assert invalid.value.description == "ID is not defined or invalid."
    with pytest.raises(BadRequest) as core:
        await client.call("tasks.task.add", {"fields": {"RESPONSIBLE_ID": 3}})
    assert (core.value.code, core.value.description) == ("ERROR_CORE", "Task title not specified")
    with pytest.raises(ValueError):
        await client.call("crm.deal.get?id=1")


async def test_html_fault_and_query_limit_are_retryable(
    emu: Emulator, client: Bitrix24Client
) -> None:
    emu.portal.inject_fault(1, status=502, body="<html>Bad gateway</html>")
    with pytest.raises(ServerError) as html:
        await client.call("user.current")
    assert html.value.retryable and html.value.status == 502
    emu.portal.bucket.configure(0.01, 1)
    await client.call("user.current")
    with pytest.raises(QueryLimitExceeded) as limited:
        await client.call("user.current")
    assert limited.value.retryable and limited.value.status == 503


async def test_batch_splits_results_back_by_key(client: Bitrix24Client) -> None:
    ids = await _seed_deals(client, 3)
    commands: dict[str, tuple[str, dict]] = {
        f"get{i}": ("crm.deal.get", {"id": ids[i % 3]}) for i in range(57)
    }
    commands["bad"] = ("crm.deal.get", {"id": 999999})
    commands["list"] = ("crm.deal.list", {"filter": {">=ID": ids[1]}, "select": ["ID"]})
    outcome = await client.batch(commands)
    assert list(outcome.result) == [k for k in commands if k != "bad"]
    assert outcome.result["get55"]["ID"] == str(ids[55 % 3])
    assert isinstance(outcome.errors["bad"], NotFound)
    assert outcome.total == {"list": 2}
    assert outcome.result["list"] == [{"ID": str(ids[1])}, {"ID": str(ids[2])}]


async def test_batch_halt_stops_later_chunks(client: Bitrix24Client, emu: Emulator) -> None:
    commands = {f"c{i}": ("user.current", {}) for i in range(60)}
    commands["c10"] = ("crm.deal.get", {"id": 0})
    outcome = await client.batch(commands, halt=True)
    assert list(outcome.result) == [f"c{i}" for i in range(10)]
    assert list(outcome.errors) == ["c10"]
    assert emu.portal.calls["batch"] == 1


async def test_list_all_over_120_deals(client: Bitrix24Client, emu: Emulator) -> None:
    ids = await _seed_deals(client, 60) + await _seed_deals(client, 60)
    calls_before = emu.portal.calls["crm.deal.list"] + emu.portal.calls["batch"]
    rows = await client.list_all("crm.deal.list", {"select": ["ID"], "order": {"ID": "ASC"}})
    assert [int(r["ID"]) for r in rows] == ids
    assert emu.portal.calls["crm.deal.list"] + emu.portal.calls["batch"] - calls_before == 2
    sequential = await client.list_all("crm.deal.list", {"select": ["ID"]}, use_batch=False)
    assert [int(r["ID"]) for r in sequential] == ids


async def test_list_all_unwraps_tasks(client: Bitrix24Client) -> None:
    commands = {
        f"t{i}": ("tasks.task.add", {"fields": {"TITLE": f"T{i}", "RESPONSIBLE_ID": 3}})
        for i in range(55)
    }
    assert (await client.batch(commands)).errors == {}
    tasks = await client.list_all("tasks.task.list", {"select": ["ID", "TITLE"]})
    assert len(tasks) == 55 and tasks[0]["title"] == "T54"


async def test_burst_through_client_stays_under_the_bucket(
    start_emulator: StartEmulator,
) -> None:
    emu = await start_emulator(rate_per_second=50, burst=50)
    async with Bitrix24Client(emu.webhook, rate_per_second=50, burst=50) as b24:
        results = await asyncio.gather(*(b24.call("user.current") for _ in range(120)))
    assert len(results) == 120
    assert emu.portal.rejected == {}
    # coalesced: the 120 calls ran inside `batch` requests
    assert emu.portal.calls["user.current"] + emu.portal.batch_calls["user.current"] == 120


async def test_transport_failures_become_server_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/timeout"):
            raise httpx.ReadTimeout("slow", request=request)
        if request.url.path.endswith("/html"):
            return httpx.Response(200, text="<html>maintenance</html>")
        return httpx.Response(200, json={"result": {"ok": True}, "time": {}})

    transport = httpx.MockTransport(handler)
    async with Bitrix24Client(
        "https://portal.example/rest/1/x/", transport=transport, rate_per_second=0
    ) as b24:
        assert await b24.call("ok") == {"ok": True}
        with pytest.raises(ServerError) as timeout:
            await b24.call("timeout")
        assert timeout.value.code == "TIMEOUT" and timeout.value.retryable
        with pytest.raises(ServerError) as html:
            await b24.call("html")
        assert "maintenance" in html.value.description


def test_helpers() -> None:
    assert batch_command("crm.deal.list", {"filter": {">ID": 5}, "select": ["ID"]}) == (
        "crm.deal.list?filter%5B%3EID%5D=5&select%5B0%5D=ID"
    )
    assert batch_command("user.current") == "user.current"
    assert list_items({"tasks": [1]}) == [1]
    assert list_items({"items": [2]}) == [2]
    assert list_items([3]) == [3]
    assert list_items([]) == []
    assert limiter_capacity(50) == 45 and limiter_capacity(250) == 225
    assert limiter_capacity(2) == 1
