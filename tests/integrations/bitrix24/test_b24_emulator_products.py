"""Emulated product catalogue (crm.product.*): the documented standard fields only, XML_ID the
external code; product rows take a catalogue product's name."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.integrations.bitrix24.conftest import Rest


async def test_crm_product_add_get_list_update(rest: Rest) -> None:
    _, added = await rest(
        "crm.product.add", {"fields": {"NAME": "Насос", "XML_ID": "ЦН-100", "PRICE": 250000}}
    )
    product_id = added["result"]
    _, got = await rest("crm.product.get", {"id": product_id})
    product = got["result"]
    assert (product["ID"], product["NAME"], product["XML_ID"]) == (
        str(product_id),
        "Насос",
        "ЦН-100",
    )
    assert product["PRICE"] == 250000.0 and product["CURRENCY_ID"] == "RUB"
    assert "CODE" not in product and not any(k.startswith("PROPERTY_") for k in product)
    _, updated = await rest("crm.product.update", {"id": product_id, "fields": {"XML_ID": "ref"}})
    assert updated["result"] is True
    _, listed = await rest(
        "crm.product.list", {"filter": {"XML_ID": ["ref", "other"]}, "select": ["ID", "XML_ID"]}
    )
    assert listed["result"] == [{"ID": str(product_id), "XML_ID": "ref"}]
    assert listed["total"] == 1


async def test_crm_product_errors(rest: Rest) -> None:
    status, body = await rest("crm.product.add", {"fields": {"XML_ID": "x"}})
    assert status == 400 and "NAME" in body["error_description"]
    status, body = await rest("crm.product.get", {"id": 999})
    assert status == 400 and body["error_description"] == "Not found"


async def test_product_row_takes_the_catalogue_name(rest: Rest) -> None:
    _, added = await rest("crm.product.add", {"fields": {"NAME": "Шкаф ШУ-15"}})
    _, deal = await rest("crm.deal.add", {"fields": {"TITLE": "Т", "CATEGORY_ID": 1}})
    await rest(
        "crm.deal.productrows.set",
        {"id": deal["result"], "rows": [{"PRODUCT_ID": added["result"], "PRICE": 1}, {"PRICE": 2}]},
    )
    _, rows = await rest("crm.deal.productrows.get", {"id": deal["result"]})
    names = [r["PRODUCT_NAME"] for r in rows["result"]]
    assert names[0] == "Шкаф ШУ-15" and names[1].startswith("[")
