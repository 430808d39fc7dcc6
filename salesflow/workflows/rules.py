"""Pure business rules of the pipeline: calendar arithmetic, document sets, required fields."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from salesflow.workflows.models import CalendarSnapshot, DeadlineRule, DealRules


class Calendar:
    """Business days of the Russian production calendar taken from a snapshot."""

    def __init__(self, snapshot: CalendarSnapshot) -> None:
        self._holidays = frozenset(snapshot.holidays)
        self._workdays = frozenset(snapshot.workdays)

    def is_business_day(self, day: date) -> bool:
        if day in self._workdays:
            return True
        if day in self._holidays:
            return False
        return day.weekday() < 5

    def add_business_days(self, start: date, days: int) -> date:
        """The date `days` business days after `start` (start itself not counted)."""
        current = start
        remaining = days
        while remaining > 0:
            current += timedelta(days=1)
            if self.is_business_day(current):
                remaining -= 1
        return current

    def next_business_day(self, day: date) -> date:
        while not self.is_business_day(day):
            day += timedelta(days=1)
        return day


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def add_working_time(
    start: datetime,
    minutes: int,
    calendar: Calendar,
    tz: str,
    work_start: str,
    work_end: str,
) -> datetime:
    """`start` plus `minutes` of working time (business hours on business days), in UTC (R-X9)."""
    zone = ZoneInfo(tz)
    opens, closes = _clock(work_start), _clock(work_end)
    local = start.astimezone(zone)
    left = timedelta(minutes=minutes)
    while True:
        day = local.date()
        day_open = datetime.combine(day, opens, zone)
        day_close = datetime.combine(day, closes, zone)
        if not calendar.is_business_day(day) or local >= day_close:
            nxt = calendar.next_business_day(day + timedelta(days=1))
            local = datetime.combine(nxt, opens, zone)
            continue
        local = max(local, day_open)
        available = day_close - local
        if left <= available:
            return (local + left).astimezone(ZoneInfo("UTC"))
        left -= available
        local = day_close


def deadline_after(start: datetime, rule: DeadlineRule, rules: DealRules) -> datetime:
    if not rule.working_time:
        return start + timedelta(minutes=rule.minutes)
    return add_working_time(
        start,
        rule.minutes,
        Calendar(rules.calendar),
        rules.timezone,
        rules.work_start,
        rules.work_end,
    )


def kp_agreement_date(now: datetime, rules: DealRules) -> date:
    """R-IW-3: the КП agreement date is today + N business days in the company's zone."""
    today = now.astimezone(ZoneInfo(rules.timezone)).date()
    return Calendar(rules.calendar).add_business_days(today, rules.kp_agreement_business_days)


DOCUMENT_SETS = ("invoice", "invoice_contract", "contract_and_invoice")


def document_set(amount: float, rules: DealRules) -> str:
    """R-KP-5: > contract threshold → contract and invoice; > lower → invoice-contract."""
    if amount > rules.contract_threshold:
        return "contract_and_invoice"
    if amount > rules.invoice_contract_threshold:
        return "invoice_contract"
    return "invoice"


# Required fields of the stage being left (R-X3, R-…-F), as logical field names.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "IN_WORK": ("priority", "kp", "client", "kp_date", "delivery_term"),
    "KP": ("kp_status",),
    "INVOICE": ("payment_date",),
    "SHIPPED": ("act", "upd"),
}

FIELD_TITLES: dict[str, str] = {
    "priority": "Приоритет",
    "kp": "КП",
    "client": "Клиент",
    "kp_date": "Дата согласования КП",
    "delivery_term": "Срок поставки",
    "kp_status": "Статус КП",
    "invoice": "Счет",
    "contract": "Договор",
    "payment_terms": "Оплата",
    "signed_invoice": "Подписанный счет",
    "signed_contract": "Подписанный договор",
    "payment_date": "Дата оплаты",
    "act": "Акт выполненных работ",
    "upd": "УПД",
    "loss_reason": "Причина провала",
    "loss_comment": "Комментарий к причине провала",
}


def required_fields(stage: str, doc_set: str | None) -> tuple[str, ...]:
    if stage == "CONTRACT":
        return {
            "contract_and_invoice": ("invoice", "contract", "payment_terms"),
            "invoice_contract": ("invoice", "payment_terms"),
        }.get(doc_set or "", ("invoice", "payment_terms"))
    if stage == "INVOICE":
        signed = (
            ("signed_invoice", "signed_contract")
            if doc_set == "contract_and_invoice"
            else ("signed_invoice",)
        )
        return (*signed, "payment_date")
    return REQUIRED_FIELDS.get(stage, ())


def _empty(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() in ("", "0")
    if isinstance(value, list):
        return not value
    return False


def missing_fields(
    stage: str, values: Mapping[str, object], rules: DealRules, doc_set: str | None = None
) -> list[str]:
    """Titles of the required fields of `stage` that are empty in the deal's `values`."""
    return [
        FIELD_TITLES[name]
        for name in required_fields(stage, doc_set)
        if _empty(values.get(rules.fields[name]))
    ]


def render(template: str, **values: object) -> str:
    """Fill a text template; a placeholder without a value stays visible instead of failing."""
    return template.format_map(_Keep(values))


class _Keep(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def local_text(moment: datetime, tz: str) -> str:
    return moment.astimezone(ZoneInfo(tz)).strftime("%d.%m.%Y %H:%M")


def local_moment(day: date, clock: time, tz: str) -> datetime:
    return datetime.combine(day, clock, ZoneInfo(tz)).astimezone(ZoneInfo("UTC"))


MAX_TRANCHES = 24


def plan_schedule(
    tranches: list[tuple[float, date]], amount: float, not_before: date
) -> list[tuple[float, date, float]]:
    """R-LA-1: validate a payment schedule; return (percent, due, amount) per tranche.

    Raises ValueError naming the problem: no tranches, a non-positive percent, a sum other
    than 100, a due date before the deal's start, a repeated due date.
    """
    if not tranches:
        raise ValueError("the schedule has no tranches")
    if len(tranches) > MAX_TRANCHES:
        raise ValueError(f"at most {MAX_TRANCHES} tranches")
    problems: list[str] = []
    for number, (percent, due) in enumerate(tranches, start=1):
        if not percent > 0:
            problems.append(f"tranche {number}: percent must be positive, got {percent}")
        if due < not_before:
            problems.append(f"tranche {number}: due {due} is before the deal's start {not_before}")
    dues = [due for _, due in tranches]
    repeated = sorted({d for d in dues if dues.count(d) > 1})
    if repeated:
        problems.append("repeated due dates: " + ", ".join(str(d) for d in repeated))
    total = round(sum(p for p, _ in tranches), 6)
    if abs(total - 100) > 1e-6:
        problems.append(f"percents sum to {total:g}, not 100")
    if problems:
        raise ValueError("; ".join(problems))
    kopecks = round(amount * 100)
    planned: list[tuple[float, date, float]] = []
    given = 0
    ordered = sorted(tranches, key=lambda t: t[1])
    for index, (percent, due) in enumerate(ordered):
        share = kopecks - given if index == len(ordered) - 1 else round(kopecks * percent / 100)
        given += share
        planned.append((percent, due, share / 100))
    return planned


def local_day(moment: datetime, tz: str) -> date:
    return moment.astimezone(ZoneInfo(tz)).date()
