"""The emulated configuration: which objects exist, their attributes and tabular parts.

One standard configuration per profile — `ut11` (УТ 11.5), `erp2` (ERP 2: the УТ object model
for everything here) and `bp3` (БП 3.0) — with only attributes the standard has (facts and
sources: shared/research/onec-real.md, onec.md §6). A reference attribute is declared by its
JSON name (`Контрагент_Key`); a composite one by its base name and gets a `_Type` partner.
`ИдентификаторБитрикс24` / `СсылкаБитрикс24` exist only with the optional salesflow
extension switched on (`configuration(profile, extension=True)`, docs/ONEC.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

Kind = Literal["Catalog", "Document", "Task", "InformationRegister"]
PropType = Literal["string", "int64", "double", "bool", "datetime", "ref", "composite", "enum"]

EDM_TYPES: dict[str, str] = {
    "string": "Edm.String",
    "int64": "Edm.Int64",
    "double": "Edm.Double",
    "bool": "Edm.Boolean",
    "datetime": "Edm.DateTime",
    "ref": "Edm.Guid",
    "composite": "Edm.String",
    "enum": "Edm.String",
}


@dataclass(frozen=True)
class Prop:
    """One attribute. `length` 0 = unlimited string; `scale` = digits after the point."""

    name: str
    type: PropType
    length: int = 0
    scale: int = 2
    target: str | None = None  # ref: the set it points to
    targets: tuple[str, ...] = ()  # composite: the sets it may point to
    values: tuple[str, ...] = ()  # enum: allowed value names

    @property
    def nav_name(self) -> str:
        return self.name.removesuffix("_Key")


def S(name: str, length: int = 0) -> Prop:
    return Prop(name, "string", length=length)


def N(name: str, scale: int = 2) -> Prop:
    return Prop(name, "double", scale=scale)


def Int(name: str) -> Prop:
    return Prop(name, "int64")


def B(name: str) -> Prop:
    return Prop(name, "bool")


def D(name: str) -> Prop:
    return Prop(name, "datetime")


def R(name: str, target: str) -> Prop:
    return Prop(name, "ref", target=target)


def C(name: str, *targets: str) -> Prop:
    return Prop(name, "composite", targets=targets)


def E(name: str, *values: str) -> Prop:
    return Prop(name, "enum", values=values)


@dataclass(frozen=True)
class Table:
    """A tabular part; its rows also form the set `<Object>_<Table>`."""

    name: str
    props: tuple[Prop, ...]

    def prop(self, name: str) -> Prop | None:
        return next((p for p in self.props if p.name == name), None)


@dataclass(frozen=True)
class EntityType:
    name: str
    kind: Kind
    props: tuple[Prop, ...]
    tables: tuple[Table, ...] = ()
    code_length: int = 9  # catalogs: 0 = no Code
    description_length: int = 100
    number_prefix: str = ""  # documents and tasks
    number_length: int = 11
    hierarchical: bool = False
    dimensions: tuple[str, ...] = ()  # registers
    head: tuple[Prop, ...] = field(init=False)
    tail: tuple[Prop, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "head", _standard_head(self))
        object.__setattr__(self, "tail", _standard_tail(self))

    @property
    def has_ref(self) -> bool:
        return self.kind != "InformationRegister"

    @property
    def postable(self) -> bool:
        return self.kind == "Document"

    def all_props(self) -> tuple[Prop, ...]:
        return self.head + self.props + self.tail

    def prop(self, name: str) -> Prop | None:
        return next((p for p in self.all_props() if p.name == name), None)

    def table(self, name: str) -> Table | None:
        return next((t for t in self.tables if t.name == name), None)

    def nav(self, name: str) -> Prop | None:
        """The reference attribute behind a navigation name (`Контрагент` → Контрагент_Key)."""
        prop = self.prop(name + "_Key")
        return prop if prop is not None and prop.type == "ref" else None


def _standard_head(t: EntityType) -> tuple[Prop, ...]:
    if t.kind == "InformationRegister":
        return (D("Period"),)
    head = [Prop("Ref_Key", "ref", target=t.name), S("DataVersion"), B("DeletionMark")]
    if t.kind == "Catalog":
        if t.hierarchical:
            head += [R("Parent_Key", t.name), B("IsFolder")]
        if t.code_length:
            head.append(S("Code", t.code_length))
        head.append(S("Description", t.description_length))
    elif t.kind == "Document":
        head += [S("Number", t.number_length), D("Date"), B("Posted")]
    else:  # Task
        head += [
            S("Number", t.number_length),
            D("Date"),
            C("BusinessProcess", "BusinessProcess_Задание"),
            C("RoutePoint"),
            S("Description", t.description_length),
            B("Executed"),
        ]
    return tuple(head)


def _standard_tail(t: EntityType) -> tuple[Prop, ...]:
    if t.kind == "Catalog":
        return (B("Predefined"), S("PredefinedDataName"))
    return ()


PROFILES = ("ut11", "erp2", "bp3")
# Enum СтавкиНДС values (UT 11.5 / BP 3.0).
VAT_RATES = ("НДС22", "НДС20", "НДС10", "НДС0", "БезНДС")
VAT_ENUM = "Enum_СтавкиНДС"
TASK = "Task_ЗадачаИсполнителя"
EXTENSION_TASK_PROPS = (S("ИдентификаторБитрикс24", 100), S("СсылкаБитрикс24"))


def _common(units: str, tasks_subjects: tuple[str, ...], extension: bool) -> list[EntityType]:
    """Objects both models share: users, organisations, the БСП task, prices."""
    task_props: tuple[Prop, ...] = (
        S("Описание"),
        C("Исполнитель", "Catalog_Пользователи"),
        C("Автор", "Catalog_Пользователи"),
        S("АвторСтрокой", 150),
        E("Важность", "Обычная", "Высокая", "Низкая"),
        B("ПринятаКИсполнению"),
        D("ДатаПринятияКИсполнению"),
        D("СрокИсполнения"),
        D("ДатаИсполнения"),
        S("РезультатВыполнения"),
        C("Предмет", *tasks_subjects),
        S("ПредметСтрокой", 500),  # onec-real.md: up to 500
        E("СостояниеБизнесПроцесса", "Активен", "Остановлен"),
    )
    if extension:
        task_props += EXTENSION_TASK_PROPS
    return [
        EntityType(
            "Catalog_Организации",
            "Catalog",
            (S("НаименованиеПолное"), S("ИНН", 12), S("КПП", 9)),
        ),
        EntityType(
            "Catalog_Пользователи",
            "Catalog",
            (
                B("Недействителен"),
                S("Должность", 100),
                S("Телефон", 50),
                S("ЭлектроннаяПочта", 100),
            ),
            code_length=0,
        ),
        # БСП Task_ЗадачаИсполнителя; task Number is 14 characters (onec-real.md).
        EntityType(TASK, "Task", task_props, number_length=14, description_length=150),
        EntityType("Catalog_ВидыЦен", "Catalog", (B("ЦенаВключаетНДС"),)),
        EntityType(
            "InformationRegister_ЦеныНоменклатуры",
            "InformationRegister",
            (
                R("Номенклатура_Key", "Catalog_Номенклатура"),
                R("ВидЦены_Key", "Catalog_ВидыЦен"),
                N("Цена"),
            ),
            dimensions=("Номенклатура_Key", "ВидЦены_Key"),
        ),
        EntityType(
            "Catalog_Номенклатура",
            "Catalog",
            (
                S("Артикул", 25),
                S("НаименованиеПолное", 1024),
                R("ЕдиницаИзмерения_Key", units),
                E("ТипНоменклатуры", "Товар", "Услуга", "Работа"),
                *(
                    (R("СтавкаНДС_Key", "Catalog_СтавкиНДС"),)
                    if units == "Catalog_УпаковкиЕдиницыИзмерения"
                    else ()
                ),
                Int("СрокГодности"),
                S("Описание"),
            ),
            code_length=11,
            hierarchical=True,
        ),
    ]


def _ut11(extension: bool) -> tuple[EntityType, ...]:
    kp = "Document_КоммерческоеПредложениеКлиенту"
    order = "Document_ЗаказКлиента"
    invoice = "Document_СчетНаОплатуКлиенту"
    sale = "Document_РеализацияТоваровУслуг"
    rows = (
        R("Номенклатура_Key", "Catalog_Номенклатура"),
        N("Количество", 3),
        N("Цена"),
        N("Сумма"),
        N("СуммаНДС"),
        N("СуммаСНДС"),
    )
    # УТ 11.5.22: the КП row's СтавкаНДС is the defined type СтавкаНДСКоммерческихПредложений,
    # Catalog_СтавкиНДС or the enum (avseregin21/UT_11_5_22_demo,
    # src/DefinedTypes/СтавкаНДСКоммерческихПредложений.xml).
    kp_rows = Table("Товары", (*rows[:4], C("СтавкаНДС", "Catalog_СтавкиНДС", VAT_ENUM), *rows[4:]))
    order_rows = Table("Товары", (*rows[:4], R("СтавкаНДС_Key", "Catalog_СтавкиНДС"), *rows[4:]))
    party = (
        R("Организация_Key", "Catalog_Организации"),
        R("Партнер_Key", "Catalog_Партнеры"),
        R("Контрагент_Key", "Catalog_Контрагенты"),
    )
    return (
        # No КодОКЕИ in standard УТ 11.5: the unit's code is Code, 4 characters; hierarchical
        # (andrewnomoore/ut_11_5_should_work, src/Catalogs/УпаковкиЕдиницыИзмерения).
        EntityType(
            "Catalog_УпаковкиЕдиницыИзмерения",
            "Catalog",
            (S("НаименованиеПолное", 100), S("МеждународноеСокращение", 3)),
            code_length=4,
            description_length=25,
            hierarchical=True,
        ),
        # avseregin21/UT_11_5_22_demo, src/Catalogs/СтавкиНДС.xml: no Code, Description 15.
        EntityType(
            "Catalog_СтавкиНДС",
            "Catalog",
            (
                E("ПеречислениеСтавкаНДС", *VAT_RATES),
                B("РасчетнаяСтавка"),
                N("Ставка"),
                B("Основная"),
            ),
            code_length=0,
            description_length=15,
        ),
        *_common("Catalog_УпаковкиЕдиницыИзмерения", (invoice, kp, sale, order), extension),
        EntityType("Catalog_Партнеры", "Catalog", (B("Клиент"), B("Поставщик")), code_length=11),
        EntityType(
            "Catalog_Контрагенты",
            "Catalog",
            (
                S("НаименованиеПолное"),
                S("ИНН", 12),
                S("КПП", 9),
                E("ЮрФизЛицо", "ЮрЛицо", "ФизЛицо", "ИндивидуальныйПредприниматель"),
                R("Партнер_Key", "Catalog_Партнеры"),
            ),
            code_length=11,
        ),
        EntityType(
            kp,
            "Document",
            (
                *party,
                R("Менеджер_Key", "Catalog_Пользователи"),
                E("Статус", "НеСогласовано", "Действует", "Исполнено"),
                D("СрокДействия"),  # not ДатаДействия (onec-real.md)
                N("СуммаДокумента"),
                B("ЦенаВключаетНДС"),
                S("Комментарий"),
            ),
            tables=(kp_rows,),
        ),
        EntityType(
            order,
            "Document",
            (
                *party,
                R("Менеджер_Key", "Catalog_Пользователи"),
                E("Статус", "НеСогласован", "КОбеспечению", "КОтгрузке", "Закрыт"),
                N("СуммаДокумента"),
                B("ЦенаВключаетНДС"),
                C("ДокументОснование", kp),
                S("Комментарий"),
            ),
            tables=(order_rows,),
        ),
        EntityType(
            invoice,
            "Document",
            (
                *party,
                N("СуммаДокумента"),
                E("ФормаОплаты", "Безналичная", "Наличная"),
                S("НазначениеПлатежа", 210),
                B("Аннулирован"),
                C("ДокументОснование", order, kp),
                S("Комментарий"),
            ),
            tables=(
                Table(
                    "ЭтапыГрафикаОплаты", (D("ДатаПлатежа"), N("ПроцентПлатежа"), N("СуммаПлатежа"))
                ),
            ),
        ),
        EntityType(
            "Document_ПоступлениеБезналичныхДенежныхСредств",
            "Document",
            (
                R("Организация_Key", "Catalog_Организации"),
                R("Контрагент_Key", "Catalog_Контрагенты"),
                N("СуммаДокумента"),
                E("ХозяйственнаяОперация", "ПоступлениеОплатыОтКлиента", "ПрочееПоступление"),
                S("НазначениеПлатежа", 210),
                S("НомерВходящегоДокумента", 30),
                D("ДатаВходящегоДокумента"),
                S("Комментарий"),
            ),
            tables=(
                Table(
                    "РасшифровкаПлатежа",
                    (
                        C("ОснованиеПлатежа", invoice, order),
                        C("Заказ", order),
                        R("Партнер_Key", "Catalog_Партнеры"),
                        N("Сумма"),
                        N("СуммаВзаиморасчетов"),
                    ),
                ),
            ),
        ),
        # The link to the order is ЗаказКлиента (composite); Основание is only text; no ЭДО
        # state on the document (andrewnomoore/ut_11_5_should_work, РеализацияТоваровУслуг.mdo).
        EntityType(
            sale,
            "Document",
            (
                *party,
                N("СуммаДокумента"),
                C("ЗаказКлиента", order),
                S("Основание"),
                E("Статус", "КПредоплате", "КОтгрузке", "Отгружено"),
                S("Комментарий"),
            ),
            tables=(Table("Товары", rows),),
        ),
    )


def _bp3(extension: bool) -> tuple[EntityType, ...]:
    invoice = "Document_СчетНаОплатуПокупателю"
    sale = "Document_РеализацияТоваровУслуг"
    rows = (
        R("Номенклатура_Key", "Catalog_Номенклатура"),
        N("Количество", 3),
        N("Цена"),
        N("Сумма"),
        E("СтавкаНДС", *VAT_RATES),  # БП keeps the rate as the enum (onec.md §6)
        N("СуммаНДС"),
    )
    services = Table("Услуги", (*rows, S("Содержание")))
    party = (
        R("Организация_Key", "Catalog_Организации"),
        R("Контрагент_Key", "Catalog_Контрагенты"),
    )
    return (
        EntityType(
            "Catalog_КлассификаторЕдиницИзмерения",
            "Catalog",
            (S("НаименованиеПолное", 100), S("МеждународноеСокращение", 3)),
            code_length=3,
            description_length=25,
        ),
        *_common("Catalog_КлассификаторЕдиницИзмерения", (invoice, sale), extension),
        EntityType(
            "Catalog_Контрагенты",
            "Catalog",
            (
                S("НаименованиеПолное"),
                S("ИНН", 12),
                S("КПП", 9),
                E("ЮридическоеФизическоеЛицо", "ЮридическоеЛицо", "ФизическоеЛицо"),
            ),
            code_length=9,
        ),
        EntityType(
            invoice,
            "Document",
            (*party, N("СуммаДокумента"), B("СуммаВключаетНДС"), S("Комментарий")),
            tables=(Table("Товары", rows), services),
        ),
        EntityType(
            "Document_ПоступлениеНаРасчетныйСчет",
            "Document",
            (
                *party,
                E("ВидОперации", "ОплатаПокупателя", "ПрочееПоступление"),
                N("СуммаДокумента"),
                S("НазначениеПлатежа", 210),
                S("НомерВходящегоДокумента", 30),
                D("ДатаВходящегоДокумента"),
                S("Комментарий"),
            ),
            tables=(
                Table(
                    "РасшифровкаПлатежа",
                    (R("СчетНаОплату_Key", invoice), N("СуммаПлатежа"), N("СуммаВзаиморасчетов")),
                ),
            ),
        ),
        EntityType(
            sale,
            "Document",
            (
                *party,
                N("СуммаДокумента"),
                R("СчетНаОплатуПокупателю_Key", invoice),
                S("Комментарий"),
            ),
            tables=(Table("Товары", rows), services),
        ),
    )


# Document number prefixes of the emulated base (prefix and length are base settings; УТ
# 11.5.22 numbers are 11 characters, onec-real.md).
NUMBER_PREFIXES = {
    "Document_КоммерческоеПредложениеКлиенту": "КП-",
    "Document_ЗаказКлиента": "ЗК-",
    "Document_СчетНаОплатуКлиенту": "СЧ-",
    "Document_СчетНаОплатуПокупателю": "СЧ-",
    "Document_ПоступлениеБезналичныхДенежныхСредств": "ПБ-",
    "Document_ПоступлениеНаРасчетныйСчет": "ПБ-",
    "Document_РеализацияТоваровУслуг": "РТ-",
}


def configuration(profile: str = "ut11", *, extension: bool = False) -> tuple[EntityType, ...]:
    """The objects of a standard base of `profile` (with the salesflow extension if asked)."""
    if profile in ("ut11", "erp2"):
        types = _ut11(extension)
    elif profile == "bp3":
        types = _bp3(extension)
    else:
        raise ValueError(f"unknown 1C profile {profile!r} (one of {', '.join(PROFILES)})")
    return tuple(replace(t, number_prefix=NUMBER_PREFIXES.get(t.name, "")) for t in types)


def default_published(types: tuple[EntityType, ...]) -> frozenset[str]:
    """Stands in for УстановитьСоставСтандартногоИнтерфейсаOData: everything but Партнеры."""
    return frozenset(t.name for t in types if t.name != "Catalog_Партнеры")


CONFIGURATION: tuple[EntityType, ...] = configuration("ut11")
DEFAULT_PUBLISHED: frozenset[str] = default_published(CONFIGURATION)
