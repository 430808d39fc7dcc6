"""What people do in 1C, for tests and the demo: the logist works on a task, a payment
arrives for an invoice, an УПД is created, posted and signed. Each change bumps
DataVersion, as a write in 1C does."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from emulators.onec.codec import TYPE_PREFIX
from emulators.onec.errors import ODataFault
from emulators.onec.seed import LOGIST
from emulators.onec.state import OneCBase

TASKS = "Task_ЗадачаИсполнителя"
INVOICES = "Document_СчетНаОплатуКлиенту"
PAYMENTS = "Document_ПоступлениеБезналичныхДенежныхСредств"
OFFERS = "Document_КоммерческоеПредложениеКлиенту"
SALES = "Document_РеализацияТоваровУслуг"


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


def receive_payment(
    base: OneCBase,
    invoice: str,
    amount: float | None = None,
    paid_on: datetime | None = None,
    incoming_number: str = "",
) -> dict[str, Any]:
    """A posted incoming payment whose РасшифровкаПлатежа points at the invoice."""
    inv = base.resolve(INVOICES, invoice)
    total = float(inv["СуммаДокумента"] if amount is None else amount)
    moment = paid_on or base.now()
    return base.insert(
        PAYMENTS,
        {
            "Date": moment,
            "Posted": True,
            "Организация_Key": inv["Организация_Key"],
            "Контрагент_Key": inv["Контрагент_Key"],
            "НазначениеПлатежа": f"Оплата по счету № {inv['Number']} от {inv['Date']:%d.%m.%Y}",
            "НомерВходящегоДокумента": incoming_number or str(len(base.all(PAYMENTS)) + 1),
            "ДатаВходящегоДокумента": moment,
            "РасшифровкаПлатежа": [
                {
                    "ОснованиеПлатежа": inv["Ref_Key"],
                    "ОснованиеПлатежа_Type": TYPE_PREFIX + INVOICES,
                    "Сумма": total,
                    "СуммаВзаиморасчетов": total,
                }
            ],
        },
    )


def create_upd(base: OneCBase, basis: str, *, post: bool = True) -> dict[str, Any]:
    """An УПД (РеализацияТоваровУслуг) from an invoice (goods from its КП) or from a КП."""
    try:
        source = base.resolve(INVOICES, basis)
        source_set = INVOICES
    except ODataFault:
        source = base.resolve(OFFERS, basis)
        source_set = OFFERS
    offer = source
    if source_set == INVOICES:
        found = base.lookup(OFFERS, source["ДокументОснование"])
        offer = found[1] if found else source
    rows = [dict(row) for row in offer.get("Товары", [])]
    obj = base.insert(
        SALES,
        {
            "Организация_Key": source["Организация_Key"],
            "Контрагент_Key": source["Контрагент_Key"],
            "СуммаДокумента": source["СуммаДокумента"],
            "ДокументОснование": source["Ref_Key"],
            "ДокументОснование_Type": TYPE_PREFIX + source_set,
            "Товары": rows,
        },
    )
    if post:
        base.post(SALES, obj["Ref_Key"])
    return obj


def post_document(base: OneCBase, entity_set: str, ref: str) -> dict[str, Any]:
    obj = base.resolve(entity_set, ref)
    return base.post(entity_set, obj["Ref_Key"])


def sign_upd(base: OneCBase, ref: str, signed: bool = True) -> dict[str, Any]:
    """The counterparty signed the УПД (ЭДО finished) — or the signature is withdrawn."""
    obj = base.resolve(SALES, ref)
    obj["Подписан"] = signed
    obj["ДатаПодписания"] = base.now() if signed else datetime(1, 1, 1)
    obj["СостояниеЭДО"] = "ДокументооборотЗавершен" if signed else "ОжидаетсяПодписьКонтрагента"
    base.touch(obj)
    return obj
