"""The built-in portal seed (the IDs the configuration relies on) and seed files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulators.bitrix24.app import build_portal, create_app
from emulators.bitrix24.seed import builtin_seed, load_seed
from emulators.bitrix24.state import Portal

SALES_STAGES = [
    ("C1:NEW", "Новая заявка", None),
    ("C1:PREPARATION", "Взят в работу", None),
    ("C1:UC_KP", "КП", None),
    ("C1:UC_CONTRACT", "Договор", None),
    ("C1:UC_INVOICE", "Счет", None),
    ("C1:UC_LAUNCH", "Запуск реализации сделки", None),
    ("C1:UC_ACCEPTED", "Принят", None),
    ("C1:UC_TO_SHIP", "К отгрузке", None),
    ("C1:UC_SHIPPED", "Отгружен/Доставлен", None),
    ("C1:WON", "Сделка успешна", "S"),
    ("C1:LOSE", "Сделка провалена", "F"),
]


def test_pipelines_and_stages() -> None:
    portal = build_portal()
    assert {k: v["name"] for k, v in portal.deal_categories.items()} == {
        0: "Общая",
        1: "Продажа",
        2: "Инженеры",
    }
    sales = portal.category_stages("DEAL_STAGE_1")
    assert [(s["STATUS_ID"], s["NAME"], s["SEMANTICS"]) for s in sales] == SALES_STAGES
    engineers = portal.category_stages("DEAL_STAGE_2")
    assert [(s["STATUS_ID"], s["SEMANTICS"]) for s in engineers] == [
        ("C2:NEW", None),
        ("C2:PREPARATION", None),
        ("C2:WON", "S"),
        ("C2:LOSE", "F"),
    ]
    assert [s["STATUS_ID"] for s in portal.category_stages("DEAL_STAGE")][:2] == [
        "NEW",
        "PREPARATION",
    ]
    approval = portal.category_stages("DYNAMIC_1032_STAGE_3")
    assert [s["STATUS_ID"] for s in approval] == [
        "DT1032_3:NEW",
        "DT1032_3:PREPARATION",
        "DT1032_3:SUCCESS",
        "DT1032_3:FAIL",
    ]
    assert portal.smart_types[1032]["title"] == "Согласование"


def test_users() -> None:
    users = build_portal().users
    assert sorted(users) == list(range(1, 13))
    assert (users[2]["LAST_NAME"], users[2]["WORK_POSITION"]) == (
        "Смирнова",
        "Руководитель отдела продаж",
    )
    assert users[5]["WORK_POSITION"] == "Логист"
    assert users[11]["EMAIL"] == "buh@example.ru"
    assert users[12]["ACTIVE"] is False
    assert all(u["EMAIL"].endswith("@example.ru") and u["WORK_PHONE"] for u in users.values())


def test_deal_user_fields_and_option_ids() -> None:
    fields = {uf["FIELD_NAME"]: uf for uf in build_portal().deal_userfields}
    options = {
        name: {o["VALUE"]: int(o["ID"]) for o in uf["LIST"]}
        for name, uf in fields.items()
        if "LIST" in uf
    }
    assert options == {
        "UF_CRM_PRIORITY": {"A": 11, "B": 12, "C": 13},
        "UF_CRM_KP_STATUS": {"Согласовано": 21, "Не согласовано": 22},
        "UF_CRM_PAYMENT_TERMS": {"Предоплата": 31, "Постоплата": 32},
        "UF_CRM_LOSS_REASON": {
            "Денег нет": 41,
            "Ушли к конкурентам": 42,
            "Нецелевой клиент": 43,
            "Не приняли решение": 44,
            "Долго": 45,
            "Другое": 46,
        },
    }
    assert fields["UF_CRM_KP_DATE"]["USER_TYPE_ID"] == "date"
    assert fields["UF_CRM_NEED_METROLOGIST"]["USER_TYPE_ID"] == "boolean"
    assert fields["UF_CRM_INN"]["EDIT_FORM_LABEL"] == "ИНН клиента"
    assert fields["UF_CRM_SIGNED_ACT"]["USER_TYPE_ID"] == "file"  # R-SH-3 (fin14)
    assert len(fields) == 27


def test_seed_file_merges_over_builtin(tmp_path: Path) -> None:
    path = tmp_path / "seed.json"
    path.write_text(
        json.dumps(
            {
                "portal": {"domain": "demo.bitrix24.ru"},
                "deals": [
                    {
                        "ID": 42,
                        "TITLE": "Демо",
                        "CATEGORY_ID": 1,
                        "STAGE_ID": "C1:UC_KP",
                        "OPPORTUNITY": 200000,
                        "ASSIGNED_BY_ID": 3,
                    }
                ],
                "tasks": [
                    {"ID": 7, "TITLE": "Демо-задача", "RESPONSIBLE_ID": 3, "UF_CRM_TASK": ["D_42"]}
                ],
            }
        ),
        encoding="utf-8",
    )
    portal = build_portal(load_seed(path))
    assert portal.domain == "demo.bitrix24.ru"
    assert portal.deals[42]["STAGE_ID"] == "C1:UC_KP"
    assert portal.deals[42]["OPPORTUNITY"] == "200000.00"
    assert portal.tasks[7]["UF_CRM_TASK"] == ["D_42"]
    assert portal.next_id("deal") == 43
    assert portal.event_log == []
    assert len(portal.users) == len(builtin_seed()["users"])


def test_bad_seed_file(tmp_path: Path) -> None:
    path = tmp_path / "seed.json"
    path.write_text(json.dumps({"leads": []}), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown sections"):
        load_seed(path)


def test_create_app_populates_a_bare_portal() -> None:
    app = create_app(Portal())
    assert sorted(app.state.portal.contacts) == [1, 2]
    assert app.state.portal.populated
