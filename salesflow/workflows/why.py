"""`why` (issue 15): the deal's story, the chain behind a thing asked about, what it waits for —
rendered in Russian from templates (`salesflow.config.templates`) out of `DealState.decisions`;
and the deal's SLA figures (time in stage in business hours, rounds, escalations, lateness).

Pure functions: the `why` query of `DealWorkflow`, the CLI and the deal card use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import Field

from salesflow.workflows import rules as R
from salesflow.workflows.decisions import business_minutes, template
from salesflow.workflows.models import Actor, Carried, DealRules, DealState, Decision

WhatAsked = Literal["task", "stage", "deadline"]
CHAIN_KINDS: dict[str, tuple[str, ...]] = {
    "stage": (
        "stage_entered",
        "stage_refused",
        "document_set",
        "approval_needed",
        "approval_skipped",
        "refusal",
    ),
    "task": ("task_created", "document_set", "approval_needed"),
    "deadline": (
        "deadline_armed",
        "deadline_moved",
        "deadline_met",
        "deadline_missed",
        "deadline_dropped",
        "escalation",
    ),
}
# English causes of the history → templates of their Russian text (longest prefix first)
CAUSE_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("accepted by user ", "why_cause_accepted"),
    ("lead rejected: ", "why_cause_rejected"),
    ("lost: ", "why_cause_lost"),
    ("КП agreed; document set ", "why_cause_kp_agreed"),
    ("internal approval rejected: ", "why_cause_approval_rejected"),
    ("payment received", "why_cause_paid"),
    ("invoice signed (postpayment)", "why_cause_postpaid"),
    ("closing documents signed and sent", "why_cause_closing_documents"),
    ("moved by a person in Bitrix24", "why_cause_person"),
    ("deal found in Bitrix24", "why_cause_found"),
    ("automation", "why_cause_automation"),
)
DOC_SETS = {
    "contract_and_invoice": "document_set_contract_and_invoice",
    "invoice_contract": "document_set_invoice_contract",
    "invoice": "document_set_invoice",
}


class WhyRequest(Carried):
    at: datetime | None = None  # the story up to this moment
    what: WhatAsked | None = None


class StageTime(Carried):
    stage: str
    business_minutes: int


class TrancheLateness(Carried):
    number: int
    due: str
    paid_on: str | None
    days_late: int  # paid (or, unpaid, today) after the due date; 0: in time


class DealSla(Carried):
    deal_id: int
    manager_id: int | None
    stage: str
    stages: list[StageTime] = Field(default_factory=list)
    kp_rounds: int = 0
    invoice_rounds: int = 0
    escalations: dict[str, int] = Field(default_factory=dict)  # per stage
    met: dict[str, int] = Field(default_factory=dict)  # deadlines, per stage
    missed: dict[str, int] = Field(default_factory=dict)
    dropped: dict[str, int] = Field(default_factory=dict)  # closed because the deal was lost
    tranches: list[TrancheLateness] = Field(default_factory=list)


class WhyView(Carried):
    """The `why` query's answer: the story, the chain for what was asked, what the deal waits
    for now; the decisions themselves for scripts."""

    deal_id: int
    stage: str
    title: str = "Почему"  # the section's heading (template `why_heading`)
    story: list[str]
    chain: list[str] = Field(default_factory=list)
    waiting: str = ""
    decisions: list[Decision] = Field(default_factory=list)
    older: dict[str, int] = Field(default_factory=dict)
    sla: DealSla | None = None


def explain(s: DealState, rules: DealRules, req: WhyRequest | None, now: datetime) -> WhyView:
    req = req or WhyRequest()
    templates, tz = rules.templates, rules.timezone
    entries = [d for d in s.decisions.entries if req.at is None or d.when <= req.at]
    story = [_line(d, templates, tz) for d in entries]
    if s.decisions.older:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(s.decisions.older.items()))
        story.insert(0, R.render(template(templates, "why_older"), counts=counts))
    chain: list[str] = []
    if req.what is not None:
        kinds = CHAIN_KINDS[req.what]
        chain = [_line(d, templates, tz) for d in entries if d.kind in kinds]
        if req.what == "stage":
            chain = _stage_chain(entries, templates, tz) or chain
    return WhyView(
        deal_id=s.deal_id,
        stage=s.stage,
        title=template(templates, "why_heading"),
        story=story,
        chain=chain,
        waiting=waiting(s, rules, now) if req.at is None else "",
        decisions=entries,
        older=dict(s.decisions.older),
        sla=sla(s, rules, now),
    )


def _stage_chain(entries: list[Decision], templates: Mapping[str, str], tz: str) -> list[str]:
    """The current stage's chain: its entry and every decision since the stage before."""
    entered = [i for i, d in enumerate(entries) if d.kind == "stage_entered"]
    if not entered:
        return []
    start = entered[-2] + 1 if len(entered) > 1 else 0
    kinds = CHAIN_KINDS["stage"]
    return [_line(d, templates, tz) for d in entries[start:] if d.kind in kinds]


def _line(d: Decision, templates: Mapping[str, str], tz: str) -> str:
    text = decision_text(d, templates)
    source = "; ".join(x for x in (d.rule, d.key) if x)
    line = f"{R.local_text(d.when, tz)} — {text}"
    return f"{line} ({source})" if source else line


def money(value: float | str) -> str:
    try:
        amount = float(value)
    except ValueError:
        return str(value)
    return f"{amount:,.0f}".replace(",", "\u00a0") + "\u00a0₽"


def cause_text(cause: str, templates: Mapping[str, str], actor: Actor | None = None) -> str:
    text = cause
    for prefix, name in CAUSE_TEMPLATES:
        if cause.startswith(prefix):
            rest = cause[len(prefix) :]
            if name == "why_cause_kp_agreed":
                rest = template(templates, DOC_SETS.get(rest, "")) or rest
            elif name == "why_cause_lost":
                rest = template(templates, f"why_loss_{rest}") or rest
            text = R.render(template(templates, name), rest=rest)
            break
    if actor is not None:
        who = actor.name or str(actor.user_id)
        text += R.render(template(templates, "why_actor"), who=who)
    return text


def decision_text(d: Decision, templates: Mapping[str, str]) -> str:
    """One decision in Russian (template `why_<kind>`)."""
    i = d.inputs
    values: dict[str, object] = dict(i)
    values["subject"] = d.subject
    values["outcome"] = d.outcome
    if d.kind in ("stage_entered", "stage_refused"):
        values["stage_name"] = template(templates, f"stage_{d.subject}") or d.subject
        values["cause"] = cause_text(i.get("cause", ""), templates, d.actor)
    if d.kind == "document_set":
        amount = float(i.get("amount", "0") or 0)
        upper = float(i.get("contract_threshold", "0") or 0)
        lower = float(i.get("invoice_contract_threshold", "0") or 0)
        if amount > upper:
            compared = f"{money(amount)} > {money(upper)} (rules.contract_threshold)"
        elif amount > lower:
            compared = (
                f"{money(lower)} < {money(amount)} ≤ {money(upper)}"
                " (rules.invoice_contract_threshold)"
            )
        else:
            compared = f"{money(amount)} ≤ {money(lower)} (rules.invoice_contract_threshold)"
        values["set_name"] = template(templates, DOC_SETS.get(d.outcome, "")) or d.outcome
        values["compared"] = compared
    if d.kind in ("approval_needed", "approval_skipped"):
        doc_set = i.get("document_set", "")
        values["set_name"] = template(templates, DOC_SETS.get(doc_set, "")) or doc_set
    if d.kind == "task_created":
        values["deadline_text"] = (
            R.render(template(templates, "why_until"), due=i["deadline"]) if "deadline" in i else ""
        )
    if d.kind.startswith("deadline_"):
        values["what"] = i.get("what") or d.subject
    text = R.render(template(templates, f"why_{d.kind}") or d.kind, **values)
    if d.actor is not None and d.kind not in ("stage_entered",):
        text += R.render(template(templates, "why_actor"), who=d.actor.name or d.actor.user_id)
    return text


def waiting(s: DealState, rules: DealRules, now: datetime) -> str:
    """What the deal waits for now and since when."""
    templates, tz = rules.templates, rules.timezone
    stage_name = template(templates, f"stage_{s.stage}") or s.stage
    since = R.local_text(s.stage_entered_at or now, tz)
    if s.stage.value in ("WON", "LOSE") and not [
        t for t in s.payment_schedule if t.state != "paid"
    ]:
        return R.render(template(templates, "why_closed"), stage_name=stage_name, since=since)
    things: list[str] = []
    for d in sorted(s.deadlines, key=lambda d: d.due):
        late = template(templates, "why_overdue") if d.overdue else ""
        things.append(
            R.render(
                template(templates, "why_waits_deadline"),
                what=d.what or d.name,
                due=R.local_text(d.due, tz),
                late=late,
            )
        )
    listed = {d.task_id for d in s.deadlines if d.task_id}
    for t in s.open_tasks:
        if t.task_id not in listed:
            things.append(R.render(template(templates, "why_waits_task"), title=t.title))
    for tr in s.payment_schedule:
        if tr.state != "paid":
            things.append(
                R.render(
                    template(templates, "why_waits_tranche"),
                    number=tr.number,
                    due=tr.due.strftime("%d.%m.%Y"),
                )
            )
    what = "; ".join(things) or template(templates, "why_waits_person")
    return R.render(
        template(templates, "why_waiting"), stage_name=stage_name, since=since, what=what
    )


def sla(s: DealState, rules: DealRules, now: datetime) -> DealSla:
    """The deal's SLA figures from its decisions (and its payment schedule)."""
    log = s.decisions
    minutes: dict[str, int] = dict(log.older_stage_minutes)
    entered = [d for d in log.entries if d.kind == "stage_entered"]
    for i, this in enumerate(entered):
        if this.subject in ("WON", "LOSE"):
            continue
        end = entered[i + 1].when if i + 1 < len(entered) else now
        minutes[this.subject] = minutes.get(this.subject, 0) + business_minutes(
            this.when, end, rules
        )
    out = DealSla(
        deal_id=s.deal_id,
        manager_id=s.manager_id,
        stage=s.stage,
        stages=[StageTime(stage=k, business_minutes=v) for k, v in minutes.items()],
        kp_rounds=s.kp_round,
        invoice_rounds=s.invoice_round,
    )
    buckets = {
        "escalation": out.escalations,
        "deadline_met": out.met,
        "deadline_missed": out.missed,
        "deadline_dropped": out.dropped,
    }
    for d in log.entries:
        if d.kind in buckets:
            bucket = buckets[d.kind]
            bucket[d.stage] = bucket.get(d.stage, 0) + 1
    today = R.local_day(now, rules.timezone)
    for t in s.payment_schedule:
        settled = t.paid_on or (None if t.state == "paid" else today)
        late = max(0, (settled - t.due).days) if settled is not None else 0
        out.tranches.append(
            TrancheLateness(
                number=t.number,
                due=t.due.isoformat(),
                paid_on=t.paid_on.isoformat() if t.paid_on else None,
                days_late=late,
            )
        )
    return out
