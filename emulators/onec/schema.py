"""The emulated configuration: which objects exist, their attributes and tabular parts.

Names follow UT 11 / BSP (see shared/research/onec.md §6). A reference attribute is
declared by its JSON name (`Контрагент_Key`); a composite one by its base name and gets a
`_Type` partner. `ИдентификаторБитрикс24` / `СсылкаБитрикс24` stand for attributes an
integration adds through a configuration extension.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


VAT_RATES = ("НДС20", "НДС10", "НДС0", "БезНДС")
GOODS = Table(
    "Товары",
    (
        R("Номенклатура_Key", "Catalog_Номенклатура"),
        N("Количество", 3),
        N("Цена"),
        N("Сумма"),
        E("СтавкаНДС", *VAT_RATES),
        N("СуммаНДС"),
    ),
)

CONFIGURATION: tuple[EntityType, ...] = (
    EntityType(
        "Catalog_УпаковкиЕдиницыИзмерения",
        "Catalog",
        (
            S("НаименованиеПолное", 100),
            S("КодОКЕИ", 3),
        ),
        description_length=25,
    ),
    EntityType("Catalog_ВидыЦен", "Catalog", (B("ЦенаВключаетНДС"),)),
    EntityType(
        "Catalog_Организации",
        "Catalog",
        (
            S("НаименованиеПолное"),
            S("ИНН", 12),
            S("КПП", 9),
        ),
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
        "Catalog_Номенклатура",
        "Catalog",
        (
            S("Артикул", 25),
            S("НаименованиеПолное", 1024),
            R("ЕдиницаИзмерения_Key", "Catalog_УпаковкиЕдиницыИзмерения"),
            E("ТипНоменклатуры", "Товар", "Услуга", "Работа"),
            E("СтавкаНДС", *VAT_RATES),
            Int("СрокГодности"),
            S("Описание"),
        ),
        code_length=11,
        hierarchical=True,
    ),
    EntityType(
        "Document_КоммерческоеПредложениеКлиенту",
        "Document",
        (
            R("Организация_Key", "Catalog_Организации"),
            R("Контрагент_Key", "Catalog_Контрагенты"),
            R("Менеджер_Key", "Catalog_Пользователи"),
            E("Статус", "НеСогласовано", "Действует", "Исполнено"),
            D("ДатаДействия"),
            N("СуммаДокумента"),
            B("ЦенаВключаетНДС"),
            S("Комментарий"),
        ),
        tables=(GOODS,),
        number_prefix="КП-",
        number_length=9,
    ),
    EntityType(
        "Document_СчетНаОплатуКлиенту",
        "Document",
        (
            R("Организация_Key", "Catalog_Организации"),
            R("Контрагент_Key", "Catalog_Контрагенты"),
            N("СуммаДокумента"),
            E("ФормаОплаты", "Безналичная", "Наличная"),
            S("НазначениеПлатежа", 210),
            B("Аннулирован"),
            C("ДокументОснование", "Document_КоммерческоеПредложениеКлиенту"),
            S("ИдентификаторБитрикс24", 100),
            S("Комментарий"),
        ),
        tables=(
            Table(
                "ЭтапыГрафикаОплаты",
                (
                    D("ДатаПлатежа"),
                    N("ПроцентПлатежа"),
                    N("СуммаПлатежа"),
                ),
            ),
        ),
        number_prefix="СЧ-",
        number_length=9,
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
                    C("ОснованиеПлатежа", "Document_СчетНаОплатуКлиенту"),
                    N("Сумма"),
                    N("СуммаВзаиморасчетов"),
                ),
            ),
        ),
        number_prefix="ПБ-",
        number_length=9,
    ),
    EntityType(
        "Document_РеализацияТоваровУслуг",
        "Document",
        (
            R("Организация_Key", "Catalog_Организации"),
            R("Контрагент_Key", "Catalog_Контрагенты"),
            N("СуммаДокумента"),
            C(
                "ДокументОснование",
                "Document_СчетНаОплатуКлиенту",
                "Document_КоммерческоеПредложениеКлиенту",
            ),
            E("Статус", "КПредоплате", "КОтгрузке", "Отгружено"),
            E("СостояниеЭДО", "ОжидаетсяПодписьКонтрагента", "ДокументооборотЗавершен"),
            B("Подписан"),
            D("ДатаПодписания"),
            S("Комментарий"),
        ),
        tables=(GOODS,),
        number_prefix="РТ-",
        number_length=9,
    ),
    EntityType(
        "Task_ЗадачаИсполнителя",
        "Task",
        (
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
            C(
                "Предмет",
                "Document_СчетНаОплатуКлиенту",
                "Document_КоммерческоеПредложениеКлиенту",
                "Document_РеализацияТоваровУслуг",
            ),
            S("ПредметСтрокой", 150),
            E("СостояниеБизнесПроцесса", "Активен", "Остановлен"),
            S("ИдентификаторБитрикс24", 100),
            S("СсылкаБитрикс24"),
        ),
        number_prefix="",
        number_length=11,
        description_length=150,
    ),
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
)

# Stands in for УстановитьСоставСтандартногоИнтерфейсаOData: everything but Партнеры.
DEFAULT_PUBLISHED: frozenset[str] = frozenset(
    t.name for t in CONFIGURATION if t.name != "Catalog_Партнеры"
)
