"""crm.item.* for «Согласование» (1032) as an approval workflow uses it, and deals as items."""

from __future__ import annotations

from typing import TYPE_CHECKING

from salesflow.integrations.bitrix24 import Bitrix24Client, NotFound

if TYPE_CHECKING:
    from tests.integrations.bitrix24.conftest import Emulator, Rest

SPA = 1032


async def test_approval_item_lifecycle(emu: Emulator) -> None:
    async with Bitrix24Client(emu.webhook, rate_per_second=0) as b24:
        deal_id = await b24.call("crm.deal.add", {"fields": {"TITLE": "КП", "CATEGORY_ID": 1}})
        marker = f"deal:{deal_id}:approval:1"
        # idempotency lookup first: nothing yet
        found = await b24.call(
            "crm.item.list", {"entityTypeId": SPA, "filter": {"=xmlId": marker}, "select": ["id"]}
        )
        assert found == {"items": []}
        created = await b24.call(
            "crm.item.add",
            {
                "entityTypeId": SPA,
                "fields": {
                    "title": "Согласование КП",
                    "parentId2": deal_id,
                    "xmlId": marker,
                    "assignedById": 2,
                    "opportunity": 1500.5,
                    "categoryId": 3,
                    "stageId": "DT1032_3:NEW",
                    "ufCrm1_1700000001": "нужна скидка",
                },
            },
        )
        item = created["item"]
        assert item["id"] > 0 and isinstance(item["id"], int)
        assert (item["parentId2"], item["xmlId"], item["assignedById"]) == (deal_id, marker, 2)
        assert (item["stageId"], item["categoryId"], item["opportunity"]) == (
            "DT1032_3:NEW",
            3,
            1500.5,
        )
        assert item["ufCrm1_1700000001"] == "нужна скидка"
        found = await b24.call(
            "crm.item.list",
            {"entityTypeId": SPA, "filter": {"=xmlId": marker}, "select": ["id", "stageId"]},
        )
        assert found["items"] == [{"id": item["id"], "stageId": "DT1032_3:NEW"}]
        emu.portal.event_log.clear()
        # a person moves it; the workflow polls the stage
        moved = await b24.call(
            "crm.item.update",
            {"entityTypeId": SPA, "id": item["id"], "fields": {"stageId": "PREPARATION"}},
        )
        assert moved["item"]["stageId"] == "DT1032_3:PREPARATION"
        assert moved["item"]["previousStageId"] == "DT1032_3:NEW"
        updated_time = moved["item"]["updatedTime"]
        # an update that changes nothing is not saved and raises no event
        same = await b24.call(
            "crm.item.update",
            {
                "entityTypeId": SPA,
                "id": item["id"],
                "fields": {"stageId": "DT1032_3:PREPARATION", "title": "Согласование КП"},
            },
        )
        assert same["item"]["updatedTime"] == updated_time
        assert [e["event"] for e in emu.portal.event_log] == ["ONCRMDYNAMICITEMUPDATE"]
        await b24.call(
            "crm.item.update",
            {"entityTypeId": SPA, "id": item["id"], "fields": {"stageId": "SUCCESS"}},
        )
        got = await b24.call("crm.item.get", {"entityTypeId": SPA, "id": item["id"]})
        assert got["item"]["stageId"] == "DT1032_3:SUCCESS"
        original = await b24.call(
            "crm.item.get",
            {"entityTypeId": SPA, "id": item["id"], "useOriginalUfNames": "Y"},
        )
        assert original["item"]["UF_CRM_1_1700000001"] == "нужна скидка"
        fields = (await b24.call("crm.item.fields", {"entityTypeId": SPA}))["fields"]
        assert fields["parentId2"]["type"] == "crm_entity" and "xmlId" in fields
        assert fields["ufCrm1_1700000001"]["upperName"] == "UF_CRM_1_1700000001"
        assert await b24.call("crm.item.delete", {"entityTypeId": SPA, "id": item["id"]}) == []
        try:
            await b24.call("crm.item.get", {"entityTypeId": SPA, "id": item["id"]})
        except NotFound as missing:
            assert missing.code == "NOT_FOUND"
        else:  # pragma: no cover
            raise AssertionError("deleted item still readable")


async def test_item_stage_validation_and_per_type_events(emu: Emulator, rest: Rest) -> None:
    status, body = await rest(
        "crm.item.add", {"entityTypeId": SPA, "fields": {"stageId": "C1:NEW"}}
    )
    assert (status, body["error"]) == (400, "CRM_FIELD_ERROR_VALUE_NOT_VALID")
    status, body = await rest("crm.item.add", {"entityTypeId": 999, "fields": {}})
    assert (status, body["error_description"]) == (400, "Smart process not found")
    emu.portal.subscribed_events.add("ONCRMDYNAMICITEMADD_1032")
    _, body = await rest("crm.item.add", {"entityTypeId": SPA, "fields": {"title": "x"}})
    await emu.drain_events()
    assert [e["event"] for e in emu.portal.event_log][-1] == "ONCRMDYNAMICITEMADD"


async def test_deal_pipeline_moves_only_through_crm_item(emu: Emulator, rest: Rest) -> None:
    _, body = await rest("crm.deal.add", {"fields": {"TITLE": "Переезд", "CATEGORY_ID": 1}})
    deal_id = body["result"]
    await rest("crm.deal.update", {"id": deal_id, "fields": {"CATEGORY_ID": 2}})
    assert emu.portal.deals[deal_id]["CATEGORY_ID"] == "1"  # immutable there
    emu.portal.event_log.clear()
    status, body = await rest(
        "crm.item.update", {"entityTypeId": 2, "id": deal_id, "fields": {"categoryId": 2}}
    )
    assert status == 200
    item = body["result"]["item"]
    assert (item["categoryId"], item["stageId"], item["entityTypeId"]) == (2, "C2:NEW", 2)
    assert [e["event"] for e in emu.portal.event_log] == [
        "ONCRMDEALMOVETOCATEGORY",
        "ONCRMDEALUPDATE",
    ]
    deal = emu.portal.deals[deal_id]
    assert (deal["CATEGORY_ID"], deal["STAGE_ID"]) == ("2", "C2:NEW")
    _, body = await rest(
        "crm.item.update",
        {"entityTypeId": 2, "id": deal_id, "fields": {"stageId": "WON", "ufCrmKp": "КП-7"}},
    )
    assert body["result"]["item"]["stageId"] == "C2:WON"
    assert emu.portal.deals[deal_id]["UF_CRM_KP"] == "КП-7"
    _, got = await rest("crm.item.get", {"entityTypeId": 2, "id": deal_id})
    assert got["result"]["item"]["title"] == "Переезд"
    assert "ONCRMDYNAMICITEMUPDATE" not in {e["event"] for e in emu.portal.event_log}
