"""Pure rules, table-driven: the RU production calendar, working time, document sets, fields."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from salesflow.config.settings import Settings
from salesflow.config.snapshot import build_rules, russian_calendar
from salesflow.workflows.models import DeadlineRule
from salesflow.workflows.rules import (
    Calendar,
    add_working_time,
    deadline_after,
    document_set,
    kp_agreement_date,
    missing_fields,
    next_reminder,
)

RULES = build_rules(Settings(), today=date(2026, 6, 1))
CAL = Calendar(russian_calendar(2024, 2027, (), ()))


@pytest.mark.parametrize(
    ("start", "days", "expected", "why"),
    [
        (date(2026, 11, 26), 2, date(2026, 11, 30), "Thu + 2 → Mon across the weekend"),
        (date(2026, 11, 27), 2, date(2026, 12, 1), "Fri + 2 → Tue"),
        (date(2025, 12, 30), 2, date(2026, 1, 13), "31.12–11.01 are days off: Mon 12, Tue 13"),
        (date(2025, 10, 30), 2, date(2025, 11, 1), "Sat 1 Nov 2025 is a transferred working day"),
        (date(2025, 10, 31), 2, date(2025, 11, 5), "3–4 Nov 2025 are days off"),
    ],
)
def test_r_iw_3_business_days(start: date, days: int, expected: date, why: str) -> None:
    assert CAL.add_business_days(start, days) == expected, why


def test_r_iw_3_kp_agreement_date_counts_in_moscow_time() -> None:
    # 22:30 UTC on Thu 26 Nov 2026 is already Fri 27 Nov in Moscow.
    now = datetime(2026, 11, 26, 22, 30, tzinfo=UTC)
    assert kp_agreement_date(now, RULES) == date(2026, 12, 1)


@pytest.mark.parametrize(
    ("start_utc", "minutes", "due_utc"),
    [
        # Fri 17:30 MSK + 1 h working time → Mon 09:30 MSK (R-X9's own example).
        (datetime(2026, 11, 27, 14, 30), 60, datetime(2026, 11, 30, 6, 30)),
        # Tue 10:00 MSK + 1 h → 11:00 the same day.
        (datetime(2026, 12, 1, 7, 0), 60, datetime(2026, 12, 1, 8, 0)),
        # Sat 12:00 MSK → Mon 09:00 + 1 h.
        (datetime(2026, 11, 28, 9, 0), 60, datetime(2026, 11, 30, 7, 0)),
        # Wed 30 Dec 2026 17:00 MSK + 2 h → after the New Year holidays, 11 Jan 2027 10:00.
        (datetime(2026, 12, 30, 14, 0), 120, datetime(2027, 1, 11, 7, 0)),
    ],
)
def test_r_x9_working_time(start_utc: datetime, minutes: int, due_utc: datetime) -> None:
    due = add_working_time(
        start_utc.replace(tzinfo=UTC), minutes, CAL, "Europe/Moscow", "09:00", "18:00"
    )
    assert due == due_utc.replace(tzinfo=UTC)


def test_calendar_overrides_from_configuration() -> None:
    cal = Calendar(russian_calendar(2026, 2026, ("2026-12-01",), ("2026-11-28",)))
    assert not cal.is_business_day(date(2026, 12, 1))
    assert cal.is_business_day(date(2026, 11, 28))


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (150_000.00, "invoice"),
        (150_000.01, "invoice_contract"),
        (500_000.00, "invoice_contract"),
        (500_000.01, "contract_and_invoice"),
        (0, "invoice"),
    ],
)
def test_r_kp_5_document_set_boundaries(amount: float, expected: str) -> None:
    assert document_set(amount, RULES) == expected


def test_r_iw_f_required_fields_name_what_is_missing() -> None:
    values = {"UF_CRM_PRIORITY": "11", "UF_CRM_KP": "", "CONTACT_ID": "0", "UF_CRM_KP_DATE": None}
    assert missing_fields("IN_WORK", values, RULES) == [
        "КП",
        "Клиент",
        "Дата согласования КП",
        "Срок поставки",
    ]
    full = {
        "UF_CRM_PRIORITY": "11",
        "UF_CRM_KP": "КП-000123",
        "CONTACT_ID": "5",
        "UF_CRM_KP_DATE": "2026-12-01",
        "UF_CRM_DELIVERY_TERM": "30 дней",
    }
    assert missing_fields("IN_WORK", full, RULES) == []


def test_r_ct_f_required_fields_follow_the_document_set() -> None:
    assert missing_fields("CONTRACT", {}, RULES, "contract_and_invoice") == [
        "Счет",
        "Договор",
        "Оплата",
    ]
    assert missing_fields("CONTRACT", {}, RULES, "invoice_contract") == ["Счет", "Оплата"]
    assert missing_fields("INVOICE", {}, RULES, "invoice") == ["Подписанный счет", "Дата оплаты"]


START = date(2026, 12, 1)


@pytest.mark.parametrize(
    ("tranches", "problem"),
    [
        ([], "no tranches"),
        ([(50, date(2026, 12, 10)), (40, date(2026, 12, 20))], "sum to 90"),
        ([(120, date(2026, 12, 10)), (-20, date(2026, 12, 20))], "percent must be positive"),
        ([(0, date(2026, 12, 10)), (100, date(2026, 12, 20))], "tranche 1: percent"),
        ([(100, date(2026, 11, 30))], "before the deal's start"),
        ([(50, date(2026, 12, 10)), (50, date(2026, 12, 10))], "repeated due dates"),
    ],
)
def test_r_la_1_bad_schedules_are_refused(tranches, problem: str) -> None:
    from salesflow.workflows.rules import plan_schedule

    with pytest.raises(ValueError, match=problem):
        plan_schedule(tranches, 640_000, START)


def test_r_la_1_schedule_amounts_add_up_to_the_deal_amount() -> None:
    from salesflow.workflows.rules import plan_schedule

    plan = plan_schedule(
        [
            (50, date(2026, 12, 10)),
            (30, date(2026, 12, 20)),
            (10, date(2027, 1, 15)),
            (10, date(2027, 1, 25)),
        ],
        640_000.01,
        START,
    )
    assert [amount for _, _, amount in plan] == [320_000.0, 192_000.0, 64_000.0, 64_000.01]
    assert plan_schedule([(100, START)], 1000, START) == [(100, START, 1000.0)]


def _msk(day: date, hour: int, minute: int = 0) -> datetime:
    moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo("Europe/Moscow"))
    return moment.astimezone(UTC)


@pytest.mark.parametrize(
    ("after", "minutes", "sent", "expected", "why"),
    [
        (_msk(date(2026, 12, 1), 10), 30, 0, _msk(date(2026, 12, 1), 10, 30), "Tue in hours"),
        (_msk(date(2026, 12, 1), 17, 45), 30, 0, _msk(date(2026, 12, 2), 9), "evening → 09:00"),
        (_msk(date(2026, 12, 4), 17, 45), 30, 0, _msk(date(2026, 12, 7), 9), "Fri → Mon 09:00"),
        (_msk(date(2026, 12, 1), 11), 30, 4, _msk(date(2026, 12, 2), 9), "cap reached → tomorrow"),
        (_msk(date(2025, 12, 30), 17, 59), 30, 0, _msk(date(2026, 1, 12), 9), "New Year holidays"),
    ],
)
def test_r_x4_r_x9_next_reminder_in_working_hours_with_daily_cap(
    after: datetime, minutes: int, sent: int, expected: datetime, why: str
) -> None:
    assert next_reminder(after, minutes, RULES, sent) == expected, why


def test_r_x4_next_reminder_calendar_time_when_working_hours_are_off() -> None:
    rules = RULES.model_copy(
        update={"reminders": RULES.reminders.model_copy(update={"working_hours_only": False})}
    )
    saturday_night = _msk(date(2026, 12, 5), 23)
    assert next_reminder(saturday_night, 30, rules) == saturday_night.replace(minute=30)
    capped = next_reminder(_msk(date(2026, 12, 5), 12), 30, rules, sent_that_day=4)
    assert capped == _msk(date(2026, 12, 6), 0)


def test_r_x9_r_sh_1_one_day_in_working_time_is_the_next_business_day() -> None:
    friday = _msk(date(2026, 12, 4), 15)
    one_day = DeadlineRule(minutes=1440, working_time=True)
    assert deadline_after(friday, one_day, RULES, whole_days=True) == _msk(date(2026, 12, 7), 18)
    calendar_day = DeadlineRule(minutes=1440, working_time=False)
    assert deadline_after(friday, calendar_day, RULES, whole_days=True) == _msk(
        date(2026, 12, 5), 15
    )
