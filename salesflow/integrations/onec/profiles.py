"""Configuration profiles: the 1C names behind each thing the product reads or writes.

The activities speak in the product's terms (the КП and its lines, the invoice, the payment,
the sale document, a person's task); a profile maps every term to the object, attribute,
enumeration value or link of one standard configuration:

- `ut11` (default) — 1С:Управление торговлей 11.5;
- `erp2` — 1С:ERP 2 (the УТ object model for everything the product touches);
- `bp3` — 1С:Бухгалтерия предприятия 3.0 (no КП document: the КП is the buyer's invoice).

Names are from public dumps of the standard configurations and recorded OData answers
(shared/research/onec-real.md, onec.md §6). A customised base overrides single names
(`[onec.names]` in the settings). A link is plain when its name ends in `_Key`
(`СчетНаОплату_Key`), composite otherwise (`ЗаказКлиента` + `ЗаказКлиента_Type`).

The optional extension (docs/ONEC.md) adds `ИдентификаторБитрикс24` / `СсылкаБитрикс24` to
the task; the product works without it (the task's Ref_Key is derived from the key).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace

PROFILES_NAMES = ("ut11", "erp2", "bp3")


@dataclass(frozen=True)
class OneCNames:
    """Every 1C name the product uses. Empty string: the configuration has no such thing."""

    # The КП (R-KP-2) and its lines.
    kp: str = "Document_КоммерческоеПредложениеКлиенту"
    kp_lines: str = "Товары"
    kp_prices_include_vat: str = "ЦенаВключаетНДС"
    kp_amount: str = "СуммаДокумента"
    line_nomenclature: str = "Номенклатура_Key"
    line_quantity: str = "Количество"
    line_price: str = "Цена"
    line_amount: str = "Сумма"
    line_vat: str = "СтавкаНДС"  # composite in УТ 11.5.22 (Catalog_СтавкиНДС or the enum)
    # Nomenclature, units and VAT rates.
    nomenclature: str = "Catalog_Номенклатура"
    nomenclature_article: str = "Артикул"
    nomenclature_full_name: str = "НаименованиеПолное"
    nomenclature_unit: str = "ЕдиницаИзмерения_Key"
    units: str = "Catalog_УпаковкиЕдиницыИзмерения"
    unit_code: str = "Code"  # УТ has no КодОКЕИ: the unit's code is Code
    vat_rates: str = "Catalog_СтавкиНДС"
    vat_rate_percent: str = "Ставка"
    vat_rate_enum: str = "ПеречислениеСтавкаНДС"
    # People and counterparties.
    users: str = "Catalog_Пользователи"
    counterparties: str = "Catalog_Контрагенты"
    counterparty_inn: str = "ИНН"
    counterparty: str = "Контрагент_Key"  # on the sale document
    # The invoice and payments (R-INV-3, R-PS-1).
    invoice: str = "Document_СчетНаОплатуКлиенту"
    invoice_basis: str = "ДокументОснование"  # the order/КП the invoice was made from
    order: str = "Document_ЗаказКлиента"
    payment: str = "Document_ПоступлениеБезналичныхДенежныхСредств"
    payment_rows: str = "РасшифровкаПлатежа"
    payment_invoice: str = "ОснованиеПлатежа"
    payment_row_amount: str = "Сумма"
    payment_incoming_number: str = "НомерВходящегоДокумента"
    payment_kind: str = ""  # bp3: ВидОперации
    payment_kind_value: str = ""  # bp3: ОплатаПокупателя
    # Closing documents (R-SH-3).
    sale: str = "Document_РеализацияТоваровУслуг"
    sale_link: str = "ЗаказКлиента"  # to the order (УТ) or the invoice (БП)
    sale_link_to: str = "order"  # "order" or "invoice": what sale_link points at
    act: str = ""  # e.g. Document_АктВыполненныхРабот; empty: УПД only
    # A person's task (БСП).
    task: str = "Task_ЗадачаИсполнителя"
    task_description: str = "Описание"
    task_executor: str = "Исполнитель"
    task_author_text: str = "АвторСтрокой"
    task_subject_text: str = "ПредметСтрокой"
    task_deadline: str = "СрокИсполнения"
    task_accepted: str = "ПринятаКИсполнению"
    task_result: str = "РезультатВыполнения"
    task_executed_at: str = "ДатаИсполнения"
    # The optional extension (docs/ONEC.md): off unless `onec.extension = true`.
    ext_task_key: str = "ИдентификаторБитрикс24"
    ext_task_link: str = "СсылкаБитрикс24"

    def override(self, names: Mapping[str, str]) -> OneCNames:
        unknown = set(names) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown onec.names: {', '.join(sorted(unknown))}")
        return replace(self, **dict(names))

    def items(self) -> Iterator[tuple[str, str]]:
        for f in fields(self):
            yield f.name, getattr(self, f.name)


UT11 = OneCNames()
ERP2 = OneCNames()  # ERP 2 uses the УТ names for the КП, invoice, payments and tasks
BP3 = OneCNames(
    # БП has no КП document: the КП is the buyer's invoice, with Товары.
    kp="Document_СчетНаОплатуПокупателю",
    kp_prices_include_vat="СуммаВключаетНДС",  # БП documents' name for it
    units="Catalog_КлассификаторЕдиницИзмерения",
    vat_rates="",  # БП keeps СтавкаНДС as the enum on the row
    invoice="Document_СчетНаОплатуПокупателю",
    invoice_basis="",
    order="",
    payment="Document_ПоступлениеНаРасчетныйСчет",
    # Recorded БП answers: rows carry СчетНаОплату_Key and СуммаПлатежа (find_string id
    # 13030349660, a 1cfresh client of Document_ПоступлениеНаРасчетныйСчет_РасшифровкаПлатежа).
    payment_invoice="СчетНаОплату_Key",
    payment_row_amount="СуммаПлатежа",
    payment_kind="ВидОперации",
    payment_kind_value="ОплатаПокупателя",
    sale_link="СчетНаОплатуПокупателю_Key",
    sale_link_to="invoice",
)
PROFILES: dict[str, OneCNames] = {"ut11": UT11, "erp2": ERP2, "bp3": BP3}


def names_for(profile: str, overrides: Mapping[str, str] | None = None) -> OneCNames:
    """The profile's names with the base's overrides applied."""
    try:
        names = PROFILES[profile]
    except KeyError:
        raise ValueError(
            f"unknown onec.profile {profile!r} (one of {', '.join(PROFILES_NAMES)})"
        ) from None
    return names.override(overrides or {})


def is_plain_link(name: str) -> bool:
    """`X_Key` is a plain reference; anything else a composite `X` + `X_Type`."""
    return name.endswith("_Key")


# What each name is, for `doctor`: (object term, attribute terms).
OBJECT_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "kp": ("kp_prices_include_vat", "kp_amount", "kp_lines"),
    "nomenclature": ("nomenclature_article", "nomenclature_full_name", "nomenclature_unit"),
    "units": ("unit_code",),
    "vat_rates": ("vat_rate_percent", "vat_rate_enum"),
    "users": (),
    "counterparties": ("counterparty_inn",),
    "invoice": ("invoice_basis",),
    "order": (),
    "payment": ("payment_rows", "payment_incoming_number", "payment_kind"),
    "sale": ("sale_link", "counterparty"),
    "act": ("sale_link", "counterparty"),
    "task": (
        "task_description",
        "task_executor",
        "task_author_text",
        "task_subject_text",
        "task_deadline",
        "task_accepted",
        "task_result",
        "task_executed_at",
    ),
}
LINE_ATTRIBUTES: dict[str, tuple[str, str]] = {
    # tabular-part attribute term → (object term, tabular-part term)
    "line_nomenclature": ("kp", "kp_lines"),
    "line_quantity": ("kp", "kp_lines"),
    "line_price": ("kp", "kp_lines"),
    "line_amount": ("kp", "kp_lines"),
    "line_vat": ("kp", "kp_lines"),
    "payment_invoice": ("payment", "payment_rows"),
    "payment_row_amount": ("payment", "payment_rows"),
}
EXTENSION_ATTRIBUTES: dict[str, str] = {"ext_task_key": "task", "ext_task_link": "task"}

__all__ = [
    "BP3",
    "ERP2",
    "PROFILES",
    "UT11",
    "OneCNames",
    "is_plain_link",
    "names_for",
]
