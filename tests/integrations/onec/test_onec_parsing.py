"""1C's value shapes: Int64 strings, zone-less dates, zero GUIDs, composite fields."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from salesflow.integrations.onec.errors import parse_error_body
from salesflow.integrations.onec.parsing import (
    ZERO_GUID,
    Ref,
    parse_entity,
    serialize_entity,
)

if TYPE_CHECKING:
    from conftest import Emulator

    from salesflow.integrations.onec.client import OneCClient

MSK = ZoneInfo("Europe/Moscow")
KEY = "4d94878d-b900-5721-b631-ebe510c4921d"


def test_parse_entity_converts_1c_shapes() -> None:
    raw = {
        "odata.metadata": "http://h/trade/odata/standard.odata/$metadata#Task/@Element",
        "Ref_Key": KEY,
        "Контрагент_Key": ZERO_GUID,
        "Date": "2025-03-03T10:15:00",
        "СрокИсполнения": "0001-01-01T00:00:00",
        "СрокГодности": "36",
        "Исполнитель": KEY,
        "Исполнитель_Type": "StandardODATA.Catalog_Пользователи",
        "Предмет": "",
        "Предмет_Type": "StandardODATA.Undefined",
        "Описание": "2025-03-03T10:15:00 не дата?",
        "Контрагент@navigationLinkUrl": "Task(guid'…')/Контрагент",
        "Товары": [{"Ref_Key": KEY, "LineNumber": "1", "Номенклатура_Key": ZERO_GUID}],
    }
    parsed = parse_entity(raw, MSK)
    assert parsed["Ref_Key"] == KEY
    assert parsed["Контрагент_Key"] is None
    assert parsed["Date"] == datetime(2025, 3, 3, 10, 15, tzinfo=MSK)
    assert parsed["Date"].astimezone(UTC).hour == 7
    assert parsed["СрокИсполнения"] is None
    assert parsed["СрокГодности"] == 36
    assert parsed["Исполнитель"] == Ref("Catalog_Пользователи", KEY)
    assert parsed["Предмет"] is None
    assert parsed["Описание"] == "2025-03-03T10:15:00 не дата?"
    assert "odata.metadata" not in parsed
    assert "Контрагент@navigationLinkUrl" not in parsed
    assert parsed["Товары"] == [{"Ref_Key": KEY, "LineNumber": 1, "Номенклатура_Key": None}]


def test_primitive_composite_values() -> None:
    raw = {
        "Значение": "5",
        "Значение_Type": "Edm.Int64",
        "Когда": "2025-01-02T00:00:00",
        "Когда_Type": "Edm.DateTime",
    }
    parsed = parse_entity(raw, MSK)
    assert parsed["Значение"] == 5
    assert parsed["Когда"] == datetime(2025, 1, 2, tzinfo=MSK)


def test_serialize_entity_for_writes() -> None:
    body = serialize_entity(
        {
            "Контрагент_Key": None,
            "Date": datetime(2025, 3, 3, 7, 0, tzinfo=UTC),
            "Предмет": Ref("Document_СчетНаОплатуКлиенту", KEY),
            "СуммаДокумента": Decimal("640000.00"),
            "Товары": [{"Сумма": Decimal("0.5")}, {"Сумма": 1, "LineNumber": "2"}],
        },
        MSK,
    )
    assert body == {
        "Контрагент_Key": ZERO_GUID,
        "Date": "2025-03-03T10:00:00",
        "Предмет": KEY,
        "Предмет_Type": "StandardODATA.Document_СчетНаОплатуКлиенту",
        "СуммаДокумента": 640000,
        "Товары": [{"Сумма": 0.5, "LineNumber": "1"}, {"Сумма": 1, "LineNumber": "2"}],
    }


def test_error_bodies_json_and_atom() -> None:
    body = '{"odata.error":{"code":"9","message":{"lang":"ru","value":"Не найден"}}}'
    assert parse_error_body(body.encode()) == ("9", "Не найден")
    atom = (
        '<?xml version="1.0"?><m:error xmlns:m="x"><m:code>-1</m:code>'
        '<m:message xml:lang="ru">Ошибка &amp; отказ</m:message></m:error>'
    )
    assert parse_error_body(atom) == ("-1", "Ошибка & отказ")
    assert parse_error_body(b"<html>503</html>") == (None, None)


async def test_wire_shapes_of_the_emulator(emulator: Emulator) -> None:
    """1C's JSON as it comes: Int64 and LineNumber as strings, naive dates, zero GUIDs."""
    async with emulator.raw() as http:
        response = await http.get(
            "Document_КоммерческоеПредложениеКлиенту?$format=json&$filter=Number%20eq%20'КП-000123'"
        )
        kp = response.json()["value"][0]
        nomenclature = (await http.get("Catalog_Номенклатура?$format=json&$top=1")).json()
    metadata = response.json()["odata.metadata"]
    assert metadata.endswith("$metadata#Document_КоммерческоеПредложениеКлиенту")
    assert kp["Date"] == "2025-03-03T10:15:00"
    assert kp["Товары"][0]["LineNumber"] == "1"
    assert kp["Товары"][0]["Ref_Key"] == kp["Ref_Key"]
    assert kp["СуммаДокумента"] == 640000
    assert kp["Контрагент@navigationLinkUrl"].endswith("/Контрагент")
    item = nomenclature["value"][0]
    assert item["СрокГодности"] == "36"
    assert item["Parent_Key"] == ZERO_GUID
    assert list(item)[:7] == [
        "Ref_Key",
        "DataVersion",
        "DeletionMark",
        "Parent_Key",
        "IsFolder",
        "Code",
        "Description",
    ]


async def test_client_reads_parsed_values(emulator: Emulator, onec: OneCClient) -> None:
    task = await onec.create(
        "Task_ЗадачаИсполнителя",
        {
            "Description": "Отгрузить товар клиенту",
            "Исполнитель": Ref(
                "Catalog_Пользователи",
                emulator.base.find("Catalog_Пользователи", Description="Логистов Пётр Сергеевич")[
                    0
                ]["Ref_Key"],
            ),
            "СрокИсполнения": datetime(2025, 3, 10, 15, 0, tzinfo=UTC),
        },
    )
    stored = emulator.base.get("Task_ЗадачаИсполнителя", task["Ref_Key"])
    assert stored["СрокИсполнения"] == datetime(2025, 3, 10, 18, 0)  # base wall clock (MSK)
    assert task["СрокИсполнения"] == datetime(2025, 3, 10, 18, 0, tzinfo=MSK)
    assert task["Исполнитель"].type == "Catalog_Пользователи"
    assert task["Предмет"] is None
    assert task["ДатаИсполнения"] is None
    assert task["Executed"] is False
    assert task["Number"] == "00000000000001"  # a task Number is 14 characters
