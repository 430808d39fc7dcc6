"""The emulated base behaves like a live 1C: wire details, quirks and the admin endpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING
from xml.etree import ElementTree

import httpx

from emulators.onec.app import run
from emulators.onec.seed import KP_NUMBER, LOGIST
from salesflow.integrations.onec.filters import F
from salesflow.integrations.onec.parsing import Ref

if TYPE_CHECKING:
    from conftest import Emulator

    from salesflow.integrations.onec.client import OneCClient

KP = "Document_КоммерческоеПредложениеКлиенту"
INVOICE = "Document_СчетНаОплатуКлиенту"
PAYMENT = "Document_ПоступлениеБезналичныхДенежныхСредств"
UPD = "Document_РеализацияТоваровУслуг"
TASK = "Task_ЗадачаИсполнителя"
JSON = "$format=json"


async def test_atom_by_default_json_on_request(emulator: Emulator) -> None:
    async with emulator.raw() as http:
        atom = await http.get("Catalog_Контрагенты?$top=1")
        by_accept = await http.get(
            "Catalog_Контрагенты?$top=1", headers={"Accept": "application/json"}
        )
        bare = await http.get(
            "Catalog_Контрагенты?$top=1&$format=application/json;odata=nometadata"
        )
        service = await http.get("")
        metadata = await http.get("$metadata")
        count = await http.get("Catalog_Контрагенты/$count")
    for xml in (atom, service, metadata):
        ElementTree.fromstring(xml.content)  # well-formed
    assert atom.headers["content-type"].startswith("application/atom+xml")
    assert "<m:properties>" in atom.text and "<d:ИНН>" in atom.text
    assert by_accept.json()["value"][0]["Description"]
    assert "odata.metadata" not in bare.json()
    assert not any("@navigationLinkUrl" in key for key in bare.json()["value"][0])
    assert '<collection href="Document_КоммерческоеПредложениеКлиенту_Товары">' in service.text
    assert 'Namespace="StandardODATA"' in metadata.text
    assert 'Name="Post" IsBindable="true"' in metadata.text
    assert (
        "Collection(StandardODATA.Document_КоммерческоеПредложениеКлиенту_Товары_RowType)"
        in metadata.text
    )
    assert count.content == "\ufeff4".encode()


async def test_post_answers_201_with_raw_utf8_location(emulator: Emulator) -> None:
    body = {
        "Description": "ООО «Новый клиент»",
        "ИНН": "7700000003",
        "Ref_Key": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    }
    async with emulator.raw() as http:
        response = await http.post(f"Catalog_Контрагенты?{JSON}", json=body)
        listed = await http.get(f"Catalog_Контрагенты?{JSON}&$inlinecount=allpages&$top=1")
    assert response.status_code == 201
    assert response.json()["Ref_Key"] == body["Ref_Key"]  # a supplied key is kept
    location = response.headers.raw[[k for k, _ in response.headers.raw].index(b"location")][1]
    expected = f"Catalog_Контрагенты(guid'{body['Ref_Key']}')"
    assert location.decode("utf-8").endswith(expected)
    assert response.json()["odata.metadata"].endswith("#Catalog_Контрагенты/@Element")
    assert listed.json()["odata.count"] == "5"
    assert len(listed.json()["value"]) == 5  # $inlinecount=allpages: $top is ignored (ITS)


async def test_1c_write_quirks(emulator: Emulator) -> None:
    kp = emulator.base.find(KP, Number=KP_NUMBER)[0]
    url = f"{KP}(guid'{kp['Ref_Key']}')?{JSON}"
    async with emulator.raw() as http:
        gap = await http.patch(url, json={"Товары": [{"LineNumber": "2", "Количество": 1}]})
        missing = await http.patch(url, json={"Товары": [{"Количество": 1}]})
        broken = await http.post(f"{KP}?{JSON}", content=b"{not json")
        rows = await http.post(f"{KP}_Товары?{JSON}", json={"Количество": 1})
        int_text = await http.post(
            f"Catalog_Номенклатура?{JSON}", json={"Description": "Болт М8", "СрокГодности": "много"}
        )
        plus_path = await http.get(f"Catalog_Номенклатура+?{JSON}")
    assert gap.status_code == 400
    assert missing.status_code == 500 and missing.json()["odata.error"]["code"] == "-1"
    assert broken.status_code == 500 and "JSON" in broken.json()["odata.error"]["message"]["value"]
    assert rows.status_code == 400 and rows.json()["odata.error"]["code"] == "13"
    assert int_text.status_code == 201 and int_text.json()["СрокГодности"] == "0"
    assert plus_path.status_code == 404
    assert len(emulator.base.get(KP, kp["Ref_Key"])["Товары"]) == 3  # failed writes changed nothing


async def test_data_load_mode_skips_handlers(emulator: Emulator) -> None:
    body = {"Description": "Насос центробежный ЦН-100"}
    async with emulator.raw() as http:
        refused = await http.post(f"Catalog_Номенклатура?{JSON}", json=body)
        loaded = await http.post(
            f"Catalog_Номенклатура?{JSON}", json=body, headers={"1C_OData-DataLoadMode": "true"}
        )
    assert refused.status_code == 500
    assert loaded.status_code == 201


async def test_expand_needs_the_navigation_in_select(onec: OneCClient) -> None:
    without = await onec.list_page(
        KP, filter=F("Number") == KP_NUMBER, expand="Контрагент", select="Number"
    )
    assert "Контрагент" not in without[0]
    full = await onec.list_page(KP, filter=F("Number") == KP_NUMBER, expand="Контрагент")
    assert full[0]["Контрагент"]["ИНН"] == "7701234567"


async def test_filters_on_composites_and_tabular_parts(onec: OneCClient) -> None:
    big = await onec.list_page(KP, filter=F("Товары").any(lambda d: (d / "Цена") > 200000))
    assert [k["Number"] for k in big] == [KP_NUMBER]
    dated = await onec.list_page(KP, filter=F("Date") < F("СрокДействия"))
    assert len(dated) == 2
    by_like = await onec.list_page("Catalog_Контрагенты", filter=F("Description").startswith("ооо"))
    assert len(by_like) == 2


async def test_logist_task_round_trip(emulator: Emulator, onec: OneCClient) -> None:
    logist = emulator.base.find("Catalog_Пользователи", Description=LOGIST)[0]["Ref_Key"]
    task = await onec.create(
        TASK,
        {
            "Description": "Отгрузить товар клиенту",
            "Описание": "Сделка 42: отгрузить по КП-000123",
            "Исполнитель": Ref("Catalog_Пользователи", logist),
            "Ref_Key": "0b7f0a52-0000-4f0e-9a43-00000000042a",
        },
    )
    executor = Ref("Catalog_Пользователи", logist)
    mine = await onec.list_page(TASK, filter=F("Исполнитель") == executor)
    assert [t["Ref_Key"] for t in mine] == [task["Ref_Key"]]
    async with httpx.AsyncClient(base_url=emulator.url) as admin:
        await admin.post(f"/_emulator/tasks/{task['Ref_Key']}/accept")
        await admin.post(
            f"/_emulator/tasks/{task['Number']}/comment", json={"text": "Машина заказана на завтра"}
        )
        done = await admin.post(
            f"/_emulator/tasks/{task['Ref_Key']}/complete", json={"comment": "Отгружено, ТТН 123"}
        )
    assert done.status_code == 200 and done.json()["Executed"] is True
    seen = await onec.get(TASK, "0b7f0a52-0000-4f0e-9a43-00000000042a")
    assert seen["Executed"] and seen["ПринятаКИсполнению"]
    assert seen["РезультатВыполнения"].splitlines()[-1].endswith("Отгружено, ТТН 123")
    assert "Машина заказана" in seen["РезультатВыполнения"]
    assert seen["ДатаИсполнения"] is not None
    assert seen["DataVersion"] != task["DataVersion"]


async def test_payment_and_upd_arrive_through_admin(emulator: Emulator, onec: OneCClient) -> None:
    kp = await onec.find_one(KP, F("Number") == KP_NUMBER)
    assert kp is not None
    invoice = await onec.create(
        INVOICE,
        {
            "Контрагент_Key": kp["Контрагент_Key"],
            "Организация_Key": kp["Организация_Key"],
            "СуммаДокумента": 640000,
            "ДокументОснование": Ref(KP, kp["Ref_Key"]),
        },
    )
    order = await onec.create(
        "Document_ЗаказКлиента",
        {
            "Контрагент_Key": kp["Контрагент_Key"],
            "Организация_Key": kp["Организация_Key"],
            "ДокументОснование": Ref(KP, kp["Ref_Key"]),
            "Товары": [
                {k: row[k] for k in ("Номенклатура_Key", "Количество", "Цена", "Сумма")}
                for row in kp["Товары"]
            ],
        },
    )
    async with httpx.AsyncClient(base_url=emulator.url) as admin:
        paid = await admin.post(
            "/_emulator/payments",
            json={
                "invoice": invoice["Number"],
                "amount": 320000,
                "date": "2025-03-12",
            },
        )
        upd = await admin.post("/_emulator/upd", json={"basis": invoice["Ref_Key"]})
        by_order = await admin.post("/_emulator/upd", json={"basis": order["Number"]})
        signed = await admin.post(f"/_emulator/upd/{upd.json()['Number']}/sign")
        summary = await admin.get("/_emulator")
        listed = await admin.get(f"/_emulator/objects/{PAYMENT}")
    assert paid.status_code == 200, paid.text
    basis = Ref(INVOICE, invoice["Ref_Key"])
    payments = await onec.list_page(
        PAYMENT, filter=F("РасшифровкаПлатежа").any(lambda d: (d / "ОснованиеПлатежа") == basis)
    )
    assert len(payments) == 1
    assert payments[0]["СуммаДокумента"] == 320000 and payments[0]["Posted"] is True
    assert payments[0]["Date"].date().isoformat() == "2025-03-12"
    rows = await onec.list_page(
        f"{PAYMENT}_РасшифровкаПлатежа", filter=F("ОснованиеПлатежа") == basis
    )
    assert [r["Сумма"] for r in rows] == [320000]
    assert upd.status_code == 200 and upd.json()["Posted"] is True
    # A standard base has no ЭДО state on the document: signing changes only DataVersion.
    assert signed.status_code == 200 and "Подписан" not in signed.json()
    assert upd.json()["ЗаказКлиента_Type"] == "StandardODATA.Undefined"  # an invoice from a КП
    sale = await onec.find_one(UPD, F("Ref_Key") == upd.json()["Ref_Key"])
    assert sale is not None
    assert sale["СуммаДокумента"] == 640000 and len(sale["Товары"]) == 3
    linked = await onec.list_page(
        UPD, filter=F("ЗаказКлиента") == Ref("Document_ЗаказКлиента", order["Ref_Key"])
    )
    assert [s["Ref_Key"] for s in linked] == [by_order.json()["Ref_Key"]]
    assert summary.json()["counts"][PAYMENT] == 1
    assert listed.json()[0]["РасшифровкаПлатежа"][0]["LineNumber"] == "1"


async def test_admin_faults_endpoint(emulator: Emulator) -> None:
    async with httpx.AsyncClient(base_url=emulator.url) as admin:
        set_ = await admin.post("/_emulator/faults", json={"down": "503", "latency": 0.01})
        assert set_.json()["down"] == "503"
        async with emulator.raw() as http:
            down = await http.get(f"Catalog_Контрагенты?{JSON}")
        assert down.status_code == 503 and "text/html" in down.headers["content-type"]
        assert (await admin.get("/_emulator/sessions")).status_code == 200  # admin unaffected
        cleared = await admin.delete("/_emulator/faults")
        assert cleared.json()["down"] is None and cleared.json()["latency"] == 0
        bad = await admin.get("/_emulator/objects/Catalog_Нет")
        assert bad.status_code == 404
        reset = await admin.post("/_emulator/reset")
        assert reset.json()["counts"]["Catalog_Номенклатура"] == 10


def test_run_is_exposed_for_the_cli() -> None:
    assert run.__defaults__ == ("127.0.0.1", 8082, "trade", "odata", "odata", "ut11", False)
