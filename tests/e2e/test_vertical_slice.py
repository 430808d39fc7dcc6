"""End to end, nothing stubbed: a Bitrix24 deal flows to its first tasks (issue: vertical slice).

Dev server + Bitrix24 emulator + relay + worker; the deal is added through the emulator's REST
API (which POSTs ONCRMDEALADD to the relay) and accepted with the real `salesflow` CLI.
"""

from __future__ import annotations

import httpx

from tests.e2e.stack import running_stack


async def test_r_new_r_iw_deal_added_in_bitrix24_then_accepted_by_cli(dev_env, tmp_path) -> None:
    async with running_stack(dev_env, tmp_path, "slice", first_deal_id=910_000) as stack:
        deal_id = await stack.add_deal(TITLE="Насосы для котельной")
        view = await stack.wait_for_workflow(deal_id)
        assert view.stage == "NEW"
        tag = f"deal:{deal_id}:new:notify"
        notified = await stack.eventually(
            lambda: {n["USER_ID"] for n in stack.portal.notifications if n["TAG"] == tag}
        )
        assert notified == {3, 4}  # R-NEW-1

        code, out = await stack.cli("deal", "accept", str(deal_id), "--manager", "3")
        assert code == 0, out
        assert "IN_WORK" in out
        view = await stack.wait_until(deal_id, lambda v: len(v.open_tasks) == 1)

        tasks = [t for t in stack.portal.tasks.values() if f"D_{deal_id}" in t["UF_CRM_TASK"]]
        assert [t["TITLE"] for t in tasks] == ["Проверить товарные позиции"]
        assert (str(tasks[0]["RESPONSIBLE_ID"]), str(tasks[0]["CREATED_BY"])) == ("3", "2")
        mails = await stack.eventually(
            lambda: [m for m in stack.portal.emails if str(m["OWNER_ID"]) == str(deal_id)]
        )
        assert len(mails) == 1
        assert "Петров Иван Сергеевич, Менеджер по продажам" in mails[0]["BODY"]
        await stack.eventually(lambda: stack.portal.deals[deal_id].get("UF_CRM_KP_DATE"))
        deal = await stack.bitrix24.call("crm.deal.get", {"id": deal_id})
        assert deal["STAGE_ID"] == "C1:PREPARATION" and deal["ASSIGNED_BY_ID"] == "3"
        assert deal["UF_CRM_KP_DATE"]

        code, out = await stack.cli("deal", "status", str(deal_id))
        assert code == 0 and "Проверить товарные позиции" in out

        listed = [wf async for wf in stack.client.list_workflows(f"WorkflowId = 'deal-{deal_id}'")]
        assert listed and listed[0].search_attributes.get("DealStage") == ["IN_WORK"]


async def test_forged_token_gets_401_and_starts_nothing(dev_env, tmp_path) -> None:
    # The reconciliation scan would start the deal legitimately (it is in Bitrix24): off here,
    # so that only the forged POST could have started it.
    off = {"relay": {"scan_interval_seconds": 0}}
    async with running_stack(
        dev_env, tmp_path, "forged", first_deal_id=920_000, overrides=off
    ) as stack:
        stack.portal.handler_url = None
        deal_id = await stack.add_deal()
        body = {
            "event": "ONCRMDEALADD",
            "data[FIELDS][ID]": str(deal_id),
            "ts": "1764300000",
            "auth[domain]": "example.bitrix24.ru",
            "auth[application_token]": "forged",
        }
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{stack.relay.url}/bitrix24/events", data=body)
            health = (await http.get(f"{stack.relay.url}/healthz")).json()
        assert answer.status_code == 401
        listed = [wf async for wf in stack.client.list_workflows(f"WorkflowId = 'deal-{deal_id}'")]
        assert listed == []
        assert sum(health["inbox"].values()) == 0
