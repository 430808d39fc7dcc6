"""What people do in 1C, for tests and the demo: the logist works on a task, a payment
arrives for an invoice, an УПД is created, posted and signed. Each change bumps
DataVersion, as a write in 1C does."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from emulators.onec.codec import TYPE_PREFIX
from emulators.onec.errors import ODataFault, not_found
from emulators.onec.seed import LOGIST
from emulators.onec.state import OneCBase

TASKS = "Task_ЗадачаИсполнителя"
INVOICES = "Document_СчетНаОплатуКлиенту"
PAYMENTS = "Document_ПоступлениеБезналичныхДенежныхСредств"
OFFERS = "Document_КоммерческоеПредложениеКлиенту"
SALES = "Document_РеализацияТоваровУслуг"
ORDERS = "Document_ЗаказКлиента"


def accept_task(base: OneCBase, task: str) -> dict[str, Any]:
    obj = base.resolve(TASKS, task)
    obj["ПринятаКИсполнению"] = True
    obj["ДатаПринятияКИсполнению"] = base.now()
    base.touch(obj)
    return obj


def comment_task(base: OneCBase, task: str, text: str, author: str = LOGIST) -> dict[str, Any]:
    """Progress notes go into РезультатВыполнения, one line each, newest last."""
    obj = base.resolve(TASKS, task)
    line = f"{base.now():%d.%m.%Y %H:%M} {author}: {text}"
    obj["РезультатВыполнения"] = "\n".join(filter(None, [obj["РезультатВыполнения"], line]))
    base.touch(obj)
    return obj


def complete_task(
    base: OneCBase, task: str, comment: str = "", author: str = LOGIST
) -> dict[str, Any]:
    obj = base.resolve(TASKS, task)
    if obj["Executed"]:
        raise ODataFault(500, "-1", "Задача уже выполнена.")
    if comment:
        comment_task(base, task, comment, author)
    if not obj["ПринятаКИсполнению"]:
        obj["ПринятаКИсполнению"] = True
        obj["ДатаПринятияКИсполнению"] = base.now()
    obj["Executed"] = True
    obj["ДатаИсполнения"] = base.now()
    base.touch(obj)
    return obj


def sets_of(base: OneCBase) -> tuple[str, str]:
    """(invoice set, payment set) of the base's configuration."""
    if base.profile == "bp3":
        return "Document_СчетНаОплатуПокупателю", "Document_ПоступлениеНаРасчетныйСчет"
    return INVOICES, PAYMENTS


def receive_payment(
    base: OneCBase,
    invoice: str,
    amount: float | None = None,
    paid_on: datetime | None = None,
    incoming_number: str = "",
) -> dict[str, Any]:
    """A posted incoming payment whose РасшифровкаПлатежа points at the invoice."""
    invoice_set, payment_set = sets_of(base)
    inv = base.resolve(invoice_set, invoice)
    total = float(inv["СуммаДокумента"] if amount is None else amount)
    moment = paid_on or base.now()
    if base.profile == "bp3":
        row: dict[str, Any] = {
            "СчетНаОплату_Key": inv["Ref_Key"],
            "СуммаПлатежа": total,
            "СуммаВзаиморасчетов": total,
        }
        extra: dict[str, Any] = {"ВидОперации": "ОплатаПокупателя"}
    else:
        row = {
            "ОснованиеПлатежа": inv["Ref_Key"],
            "ОснованиеПлатежа_Type": TYPE_PREFIX + INVOICES,
            "Сумма": total,
            "СуммаВзаиморасчетов": total,
        }
        extra = {}
    return base.insert(
        payment_set,
        {
            "Date": moment,
            "Posted": True,
            "Организация_Key": inv["Организация_Key"],
            "Контрагент_Key": inv["Контрагент_Key"],
            "НазначениеПлатежа": f"Оплата по счету № {inv['Number']} от {inv['Date']:%d.%m.%Y}",
            "НомерВходящегоДокумента": incoming_number or str(len(base.all(payment_set)) + 1),
            "ДатаВходящегоДокумента": moment,
            "РасшифровкаПлатежа": [row],
            **extra,
        },
    )


def create_upd(base: OneCBase, basis: str, *, post: bool = True) -> dict[str, Any]:
    """An УПД (РеализацияТоваровУслуг) from an invoice, an order or a КП (УТ), or from the
    buyer's invoice (БП), linked as the configuration links it: УТ — ЗаказКлиента to the
    order (the invoice's ДокументОснование when that is an order); БП —
    СчетНаОплатуПокупателю_Key to the invoice. Goods come from the КП/order/invoice."""
    if base.profile == "bp3":
        invoice = base.resolve("Document_СчетНаОплатуПокупателю", basis)
        values: dict[str, Any] = {
            "СчетНаОплатуПокупателю_Key": invoice["Ref_Key"],
            "Товары": [dict(row) for row in invoice["Товары"]],
        }
        source = invoice
    else:
        source, source_set = _ut_source(base, basis)
        order = None
        if source_set == ORDERS:
            order = source
        elif source_set == INVOICES and source["ДокументОснование_Type"] == TYPE_PREFIX + ORDERS:
            order = base.get(ORDERS, source["ДокументОснование"])
        goods_from = order or source
        if source_set == INVOICES and order is None:
            found = base.lookup(OFFERS, source["ДокументОснование"])
            goods_from = found[1] if found else source
        values = {
            "Товары": [_sale_row(row) for row in goods_from.get("Товары", [])],
            "Основание": f"{source_set.removeprefix('Document_')} № {source['Number']}",
        }
        if order is not None:
            values["ЗаказКлиента"] = order["Ref_Key"]
            values["ЗаказКлиента_Type"] = TYPE_PREFIX + ORDERS
    obj = base.insert(
        SALES,
        {
            "Организация_Key": source["Организация_Key"],
            "Контрагент_Key": source["Контрагент_Key"],
            "СуммаДокумента": source["СуммаДокумента"],
            **values,
        },
    )
    if post:
        base.post(SALES, obj["Ref_Key"])
    return obj


def _ut_source(base: OneCBase, basis: str) -> tuple[dict[str, Any], str]:
    for entity_set in (INVOICES, ORDERS, OFFERS):
        try:
            return base.resolve(entity_set, basis), entity_set
        except ODataFault:
            continue
    raise not_found(OFFERS)


def _sale_row(row: dict[str, Any]) -> dict[str, Any]:
    """A КП/order row as a sale row (the sale's Товары has no composite СтавкаНДС here)."""
    keep = ("Номенклатура_Key", "Количество", "Цена", "Сумма", "СуммаНДС", "СуммаСНДС")
    return {name: row[name] for name in keep if name in row}


def post_document(base: OneCBase, entity_set: str, ref: str) -> dict[str, Any]:
    obj = base.resolve(entity_set, ref)
    return base.post(entity_set, obj["Ref_Key"])


def sign_upd(base: OneCBase, ref: str, signed: bool = True) -> dict[str, Any]:
    """The counterparty signed the УПД. A standard base keeps the ЭДО state in the БЭД
    subsystem, not on the document and not over this OData composition, so nothing on the
    document changes but its DataVersion; «signed» reaches the product from Bitrix24
    (docs/ONEC.md). Kept so scripts of the demo and tests read as the story goes."""
    obj = base.resolve(SALES, ref)
    base.touch(obj)
    return obj
