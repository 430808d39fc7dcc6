"""Pure business rules of the pipeline: calendar arithmetic, document sets, required fields."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from salesflow.workflows.models import CalendarSnapshot, DeadlineRule, DealRules
from salesflow.workflows.refusals import refuse


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

    def previous_business_day(self, day: date) -> date:
        while not self.is_business_day(day):
            day -= timedelta(days=1)
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


DAY_MINUTES = 24 * 60


def deadline_after(
    start: datetime, rule: DeadlineRule, rules: DealRules, whole_days: bool = False
) -> datetime:
    """`start` plus the rule's length, in working or calendar time (R-X9). With `whole_days`,
    a working-time length of whole days (a multiple of 1440 minutes) counts business days and
    ends with the working day: «1 день» from a Friday is Monday at the close."""
    if not rule.working_time:
        return start + timedelta(minutes=rule.minutes)
    if whole_days and rule.minutes % DAY_MINUTES == 0:
        day = local_day(start, rules.timezone)
        due = Calendar(rules.calendar).add_business_days(day, rule.minutes // DAY_MINUTES)
        return local_moment(due, _clock(rules.work_end), rules.timezone)
    return add_working_time(
        start,
        rule.minutes,
        Calendar(rules.calendar),
        rules.timezone,
        rules.work_start,
        rules.work_end,
    )


def working_moment(moment: datetime, rules: DealRules) -> datetime:
    """`moment` if it falls in business hours of a business day, else the next opening (UTC)."""
    return add_working_time(
        moment, 0, Calendar(rules.calendar), rules.timezone, rules.work_start, rules.work_end
    )


def next_reminder(
    after: datetime, minutes: int, rules: DealRules, sent_that_day: int = 0
) -> datetime:
    """R-X4: when the next reminder goes, `minutes` after the previous one (`after`): snapped
    into working hours of business days unless the policy says otherwise, and moved to the
    next day's first moment once the day has its daily cap (`sent_that_day` on `after`'s day)."""
    policy = rules.reminders
    at = after + timedelta(minutes=minutes)
    if policy.working_hours_only:
        at = working_moment(at, rules)
    cap = policy.daily_cap
    if (
        cap
        and sent_that_day >= cap
        and local_day(at, rules.timezone) == local_day(after, rules.timezone)
    ):
        next_day = local_day(after, rules.timezone) + timedelta(days=1)
        at = local_moment(next_day, time(0, 0), rules.timezone)
        if policy.working_hours_only:
            at = working_moment(at, rules)
    return at


# R-X4: the SLA of the service tasks (R-X6) and the processes (R-X7) when the rules snapshot
# has none (a snapshot from before they were configurable)
SLA_DEFAULTS = {
    "service_task": DeadlineRule(minutes=2 * DAY_MINUTES),
    "process": DeadlineRule(minutes=5 * DAY_MINUTES),
    "approval": DeadlineRule(minutes=DAY_MINUTES),
}


def sla_due(now: datetime, kind: str, rules: DealRules) -> datetime:
    rule = rules.deadlines.get(kind) or SLA_DEFAULTS[kind]
    return deadline_after(now, rule, rules, whole_days=True)


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

    Raises a Refusal (a ValueError) `schedule_invalid` listing the problems by code: no
    tranches, too many, a non-positive percent, a sum other than 100, a due date before the
    deal's start, a repeated due date.
    """

    def problem(code: str, **params: object) -> dict[str, object]:
        return {"code": code, "params": params}

    problems: list[dict[str, object]] = []
    if not tranches:
        problems.append(problem("schedule_no_tranches"))
    elif len(tranches) > MAX_TRANCHES:
        problems.append(problem("schedule_too_many", max=MAX_TRANCHES))
    for number, (percent, due) in enumerate(tranches, start=1):
        if not percent > 0:
            problems.append(problem("tranche_not_positive", number=number, percent=percent))
        if due < not_before:
            problems.append(
                problem(
                    "tranche_before_start",
                    number=number,
                    due=due.isoformat(),
                    start=not_before.isoformat(),
                )
            )
    dues = [due for _, due in tranches]
    repeated = sorted({d for d in dues if dues.count(d) > 1})
    if repeated:
        problems.append(problem("schedule_repeated_dues", dues=", ".join(str(d) for d in repeated)))
    total = round(sum(p for p, _ in tranches), 6)
    if tranches and abs(total - 100) > 1e-6:
        problems.append(problem("schedule_percent_sum", total=f"{total:g}"))
    if problems:
        raise refuse("schedule_invalid", problems=problems)
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
