"""The $filter builder and URL encoding: literals are escaped, never pasted."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from salesflow.integrations.onec.filters import F, Raw, guid, literal, or_
from salesflow.integrations.onec.parsing import Ref
from salesflow.integrations.onec.urls import entity_path, query_string

MSK = ZoneInfo("Europe/Moscow")
KEY = "4d94878d-b900-5721-b631-ebe510c4921d"


def test_string_literal_doubles_quotes() -> None:
    assert (F("Description") == "ООО «Д'Арт»").render() == "Description eq 'ООО «Д''Арт»'"
    assert literal("'; drop") == "'''; drop'"


def test_guid_datetime_number_bool_literals() -> None:
    assert literal(guid(KEY.upper())) == f"guid'{KEY}'"
    assert literal(uuid.UUID(KEY)) == f"guid'{KEY}'"
    assert literal(guid(None)) == "guid'00000000-0000-0000-0000-000000000000'"
    assert literal(datetime(2025, 3, 3, 10, 15, 7, 123)) == "datetime'2025-03-03T10:15:07'"
    assert literal(date(2025, 1, 31)) == "datetime'2025-01-31T00:00:00'"
    assert literal(True) == "true"
    assert literal(10) == "10"
    assert literal(Decimal("640000.50")) == "640000.50"
    assert literal(1e20) == "100000000000000000000"


def test_aware_datetimes_are_converted_to_the_base_zone() -> None:
    noon_utc = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
    assert (F("Date") >= noon_utc).render(MSK) == "Date ge datetime'2025-03-03T12:00:00'"


def test_key_fields_take_strings_as_guids_and_validate_them() -> None:
    assert (F("Контрагент_Key") == KEY).render() == f"Контрагент_Key eq guid'{KEY}'"
    assert (F("Ref_Key") != None).render().endswith("guid'00000000-0000-0000-0000-000000000000'")  # noqa: E711
    with pytest.raises(ValueError):
        (F("Контрагент_Key") == "' or 1 eq 1 or '").render()


def test_composite_value_is_cast() -> None:
    expr = F("ДокументОснование") == Ref("Document_СчетНаОплатуКлиенту", KEY)
    assert expr.render() == (
        f"ДокументОснование eq cast(guid'{KEY}','Document_СчетНаОплатуКлиенту')"
    )


def test_boolean_operators_and_precedence() -> None:
    a, b, c = F("Posted") == True, F("DeletionMark") == False, F("Number") == "1"  # noqa: E712
    assert (a & b).render() == "Posted eq true and DeletionMark eq false"
    assert ((a | b) & c).render() == "(Posted eq true or DeletionMark eq false) and Number eq '1'"
    assert (~a).render() == "not (Posted eq true)"
    assert or_(a, b, c).render().count(" or ") == 2


def test_functions() -> None:
    assert F("Description").substringof("Ром'").render() == "substringof('Ром''',Description)"
    assert F("Code").startswith("НФ").render() == "startswith(Code,'НФ')"
    assert F("Предмет").isof("Document_X").render() == "isof(Предмет,'Document_X')"
    rows = F("Товары").any(lambda d: d / "Цена" > 10000)
    assert rows.render() == "Товары/any(d: d/Цена gt 10000)"
    assert F("Товары").any().render() == "Товары/any()"
    assert (F("Контрагент") / "ИНН" == "7701234567").render() == "Контрагент/ИНН eq '7701234567'"


def test_field_names_and_values_are_checked() -> None:
    with pytest.raises(ValueError):
        F("Description eq 'x' or Code")
    with pytest.raises(ValueError):
        literal(None)
    with pytest.raises(TypeError):
        literal(object())
    assert Raw("Posted").render() == "Posted"


def test_query_string_uses_percent20_and_escapes_plus() -> None:
    qs = query_string({"$filter": "Description eq 'A+B Трейд'", "$top": 5, "$skip": None})
    assert "+" not in qs
    assert qs == ("$filter=Description%20eq%20'A%2BB%20%D0%A2%D1%80%D0%B5%D0%B9%D0%B4'&$top=5")
    assert query_string({"$filter": "a eq '&#=%'"}) == "$filter=a%20eq%20'%26%23%3D%25'"


def test_entity_paths_percent_encode_cyrillic() -> None:
    path = entity_path("Catalog_Номенклатура", KEY, MSK)
    encoded = "%D0%9D%D0%BE%D0%BC%D0%B5%D0%BD%D0%BA%D0%BB%D0%B0%D1%82%D1%83%D1%80%D0%B0"
    assert path == f"Catalog_{encoded}(guid'{KEY}')"
    row = entity_path("Document_X_Товары", {"Ref_Key": KEY, "LineNumber": 2}, MSK)
    assert row.endswith(f"(Ref_Key=guid'{KEY}',LineNumber=2)")
    assert entity_path("Document_X", KEY, MSK, action="Post").endswith("')/Post")
    with pytest.raises(ValueError):
        entity_path("Catalog_X", "not-a-guid", MSK)
