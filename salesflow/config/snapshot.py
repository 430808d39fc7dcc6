"""The per-deal rules snapshot (DESIGN: "Rules are a snapshot"), built outside workflow code."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Any

import holidays

from salesflow.config.settings import ConfigError, Settings
from salesflow.config.templates import merged
from salesflow.workflows.models import (
    ApprovalRules,
    CalendarSnapshot,
    DeadlineRule,
    DealRules,
    PeopleRules,
    ReminderRules,
)

CALENDAR_YEARS_AHEAD = 2


def russian_calendar(
    first_year: int,
    last_year: int,
    extra_holidays: tuple[str, ...],
    extra_workdays: tuple[str, ...],
) -> CalendarSnapshot:
    """Holidays and transferred working days of the RU calendar (`holidays` package) + overrides."""
    ru = holidays.country_holidays("RU", years=range(first_year, last_year + 1))
    try:
        added_off = {date.fromisoformat(d) for d in extra_holidays}
        added_on = {date.fromisoformat(d) for d in extra_workdays}
    except ValueError as exc:
        raise ConfigError(f"rules.extra_holidays/extra_workdays: {exc}") from None
    days_off = (set(ru.keys()) | added_off) - added_on
    workdays = (set(getattr(ru, "weekend_workdays", set())) | added_on) - added_off
    return CalendarSnapshot(
        holidays=sorted(days_off),
        workdays=sorted(workdays),
        first_year=first_year,
        last_year=last_year,
    )


# Not part of a rule set's identity: the version itself, its label, and the production
# calendar (data of the years around the day the snapshot was built, not a rule someone
# chose; the configured overrides `extra_holidays`/`extra_workdays` are part of it).
# `lean_templates` is how the templates travel, not what they are: the canonical form holds
# every template either way, so a lean snapshot has the version its full form had.
UNVERSIONED = frozenset({"version", "name", "calendar", "lean_templates"})


def canonical_rules(rules: DealRules) -> dict[str, Any]:
    """The rules that make a rule set, as plain JSON data (sorted when dumped)."""
    data = rules.model_dump(mode="json", exclude=set(UNVERSIONED))
    data["templates"] = dict(rules.templates)  # all of them, also of a lean snapshot
    return data


def rules_version(rules: DealRules) -> str:
    """A stable version of a rule set: `<name>@<hash>` or `<hash>` (12 hex digits of the
    SHA-256 of the canonical rules); the same rules give the same version on any machine."""
    text = json.dumps(canonical_rules(rules), sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return f"{rules.name}@{digest}" if rules.name else digest


def versioned(rules: DealRules) -> DealRules:
    """The snapshot with its `version` set (computed from its rules)."""
    return rules.model_copy(update={"version": rules_version(rules)})


def rules_diff(a: DealRules, b: DealRules) -> list[tuple[str, Any, Any]]:
    """(dotted key, value in a, value in b) for every rule that differs; missing is None."""
    out: list[tuple[str, Any, Any]] = []
    _diff("", canonical_rules(a), canonical_rules(b), out)
    return out


def _diff(prefix: str, a: Any, b: Any, out: list[tuple[str, Any, Any]]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            _diff(f"{prefix}.{key}" if prefix else str(key), a.get(key), b.get(key), out)
    elif a != b:
        out.append((prefix, a, b))


def people_rules(settings: Settings) -> PeopleRules:
    """The people mapping of the configuration (РОП, managers, logist, service users); read
    by the workflows when used (activity `read_people`), not frozen with a deal's rules."""
    users = settings.portal.users
    return PeopleRules(
        rop=users.rop,
        managers=list(users.managers),
        logist=users.logist,
        services={
            "engineers": users.engineers,
            "purchasing": users.purchasing,
            "logistics": users.logist,
            "production": users.production,
            "lawyer": users.lawyer,
            "metrologist": users.metrologist,
        },
        director=users.director,
    )


def build_rules(settings: Settings, today: date | None = None) -> DealRules:
    return versioned(_build_rules(settings, today))


def _build_rules(settings: Settings, today: date | None) -> DealRules:
    today = today or date.today()
    portal, rules = settings.portal, settings.rules
    return DealRules(
        name=rules.name,
        category_id=portal.category_id,
        engineers_category_id=portal.engineers_category_id,
        approval=ApprovalRules(**portal.approval.model_dump()),
        stages=portal.stages.model_dump(),
        fields=portal.fields.model_dump(),
        enums=portal.enums,
        people=people_rules(settings),
        timezone=rules.timezone,
        work_start=rules.work_start.strftime("%H:%M"),
        work_end=rules.work_end.strftime("%H:%M"),
        deadlines={
            "take_into_work": DeadlineRule(**rules.take_into_work.model_dump()),
            "kp_feedback_task": DeadlineRule(**rules.kp_feedback_task.model_dump()),
            "closing_document_task": DeadlineRule(**rules.closing_document_task.model_dump()),
            "service_task": DeadlineRule(**rules.service_task.model_dump()),
            "process": DeadlineRule(**rules.process.model_dump()),
            "approval": DeadlineRule(**rules.approval.model_dump()),
        },
        kp_agreement_business_days=rules.kp_agreement_business_days,
        reminder_interval_minutes=rules.reminder_interval_minutes,
        reminders=ReminderRules(**rules.reminders.model_dump()),
        payment_round_business_days=rules.payment_round_business_days,
        payment_reminder_days_before=rules.payment_reminder_days_before,
        payment_overdue_reminder_hours=rules.payment_overdue_reminder_hours,
        payment_match_days=rules.payment_match_days,
        payment_control_after_won=rules.payment_control_after_won,
        onec_poll_seconds=rules.onec_poll_seconds,
        rework_before_next_round=rules.rework_before_next_round,
        onec_task_poll_seconds=rules.onec_task_poll_seconds,
        contract_threshold=rules.contract_threshold,
        invoice_contract_threshold=rules.invoice_contract_threshold,
        currency_rates=dict(rules.currency_rates),
        onec_outage_notify_minutes=settings.onec.outage_notify_after_minutes,
        onec_config_retry_minutes=settings.onec.config_retry_minutes,
        accountant_email=settings.smtp.accountant,
        people_refresh_minutes=rules.people_refresh_minutes,
        reopen=rules.reopen,
        feedback_form_url=portal.feedback_form_url,
        calendar=russian_calendar(
            today.year - 1,
            today.year + CALENDAR_YEARS_AHEAD,
            rules.extra_holidays,
            rules.extra_workdays,
        ),
        extra_holidays=sorted(rules.extra_holidays),
        extra_workdays=sorted(rules.extra_workdays),
        templates=merged(settings.templates),
        lean_templates=True,  # history carries only the configured ones (models.DealRules)
    )
