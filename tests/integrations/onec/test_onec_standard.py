"""The emulator is a standard base of its profile, behaving as real bases do
(shared/research/onec-real.md), and the client writes queries such a base accepts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from emulators.asgi_server import serve
from emulators.onec.app import create_app
from emulators.onec.seed import KP_NUMBER
from salesflow.integrations.onec import F, OneCBadRequest, OneCNotFound, OneCUrlRefused
from salesflow.integrations.onec.client import OneCClient
from salesflow.integrations.onec.profiles import BP3, UT11
from tests.integrations.onec.conftest import PASSWORD, USER, Emulator

KP = "Document_КоммерческоеПредложениеКлиенту"
JSON = "$format=json"


@pytest.fixture(params=("ut11", "erp2", "bp3"))
async def standard(request: pytest.FixtureRequest) -> AsyncIterator[Emulator]:
    app = create_app("trade", USER, PASSWORD, profile=request.param)
    async with serve(app) as server:
        yield Emulator(app, server.url, f"{server.url}/trade/odata/standard.odata/")


async def test_each_profile_publishes_what_its_configuration_has(standard: Emulator) -> None:
    async with standard.raw() as http:
        metadata = (await http.get("$metadata")).text
    names = BP3 if standard.base.profile == "bp3" else UT11
    for entity_set in (names.kp, names.invoice, names.payment, names.sale, names.task):
        assert f'EntitySet Name="{entity_set}"' in metadata
    assert "MaxLength" not in metadata  # real $metadata has no MaxLength facets
    for invented in ("КодОКЕИ", "ДатаДействия", "Подписан", "СостояниеЭДО", "ДатаПодписания"):
        assert f'"{invented}"' not in metadata
    assert '"ИдентификаторБитрикс24"' not in metadata  # the extension is off
    if standard.base.profile == "bp3":
        assert 'EntitySet Name="Document_КоммерческоеПредложениеКлиенту"' not in metadata
        assert '"СчетНаОплатуПокупателю_Key"' in metadata
    else:
        assert '"СрокДействия"' in metadata and '"ЗаказКлиента_Type"' in metadata


async def test_extension_attributes_only_when_switched_on() -> None:
    app = create_app("trade", USER, PASSWORD, extension=True)
    async with serve(app) as server:
        emulator = Emulator(app, server.url, f"{server.url}/trade/odata/standard.odata/")
        async with emulator.raw() as http:
            metadata = (await http.get("$metadata")).text
    assert '"ИдентификаторБитрикс24"' in metadata and '"СсылкаБитрикс24"' in metadata


async def test_answers_as_a_real_base(emulator: Emulator) -> None:
    async with emulator.raw() as http:
        service = (await http.get(f"?{JSON}")).json()
        kp = (await http.get(f"{KP}?{JSON}&$filter=Number%20eq%20'{KP_NUMBER}'")).json()
        unknown = await http.get(f"{KP}?{JSON}&$select=Owner2")
        bare = await http.get(f"{KP}?{JSON}&$filter=Posted")
        negated = await http.get(f"{KP}?{JSON}&$filter=not%20(DeletionMark)")
        listed = await http.get(f"{KP}?{JSON}&$filter=Number%20in%20('{KP_NUMBER}')")
        proper = await http.get(f"{KP}?{JSON}&$filter=Posted%20eq%20true")
    assert service["odata.metadata"] == emulator.root  # the service root itself
    doc = kp["value"][0]
    assert "Партнер@navigationLinkUrl" not in doc  # the empty reference has no link
    assert "Организация@navigationLinkUrl" in doc
    assert not any("@" in name for row in doc["Товары"] for name in row)  # none inside rows
    assert unknown.status_code == 400
    assert unknown.json()["odata.error"]["message"]["value"] == "Сегмент пути Owner2 не найден!"
    for refused in (bare, negated, listed):
        assert refused.status_code == 400 and refused.json()["odata.error"]["code"] == "14"
    assert proper.status_code == 200 and len(proper.json()["value"]) == 2


async def test_client_filters_are_the_eq_true_false_forms() -> None:
    expr = F("Posted").is_true() & F("DeletionMark").is_false()
    assert expr.render() == "Posted eq true and DeletionMark eq false"


async def test_html_404_from_iis_is_not_not_found(emulator: Emulator, onec: OneCClient) -> None:
    emulator.base.faults.iis = True
    long_filter = " or ".join(f"Code eq '{n:09d}'" for n in range(120))
    with pytest.raises(OneCUrlRefused) as caught:
        await onec.list_page("Catalog_Контрагенты", filter=long_filter)
    assert not isinstance(caught.value, OneCNotFound)
    assert isinstance(caught.value, OneCBadRequest) and caught.value.status == 404
    with pytest.raises(OneCNotFound) as missing:  # a real miss is still a miss
        await onec.get("Catalog_Контрагенты", "00000000-0000-0000-0000-0000000000aa")
    assert missing.value.instance_missing


async def test_key_lookups_are_split_to_stay_under_2048_bytes(
    emulator: Emulator, onec: OneCClient
) -> None:
    emulator.base.faults.iis = True
    keys = [o["Ref_Key"] for o in emulator.base.all("Catalog_Номенклатура")] * 8
    before = emulator.base.requests
    found = await onec.list_by_keys("Catalog_Номенклатура", keys, select="Ref_Key")
    assert len(found) == 10 and emulator.base.requests - before == 1  # duplicates dropped
    many = [f"{n:08x}-0000-4000-8000-000000000000" for n in range(100)]
    before = emulator.base.requests
    assert await onec.list_by_keys("Catalog_Номенклатура", many, select="Ref_Key") == []
    assert emulator.base.requests - before >= 3


async def test_spaces_are_percent_20_never_plus(emulator: Emulator, onec: OneCClient) -> None:
    found = await onec.find_one("Catalog_Контрагенты", F("Description") == "АО «Вектор»")
    assert found is not None and found["ИНН"] == "7812345678"
