"""The portal's limits: leaky bucket per portal and IP, operating time per method (429)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx
import pytest

from emulators.bitrix24.limits import BucketSet, LeakyBucket, OperatingLimits
from salesflow.integrations.bitrix24 import Bitrix24Client, OperationTimeLimit

if TYPE_CHECKING:
    from tests.integrations.bitrix24.conftest import Emulator, StartEmulator


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_bucket_51st_call_is_503_and_two_pass_a_second_later(
    start_emulator: StartEmulator, http: httpx.AsyncClient
) -> None:
    emu = await start_emulator(rate_per_second=2, burst=50)
    url = f"{emu.webhook}user.current"
    statuses = [(await http.post(url, json={})).status_code for _ in range(51)]
    assert statuses == [200] * 50 + [503]
    await asyncio.sleep(1.0)
    later = [(await http.post(url, json={})).status_code for _ in range(2)]
    assert later == [200, 200]


def test_bucket_plans_and_per_ip_buckets() -> None:
    clock = FakeClock()
    buckets = BucketSet(5.0, 250, clock)
    assert all(buckets.try_acquire(source="10.0.0.1") for _ in range(250))
    assert not buckets.try_acquire(source="10.0.0.1")
    assert buckets.try_acquire(source="10.0.0.2")  # another source IP has its own bucket
    clock.now += 1.0
    assert [buckets.try_acquire(source="10.0.0.1") for _ in range(6)] == [True] * 5 + [False]
    single = LeakyBucket(2.0, 50, clock)
    assert all(single.try_acquire() for _ in range(50)) and not single.try_acquire()


async def test_enterprise_plan_option(start_emulator: StartEmulator) -> None:
    emu = await start_emulator(plan="enterprise")
    assert (emu.portal.bucket.rate, emu.portal.bucket.capacity) == (5.0, 250)


def test_operating_baskets_expire_after_ten_minutes() -> None:
    clock = FakeClock()
    limits = OperatingLimits(limit=10.0, clock=clock)
    limits.record("webhook:1", "crm.deal.list", 6.0)
    clock.now += 30  # same 1-minute basket
    limits.record("webhook:1", "crm.deal.list", 6.0)
    blocked = limits.blocked("webhook:1", "crm.deal.list")
    assert blocked is not None and blocked.operating == 12.0
    assert blocked.reset_at == 1_000.0 + 600
    assert limits.blocked("webhook:1", "crm.deal.get") is None  # other methods keep working
    assert limits.blocked("app:other", "crm.deal.list") is None  # and other callers
    clock.now += 61  # a new basket
    limits.record("webhook:1", "crm.deal.list", 1.0)
    clock.now = 1_000.0 + 600  # the first basket dropped out, the second still counts
    state = limits.state("webhook:1", "crm.deal.list")
    assert state.operating == 1.0 and state.reset_at == 1_000.0 + 91 + 600
    assert limits.blocked("webhook:1", "crm.deal.list") is None


async def test_429_after_the_operating_limit(emu: Emulator, http: httpx.AsyncClient) -> None:
    emu.portal.operating.limit = 480
    emu.portal.operating.costs = {"crm.deal.list": 100.0}
    url = f"{emu.webhook}crm.deal.list"
    bodies = [(await http.post(url, json={})).json() for _ in range(5)]
    assert [b["time"]["operating"] for b in bodies] == [100, 200, 300, 400, 500]
    assert all("operating_reset_at" in b["time"] for b in bodies)
    blocked = await http.post(url, json={})  # the 5th crossed 480 and finished; the 6th fails
    assert blocked.status_code == 429
    body = blocked.json()
    assert body["error"] == "OPERATION_TIME_LIMIT"
    assert body["error_description"] == "Method is blocked due to operation time limit."
    assert body["time"]["operating_reset_at"] == bodies[0]["time"]["operating_reset_at"]
    other = await http.post(f"{emu.webhook}crm.deal.fields", json={})
    assert other.status_code == 200
    assert other.json()["time"]["operating"] < 5


async def test_batch_counts_nested_calls_not_the_batch(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    emu.portal.operating.limit = 250
    emu.portal.operating.costs = {"crm.deal.list": 100.0, "batch": 1000.0}
    cmd = {f"l{i}": "crm.deal.list" for i in range(4)} | {"u": "user.current"}
    response = await http.post(f"{emu.webhook}batch", json={"cmd": cmd})
    assert response.status_code == 200
    result = response.json()["result"]
    assert sorted(result["result"]) == ["l0", "l1", "l2", "u"]
    assert result["result_error"]["l3"]["error"] == "OPERATION_TIME_LIMIT"
    assert result["result_time"]["l2"]["operating"] == 300
    assert response.json()["time"]["operating"] == 0
    assert emu.portal.operating.state("webhook:1", "batch").operating == 0


async def test_client_error_carries_retry_after(emu: Emulator) -> None:
    emu.portal.operating.limit = 100
    emu.portal.operating.costs = {"crm.deal.list": 150.0}
    async with Bitrix24Client(emu.webhook, rate_per_second=0) as b24:
        await b24.call("crm.deal.list")
        with pytest.raises(OperationTimeLimit) as blocked:
            await b24.call("crm.deal.list")
        assert blocked.value.retryable and blocked.value.reset_at
        assert blocked.value.retry_after is not None and 590 < blocked.value.retry_after <= 600
        outcome = await b24.batch({"a": ("crm.deal.list", {}), "b": ("user.current", {})})
    assert isinstance(outcome.errors["a"], OperationTimeLimit)
    assert outcome.errors["a"].retry_after is not None and outcome.errors["a"].retry_after > 500
    assert "b" in outcome.result
