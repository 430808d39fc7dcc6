"""The configuration's object handlers: defaults, ПередЗаписью and ОбработкаПроведения.

Over OData, ПередЗаписью/ПриЗаписи and ОбработкаПроведения run, ОбработкаПроверкиЗаполнения
does not; `1C_OData-DataLoadMode: true` skips the write checks. A refusal is a 500 with
code -1 (shared/research/onec.md §4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emulators.onec.codec import ZERO_GUID
from emulators.onec.errors import ODataFault, business
from emulators.onec.schema import EntityType

if TYPE_CHECKING:
    from emulators.onec.state import OneCBase

# Attribute defaults filled on creation, as the configuration would.
DEFAULTS: dict[tuple[str, str], str] = {
    ("Catalog_Номенклатура", "ТипНоменклатуры"): "Товар",
    ("Catalog_Контрагенты", "ЮрФизЛицо"): "ЮрЛицо",
    ("Document_КоммерческоеПредложениеКлиенту", "Статус"): "НеСогласовано",
    ("Document_СчетНаОплатуКлиенту", "ФормаОплаты"): "Безналичная",
    (
        "Document_ПоступлениеБезналичныхДенежныхСредств",
        "ХозяйственнаяОперация",
    ): "ПоступлениеОплатыОтКлиента",
    ("Document_РеализацияТоваровУслуг", "Статус"): "КОтгрузке",
    ("Document_ЗаказКлиента", "Статус"): "НеСогласован",
    ("Document_ПоступлениеНаРасчетныйСчет", "ВидОперации"): "ОплатаПокупателя",
    ("Task_ЗадачаИсполнителя", "Важность"): "Обычная",
    ("Task_ЗадачаИсполнителя", "СостояниеБизнесПроцесса"): "Активен",
}


def totals(etype: EntityType, obj: dict[str, Any]) -> None:
    """A document's СуммаДокумента follows its rows, as ПередЗаписью recalculates it."""
    if etype.prop("СуммаДокумента") is None:
        return
    parts = (
        ("Товары", "Сумма"),
        ("Услуги", "Сумма"),
        ("РасшифровкаПлатежа", "Сумма"),
        ("РасшифровкаПлатежа", "СуммаПлатежа"),
    )
    total, seen = 0.0, False
    for table_name, column in parts:
        table = etype.table(table_name)
        rows = obj.get(table_name)
        if table is not None and table.prop(column) is not None and rows:
            total += sum(float(r[column]) for r in rows)
            seen = True
    if seen:
        obj["СуммаДокумента"] = round(total, 2)


def before_write(
    base: OneCBase, etype: EntityType, obj: dict[str, Any], *, is_new: bool, load_mode: bool
) -> None:
    totals(etype, obj)
    if load_mode:
        return
    if etype.name == "Catalog_Номенклатура" and not obj.get("IsFolder"):
        for other in base.objects[etype.name].values():
            same = other["Description"].strip().casefold() == obj["Description"].strip().casefold()
            if same and other["Ref_Key"] != obj["Ref_Key"] and not other["IsFolder"]:
                raise business(
                    "ПередЗаписью",
                    f'Номенклатура с наименованием "{obj["Description"]}" уже существует.',
                )


def posting(base: OneCBase, etype: EntityType, obj: dict[str, Any], *, operational: bool) -> None:
    """ОбработкаПроведения: injected refusals first, then the configuration's own checks."""
    if obj["DeletionMark"]:
        raise ODataFault(500, "-1", "Помеченный на удаление документ не может быть проведен!")
    for marker in (obj["Ref_Key"], obj["Number"], etype.name):
        reason = base.faults.post_errors.get(marker)
        if reason:
            raise business("ОбработкаПроведения", reason)
    if obj.get("Контрагент_Key", ZERO_GUID) == ZERO_GUID:
        raise business("ОбработкаПроведения", 'Не заполнено поле "Контрагент".')
    if etype.table("Товары") is not None and not obj["Товары"]:
        raise business("ОбработкаПроведения", 'Не заполнена табличная часть "Товары".')
