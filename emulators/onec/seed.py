"""Built-in seed data: units, nomenclature with prices, counterparties, users, two КП.

GUIDs are derived from names (uuid5), so they are the same on every start and a test or
the demo can rely on them. КП «КП-000123» for ООО «Ромашка» (ИНН 7701234567) has three
lines totalling 640 000 ₽; КП «КП-000124» is for АО «Вектор». The local stack adds the demo
invoice «СЧ-000123» made from КП-000123 (`seed_demo_invoice`), which its demo deal names.

Per profile (`base.profile`): in `bp3` there is no КП document, so the two КП are buyer's
invoices (Document_СчетНаОплатуПокупателю) with the same numbers; units are the classifier;
VAT is the enum on the row. In `ut11`/`erp2` the КП rows carry the composite СтавкаНДС —
КП-000123 a Catalog_СтавкиНДС item, КП-000124 the enum value — as УТ 11.5.22 allows both.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from emulators.onec.codec import TYPE_PREFIX

if TYPE_CHECKING:
    from emulators.onec.state import OneCBase

_NAMESPACE = uuid.UUID("6f1c2f9e-5a4b-4c1e-9d0a-1c0000000001")

KP_NUMBER = "КП-000123"
KP_TOTAL = 640_000
INVOICE_NUMBER = "СЧ-000123"
KP2_NUMBER = "КП-000124"
ROMASHKA_INN = "7701234567"
LOGIST = "Логистов Пётр Сергеевич"
MANAGER = "Менеджеров Иван Андреевич"

UNITS = (  # code, short name, full name, OKEI (the code is the ОКЕИ code)
    ("796", "шт", "Штука", "796"),
    ("006", "м", "Метр", "006"),
    ("166", "кг", "Килограмм", "166"),
    ("112", "л", "Литр", "112"),
    ("839", "компл", "Комплект", "839"),
    ("356", "ч", "Час", "356"),
)

NOMENCLATURE = (  # article, name, unit, type, price
    ("ЦН-100", "Насос центробежный ЦН-100", "шт", "Товар", 250_000),
    ("ШУ-15", "Шкаф управления насосами ШУ-15", "шт", "Товар", 120_000),
    ("ПНР-Ч", "Пусконаладочные работы", "ч", "Услуга", 2_500),
    ("ВВГ-3х2,5", "Кабель ВВГнг-LS 3×2,5", "м", "Товар", 145),
    ("30ч6бр-100", "Задвижка чугунная 30ч6бр Ду100", "шт", "Товар", 18_900),
    ("МП-100", "Манометр МП-100 (0–10 бар)", "шт", "Товар", 1_250),
    ("ИГП-30", "Масло гидравлическое ИГП-30", "л", "Товар", 210),
    ("ФС-100", "Фланец стальной плоский Ду100", "шт", "Товар", 890),
    ("ЗИП-ЦН100", "Комплект ЗИП для насоса ЦН-100", "компл", "Товар", 35_000),
    ("ПРВ-20", "Проволока сварочная Св-08Г2С 1,2 мм", "кг", "Товар", 310),
)

COUNTERPARTIES = (  # name, full name, INN, KPP, kind
    (
        "ООО «Ромашка»",
        "Общество с ограниченной ответственностью «Ромашка»",
        ROMASHKA_INN,
        "770101001",
        "ЮрЛицо",
    ),
    ("АО «Вектор»", "Акционерное общество «Вектор»", "7812345678", "781201001", "ЮрЛицо"),
    (
        "ИП Сидоров Алексей Петрович",
        "Индивидуальный предприниматель Сидоров А. П.",
        "502712345678",
        "",
        "ИндивидуальныйПредприниматель",
    ),
    (
        "ООО «Д'Арт Дизайн»",
        "Общество с ограниченной ответственностью «Д'Арт Дизайн»",
        "7705987654",
        "770501001",
        "ЮрЛицо",
    ),
)

USERS = (  # name, position, phone, e-mail
    ("Администратор", "", "", ""),
    (MANAGER, "Менеджер по продажам", "+7 (495) 123-45-67", "manager@example.ru"),
    (LOGIST, "Логист", "+7 (495) 123-45-68", "logist@example.ru"),
    ("Бухгалтерова Анна Викторовна", "Главный бухгалтер", "+7 (495) 123-45-69", "buh@example.ru"),
)


def seed_guid(entity_set: str, name: str) -> str:
    """The stable Ref_Key of a seeded object."""
    return str(uuid.uuid5(_NAMESPACE, f"{entity_set}:{name}"))


VAT_CATALOG = "Catalog_СтавкиНДС"


def kp_set(base: OneCBase) -> str:
    """Where the КП lives in this base's configuration."""
    if base.profile == "bp3":
        return "Document_СчетНаОплатуПокупателю"
    return "Document_КоммерческоеПредложениеКлиенту"


def unit_set(base: OneCBase) -> str:
    if base.profile == "bp3":
        return "Catalog_КлассификаторЕдиницИзмерения"
    return "Catalog_УпаковкиЕдиницыИзмерения"


def load_seed(base: OneCBase) -> None:
    bp = base.profile == "bp3"
    units = {}
    for code, short, full, _okei in UNITS:
        ref = seed_guid(unit_set(base), short)
        units[short] = ref
        base.insert(
            unit_set(base),
            {"Ref_Key": ref, "Code": code, "Description": short, "НаименованиеПолное": full},
        )
    vat20 = seed_guid(VAT_CATALOG, "НДС20")
    if not bp:
        base.insert(
            VAT_CATALOG,
            {
                "Ref_Key": vat20,
                "Description": "20%",
                "ПеречислениеСтавкаНДС": "НДС20",
                "Ставка": 20.0,
                "Основная": True,
            },
        )
    price_type = seed_guid("Catalog_ВидыЦен", "Основная цена продажи")
    base.insert(
        "Catalog_ВидыЦен",
        {
            "Ref_Key": price_type,
            "Code": "000000001",
            "Description": "Основная цена продажи",
            "ЦенаВключаетНДС": True,
        },
    )
    organization = seed_guid("Catalog_Организации", "Импульс")
    base.insert(
        "Catalog_Организации",
        {
            "Ref_Key": organization,
            "Code": "000000001",
            "Description": "ТД «Импульс»",
            "НаименованиеПолное": "ООО «Торговый дом «Импульс»",
            "ИНН": "7704111222",
            "КПП": "770401001",
        },
    )
    users = {}
    for name, position, phone, email in USERS:
        users[name] = seed_guid("Catalog_Пользователи", name)
        base.insert(
            "Catalog_Пользователи",
            {
                "Ref_Key": users[name],
                "Description": name,
                "Должность": position,
                "Телефон": phone,
                "ЭлектроннаяПочта": email,
            },
        )
    items = {}
    for number, (article, name, unit, kind, price) in enumerate(NOMENCLATURE, start=1):
        items[article] = seed_guid("Catalog_Номенклатура", article)
        item = {
            "Ref_Key": items[article],
            "Code": f"НФ-{number:08d}",
            "Description": name,
            "Артикул": article,
            "НаименованиеПолное": name,
            "ЕдиницаИзмерения_Key": units[unit],
            "ТипНоменклатуры": kind,
            "СрокГодности": 0 if kind == "Услуга" else 36,
        }
        if not bp:
            item["СтавкаНДС_Key"] = vat20
        base.insert("Catalog_Номенклатура", item)
        base.insert(
            "InformationRegister_ЦеныНоменклатуры",
            {
                "Period": datetime(2025, 1, 9),
                "Номенклатура_Key": items[article],
                "ВидЦены_Key": price_type,
                "Цена": float(price),
            },
        )
    # An older price, so SliceLast has something to skip.
    base.insert(
        "InformationRegister_ЦеныНоменклатуры",
        {
            "Period": datetime(2024, 6, 3),
            "Номенклатура_Key": items["ЦН-100"],
            "ВидЦены_Key": price_type,
            "Цена": 235_000.0,
        },
    )
    parties = {}
    for number, (name, full, inn, kpp, kind) in enumerate(COUNTERPARTIES, start=1):
        parties[inn] = seed_guid("Catalog_Контрагенты", inn)
        party = {
            "Ref_Key": parties[inn],
            "Code": f"К-{number:0{7 if bp else 9}d}",
            "Description": name,
            "НаименованиеПолное": full,
            "ИНН": inn,
            "КПП": kpp,
        }
        if bp:
            individual = kind == "ФизЛицо"
            party["ЮридическоеФизическоеЛицо"] = (
                "ФизическоеЛицо" if individual else "ЮридическоеЛицо"
            )
        else:
            party["ЮрФизЛицо"] = kind
        base.insert("Catalog_Контрагенты", party)
    if bp:  # БП: the rate is the enum on the row; prices «include VAT» is СуммаВключаетНДС
        common: dict[str, Any] = {"Организация_Key": organization, "СуммаВключаетНДС": True}
        by_item: dict[str, Any] = {"СтавкаНДС": "НДС20"}
        by_enum = by_item
    else:  # УТ 11.5.22: the composite СтавкаНДС, a Catalog_СтавкиНДС item or the enum value
        common = {
            "Организация_Key": organization,
            "Менеджер_Key": users[MANAGER],
            "Статус": "Действует",
            "ЦенаВключаетНДС": True,
        }
        by_item = {"СтавкаНДС": vat20, "СтавкаНДС_Type": TYPE_PREFIX + VAT_CATALOG}
        by_enum = {"СтавкаНДС": "НДС20", "СтавкаНДС_Type": TYPE_PREFIX + "Enum_СтавкиНДС"}
    kp = kp_set(base)
    valid = {} if bp else {"СрокДействия": datetime(2025, 3, 17)}
    base.insert(
        kp,
        {
            **common,
            **valid,
            "Posted": True,
            "Ref_Key": seed_guid(kp, KP_NUMBER),
            "Number": KP_NUMBER,
            "Date": datetime(2025, 3, 3, 10, 15),
            "Контрагент_Key": parties[ROMASHKA_INN],
            "Комментарий": "Насосная станция для склада в Подольске",
            "Товары": [
                _line(items["ЦН-100"], 2, 250_000, by_item),
                _line(items["ШУ-15"], 1, 120_000, by_item),
                _line(items["ПНР-Ч"], 8, 2_500, by_item),
            ],
        },
    )
    valid = {} if bp else {"СрокДействия": datetime(2025, 3, 18)}
    base.insert(
        kp,
        {
            **common,
            **valid,
            "Posted": True,
            "Ref_Key": seed_guid(kp, KP2_NUMBER),
            "Number": KP2_NUMBER,
            "Date": datetime(2025, 3, 4, 16, 40),
            "Контрагент_Key": parties["7812345678"],
            "Товары": [
                _line(items["30ч6бр-100"], 10, 18_900, by_enum),
                _line(items["МП-100"], 20, 1_250, by_enum),
            ],
        },
    )


def seed_demo_invoice(base: OneCBase) -> dict[str, Any]:
    """The invoice of the local stack's demo deal: «СЧ-000123» for КП-000123, 640 000 ₽."""
    kp = base.resolve(kp_set(base), seed_guid(kp_set(base), KP_NUMBER))
    if base.profile == "bp3":  # the КП is a buyer's invoice already: the invoice is its copy
        invoice_set = "Document_СчетНаОплатуПокупателю"
        extra: dict[str, Any] = {"Товары": kp["Товары"], "СуммаВключаетНДС": True}
    else:
        invoice_set = "Document_СчетНаОплатуКлиенту"
        extra = {
            "ФормаОплаты": "Безналичная",
            "НазначениеПлатежа": f"Оплата по счету № {INVOICE_NUMBER}",
            "ДокументОснование": kp["Ref_Key"],
            "ДокументОснование_Type": TYPE_PREFIX + kp_set(base),
        }
    return base.insert(
        invoice_set,
        {
            "Ref_Key": seed_guid(invoice_set, INVOICE_NUMBER),
            "Number": INVOICE_NUMBER,
            "Date": datetime(2025, 3, 10, 11, 0),
            "Posted": True,
            "Организация_Key": kp["Организация_Key"],
            "Контрагент_Key": kp["Контрагент_Key"],
            "СуммаДокумента": float(KP_TOTAL),
            **extra,
        },
    )


def _line(item: str, quantity: float, price: float, vat: dict[str, Any]) -> dict[str, Any]:
    amount = round(quantity * price, 2)
    return {
        "Номенклатура_Key": item,
        "Количество": float(quantity),
        "Цена": float(price),
        "Сумма": amount,
        **vat,
        "СуммаНДС": round(amount * 20 / 120, 2),
    }
