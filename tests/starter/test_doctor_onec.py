"""`salesflow doctor`, 1C part: $metadata of a standard base checked against the profile —
every missing object or attribute named with its fix, the optional extension seen."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from emulators.asgi_server import serve
from emulators.onec.app import create_app
from emulators.onec.seed import seed_guid
from salesflow.config.settings import Settings
from salesflow.integrations.onec.client import OneCClient
from salesflow.starter.doctor import FAIL, OK, Check, nomenclature_checks, onec_checks
from tests.activities.systems import running_systems


@asynccontextmanager
async def _doctor(
    base_profile: str = "ut11",
    installed: bool = False,
    unpublished: tuple[str, ...] = (),
    **onec: Any,
) -> AsyncIterator[list[Check]]:
    app = create_app("trade", "odata", "odata", profile=base_profile, extension=installed)
    app.state.base.published -= set(unpublished)
    async with serve(app) as server:
        root = f"{server.url}/trade/odata/standard.odata/"
        settings = Settings.model_validate({"onec": {"odata_url": root, **onec}})
        async with OneCClient(root, "odata", "odata", timeout=5) as client:
            yield await onec_checks(settings, client)


def _failed(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks if c.status == FAIL}


@pytest.mark.parametrize("profile", ["ut11", "erp2", "bp3"])
async def test_a_standard_base_passes_with_its_profile(profile: str) -> None:
    async with _doctor(profile, profile=profile) as checks:
        pass
    assert _failed(checks) == {}
    by_name = {c.name: c for c in checks}
    assert f"profile {profile}" in by_name["1C entity sets"].detail
    assert (
        by_name["1C extension"].status == OK and "not installed" in by_name["1C extension"].detail
    )


async def test_a_missing_attribute_and_an_unpublished_object_are_named_with_the_fix() -> None:
    async with _doctor(
        unpublished=("Catalog_СтавкиНДС",), names={"unit_code": "КодОКЕИ"}
    ) as checks:
        pass
    failed = _failed(checks)
    assert set(failed) == {"1C Catalog_УпаковкиЕдиницыИзмерения.КодОКЕИ", "1C Catalog_СтавкиНДС"}
    attribute = failed["1C Catalog_УпаковкиЕдиницыИзмерения.КодОКЕИ"]
    assert "unit_code" in attribute.detail and "[onec.names] unit_code" in attribute.fix
    assert "УстановитьСоставСтандартногоИнтерфейсаOData" in failed["1C Catalog_СтавкиНДС"].fix
    assert "1C entity sets" not in {c.name for c in checks}


async def test_the_wrong_profile_names_what_the_base_lacks() -> None:
    async with _doctor("ut11", profile="bp3") as checks:
        pass
    failed = _failed(checks)
    assert "1C Document_СчетНаОплатуПокупателю" in failed
    assert "1C Document_ПоступлениеНаРасчетныйСчет" in failed
    assert "1C Document_РеализацияТоваровУслуг.СчетНаОплатуПокупателю_Key" in failed
    assert all("onec.profile" in c.fix or "OData" in c.fix for c in failed.values())


async def test_the_extension_installed_used_or_missing() -> None:
    async with _doctor(installed=True) as unused_checks:
        pass
    async with _doctor(installed=True, extension=True) as used_checks:
        pass
    async with _doctor(installed=False, extension=True) as missing_checks:
        pass
    unused = {c.name: c for c in unused_checks}["1C extension"]
    used = {c.name: c for c in used_checks}["1C extension"]
    assert unused.status == OK and "installed, not used" in unused.detail
    assert used.status == OK and "in use" in used.detail
    missing = _failed(missing_checks)["1C extension"]
    assert "ИдентификаторБитрикс24" in missing.detail
    assert "install the salesflow extension" in missing.fix


async def test_r_kp_2_doctor_names_products_and_deal_rows_without_1c_nomenclature() -> None:
    async with running_systems() as s:
        b24 = s.bitrix24
        await b24.call("crm.product.add", {"fields": {"NAME": "Насос", "XML_ID": "ЦН-100"}})
        await b24.call(
            "crm.product.add",
            {"fields": {"NAME": "Шкаф", "XML_ID": seed_guid("Catalog_Номенклатура", "ШУ-15")}},
        )
        await b24.call("crm.product.add", {"fields": {"NAME": "Редуктор Ч-80"}})
        deal_id = await s.new_deal()
        await b24.call(
            "crm.deal.productrows.set",
            {
                "id": deal_id,
                "rows": [
                    {"PRODUCT_NAME": "ПНР", "XML_ID": "НФ-00000003"},
                    {"PRODUCT_NAME": "Кран шаровый Ду50"},
                ],
            },
        )
        (check,) = await nomenclature_checks(s.settings, s.bitrix24, s.onec)
    assert check.status == FAIL and check.name == "1C nomenclature"
    assert check.detail.startswith("2 of 5 without 1C nomenclature")
    assert "«Редуктор Ч-80»" in check.detail and f"сделка {deal_id}: «Кран шаровый Ду50»" in (
        check.detail
    )
    assert "XML_ID" in check.fix


async def test_r_kp_2_doctor_nomenclature_all_matched() -> None:
    async with running_systems(profile="bp3") as s:
        await s.bitrix24.call("crm.product.add", {"fields": {"NAME": "Насос", "XML_ID": "ЦН-100"}})
        (check,) = await nomenclature_checks(s.settings, s.bitrix24, s.onec)
    assert check.status == OK and "1 catalogue products and deal rows match 1C" in check.detail
