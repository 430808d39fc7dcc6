"""R-KP-2 "the nomenclature always comes from 1C": for a deal whose direction is not «Россия»
the КП is not loaded, but every product row is matched to 1C nomenclature (Ref_Key, article or
code in the XML_ID), takes its name and unit from 1C, and the catalogue product carries the 1C
reference. Both emulators over HTTP, in each profile."""

from __future__ import annotations

from typing import Any

import pytest

from emulators.onec.seed import KP_NUMBER, seed_guid
from salesflow.workflows.onec_models import LoadKpRequest
from tests.activities.systems import running_systems

NOMENCLATURE = "Catalog_Номенклатура"


def ref(article: str) -> str:
    return seed_guid(NOMENCLATURE, article)


@pytest.mark.parametrize("profile", ["ut11", "erp2", "bp3"])
async def test_r_kp_2_rows_matched_to_1c_nomenclature_for_other_direction(profile: str) -> None:
    async with running_systems(profile=profile) as s:
        b24 = s.bitrix24
        by_article = await b24.call(
            "crm.product.add", {"fields": {"NAME": "Насос ЦН100", "XML_ID": "ЦН-100"}}
        )
        by_ref = await b24.call(
            "crm.product.add", {"fields": {"NAME": "Шкаф ШУ", "XML_ID": ref("ШУ-15")}}
        )
        deal_id = await s.new_deal(UF_CRM_KP=KP_NUMBER, UF_CRM_DIRECTION="Казахстан")
        await b24.call(
            "crm.deal.productrows.set",
            {
                "id": deal_id,
                "rows": [
                    {"PRODUCT_ID": by_article, "PRICE": 240000, "QUANTITY": 2},
                    {"PRODUCT_ID": by_ref, "PRICE": 115000, "QUANTITY": 1},
                    {"PRODUCT_NAME": "ПНР", "XML_ID": "НФ-00000003", "PRICE": 2400, "QUANTITY": 8},
                    {"PRODUCT_NAME": "Кран шаровый Ду50", "PRICE": 3100, "QUANTITY": 4},
                ],
            },
        )
        req = LoadKpRequest(key=f"deal:{deal_id}:kp:load_from_1c", deal_id=deal_id)

        first = await s.activities.load_kp_into_deal(req)
        rows: list[dict[str, Any]] = await b24.call("crm.deal.productrows.get", {"id": deal_id})
        again = await s.activities.load_kp_into_deal(req)
        rows_again = await b24.call("crm.deal.productrows.get", {"id": deal_id})
        product = await b24.call("crm.product.get", {"id": by_article})
        comments = await b24.list_all(
            "crm.timeline.comment.list", {"filter": {"ENTITY_ID": deal_id, "ENTITY_TYPE": "deal"}}
        )

    assert not first.loaded and first.changed
    assert [(r["PRODUCT_NAME"], r["PRICE"], r["QUANTITY"], r["XML_ID"]) for r in rows] == [
        ("Насос центробежный ЦН-100", 240000.0, 2.0, ref("ЦН-100")),
        ("Шкаф управления насосами ШУ-15", 115000.0, 1.0, ref("ШУ-15")),
        ("Пусконаладочные работы", 2400.0, 8.0, ref("ПНР-Ч")),
        ("Кран шаровый Ду50", 3100.0, 4.0, None),
    ]
    assert [r["MEASURE_CODE"] for r in rows[:3]] == [796, 796, 356]
    assert [line.article for line in first.lines] == ["ЦН-100", "ШУ-15", "ПНР-Ч"]
    assert first.unmatched == ["Кран шаровый Ду50"]
    # The catalogue product now carries the 1C reference.
    assert product["XML_ID"] == ref("ЦН-100")
    # Told in the deal's timeline: the КП is not loaded, and which rows 1C lacks — once each.
    texts = [c["COMMENT"] for c in comments]
    assert len(texts) == 2 and "Казахстан" in texts[0] and "«Кран шаровый Ду50»" in texts[1]
    # A repeat changes nothing, not even the row IDs.
    assert not again.changed and rows_again == rows


async def test_r_kp_2_no_rows_no_match_nothing_written() -> None:
    async with running_systems() as s:
        deal_id = await s.new_deal(UF_CRM_KP=KP_NUMBER, UF_CRM_DIRECTION="Беларусь")
        result = await s.activities.load_kp_into_deal(LoadKpRequest(key="k", deal_id=deal_id))
        rows = await s.bitrix24.call("crm.deal.productrows.get", {"id": deal_id})
    assert not result.loaded and result.unmatched == [] and result.lines == []
    assert rows == []


async def test_r_kp_2_kp_rows_name_the_catalogue_products_that_carry_the_1c_reference() -> None:
    async with running_systems() as s:
        pump = await s.bitrix24.call(
            "crm.product.add", {"fields": {"NAME": "Насос", "XML_ID": ref("ЦН-100")}}
        )
        deal_id = await s.new_deal(UF_CRM_KP=KP_NUMBER, UF_CRM_DIRECTION="Россия")
        result = await s.activities.load_kp_into_deal(LoadKpRequest(key="k", deal_id=deal_id))
        rows = await s.bitrix24.call("crm.deal.productrows.get", {"id": deal_id})
    assert result.loaded
    assert [(r["PRODUCT_ID"], r["XML_ID"]) for r in rows] == [
        (pump, ref("ЦН-100")),
        (0, ref("ШУ-15")),
        (0, ref("ПНР-Ч")),
    ]
    assert rows[0]["PRODUCT_NAME"] == "Насос центробежный ЦН-100"  # the КП's name, from 1C
