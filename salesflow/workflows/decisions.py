"""Decisions recorded as data (issue 15): each decision the deal's workflow takes becomes a
`Decision` in `DealState.decisions` — when, which rule (PIPELINE.md id and configuration key),
the inputs read, the outcome, who acted. Bounded: the last `KEEP` in full, older ones counted
per kind. Stage changes, refusals and escalations are also written once to the deal's Bitrix24
timeline (keyed `timeline:<seq>`; the activity finds a comment again by its exact text).

`DealEffects` holds one `Decisions`; the hooks in `deal_effects.py`/`deal.py` are one line each.
Recording is behind `workflow.patched(DECISIONS)`; the timeline comments (commands) behind
`workflow.patched(TIMELINE)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from temporalio import workflow

from salesflow.workflows import patches

with workflow.unsafe.imports_passed_through():
    from salesflow.config.templates import DEFAULT_TEMPLATES
    from salesflow.workflows import activity_stubs as act
    from salesflow.workflows import rules as R
    from salesflow.workflows.models import (
        Actor,
        ClientMessageRequest,
        DealRules,
        Decision,
        DecisionLog,
        NotifyRequest,
        TaskRequest,
        TimelineCommentRequest,
    )

if TYPE_CHECKING:
    from salesflow.workflows.deal_effects import DealEffects

DECISIONS = "why-decisions"  # decisions recorded into the state (no commands)
TIMELINE = "why-timeline-comments"  # stage changes, refusals, escalations on the timeline
KEEP = 200  # decisions kept in full; older ones become counts per kind

KINDS: tuple[str, ...] = (
    "stage_entered",
    "stage_refused",
    "task_created",
    "message_sent",
    "document_set",
    "approval_needed",
    "approval_skipped",
    "deadline_armed",
    "deadline_moved",
    "deadline_met",
    "deadline_missed",
    "deadline_dropped",  # closed because the deal was lost: neither met nor missed
    "escalation",
    "refusal",
    "failure_told",
)
TIMELINE_KINDS = frozenset({"stage_entered", "stage_refused", "escalation", "refusal"})

# The rule (PIPELINE.md) and configuration key behind a side effect, by its purpose's prefix
# (the longest matching prefix wins).
PURPOSE_RULES: dict[str, tuple[str, str]] = {
    "new:notify": ("R-NEW-1", "rules.people.managers"),
    "new:overdue": ("R-NEW-4", "rules.take_into_work"),
    "new:reminder": ("R-X4", "rules.reminders"),
    "iw:client_message": ("R-IW-1", "templates.client_taken_into_work"),
    "iw:check_products": ("R-IW-2", "templates.task_check_products"),
    "kp:send_kp": ("R-KP-1", "templates.task_send_kp"),
    "kp:client_message": ("R-X5", "templates.client_kp_sent"),
    "kp:feedback": ("R-KP-3", "rules.kp_feedback_task"),
    "kp:objection": ("R-KP-4", "templates.task_kp_objection"),
    "kp:approval_rework": ("R-KP-4", "templates.task_kp_objection"),
    "kp_agreement": ("R-IW-3", "rules.kp_agreement_business_days"),
    "kp_feedback": ("R-KP-3", "rules.kp_feedback_task"),
    "ct:approval": ("R-KP-6", "rules.approval"),
    "ct:approval_rejected": ("R-KP-6", "rules.approval"),
    "ct:send_documents": ("R-KP-7", "templates.task_send_documents_to_client"),
    "inv:client_message": ("R-INV-1", "templates.client_invoice_issued"),
    "inv:get_payment": ("R-INV-1", "rules.payment_round_business_days"),
    "inv:objection": ("R-INV-2", "templates.task_invoice_objection"),
    "payment_": ("R-INV-2", "rules.payment_round_business_days"),
    "la:": ("R-LA-2", "templates.task_control_works"),
    "ac:": ("R-AC-2", "templates"),
    "ts:": ("R-TS-2", "templates.task_control_shipping"),
    "sh:": ("R-SH-1", "rules.closing_document_task"),
    "sh:mail_accountant": ("R-SH-3", "rules.accountant_email"),
    "closing_documents": ("R-SH-1", "rules.closing_document_task"),
    "won:": ("R-WON-1", "templates.client_won_feedback"),
    "won:engineers_deal": ("R-WON-2", "rules.engineers_category_id"),
    "ps:": ("R-PS-1", "rules.payment_reminder_days_before"),
    "request:": ("R-X6", "rules.people.services"),
    "task_": ("R-X6", "rules.service_task"),
    "blocked:": ("R-X3", "rules.fields"),
    "refused_move": ("R-X3", "rules.fields"),
    "failure:": ("R-X8", "rules.people.rop"),
    "onec_outage": ("R-X8", "rules.onec_outage_notify_minutes"),
    "take_into_work": ("R-NEW-4", "rules.take_into_work"),
}


def rule_of(purpose: str) -> tuple[str, str]:
    best = ""
    for prefix in PURPOSE_RULES:
        if purpose.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    if ":reminder" in purpose:
        return ("R-X4", "rules.reminders")
    return PURPOSE_RULES.get(best, ("", ""))


def _escalation(purpose: str) -> bool:
    return purpose == "new:overdue" or purpose.endswith(":overdue:rop")


class Decisions:
    """The deal's decision log and its timeline writer (held by `DealEffects`)."""

    def __init__(self, fx: DealEffects) -> None:
        self.fx = fx
        self._rearming: str | None = None  # set_deadline clears the name it re-arms
        self._writer: asyncio.Task[None] | None = None

    @property
    def log(self) -> DecisionLog:
        return self.fx.s.decisions

    # ---- recording -------------------------------------------------------------------------

    def add(
        self,
        kind: str,
        *,
        rule: str = "",
        key: str = "",
        subject: str = "",
        inputs: Mapping[str, object] | None = None,
        outcome: str = "",
        actor: Actor | None = None,
        unique: bool = False,
        timeline: bool = True,
    ) -> None:
        """Record one decision; `unique`: not again when the same one is already there (a stage
        run again after continue-as-new decides the same)."""
        if not patches.patched(DECISIONS):
            return
        log, s = self.log, self.fx.s
        if unique and any(
            d.kind == kind and d.subject == subject and d.outcome == outcome for d in log.entries
        ):
            return
        log.seq += 1
        log.entries.append(
            Decision(
                seq=log.seq,
                when=workflow.now(),
                kind=kind,
                stage=s.stage,
                rule=rule,
                key=key,
                subject=subject,
                inputs={k: str(v) for k, v in (inputs or {}).items()},
                outcome=outcome,
                actor=actor,
            )
        )
        if timeline and kind in TIMELINE_KINDS and patches.patched(TIMELINE):
            log.timeline.append(log.seq)
        prune(log, self.fx.rules)

    def stage_entered(self, cause: str, actor: Actor | None) -> None:
        previous = next((d for d in reversed(self.log.entries) if d.kind == "stage_entered"), None)
        rule, key = stage_rule(self.fx.s.stage, cause)
        self.add(
            "stage_entered",
            rule=rule,
            key=key,
            subject=self.fx.s.stage,
            inputs={"from": previous.subject if previous else "", "cause": cause},
            outcome=self.fx.s.stage,
            actor=actor,
            timeline=previous is not None,  # the first stage the deal is found at is no change
        )

    def stage_refused(self, target: str, missing: list[str], actor: Actor | None = None) -> None:
        self.add(
            "stage_refused",
            rule="R-X3",
            key="rules.fields",
            subject=target,
            inputs={"empty": ", ".join(missing)},
            outcome=f"returned to {self.fx.s.stage}",
            actor=actor,
        )

    def refusal(self, what: str, reason: str, actor: Actor | None = None) -> None:
        """A person's action refused by the workflow (the reason is what they were told)."""
        rule = "R-X3" if what == "move_stage" else ""
        self.add("refusal", rule=rule, subject=what, inputs={"reason": reason}, actor=actor)

    def effect(self, purpose: str, arg: object) -> None:
        """A keyed side effect has just run (hook in `DealEffects.once`)."""
        rule, key = rule_of(purpose)
        if isinstance(arg, TaskRequest):
            inputs: dict[str, object] = {"title": arg.title, "responsible": arg.responsible_id}
            if arg.deadline is not None:
                inputs["deadline"] = self.fx.local(arg.deadline)
            self.add("task_created", rule=rule or "R-X1", key=key, subject=purpose, inputs=inputs)
        elif isinstance(arg, NotifyRequest):
            if purpose.startswith("failure:"):
                kind = "failure_told"
            elif _escalation(purpose):
                kind = "escalation"
            else:
                kind = "message_sent"
            users = ", ".join(str(u) for u in arg.user_ids)
            self.add(
                kind,
                rule=rule,
                key=key,
                subject=purpose,
                inputs={"to": users, "text": arg.message[:160]},
            )
            tranche = re.fullmatch(r"ps:(\d+):overdue", purpose)
            if tranche:
                self.add(
                    "deadline_missed",
                    rule="R-PS-1",
                    key="rules.payment_reminder_days_before",
                    subject=f"tranche_{tranche.group(1)}",
                )
        elif isinstance(arg, ClientMessageRequest):
            self.add("message_sent", rule=rule, key=key, subject=purpose, inputs={"to": "client"})

    def document_set(self, amount: float, doc_set: str) -> None:
        rules = self.fx.rules
        self.add(
            "document_set",
            rule="R-KP-5",
            key="rules.contract_threshold",
            subject="document_set",
            inputs={
                "amount": amount,
                "contract_threshold": rules.contract_threshold,
                "invoice_contract_threshold": rules.invoice_contract_threshold,
            },
            outcome=doc_set,
            unique=True,
        )

    def approval(self, doc_set: str, round_no: int) -> None:
        """R-KP-6: internal approval needed (a contract or an invoice-contract) or skipped."""
        needed = doc_set != "invoice"
        self.add(
            "approval_needed" if needed else "approval_skipped",
            rule="R-KP-6",
            key="rules.approval",
            subject=f"approval:{round_no}",
            inputs={"document_set": doc_set},
            outcome="started" if needed else "not needed",
            unique=True,
        )

    def deadline_armed(self, name: str, due: datetime, what: str = "", clears: bool = True) -> None:
        """A deadline set (hook before `set_deadline` clears the old one — `clears` — and in
        `watch`, which replaces it)."""
        previous = next((d for d in self.fx.s.deadlines if d.name == name), None)
        self._rearming = name if previous is not None and clears else None
        if previous is not None and previous.due == due:
            return
        rule, key = rule_of(name)
        inputs: dict[str, object] = {"due": self.fx.local(due)}
        if what:
            inputs["what"] = what
        if previous is not None:
            inputs["was"] = self.fx.local(previous.due)
        kind = "deadline_moved" if previous is not None else "deadline_armed"
        self.add(kind, rule=rule or "R-X4", key=key, subject=name, inputs=inputs)

    def deadline_missed(self, name: str) -> None:
        """Hook in `mark_overdue`: the deadline ran out (told once, R-X4)."""
        for d in self.fx.s.deadlines:
            if d.name == name and not d.overdue:
                rule, key = rule_of(name)
                self.add(
                    "deadline_missed",
                    rule=rule or "R-X4",
                    key=key,
                    subject=name,
                    inputs={"due": self.fx.local(d.due), "what": d.what},
                )

    def deadlines_closed(self, name: str) -> None:
        """Hook in `clear_deadline`: met (in time), or dropped (the deal was lost)."""
        if self._rearming == name:
            self._rearming = None
            return
        s = self.fx.s
        lost = s.stage.value == "LOSE" or s.intents.lose is not None
        for d in [d for d in s.deadlines if d.name == name]:
            if d.overdue:
                continue  # its miss is recorded already
            rule, key = rule_of(name)
            self.add(
                "deadline_dropped" if lost else "deadline_met",
                rule=rule or "R-X4",
                key=key,
                subject=name,
                inputs={"due": self.fx.local(d.due)},
            )

    # ---- the timeline ------------------------------------------------------------------------

    def start(self) -> None:
        """Start writing the due timeline comments (called once a run, from `run`)."""
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())

    async def flush(self) -> None:
        """Wait until every due timeline comment is written (the deal is about to close)."""
        if self._writer is not None:
            await workflow.wait_condition(lambda: not self.log.timeline)

    async def _write(self) -> None:
        fx = self.fx
        while True:
            await workflow.wait_condition(lambda: bool(self.log.timeline))
            seq = self.log.timeline[0]
            entry = next((d for d in self.log.entries if d.seq == seq), None)
            if entry is not None:
                purpose = f"timeline:{seq}"
                text = timeline_text(entry, fx.rules.templates, fx.rules.timezone)
                req = TimelineCommentRequest(key=fx.key(purpose), deal_id=fx.s.deal_id, text=text)
                # a deal closed under it: the comment is a courtesy, not a step
                with contextlib.suppress(asyncio.CancelledError):
                    await fx.once(purpose, act.add_timeline_comment, req)
            self.log.timeline = [n for n in self.log.timeline if n != seq]


# ---- pure helpers ---------------------------------------------------------------------------

STAGE_CAUSES: tuple[tuple[str, str, str], ...] = (
    ("accepted by user", "R-NEW-2", "rules.people.managers"),
    ("lead rejected", "R-NEW-3", "rules.fields.reject_reason"),
    ("lost:", "R-LOSE-1", "rules.enums.loss_reason"),
    ("КП agreed", "R-KP-5", "rules.contract_threshold"),
    ("internal approval rejected", "R-KP-6", "rules.approval"),
    ("payment received", "R-INV-3", "rules.fields.payment_date"),
    ("invoice signed (postpayment)", "R-CT-2", "rules.enums.payment_terms"),
    ("closing documents signed", "R-SH-3", "rules.closing_document_task"),
    ("moved by a person", "R-X3", "rules.fields"),
    ("deal found in Bitrix24", "R-X2", "rules.stages"),
)


def stage_rule(stage: str, cause: str) -> tuple[str, str]:
    for prefix, rule, key in STAGE_CAUSES:
        if cause.startswith(prefix):
            return rule, key
    return "", "rules.stages"


def prune(log: DecisionLog, rules: DealRules) -> None:
    """Keep the last `KEEP` decisions; older ones become counts per kind, and the business
    minutes of the stages they left stay summed."""
    while len(log.entries) > KEEP:
        first = log.entries[0]
        current = first.kind == "stage_entered" and not any(
            d.kind == "stage_entered" for d in log.entries[1:]
        )
        old = log.entries.pop(1 if current else 0)  # the current stage's entry stays
        log.older[old.kind] = log.older.get(old.kind, 0) + 1
        if old.kind == "stage_entered":
            nxt = next(d for d in log.entries if d.kind == "stage_entered")
            minutes = business_minutes(old.when, nxt.when, rules)
            log.older_stage_minutes[old.subject] = (
                log.older_stage_minutes.get(old.subject, 0) + minutes
            )


def business_minutes(start: datetime, end: datetime, rules: DealRules) -> int:
    """Working minutes between two moments (business hours of business days, R-X9)."""
    if end <= start:
        return 0
    zone = ZoneInfo(rules.timezone)
    calendar = R.Calendar(rules.calendar)
    hours, minutes = (int(x) for x in rules.work_start.split(":"))
    end_h, end_m = (int(x) for x in rules.work_end.split(":"))
    local, stop = start.astimezone(zone), end.astimezone(zone)
    total = timedelta(0)
    day = local.date()
    while day <= stop.date():
        if calendar.is_business_day(day):
            opens = datetime(day.year, day.month, day.day, hours, minutes, tzinfo=zone)
            closes = datetime(day.year, day.month, day.day, end_h, end_m, tzinfo=zone)
            lo, hi = max(opens, local), min(closes, stop)
            if hi > lo:
                total += hi - lo
        day += timedelta(days=1)
    return int(total.total_seconds() // 60)


def template(templates: Mapping[str, str], name: str) -> str:
    """A template by name; rules snapshotted before it existed fall back to the default."""
    return templates.get(name) or DEFAULT_TEMPLATES.get(name, "")


def timeline_text(d: Decision, templates: Mapping[str, str], timezone: str) -> str:
    """The Bitrix24 timeline comment of a decision (Russian, from templates); the moment and
    the sequence number make it unique, so the activity's lookup by text finds only it."""
    from salesflow.workflows.why import cause_text, decision_text

    when = R.local_text(d.when, timezone)
    if d.kind == "stage_entered":
        body = R.render(
            template(templates, "timeline_stage_moved"),
            stage_name=template(templates, f"stage_{d.subject}") or d.subject,
            cause=cause_text(d.inputs.get("cause", ""), templates, d.actor),
        )
    else:
        body = decision_text(d, templates)
    return R.render(template(templates, "timeline_stamp"), text=body, when=when, seq=d.seq)
