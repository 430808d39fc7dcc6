"""The OData client against the emulated base over real HTTP."""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from emulators.onec.seed import KP_NUMBER, ROMASHKA_INN
from salesflow.integrations.onec.errors import OneCBusinessError, OneCNotFound
from salesflow.integrations.onec.filters import F
from salesflow.integrations.onec.parsing import Ref

if TYPE_CHECKING:
    from conftest import Emulator

    from salesflow.integrations.onec.client import OneCClient

KP = "Document_КоммерческоеПредложениеКлиенту"
INVOICE = "Document_СчетНаОплатуКлиенту"
ITEMS = "Catalog_Номенклатура"
PARTIES = "Catalog_Контрагенты"


async def test_cyrillic_sets_and_filters(onec: OneCClient) -> None:
    party = await onec.find_one(PARTIES, F("ИНН") == ROMASHKA_INN)
    assert party is not None and party["Description"] == "ООО «Ромашка»"
    kps = await onec.list_page(KP, filter=F("Контрагент_Key") == party["Ref_Key"])
    assert [kp["Number"] for kp in kps] == [KP_NUMBER]
    by_path = await onec.list_page(
        KP, filter=F("Контрагент/ИНН") == ROMASHKA_INN, select=["Number", "СуммаДокумента"]
    )
    assert by_path == [{"Number": KP_NUMBER, "СуммаДокумента": 640000}]
    pumps = await onec.list_page(ITEMS, filter=F("Description").substringof("насос"))
    assert {p["Артикул"] for p in pumps} == {"ЦН-100", "ШУ-15", "ЗИП-ЦН100"}
    quoted = await onec.find_one(PARTIES, F("Description") == "ООО «Д'Арт Дизайн»")
    assert quoted is not None and quoted["ИНН"] == "7705987654"


async def test_kp_with_lines_expand_and_get_by_key(onec: OneCClient) -> None:
    kp = await onec.find_one(KP, F("Number") == KP_NUMBER)
    assert kp is not None
    assert kp["СуммаДокумента"] == Decimal(640000)
    assert [row["LineNumber"] for row in kp["Товары"]] == [1, 2, 3]
    assert sum(row["Сумма"] for row in kp["Товары"]) == 640000
    same = await onec.get(KP, kp["Ref_Key"], select="Number,Date")
    assert same == {"Number": KP_NUMBER, "Date": kp["Date"]}
    expanded = await onec.list_page(
        KP,
        filter=F("Number") == KP_NUMBER,
        expand="Контрагент",
        select="Number,Контрагент/ИНН,Контрагент/Description",
    )
    assert expanded[0]["Контрагент"] == {"ИНН": ROMASHKA_INN, "Description": "ООО «Ромашка»"}
    rows = await onec.list_all(f"{KP}_Товары", filter=F("Ref_Key") == kp["Ref_Key"])
    assert [r["LineNumber"] for r in rows] == [1, 2, 3]
    item = await onec.get(ITEMS, rows[0]["Номенклатура_Key"])
    assert item["Description"] == "Насос центробежный ЦН-100"
    unit = await onec.get("Catalog_УпаковкиЕдиницыИзмерения", item["ЕдиницаИзмерения_Key"])
    assert unit["Description"] == "шт"


async def test_paging_past_one_page(onec: OneCClient, emulator: Emulator) -> None:
    all_items = await onec.list_all(ITEMS, orderby="Code", page_size=3)
    assert len(all_items) == 10
    assert [i["Code"] for i in all_items] == sorted(i["Code"] for i in all_items)
    pages = [await onec.list_page(ITEMS, orderby="Code desc", top=4, skip=s) for s in (0, 4, 8)]
    assert [len(p) for p in pages] == [4, 4, 2]
    assert pages[0][0]["Code"] == all_items[-1]["Code"]
    requests_before = emulator.base.requests
    seen = [i async for i in onec.iterate(ITEMS, page_size=5)]
    assert len(seen) == 10
    assert emulator.base.requests - requests_before == 3  # 5 + 5 + an empty page
    assert await onec.count(ITEMS) == 10
    assert await onec.count(ITEMS, filter=F("ТипНоменклатуры") == "Услуга") == 1


async def test_prices_slice_last(onec: OneCClient) -> None:
    pump = await onec.find_one(ITEMS, F("Артикул") == "ЦН-100")
    assert pump is not None
    current = await onec.slice_last(
        "InformationRegister_ЦеныНоменклатуры", condition=F("Номенклатура_Key") == pump["Ref_Key"]
    )
    assert [p["Цена"] for p in current] == [250000]
    old = await onec.slice_last(
        "InformationRegister_ЦеныНоменклатуры",
        period=datetime(2024, 12, 31),
        condition=F("Номенклатура_Key") == pump["Ref_Key"],
    )
    assert [p["Цена"] for p in old] == [235000]
    all_prices = await onec.slice_last("InformationRegister_ЦеныНоменклатуры")
    assert len(all_prices) == 10


async def test_create_invoice_and_post_it(onec: OneCClient, emulator: Emulator) -> None:
    kp = await onec.find_one(KP, F("Number") == KP_NUMBER)
    assert kp is not None
    invoice = await onec.create(
        INVOICE,
        {
            "Организация_Key": kp["Организация_Key"],
            "Контрагент_Key": kp["Контрагент_Key"],
            "СуммаДокумента": kp["СуммаДокумента"],
            "ДокументОснование": Ref(KP, kp["Ref_Key"]),
            "НазначениеПлатежа": "Оплата по КП-000123. " + "Очень длинное назначение. " * 20,
            "ЭтапыГрафикаОплаты": [
                {
                    "ДатаПлатежа": datetime(2025, 3, 10),
                    "ПроцентПлатежа": 50,
                    "СуммаПлатежа": 320000,
                },
                {
                    "ДатаПлатежа": datetime(2025, 4, 10),
                    "ПроцентПлатежа": 50,
                    "СуммаПлатежа": 320000,
                },
            ],
            "НеизвестноеПоле": "ignored",
        },
    )
    assert invoice["Number"].startswith("СЧ-")
    assert invoice["Posted"] is False
    assert invoice["ДокументОснование"] == Ref(KP, kp["Ref_Key"])
    assert len(invoice["НазначениеПлатежа"]) == 210  # truncated to the field length, no error
    assert "НеизвестноеПоле" not in invoice
    assert [r["LineNumber"] for r in invoice["ЭтапыГрафикаОплаты"]] == [1, 2]
    await onec.post_document(INVOICE, invoice["Ref_Key"])
    posted = await onec.get(INVOICE, invoice["Ref_Key"])
    assert posted["Posted"] is True
    assert posted["DataVersion"] != invoice["DataVersion"]
    basis = Ref(KP, kp["Ref_Key"])
    by_basis = await onec.list_page(INVOICE, filter=F("ДокументОснование") == basis)
    assert len(by_basis) == 1
    bare = await onec.list_page(INVOICE, filter=F("ДокументОснование") == kp["Ref_Key"])
    assert bare == []  # a bare GUID never matches a composite field in 1C
    await onec.unpost_document(INVOICE, invoice["Ref_Key"])
    assert emulator.base.get(INVOICE, invoice["Ref_Key"])["Posted"] is False


async def test_posting_refused_is_a_business_error(onec: OneCClient, emulator: Emulator) -> None:
    invoice = await onec.create(INVOICE, {"СуммаДокумента": 1000})
    with pytest.raises(OneCBusinessError) as caught:
        await onec.post_document(INVOICE, invoice["Ref_Key"])
    error = caught.value
    assert (error.status, error.code, error.retryable) == (500, "-1", False)
    assert "ОбработкаПроведения" in error.message and "Контрагент" in error.message
    party = await onec.find_one(PARTIES, F("ИНН") == ROMASHKA_INN)
    assert party is not None
    await onec.update(
        INVOICE, invoice["Ref_Key"], {"Контрагент_Key": party["Ref_Key"], "DeletionMark": True}
    )
    with pytest.raises(OneCBusinessError, match="удаление"):
        await onec.post_document(INVOICE, invoice["Ref_Key"])
    await onec.update(INVOICE, invoice["Ref_Key"], {"DeletionMark": False})
    emulator.base.faults.post_errors[invoice["Ref_Key"]] = "Не хватает остатков по складу."
    with pytest.raises(OneCBusinessError, match="Не хватает остатков"):
        await onec.post_document(INVOICE, invoice["Ref_Key"], operational=True)
    emulator.base.faults.post_errors.clear()
    await onec.post_document(INVOICE, invoice["Ref_Key"], operational=True)


async def test_patch_replaces_a_tabular_part_whole(onec: OneCClient, emulator: Emulator) -> None:
    kp = await onec.find_one(KP, F("Number") == KP_NUMBER)
    assert kp is not None and len(kp["Товары"]) == 3
    first = kp["Товары"][0]
    updated = await onec.update(
        KP,
        kp["Ref_Key"],
        {
            "Комментарий": "Клиент убрал пусконаладку",
            "Товары": [{**first, "Количество": 3, "Сумма": 750000}],
        },
    )
    assert [r["LineNumber"] for r in updated["Товары"]] == [1]
    assert updated["Товары"][0]["Сумма"] == 750000
    assert updated["СуммаДокумента"] == 750000
    assert updated["Number"] == KP_NUMBER  # fields not sent stay as they were
    stored = emulator.base.get(KP, kp["Ref_Key"])
    assert len(stored["Товары"]) == 1
    again = await onec.update(KP, kp["Ref_Key"], {"Комментарий": "Клиент убрал пусконаладку"})
    assert again["DataVersion"] != updated["DataVersion"]  # every write bumps DataVersion
    assert len(again["Товары"]) == 1  # not sent, not touched


async def test_if_match_is_ignored_by_default(onec: OneCClient, emulator: Emulator) -> None:
    kp = await onec.find_one(KP, F("Number") == KP_NUMBER)
    assert kp is not None
    await onec.update(KP, kp["Ref_Key"], {"Комментарий": "1"})
    stale = await onec.update(KP, kp["Ref_Key"], {"Комментарий": "2"}, if_match="AAAAAAAAAAA=")
    assert stale["Комментарий"] == "2"
    emulator.base.faults.if_match = "enforce"
    from salesflow.integrations.onec.errors import OneCConflict

    with pytest.raises(OneCConflict) as caught:
        await onec.update(KP, kp["Ref_Key"], {"Комментарий": "3"}, if_match="AAAAAAAAAAA=")
    assert caught.value.status == 412 and caught.value.retryable
    fresh = await onec.update(
        KP, kp["Ref_Key"], {"Комментарий": "3"}, if_match=stale["DataVersion"]
    )
    assert fresh["Комментарий"] == "3"


async def test_delete_is_physical(onec: OneCClient) -> None:
    party = await onec.create(PARTIES, {"Description": "ООО «Временная»", "ИНН": "7700000001"})
    assert party["Code"].startswith("0") and party["ЮрФизЛицо"] == "ЮрЛицо"
    await onec.delete(PARTIES, party["Ref_Key"])
    with pytest.raises(OneCNotFound) as caught:
        await onec.get(PARTIES, party["Ref_Key"])
    assert caught.value.code == "9"


async def test_filter_with_plus_and_spaces_reaches_1c_intact(onec: OneCClient) -> None:
    await onec.create(PARTIES, {"Description": "A+B Трейд & Ко", "ИНН": "7700000002"})
    found = await onec.find_one(PARTIES, F("Description") == "A+B Трейд & Ко")
    assert found is not None and found["ИНН"] == "7700000002"


async def test_many_calls_reuse_one_session(emulator: Emulator) -> None:
    async with emulator.client() as onec:
        await asyncio.gather(*(onec.count(ITEMS) for _ in range(10)))
        for _ in range(10):
            await onec.find_one(KP, F("Number") == KP_NUMBER)
        assert emulator.base.sessions_opened == 1
        assert onec.sessions_started == 1
        assert len(emulator.base.sessions) == 1
    assert emulator.base.sessions == {}  # closed with IBSession: finish


async def test_without_reuse_every_call_opens_a_session(emulator: Emulator) -> None:
    async with emulator.client(reuse_session=False) as onec:
        for _ in range(5):
            await onec.count(ITEMS)
    assert emulator.base.sessions_opened == 5


async def test_expired_session_is_replaced(emulator: Emulator) -> None:
    async with emulator.client() as onec:
        await onec.count(ITEMS)
        emulator.base.sessions.clear()  # 1C dropped it (sessionMaxAge)
        await onec.count(ITEMS)
        await onec.count(ITEMS)
        assert emulator.base.sessions_opened == 2
        assert onec.sessions_started == 2
