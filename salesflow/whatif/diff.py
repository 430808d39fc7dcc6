"""What a replay produced, and how two replays of the same deal differ (issue 15, `whatif`)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from salesflow.whatif.replay import Replayed

MESSAGE_ACTIVITIES = ("notify_users", "send_client_message", "send_email", "add_timeline_comment")
OVERDUE = re.compile(r"^(?P<name>.+?):overdue(?::.*)?$")
TAKE_INTO_WORK = {"new": "take_into_work"}  # R-NEW-4 keys are "new:overdue…"


@dataclass
class Outcome:
    """One deal's outcome in a replay; lists hold the purposes of keyed effects."""

    deal_id: int
    stage: str
    document_set: str | None
    tasks: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    approvals: list[str] = field(default_factory=list)
    deadlines_missed: list[str] = field(default_factory=list)
    escalations: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def outcome(run: Replayed) -> Outcome:
    view, rules = run.view, run.rules
    prefix = f"deal:{view.deal_id}:"
    bosses = {rules.people.rop, rules.people.director} - {0}
    out = Outcome(
        deal_id=view.deal_id,
        stage=str(view.stage),
        document_set=view.document_set,
        refused=list(run.refused),
        notes=list(dict.fromkeys(run.notes)),
    )
    for call in run.calls:
        req = call.args[0] if call.args and isinstance(call.args[0], dict) else {}
        purpose = str(req.get("key", "")).removeprefix(prefix)
        if call.activity_type == "create_task" and purpose:
            _add(out.tasks, purpose)
        elif call.activity_type in MESSAGE_ACTIVITIES and purpose:
            _add(out.messages, purpose)
            missed = OVERDUE.match(purpose)
            if missed:
                name = missed.group("name")
                _add(out.deadlines_missed, TAKE_INTO_WORK.get(name, name))
            if call.activity_type == "notify_users" and bosses & set(req.get("user_ids", [])):
                _add(out.escalations, purpose)
    for process in view.processes:
        if process.kind == "approval":
            out.approvals.append(f"{process.workflow_id}: {process.state}")
    return out


def _add(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)


LISTS = ("tasks", "messages", "approvals", "deadlines_missed", "escalations", "refused")
SCALARS = ("stage", "document_set")


@dataclass
class DealDiff:
    deal_id: int
    changes: dict[str, Any] = field(default_factory=dict)  # what → {"was", "would be"} or ±
    notes: list[str] = field(default_factory=list)  # what the history never answered

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "changed": self.changed}


def compare(was: Outcome, would: Outcome) -> DealDiff:
    """`would` (the new rules) against `was` (the deal's own rules), both replayed."""
    diff = DealDiff(deal_id=was.deal_id, notes=[n for n in would.notes if n not in was.notes])
    for name in SCALARS:
        a, b = getattr(was, name), getattr(would, name)
        if a != b:
            diff.changes[name] = {"was": a, "would_be": b}
    for name in LISTS:
        a, b = getattr(was, name), getattr(would, name)
        added = [x for x in b if x not in a]
        gone = [x for x in a if x not in b]
        if added or gone:
            diff.changes[name] = {"added": added, "gone": gone}
    return diff


def totals(diffs: list[DealDiff]) -> dict[str, int]:
    """How many deals would differ, per kind of difference."""
    out = {"deals": len(diffs), "deals_changed": sum(d.changed for d in diffs)}
    for name in (*SCALARS, *LISTS):
        out[name] = sum(name in d.changes for d in diffs)
    return out
