"""Emulated CRM: deals, lists and filters, product rows, pipelines, users, clients, timeline."""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING

from emulators.asgi_server import serve
from emulators.bitrix24.app import create_app
from salesflow.integrations.bitrix24.client import Bitrix24Client

if TYPE_CHECKING:
    from tests.integrations.bitrix24.conftest import Emulator, Rest


ISO_MSK = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+03:00$")


async def _add_deal(rest: Rest, **fields: object) -> int:
    status, body = await rest("crm.deal.add", {"fields": fields})
    assert status == 200, body
    return body["result"]


async def test_deal_fields_are_strings_and_derived(rest: Rest) -> None:
    deal_id = await _add_deal(
        rest,
        TITLE="Поставка",
        CATEGORY_ID=1,
        OPPORTUNITY=1500000,
        UF_CRM_PRIORITY=11,
        UF_CRM_KP_DATE="2025-03-04",
        UF_CRM_NEED_LAWYER="Y",
        CONTACT_IDS=[1, 2],
        COMPANY_ID=1,
    )
    _, body = await rest("crm.deal.get", {"id": deal_id})
    deal = body["result"]
    assert deal["ID"] == str(deal_id)
    assert deal["CATEGORY_ID"] == "1"
    assert deal["STAGE_ID"] == "C1:NEW"
    assert (deal["STAGE_SEMANTIC_ID"], deal["CLOSED"]) == ("P", "N")
    assert deal["OPPORTUNITY"] == "1500000.00"
    assert deal["ASSIGNED_BY_ID"] == deal["CREATED_BY_ID"] == "1"
    assert deal["CONTACT_ID"] == "1" and "CONTACT_IDS" not in deal
    assert deal["UF_CRM_PRIORITY"] == "11"
    assert deal["UF_CRM_KP_DATE"] == "2025-03-04T00:00:00+03:00"
    assert deal["UF_CRM_NEED_LAWYER"] == "1" and deal["UF_CRM_NEED_ENGINEERS"] == "0"
    assert ISO_MSK.match(deal["DATE_CREATE"]) and ISO_MSK.match(deal["BEGINDATE"])


async def test_deal_update_rules(rest: Rest, emu: Emulator) -> None:
    deal_id = await _add_deal(rest, TITLE="Сделка", CATEGORY_ID=1, ASSIGNED_BY_ID=3)
    status, body = await rest(
        "crm.deal.update",
        {
            "id": deal_id,
            "fields": {
                "STAGE_ID": "WON",
                "CATEGORY_ID": 2,
                "UNKNOWN_FIELD": "x",
                "DATE_CREATE": "2000-01-01",
            },
        },
    )
    assert (status, body["result"]) == (200, True)
    deal = emu.portal.deals[deal_id]
    assert deal["STAGE_ID"] == "C1:WON"  # bare codes are prefixed for the pipeline
    assert deal["CATEGORY_ID"] == "1"  # immutable in crm.deal.update
    assert (deal["STAGE_SEMANTIC_ID"], deal["CLOSED"]) == ("S", "Y")
    assert deal["ASSIGNED_BY_ID"] == "3"
    assert not deal["DATE_CREATE"].startswith("2000")
    status, body = await rest("crm.deal.update", {"id": deal_id, "fields": {"STAGE_ID": "C2:NEW"}})
    assert status == 400 and body["error"] == ""
    status, body = await rest("crm.deal.update", {"id": 999999, "fields": {"TITLE": "x"}})
    assert (status, body["error_description"]) == (400, "Not found")


async def test_deal_list_pages_of_fifty(rest: Rest) -> None:
    cmd = {
        f"d{i}": f"crm.deal.add?fields[TITLE]=Deal%20{i}&fields[OPPORTUNITY]={i * 1000}"
        for i in range(120)
    }
    for chunk in (dict(list(cmd.items())[i : i + 50]) for i in range(0, 120, 50)):
        status, body = await rest("batch", {"cmd": chunk})
        assert status == 200 and body["result"]["result_error"] == []
    _, first = await rest("crm.deal.list", {"select": ["ID"]})
    assert (len(first["result"]), first["next"], first["total"]) == (50, 50, 120)
    _, last = await rest("crm.deal.list", {"select": ["ID"], "start": 100})
    assert len(last["result"]) == 20 and "next" not in last and last["total"] == 120
    _, fast = await rest(
        "crm.deal.list",
        {"select": ["ID"], "start": -1, "order": {"ID": "ASC"}, "filter": {">ID": 60}},
    )
    assert len(fast["result"]) == 50 and fast["total"] == 0 and "next" not in fast
    assert fast["result"][0]["ID"] == "61"


async def test_deal_list_filters_order_select(rest: Rest) -> None:
    ids = [
        await _add_deal(
            rest,
            TITLE="Ромашка поставка",
            CATEGORY_ID=1,
            OPPORTUNITY=100,
            ASSIGNED_BY_ID=3,
            UF_CRM_PRIORITY=11,
        ),
        await _add_deal(
            rest,
            TITLE="Лютик монтаж",
            CATEGORY_ID=1,
            OPPORTUNITY=500,
            ASSIGNED_BY_ID=4,
            UF_CRM_PRIORITY=12,
        ),
        await _add_deal(rest, TITLE="Общая", OPPORTUNITY=900, ASSIGNED_BY_ID=3),
    ]

    async def ids_for(filter_: dict[str, object], **extra: object) -> list[int]:
        _, body = await rest("crm.deal.list", {"filter": filter_, "select": ["ID"], **extra})
        return [int(row["ID"]) for row in body["result"]]

    assert await ids_for({">=OPPORTUNITY": 500}) == ids[1:]
    assert await ids_for({">OPPORTUNITY": 100, "<OPPORTUNITY": 900}) == [ids[1]]
    assert await ids_for({"<=OPPORTUNITY": 100}) == [ids[0]]
    assert await ids_for({"@ASSIGNED_BY_ID": [4, 5]}) == [ids[1]]
    assert await ids_for({"!@ASSIGNED_BY_ID": [4]}) == [ids[0], ids[2]]
    assert await ids_for({"%TITLE": "ромаш"}) == [ids[0]]
    assert await ids_for({"=CATEGORY_ID": 1, "!UF_CRM_PRIORITY": 11}) == [ids[1]]
    assert await ids_for({"!=STAGE_ID": "C1:NEW"}) == [ids[2]]
    assert await ids_for({"CATEGORY_ID": 1}, order={"OPPORTUNITY": "DESC"}) == [ids[1], ids[0]]
    _, body = await rest("crm.deal.list", {"filter": {"ID": ids[0]}, "select": ["TITLE", "UF_*"]})
    row = body["result"][0]
    assert row["TITLE"] == "Ромашка поставка" and row["UF_CRM_PRIORITY"] == "11"
    assert "STAGE_ID" not in row and "ID" in row
    _, body = await rest("crm.deal.list", {"filter": {"ID": ids[0]}, "select": ["*"]})
    assert "STAGE_ID" in body["result"][0] and "UF_CRM_PRIORITY" not in body["result"][0]


async def test_product_rows_set_replaces_all(rest: Rest, emu: Emulator) -> None:
    deal_id = await _add_deal(rest, TITLE="Товары", CATEGORY_ID=1)
    rows = [
        {"PRODUCT_NAME": "Насос", "PRICE": 1000, "QUANTITY": 2},
        {"PRODUCT_NAME": "Фильтр", "PRICE": 250.5, "QUANTITY": 1},
    ]
    assert (await rest("crm.deal.productrows.set", {"id": deal_id, "rows": rows}))[1][
        "result"
    ] is True
    await rest(
        "crm.deal.productrows.set",
        {"id": deal_id, "rows": [{"PRODUCT_NAME": "Клапан", "PRICE": 10}]},
    )
    _, body = await rest("crm.deal.productrows.get", {"id": deal_id})
    assert [(r["PRODUCT_NAME"], r["PRICE"], r["QUANTITY"]) for r in body["result"]] == [
        ("Клапан", 10.0, 1.0)
    ]
    row = body["result"][0]
    assert row["OWNER_TYPE"] == "D" and row["OWNER_ID"] == deal_id
    assert emu.portal.deals[deal_id]["OPPORTUNITY"] == "10.00"
    _, body = await rest("crm.deal.productrows.set", {"id": deal_id, "rows": []})
    assert (await rest("crm.deal.productrows.get", {"id": deal_id}))[1]["result"] == []


async def test_fields_userfields_categories_statuses(rest: Rest) -> None:
    _, fields = await rest("crm.deal.fields")
    assert fields["result"]["CATEGORY_ID"]["isImmutable"] is True
    assert fields["result"]["UF_CRM_KP_STATUS"]["items"] == [
        {"ID": "21", "VALUE": "Согласовано"},
        {"ID": "22", "VALUE": "Не согласовано"},
    ]
    _, ufs = await rest("crm.deal.userfield.list", {"filter": {"USER_TYPE_ID": "enumeration"}})
    loss = next(uf for uf in ufs["result"] if uf["FIELD_NAME"] == "UF_CRM_LOSS_REASON")
    assert (loss["LIST"][0]["ID"], loss["LIST"][0]["VALUE"]) == ("41", "Денег нет")
    _, categories = await rest("crm.category.list", {"entityTypeId": 2})
    assert [(c["id"], c["name"]) for c in categories["result"]["categories"]] == [
        (0, "Общая"),
        (1, "Продажа"),
        (2, "Инженеры"),
    ]
    assert categories["total"] == 3
    _, stages = await rest("crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE_1"}})
    assert [s["STATUS_ID"] for s in stages["result"]][:3] == [
        "C1:NEW",
        "C1:PREPARATION",
        "C1:UC_KP",
    ]
    won = next(s for s in stages["result"] if s["STATUS_ID"] == "C1:WON")
    assert (won["NAME"], won["SEMANTICS"], won["EXTRA"]["SEMANTICS"]) == (
        "Сделка успешна",
        "S",
        "success",
    )
    _, general = await rest("crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE"}})
    assert general["result"][0]["STATUS_ID"] == "NEW"
    _, spa = await rest("crm.category.list", {"entityTypeId": 1032})
    assert spa["result"]["categories"][0]["id"] == 3


async def test_user_get_filters(rest: Rest) -> None:
    _, body = await rest("user.get", {"ID": 3})
    user = body["result"][0]
    assert (user["NAME"], user["SECOND_NAME"], user["LAST_NAME"]) == ("Иван", "Сергеевич", "Петров")
    assert user["WORK_POSITION"] == "Менеджер по продажам"
    assert (user["WORK_PHONE"], user["EMAIL"]) == ("+7 (495) 100-00-03", "petrov@example.ru")
    assert user["ACTIVE"] is True and user["UF_DEPARTMENT"] == [2]
    _, body = await rest("user.get", {"FILTER": {"ACTIVE": True}})
    assert body["total"] == 11
    _, body = await rest("user.get", {"filter": {"ACTIVE": "N"}})
    assert [u["ID"] for u in body["result"]] == ["12"]
    _, body = await rest("user.get", {"UF_DEPARTMENT": 2, "ACTIVE": True})
    assert [u["ID"] for u in body["result"]] == ["2", "3", "4"]


async def test_contacts_and_company(rest: Rest) -> None:
    _, body = await rest("crm.contact.get", {"id": 1})
    contact = body["result"]
    assert contact["PHONE"][0]["VALUE"] == "+7 (495) 555-01-01"
    assert set(contact["EMAIL"][0]) == {"ID", "VALUE", "VALUE_TYPE", "TYPE_ID"}
    _, body = await rest(
        "crm.contact.add",
        {
            "fields": {
                "NAME": "Пётр",
                "LAST_NAME": "Новый",
                "EMAIL": [{"VALUE": "new@client.example.ru", "VALUE_TYPE": "WORK"}],
            }
        },
    )
    new_id = body["result"]
    _, body = await rest(
        "crm.contact.list",
        {"filter": {"EMAIL": "new@client.example.ru"}, "select": ["ID", "NAME", "EMAIL"]},
    )
    assert [c["ID"] for c in body["result"]] == [str(new_id)]
    _, body = await rest("crm.company.get", {"id": 1})
    assert body["result"]["TITLE"] == "ООО «Ромашка»"


async def test_timeline_comments_and_emails(rest: Rest, emu: Emulator) -> None:
    deal_id = await _add_deal(rest, TITLE="Письма", CATEGORY_ID=1)
    status, body = await rest(
        "crm.timeline.comment.add",
        {"fields": {"ENTITY_ID": deal_id, "ENTITY_TYPE": "deal", "COMMENT": "Комментарий"}},
    )
    assert status == 200 and isinstance(body["result"], int)
    status, body = await rest(
        "crm.timeline.comment.add",
        {"FIELDS": {"ENTITY_ID": deal_id, "ENTITY_TYPE": "deal", "COMMENT": "x"}},
    )
    assert status == 400
    status, body = await rest(
        "crm.timeline.comment.add",
        {"fields": {"ENTITY_ID": 999999, "ENTITY_TYPE": "deal", "COMMENT": "x"}},
    )
    assert (status, body["error"]) == (400, "OWNER_NOT_FOUND")
    _, body = await rest(
        "crm.timeline.comment.list", {"filter": {"ENTITY_ID": deal_id, "ENTITY_TYPE": "deal"}}
    )
    assert [c["COMMENT"] for c in body["result"]] == ["Комментарий"]

    email = {
        "OWNER_TYPE_ID": 2,
        "OWNER_ID": deal_id,
        "TYPE_ID": 4,
        "DIRECTION": 2,
        "COMPLETED": "Y",
        "SUBJECT": "Ваша заявка",
        "DESCRIPTION": "Текст",
        "DESCRIPTION_TYPE": 1,
        "RESPONSIBLE_ID": 3,
        "ORIGINATOR_ID": "salesflow",
        "ORIGIN_ID": "deal:1:in_work:1",
        "COMMUNICATIONS": [
            {"VALUE": "ivanov@romashka.example.ru", "ENTITY_ID": 1, "ENTITY_TYPE_ID": 3}
        ],
        "SETTINGS": {"MESSAGE_FROM": "Иван Петров <petrov@example.ru>"},
    }
    status, body = await rest("crm.activity.add", {"fields": email})
    assert status == 200
    draft = {**email, "COMPLETED": "N", "ORIGIN_ID": "draft"}
    await rest("crm.activity.add", {"fields": draft})
    assert [(m["TO"], m["SUBJECT"]) for m in emu.portal.emails] == [
        (["ivanov@romashka.example.ru"], "Ваша заявка")
    ]
    _, body = await rest(
        "crm.activity.list",
        {"filter": {"ORIGINATOR_ID": "salesflow", "ORIGIN_ID": "deal:1:in_work:1"}},
    )
    assert len(body["result"]) == 1 and body["result"][0]["COMPLETED"] == "Y"
    status, body = await rest(
        "crm.activity.add", {"fields": {**email, "COMMUNICATIONS": [{"VALUE": "not-an-address"}]}}
    )
    assert status == 400 and body["error_description"].startswith("Email send error.")


async def test_smart_process_items(rest: Rest, emu: Emulator) -> None:
    deal_id = await _add_deal(rest, TITLE="Согласуем", CATEGORY_ID=1)
    _, body = await rest(
        "crm.item.add",
        {
            "entityTypeId": 1032,
            "fields": {"title": "Согласование счета", "parentId2": deal_id, "assignedById": 2},
        },
    )
    item = body["result"]["item"]
    assert (item["stageId"], item["categoryId"], item["parentId2"]) == ("DT1032_3:NEW", 3, deal_id)
    _, body = await rest(
        "crm.item.update",
        {"entityTypeId": 1032, "id": item["id"], "fields": {"stageId": "SUCCESS"}},
    )
    assert body["result"]["item"]["stageId"] == "DT1032_3:SUCCESS"
    _, body = await rest("crm.item.list", {"entityTypeId": 1032, "filter": {"parentId2": deal_id}})
    assert [i["id"] for i in body["result"]["items"]] == [item["id"]]
    status, body = await rest("crm.item.get", {"entityTypeId": 1032, "id": 999})
    assert (status, body["error"]) == (400, "NOT_FOUND")


async def test_r_sh_3_file_field_answered_as_the_portal_does() -> None:
    """A `file` user field: crm.deal.get answers {id, showUrl, downloadUrl}, crm.item.get
    {id, url, urlMachine}; urlMachine downloads the content (b24restdocs files/index.md)."""
    async with serve(create_app(rate_per_second=None)) as server:
        client = Bitrix24Client(f"{server.url}/rest/1/devsecret/", rate_per_second=50, burst=50)
        try:
            deal_id = int(
                await client.call(
                    "crm.deal.add",
                    {"fields": {"TITLE": "Поставка", "CATEGORY_ID": 1, "STAGE_ID": "C1:NEW"}},
                )
            )
            content = base64.b64encode("УПД".encode()).decode()
            await client.call(
                "crm.item.update",
                {
                    "entityTypeId": 2,
                    "id": deal_id,
                    "fields": {"ufCrmSignedUpd": ["УПД.pdf", content]},
                },
            )
            deal = await client.call("crm.deal.get", {"id": deal_id})
            item = (await client.call("crm.item.get", {"entityTypeId": 2, "id": deal_id}))["item"]
            downloaded = await client.download(item["ufCrmSignedUpd"]["urlMachine"])
        finally:
            await client.aclose()
    assert set(deal["UF_CRM_SIGNED_UPD"]) == {"id", "showUrl", "downloadUrl"}
    assert deal["UF_CRM_SIGNED_UPD"]["showUrl"].startswith("/bitrix/components/bitrix/crm.deal")
    assert deal["UF_CRM_SIGNED_ACT"] is None
    assert set(item["ufCrmSignedUpd"]) == {"id", "url", "urlMachine"}
    assert downloaded == ("УПД.pdf", "УПД".encode())
