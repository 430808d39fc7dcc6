"""Client economy: one throttle, concurrent calls coalesced into batch, ID-cursor lists."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from salesflow.integrations.bitrix24 import (
    BadRequest,
    Bitrix24Client,
    NotFound,
    QueryLimitExceeded,
    ServerError,
)
from salesflow.integrations.bitrix24.coalescer import coalescable
from salesflow.integrations.bitrix24.throttle import PortalThrottle

if TYPE_CHECKING:
    from tests.integrations.bitrix24.conftest import Emulator, StartEmulator


async def _add_deals(b24: Bitrix24Client, count: int) -> list[int]:
    outcome = await b24.batch(
        {f"d{i}": ("crm.deal.add", {"fields": {"TITLE": f"D{i}"}}) for i in range(count)}
    )
    assert outcome.errors == {}
    return [outcome.result[f"d{i}"] for i in range(count)]


async def test_concurrent_calls_share_batch_requests(emu: Emulator) -> None:
    async with Bitrix24Client(emu.webhook, rate_per_second=0) as b24:
        ids = await _add_deals(b24, 5)
        before = emu.portal.requests
        wanted = [ids[i % 5] for i in range(119)] + [424242]
        answers = await asyncio.gather(
            *(b24.call("crm.deal.get", {"id": deal_id}) for deal_id in wanted),
            return_exceptions=True,
        )
        assert emu.portal.requests - before == 3  # 50 + 50 + 20 commands
        assert emu.portal.calls["batch"] >= 3
        assert [int(a["ID"]) for a in answers[:-1]] == wanted[:-1]  # each caller its own
        assert isinstance(answers[-1], NotFound)
        before = emu.portal.requests
        alone = await b24.call_raw("crm.deal.list", {"select": ["ID"]})
        assert emu.portal.requests - before == 1 and emu.portal.calls["crm.deal.list"] == 1
        assert alone.total == 5 and alone.time is not None


async def test_burst_of_300_calls_gets_no_503(start_emulator: StartEmulator) -> None:
    emu = await start_emulator(rate_per_second=50, burst=50)
    async with Bitrix24Client(emu.webhook, rate_per_second=50, burst=50) as b24:
        results = await asyncio.gather(*(b24.call("user.current") for _ in range(300)))
    assert len(results) == 300 and emu.portal.rejected == {}
    assert emu.portal.requests <= 10  # coalesced
    assert emu.portal.batch_calls["user.current"] + emu.portal.calls["user.current"] == 300


async def test_throttle_alone_keeps_300_requests_under_the_bucket(
    start_emulator: StartEmulator,
) -> None:
    emu = await start_emulator(rate_per_second=100, burst=50)
    async with Bitrix24Client(emu.webhook, rate_per_second=100, burst=50, coalesce=False) as b24:
        await asyncio.gather(*(b24.call("user.current") for _ in range(300)))
    assert emu.portal.rejected == {}
    assert emu.portal.calls["user.current"] == 300


async def test_explicit_batches_join_the_queue_unless_halted(emu: Emulator) -> None:
    async with Bitrix24Client(emu.webhook, rate_per_second=0) as b24:
        ids = await _add_deals(b24, 3)
        before = emu.portal.requests
        first, second = await asyncio.gather(
            b24.batch({f"g{i}": ("crm.deal.get", {"id": ids[i]}) for i in range(3)}),
            b24.call("crm.deal.get", {"id": ids[0]}),
        )
        assert emu.portal.requests - before == 1
        assert [int(first.result[f"g{i}"]["ID"]) for i in range(3)] == ids
        assert int(second["ID"]) == ids[0]
        chained = await b24.batch(
            {
                "deal": ("crm.deal.get", {"id": ids[0]}),
                "same": ("crm.deal.get", {"id": "$result[deal][ID]"}),
            }
        )
        assert chained.result["same"]["ID"] == str(ids[0])


async def test_list_all_walks_the_id_cursor(emu: Emulator) -> None:
    async with Bitrix24Client(emu.webhook, rate_per_second=0) as b24:
        ids = []
        for _ in range(5):
            ids += await _add_deals(b24, 46)  # 230 deals
        before = (emu.portal.requests, emu.portal.batch_calls["crm.deal.list"])
        rows = await b24.list_all("crm.deal.list", {"select": ["ID", "TITLE"]})
        assert [int(r["ID"]) for r in rows] == ids
        assert emu.portal.requests - before[0] == 2  # page 1, then 4 chained pages
        assert emu.portal.batch_calls["crm.deal.list"] - before[1] == 4
        sequential = await b24.list_all(
            "crm.deal.list", {"select": ["ID"], "order": {"ID": "DESC"}}, use_batch=False
        )
        assert [int(r["ID"]) for r in sequential] == ids[::-1]
        filtered = await b24.list_all("crm.deal.list", {"filter": {"%TITLE": "D1"}})
        assert {r["TITLE"] for r in filtered} <= {f"D{i}" for i in range(46)}
        assert len(filtered) == 5 * 11  # D1, D10..D19
        items = await b24.batch(
            {
                f"i{i}": ("crm.item.add", {"entityTypeId": 1032, "fields": {"title": f"I{i}"}})
                for i in range(60)
            }
        )
        assert items.errors == {}
        listed = await b24.list_all("crm.item.list", {"entityTypeId": 1032, "select": ["title"]})
        assert [i["title"] for i in listed] == [f"I{i}" for i in range(60)]


async def test_retry_after_on_query_limit(start_emulator: StartEmulator) -> None:
    emu = await start_emulator(rate_per_second=2, burst=1)
    async with Bitrix24Client(emu.webhook, rate_per_second=0) as unthrottled:
        await unthrottled.call("user.current")
        with pytest.raises(QueryLimitExceeded) as limited:
            await unthrottled.call("user.current")
    assert limited.value.retryable and limited.value.retry_after is not None
    assert limited.value.retry_after >= 0.5


def test_what_can_be_coalesced() -> None:
    assert coalescable("crm.deal.get", {"id": 1})
    assert not coalescable("crm.deal.update", {"id": 1, "fields": {}})
    assert not coalescable("crm.deal.list", {"select": []})
    assert not coalescable("crm.deal.get", {"id": "$result[x][ID]"})
    assert not coalescable("batch", {"cmd": {"a": "user.current"}})


async def test_a_failed_request_still_raises_from_batch(emu: Emulator) -> None:
    async with Bitrix24Client(emu.webhook, rate_per_second=0) as b24:
        emu.portal.inject_fault(1, status=503, body="<html>overloaded</html>")
        with pytest.raises(ServerError):
            await b24.batch({"a": ("user.current", {}), "b": ("crm.deal.get", {"id": 1})})
        outcome = await b24.batch({"missing": ("crm.deal.get", {"id": 424242})})
        assert isinstance(outcome.errors["missing"], NotFound)  # a command's own error


async def test_camel_case_type_list_refuses_upper_case_order(emu: Emulator) -> None:
    async with Bitrix24Client(emu.webhook, rate_per_second=0) as b24:
        with pytest.raises(BadRequest) as error:
            await b24.call("crm.type.list", {"order": {"ID": "ASC"}})
        assert error.value.code == "100" and "`I_D`" in error.value.description
        types = await b24.call("crm.type.list", {"filter": {"entityTypeId": 1032}})
        assert [t["title"] for t in types["types"]] == ["Согласование"]


async def test_throttle_counts_requests_in_flight_until_answered() -> None:
    throttle = PortalThrottle(rate=1000.0, capacity=2)
    await throttle.acquire()
    await throttle.acquire()
    third = asyncio.ensure_future(throttle.acquire())
    await asyncio.sleep(0.02)  # draining alone cannot help: both are still in flight
    assert not third.done() and throttle.in_flight == 2
    throttle.release()  # an answer is in: it drains from now on
    await asyncio.wait_for(third, 1.0)
    assert throttle.in_flight == 2
