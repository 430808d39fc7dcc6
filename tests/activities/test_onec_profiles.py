"""The 1C activities against a standard base of each configuration profile (ut11, erp2, bp3)
over real HTTP: the КП load with its VAT, payments for an invoice, the logist task created once
and found again without any extension attribute, closing documents through the profile's
standard link (R-KP-2, R-X6, R-INV-3, R-PS-1, R-SH-3) — and what a real base refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from emulators.onec.seed import KP2_NUMBER, KP_NUMBER, KP_TOTAL, ROMASHKA_INN, seed_guid
from salesflow.activities.onec import OneCActivities, task_key_in, task_ref_for
from salesflow.integrations.onec import F, OneCUrlRefused, Ref
from salesflow.workflows.onec_models import (
    ClosingDocsRequest,
    CreateOneCTaskRequest,
    FindPaymentsRequest,
    LoadKpRequest,
)
from tests.activities.systems import Systems, running_systems

PROFILES = ("ut11", "erp2", "bp3")


@pytest.fixture(params=PROFILES)
async def profiled(request: pytest.FixtureRequest) -> AsyncIterator[Systems]:
    async with running_systems(profile=request.param) as running:
        yield running


async def _invoice(s: Systems) -> dict[str, Any]:
    """The deal's invoice as the configuration makes it: УТ — КП → order → invoice;
    БП — the buyer's invoice with its goods."""
    n = s.activities.names
    kp = await s.onec.find_one(n.kp, F("Number") == KP_NUMBER)
    assert kp is not None
    goods = [
        {k: row[k] for k in ("Номенклатура_Key", "Количество", "Цена", "Сумма")}
        for row in kp["Товары"]
    ]
    party = {"Контрагент_Key": kp["Контрагент_Key"], "Организация_Key": kp["Организация_Key"]}
    if s.settings.onec.profile == "bp3":
        return await s.onec.create(n.invoice, {**party, "Товары": goods})
    order = await s.onec.create(
        n.order, {**party, "ДокументОснование": Ref(n.kp, kp["Ref_Key"]), "Товары": goods}
    )
    return await s.onec.create(
        n.invoice,
        {**party, "СуммаДокумента": KP_TOTAL, "ДокументОснование": Ref(n.order, order["Ref_Key"])},
    )


async def test_r_kp_2_kp_loads_with_its_vat_in_every_profile(profiled: Systems) -> None:
    s = profiled
    deal_id = await s.new_deal(UF_CRM_KP=KP_NUMBER, UF_CRM_DIRECTION="Россия")
    result = await s.activities.load_kp_into_deal(LoadKpRequest(key="k", deal_id=deal_id))
    rows = await s.bitrix24.call("crm.deal.productrows.get", {"id": deal_id})

    assert result.loaded and result.amount == KP_TOTAL
    assert [line.vat_rate for line in result.lines] == [20.0, 20.0, 20.0]
    assert [r["MEASURE_CODE"] for r in rows] == [796, 796, 356]  # the unit's Code, no КодОКЕИ
    assert [r["MEASURE_NAME"] for r in rows] == ["шт", "шт", "ч"]


async def test_r_kp_2_composite_vat_as_catalog_item_or_enum_value(systems: Systems) -> None:
    """УТ 11.5.22: КП-000123's rows name a Catalog_СтавкиНДС item, КП-000124's the enum."""
    s = systems
    deal_id = await s.new_deal()
    by_item = await s.activities.load_kp_into_deal(
        LoadKpRequest(key="k1", deal_id=deal_id, kp_number=KP_NUMBER, direction="Россия")
    )
    by_enum = await s.activities.load_kp_into_deal(
        LoadKpRequest(key="k2", deal_id=deal_id, kp_number=KP2_NUMBER, direction="Россия")
    )
    kp = s.base.find("Document_КоммерческоеПредложениеКлиенту", Number=KP_NUMBER)[0]
    assert kp["Товары"][0]["СтавкаНДС_Type"] == "StandardODATA.Catalog_СтавкиНДС"
    assert {line.vat_rate for line in by_item.lines} == {20.0}
    assert {line.vat_rate for line in by_enum.lines} == {20.0}


async def test_r_inv_3_payments_found_for_an_invoice_in_every_profile(profiled: Systems) -> None:
    s = profiled
    invoice = await _invoice(s)
    await s.admin("/payments", {"invoice": invoice["Number"], "amount": 1000, "date": "2025-03-12"})
    await s.admin("/payments", {"invoice": invoice["Ref_Key"], "amount": 500, "date": "2025-03-13"})

    payments = await s.activities.find_invoice_payments(
        FindPaymentsRequest(invoice_number=invoice["Number"])
    )
    assert [(p.amount, p.paid_on.isoformat()) for p in payments] == [
        (1000.0, "2025-03-12"),
        (500.0, "2025-03-13"),
    ]


async def test_r_x6_logist_task_found_again_after_restart_in_every_profile(
    profiled: Systems,
) -> None:
    s = profiled
    deal_id = await s.new_deal()
    task_id = await s.new_task(deal_id)
    req = CreateOneCTaskRequest(
        key=f"deal:{deal_id}:accepted:ship", deal_id=deal_id, bitrix_task_id=task_id, title="Т"
    )
    ref = await s.activities.create_onec_task(req)
    restarted = OneCActivities(s.onec, s.bitrix24, s.settings)
    again = await restarted.create_onec_task(req)

    tasks = s.base.all("Task_ЗадачаИсполнителя")
    assert ref == again == task_ref_for(req.key)
    assert [(t["Ref_Key"], task_key_in(t["Описание"])) for t in tasks] == [(ref, req.key)]
    assert "ИдентификаторБитрикс24" not in tasks[0]


async def test_r_sh_3_closing_documents_through_the_profile_link(profiled: Systems) -> None:
    s = profiled
    invoice = await _invoice(s)
    upd = await s.admin("/upd", {"basis": invoice["Ref_Key"]})
    other = await _invoice(s)
    await s.admin("/upd", {"basis": other["Ref_Key"]})

    by_invoice = await s.activities.fetch_closing_documents(
        ClosingDocsRequest(invoice_number=invoice["Number"])
    )
    by_inn = await s.activities.fetch_closing_documents(ClosingDocsRequest(inn=ROMASHKA_INN))

    link = s.activities.names.sale_link
    stored = s.base.get("Document_РеализацияТоваровУслуг", upd["Ref_Key"])
    assert stored[link] != "00000000-0000-0000-0000-000000000000"
    assert [d.ref for d in by_invoice] == [upd["Ref_Key"]]
    assert len(by_inn) == 2 and not any(d.signed for d in by_inn)


async def test_extension_on_the_task_also_carries_the_key_and_link() -> None:
    async with running_systems(extension=True) as s:
        deal_id = await s.new_deal()
        task_id = await s.new_task(deal_id)
        key = f"deal:{deal_id}:accepted:ship"
        ref = await s.activities.create_onec_task(
            CreateOneCTaskRequest(key=key, deal_id=deal_id, bitrix_task_id=task_id, title="Т")
        )
        task = s.base.get("Task_ЗадачаИсполнителя", ref)
    assert task["ИдентификаторБитрикс24"] == key
    assert f"/tasks/task/view/{task_id}/" in task["СсылкаБитрикс24"]


async def test_a_name_the_base_lacks_is_a_configuration_problem_naming_it_and_the_fix() -> None:
    async with running_systems(names={"unit_code": "КодОКЕИ"}) as s:
        deal_id = await s.new_deal()
        with pytest.raises(ApplicationError) as caught:
            await s.activities.load_kp_into_deal(
                LoadKpRequest(key="k", deal_id=deal_id, kp_number=KP_NUMBER, direction="Россия")
            )
    error = caught.value
    assert error.type == "1C.ConfigurationProblem" and error.non_retryable
    assert "КодОКЕИ" in error.message and "Catalog_УпаковкиЕдиницыИзмерения" in error.message
    assert "[onec.names] unit_code" in error.message and "профиль ut11" in error.message


async def test_an_unknown_set_is_a_configuration_problem() -> None:
    async with running_systems(
        profile="bp3", names={"kp": "Document_КоммерческоеПредложение"}
    ) as s:
        deal_id = await s.new_deal()
        with pytest.raises(ApplicationError) as caught:
            await s.activities.load_kp_into_deal(
                LoadKpRequest(key="k", deal_id=deal_id, kp_number=KP_NUMBER, direction="Россия")
            )
    assert caught.value.type == "1C.ConfigurationProblem"
    assert "Document_КоммерческоеПредложение" in caught.value.message
    assert "[onec.names] kp" in caught.value.message


async def test_r_kp_2_long_kp_loads_behind_iis_with_lookups_split_under_2048_bytes() -> None:
    async with running_systems() as s:
        base = s.base
        unit = seed_guid("Catalog_УпаковкиЕдиницыИзмерения", "шт")
        rows = []
        for number in range(60):
            ref = seed_guid("Catalog_Номенклатура", f"extra-{number}")
            base.insert(
                "Catalog_Номенклатура",
                {"Ref_Key": ref, "Description": f"Позиция {number}", "ЕдиницаИзмерения_Key": unit},
            )
            rows.append({"Номенклатура_Key": ref, "Количество": 1.0, "Цена": 10.0, "Сумма": 10.0})
        kp = base.insert(
            "Document_КоммерческоеПредложениеКлиенту",
            {"Number": "КП-000777", "Posted": True, "Товары": rows},
        )
        await s.admin("/faults", {"iis": True})
        with pytest.raises(OneCUrlRefused):  # one request naming all 60 is refused by IIS
            await s.onec.list_all(
                "Catalog_Номенклатура",
                filter=" or ".join(f"Ref_Key eq guid'{r['Номенклатура_Key']}'" for r in rows),
            )
        deal_id = await s.new_deal()
        result = await s.activities.load_kp_into_deal(
            LoadKpRequest(key="k", deal_id=deal_id, kp_number=kp["Number"], direction="Россия")
        )
    assert len(result.lines) == 60 and result.lines[59].name == "Позиция 59"


async def test_r_kp_4_re_formed_kp_is_read_from_1c_again(systems: Systems) -> None:
    """After «не согласовано» the КП is re-formed in 1C; the next load reads it afresh."""
    s = systems
    deal_id = await s.new_deal(UF_CRM_KP=KP_NUMBER, UF_CRM_DIRECTION="Россия")
    req = LoadKpRequest(key=f"deal:{deal_id}:kp_rows", deal_id=deal_id)
    first = await s.activities.load_kp_into_deal(req)
    kp = s.base.find("Document_КоммерческоеПредложениеКлиенту", Number=KP_NUMBER)[0]
    await s.onec.update(
        "Document_КоммерческоеПредложениеКлиенту",
        kp["Ref_Key"],
        {"Товары": [{k: v for k, v in kp["Товары"][0].items() if k != "LineNumber"}]},
    )
    again = await s.activities.load_kp_into_deal(req)
    rows = await s.bitrix24.call("crm.deal.productrows.get", {"id": deal_id})

    assert len(first.lines) == 3 and again.changed and len(again.lines) == 1
    assert [r["PRODUCT_NAME"] for r in rows] == ["Насос центробежный ЦН-100"]
    assert again.amount == 500_000
