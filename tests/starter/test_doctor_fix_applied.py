"""`salesflow doctor --fix-applied`: running deals are told that the 1C configuration was fixed;
a deal waiting on a 1C configuration problem retries its step at once and goes on (dev server:
the deals are found through visibility)."""

from __future__ import annotations

import asyncio

from temporalio.testing import WorkflowEnvironment

from salesflow.starter.doctor import FAIL, OK, Check, _onec_all_right, signal_onec_fixed
from tests.workflows.conftest import deal_running, new_deal
from tests.workflows.pipeline import drive_to, until
from tests.workflows.test_onec_config_retry import MisconfiguredPortal, failure_reports


async def test_r_kp_2_fix_applied_wakes_the_waiting_deal(dev_env: WorkflowEnvironment) -> None:
    portal = MisconfiguredPortal(new_deal(2701))
    async with deal_running(dev_env, portal) as handle:
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: bool(failure_reports(portal)))
        portal.fixed = True  # the retry interval is an hour: only the signal can wake it now
        told = 0
        for _ in range(50):  # visibility lists a started workflow after a moment
            told = await signal_onec_fixed(dev_env.client)
            if portal.kp_loads:
                break
            await asyncio.sleep(0.2)
        view = await until(handle, lambda v: v.kp_round == 1)
    assert told >= 1
    assert [r.key for r in portal.kp_loads] == ["deal:2701:kp:load_from_1c"]
    assert failure_reports(portal) == ["deal:2701:failure:kp:load_from_1c"]
    assert view.stage == "KP"


def test_fix_applied_waits_for_the_1c_checks_not_for_the_nomenclature() -> None:
    nomenclature = Check("1C nomenclature", FAIL, "1 of 3 without 1C nomenclature")
    assert _onec_all_right([Check("1C OData", OK, ""), nomenclature, Check("Bitrix24", FAIL, "")])
    assert not _onec_all_right([Check("1C Catalog_СтавкиНДС", FAIL, "not published")])
