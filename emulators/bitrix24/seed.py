"""The built-in portal seed of the Bitrix24 emulator, and a loader for seed files (JSON).

A seed file has the same shape as `builtin_seed()`; missing top-level sections fall back to
the built-in ones, so a file may hold only what it changes (e.g. extra deals).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

Seed = dict[str, Any]

DEFAULT_WEBHOOK_SCOPES = ("crm", "task", "im", "user", "department")
# The local application of the portal (OAuth route `/rest/<method>?auth=<token>`).
LOCAL_APP_CLIENT_ID = "local.salesflow.1"
LOCAL_APP_CLIENT_SECRET = "dev-app-client-secret"
LOCAL_APP_ACCESS_TOKEN = "dev-app-access-token"
# Spent by its first refresh (`GET /oauth/token/`), which hands out a new pair.
LOCAL_APP_REFRESH_TOKEN = "dev-app-refresh-token"


def _stage(status_id: str, name: str, sort: int, semantics: str | None = None) -> dict[str, Any]:
    return {"STATUS_ID": status_id, "NAME": name, "SORT": sort, "SEMANTICS": semantics}


_GENERAL_STAGES = [
    _stage("NEW", "Новая", 10),
    _stage("PREPARATION", "Подготовка документов", 20),
    _stage("PREPAYMENT_INVOICE", "Счёт на предоплату", 30),
    _stage("EXECUTING", "В работе", 40),
    _stage("FINAL_INVOICE", "Финальный счёт", 50),
    _stage("WON", "Сделка успешна", 60, "S"),
    _stage("LOSE", "Сделка провалена", 70, "F"),
    _stage("APOLOGY", "Анализ причины провала", 80, "F"),
]

_SALES_STAGES = [
    _stage("C1:NEW", "Новая заявка", 10),
    _stage("C1:PREPARATION", "Взят в работу", 20),
    _stage("C1:UC_KP", "КП", 30),
    _stage("C1:UC_CONTRACT", "Договор", 40),
    _stage("C1:UC_INVOICE", "Счет", 50),
    _stage("C1:UC_LAUNCH", "Запуск реализации сделки", 60),
    _stage("C1:UC_ACCEPTED", "Принят", 70),
    _stage("C1:UC_TO_SHIP", "К отгрузке", 80),
    _stage("C1:UC_SHIPPED", "Отгружен/Доставлен", 90),
    _stage("C1:WON", "Сделка успешна", 100, "S"),
    _stage("C1:LOSE", "Сделка провалена", 110, "F"),
]

_ENGINEERS_STAGES = [
    _stage("C2:NEW", "Новая", 10),
    _stage("C2:PREPARATION", "В работе", 20),
    _stage("C2:WON", "Завершена", 30, "S"),
    _stage("C2:LOSE", "Отменена", 40, "F"),
]

_APPROVAL_STAGES = [
    _stage("DT1032_3:NEW", "Новое", 10),
    _stage("DT1032_3:PREPARATION", "На согласовании", 20),
    _stage("DT1032_3:SUCCESS", "Согласовано", 30, "S"),
    _stage("DT1032_3:FAIL", "Не согласовано", 40, "F"),
]

_DEPARTMENTS = [
    {"ID": 1, "NAME": "ООО «Салесфлоу»", "PARENT": None, "UF_HEAD": 1},
    {"ID": 2, "NAME": "Отдел продаж", "PARENT": 1, "UF_HEAD": 2},
    {"ID": 3, "NAME": "Логистика", "PARENT": 1, "UF_HEAD": 5},
    {"ID": 4, "NAME": "Инженерный отдел", "PARENT": 1, "UF_HEAD": 6},
    {"ID": 5, "NAME": "Отдел закупок", "PARENT": 1, "UF_HEAD": 7},
    {"ID": 6, "NAME": "Производство", "PARENT": 1, "UF_HEAD": 8},
    {"ID": 7, "NAME": "Юридический отдел", "PARENT": 1, "UF_HEAD": 9},
    {"ID": 8, "NAME": "Метрологическая служба", "PARENT": 1, "UF_HEAD": 10},
    {"ID": 9, "NAME": "Бухгалтерия", "PARENT": 1, "UF_HEAD": 11},
]


def _user(
    user_id: int,
    name: str,
    second_name: str,
    last_name: str,
    position: str,
    email: str,
    department: int,
    *,
    active: bool = True,
) -> dict[str, Any]:
    return {
        "ID": user_id,
        "ACTIVE": active,
        "NAME": name,
        "SECOND_NAME": second_name,
        "LAST_NAME": last_name,
        "WORK_POSITION": position,
        "WORK_PHONE": f"+7 (495) 100-00-{user_id:02d}",
        "PERSONAL_MOBILE": f"+7 (916) 200-00-{user_id:02d}",
        "EMAIL": email,
        "UF_DEPARTMENT": [department],
    }


_USERS = [
    _user(1, "Администратор", "", "Портала", "Администратор", "admin@example.ru", 1),
    _user(
        2,
        "Ольга",
        "Викторовна",
        "Смирнова",
        "Руководитель отдела продаж",
        "smirnova@example.ru",
        2,
    ),
    _user(3, "Иван", "Сергеевич", "Петров", "Менеджер по продажам", "petrov@example.ru", 2),
    _user(
        4,
        "Анна",
        "Михайловна",
        "Кузнецова",
        "Старший менеджер по продажам",
        "kuznetsova@example.ru",
        2,
    ),
    _user(5, "Дмитрий", "Олегович", "Волков", "Логист", "volkov@example.ru", 3),
    _user(6, "Алексей", "Николаевич", "Соколов", "Ведущий инженер", "sokolov@example.ru", 4),
    _user(7, "Мария", "Павловна", "Орлова", "Закупщик", "orlova@example.ru", 5),
    _user(8, "Николай", "Иванович", "Лебедев", "Начальник производства", "lebedev@example.ru", 6),
    _user(9, "Елена", "Андреевна", "Морозова", "Юрист", "morozova@example.ru", 7),
    _user(10, "Павел", "Викторович", "Новиков", "Метролог", "novikov@example.ru", 8),
    _user(11, "Татьяна", "Сергеевна", "Козлова", "Главный бухгалтер", "buh@example.ru", 9),
    _user(12, "Уволенный", "", "Сотрудник", "Менеджер", "fired@example.ru", 2, active=False),
]


def _uf(
    field_name: str,
    user_type: str,
    title: str,
    options: list[tuple[int, str, str]] | None = None,
) -> dict[str, Any]:
    field: dict[str, Any] = {"FIELD_NAME": field_name, "USER_TYPE_ID": user_type, "TITLE": title}
    if options is not None:
        field["LIST"] = [
            {"ID": option_id, "VALUE": value, "XML_ID": xml_id, "SORT": (index + 1) * 10}
            for index, (option_id, value, xml_id) in enumerate(options)
        ]
    return field


_DEAL_USERFIELDS = [
    _uf(
        "UF_CRM_PRIORITY",
        "enumeration",
        "Приоритет",
        [(11, "A", "A"), (12, "B", "B"), (13, "C", "C")],
    ),
    _uf("UF_CRM_KP", "string", "КП"),
    _uf("UF_CRM_KP_DATE", "date", "Дата согласования КП"),
    _uf("UF_CRM_DELIVERY_TERM", "string", "Срок поставки"),
    _uf("UF_CRM_DIRECTION", "string", "Направление"),
    _uf(
        "UF_CRM_KP_STATUS",
        "enumeration",
        "Статус КП",
        [(21, "Согласовано", "AGREED"), (22, "Не согласовано", "NOT_AGREED")],
    ),
    _uf("UF_CRM_INVOICE", "string", "Счет"),
    _uf("UF_CRM_CONTRACT", "string", "Договор"),
    _uf(
        "UF_CRM_PAYMENT_TERMS",
        "enumeration",
        "Оплата",
        [(31, "Предоплата", "PREPAYMENT"), (32, "Постоплата", "POSTPAYMENT")],
    ),
    _uf("UF_CRM_SIGNED_INVOICE", "string", "Подписанный счет"),
    _uf("UF_CRM_SIGNED_CONTRACT", "string", "Подписанный договор"),
    _uf("UF_CRM_PAYMENT_DATE", "date", "Дата оплаты"),
    _uf("UF_CRM_ACT", "string", "Акт выполненных работ"),
    _uf("UF_CRM_UPD", "string", "УПД"),
    # the signed closing documents as files (R-SH-3): a `file` user field
    _uf("UF_CRM_SIGNED_ACT", "file", "Подписанный акт"),
    _uf("UF_CRM_SIGNED_UPD", "file", "Подписанный УПД"),
    _uf(
        "UF_CRM_LOSS_REASON",
        "enumeration",
        "Причина провала",
        [
            (41, "Денег нет", "NO_MONEY"),
            (42, "Ушли к конкурентам", "COMPETITOR"),
            (43, "Нецелевой клиент", "NOT_TARGET"),
            (44, "Не приняли решение", "NO_DECISION"),
            (45, "Долго", "TOO_LONG"),
            (46, "Другое", "OTHER"),
        ],
    ),
    _uf("UF_CRM_LOSS_COMMENT", "string", "Комментарий к причине провала"),
    _uf("UF_CRM_REJECT_REASON", "string", "Причина отказа"),
    _uf("UF_CRM_PAYMENT_SCHEDULE", "string", "График оплаты"),
    _uf("UF_CRM_INN", "string", "ИНН клиента"),
    _uf("UF_CRM_NEED_ENGINEERS", "boolean", "Нужны инженеры"),
    _uf("UF_CRM_NEED_PURCHASING", "boolean", "Нужны закупки"),
    _uf("UF_CRM_NEED_LOGISTICS", "boolean", "Нужна логистика"),
    _uf("UF_CRM_NEED_PRODUCTION", "boolean", "Нужно производство"),
    _uf("UF_CRM_NEED_LAWYER", "boolean", "Нужен юрист"),
    _uf("UF_CRM_NEED_METROLOGIST", "boolean", "Нужен метролог"),
]

_COMPANIES = [
    {
        "ID": 1,
        "TITLE": "ООО «Ромашка»",
        "COMPANY_TYPE": "CUSTOMER",
        "INDUSTRY": "MANUFACTURING",
        "ASSIGNED_BY_ID": 3,
        "PHONE": [{"VALUE": "+7 (495) 555-00-00", "VALUE_TYPE": "WORK"}],
        "EMAIL": [{"VALUE": "info@romashka.example.ru", "VALUE_TYPE": "WORK"}],
    },
]

_CONTACTS = [
    {
        "ID": 1,
        "NAME": "Сергей",
        "SECOND_NAME": "Александрович",
        "LAST_NAME": "Иванов",
        "POST": "Директор по закупкам",
        "COMPANY_ID": 1,
        "ASSIGNED_BY_ID": 3,
        "PHONE": [{"VALUE": "+7 (495) 555-01-01", "VALUE_TYPE": "WORK"}],
        "EMAIL": [{"VALUE": "ivanov@romashka.example.ru", "VALUE_TYPE": "WORK"}],
    },
    {
        "ID": 2,
        "NAME": "Екатерина",
        "SECOND_NAME": "Игоревна",
        "LAST_NAME": "Белова",
        "POST": "Главный инженер",
        "COMPANY_ID": 1,
        "ASSIGNED_BY_ID": 4,
        "PHONE": [{"VALUE": "+7 (916) 555-02-02", "VALUE_TYPE": "MOBILE"}],
        "EMAIL": [{"VALUE": "belova@romashka.example.ru", "VALUE_TYPE": "WORK"}],
    },
]

_APPROVAL_USERFIELDS = [
    {"FIELD_NAME": "UF_CRM_1_1700000001", "USER_TYPE_ID": "string", "TITLE": "Комментарий"},
    {"FIELD_NAME": "UF_CRM_1_1700000002", "USER_TYPE_ID": "double", "TITLE": "Сумма сделки"},
]

_SMART_PROCESSES = [
    {
        "id": 1,
        "entityTypeId": 1032,
        "title": "Согласование",
        "code": "approval",
        "parents": [2],
        "userfields": _APPROVAL_USERFIELDS,
        "categories": [
            {
                "id": 3,
                "name": "Согласование",
                "sort": 100,
                "isDefault": True,
                "stages": _APPROVAL_STAGES,
            },
        ],
    },
]


def builtin_seed() -> Seed:
    """A fresh copy of the built-in seed (safe to mutate)."""
    return copy.deepcopy(
        {
            "portal": {
                "domain": None,
                "member_id": "5e1f0c2b9a7d4e6f8a0b1c2d3e4f5a6b",
                "webhook_user_id": 1,
                "webhook_scopes": list(DEFAULT_WEBHOOK_SCOPES),
                "admins": [1],
            },
            "apps": [
                {
                    "client_id": LOCAL_APP_CLIENT_ID,
                    "client_secret": LOCAL_APP_CLIENT_SECRET,
                    "access_token": LOCAL_APP_ACCESS_TOKEN,
                    "refresh_token": LOCAL_APP_REFRESH_TOKEN,
                    "user_id": 1,
                    "scopes": [*DEFAULT_WEBHOOK_SCOPES, "placement"],
                }
            ],
            "departments": _DEPARTMENTS,
            "users": _USERS,
            "deal_categories": [
                {
                    "id": 0,
                    "name": "Общая",
                    "sort": 100,
                    "isDefault": True,
                    "stages": _GENERAL_STAGES,
                },
                {
                    "id": 1,
                    "name": "Продажа",
                    "sort": 200,
                    "isDefault": False,
                    "stages": _SALES_STAGES,
                },
                {
                    "id": 2,
                    "name": "Инженеры",
                    "sort": 300,
                    "isDefault": False,
                    "stages": _ENGINEERS_STAGES,
                },
            ],
            "deal_userfields": _DEAL_USERFIELDS,
            "companies": _COMPANIES,
            "contacts": _CONTACTS,
            "smart_processes": _SMART_PROCESSES,
            "deals": [],
            "tasks": [],
        }
    )


def load_seed(path: str | Path | None = None) -> Seed:
    """The built-in seed, or a JSON seed file merged over it section by section."""
    seed = builtin_seed()
    if path is None:
        return seed
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"seed file {path} must hold a JSON object")
    unknown = set(data) - set(seed)
    if unknown:
        raise ValueError(f"seed file {path}: unknown sections {sorted(unknown)}")
    for section, value in data.items():
        if section == "portal" and isinstance(value, dict):
            seed["portal"].update(value)
        else:
            seed[section] = value
    return seed
