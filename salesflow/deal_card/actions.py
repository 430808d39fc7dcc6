"""The card's actions: which of the workflow's updates are valid now, the update built from a
submitted form (with the acting user), and the workflow's refusals in Russian (by their code)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from pydantic import BaseModel, ValidationError

from salesflow.deal_card.texts import Texts
from salesflow.workflows.deal import SERVICES
from salesflow.workflows.models import (
    FINAL_STAGES,
    AcceptLead,
    Actor,
    ApprovalDecision,
    DealView,
    DocumentsSigned,
    KpFeedback,
    LoseDeal,
    PaymentSchedule,
    RecordPayment,
    RejectLead,
    RequestTasks,
    StartProcess,
)
from salesflow.workflows.payments import PAYMENT_STAGES, SCHEDULE_STAGES
from salesflow.workflows.refusals import refusal_of, refusal_text

PROCESS_KINDS = ("import_order", "production", "purchasing")
LOSE_REASONS = ("NO_MONEY", "COMPETITOR", "NOT_TARGET", "NO_DECISION", "TOO_LONG", "OTHER")
SCHEDULE_ROWS = 4
# Which signed documents the workflow takes at which stage (`documents_signed` validator).
SIGNED_AT: dict[str, tuple[str, ...]] = {
    "CONTRACT": ("invoice", "contract"),
    "INVOICE": ("invoice", "contract"),
    "SHIPPED": ("act", "upd"),
}


class BadInput(Exception):
    """The form is incomplete or malformed; the message is Russian, for the person."""


@dataclass(frozen=True)
class Command:
    update: str
    payload: BaseModel


def offered(view: DealView) -> list[str]:
    """The updates the workflow accepts at this stage (its validators decide the rest)."""
    stage = view.stage
    if stage in FINAL_STAGES:
        return []
    actions: list[str] = []
    if stage == "NEW":
        actions += ["accept_lead", "reject_lead"]
    if stage == "KP" and view.kp_round:
        actions.append("kp_feedback")
    if stage == "CONTRACT" and any(
        p.kind == "approval" and p.state == "running" for p in view.processes
    ):
        actions.append("approval_decision")
    if stage in SCHEDULE_STAGES and not view.payment_schedule:
        actions.append("set_payment_schedule")
    if stage in PAYMENT_STAGES:
        actions.append("record_payment")
    if stage in SIGNED_AT:
        actions.append("documents_signed")
    actions += ["request_tasks", "start_process", "lose_deal"]
    return actions


def signed_kinds(stage: str) -> tuple[str, ...]:
    return SIGNED_AT.get(stage, ())


def _text(form: Mapping[str, str], name: str) -> str:
    return (form.get(name) or "").strip()


def _number(value: str, texts: Texts) -> float:
    try:
        return float(value.replace(",", ".").replace(" ", "").replace("\u00a0", ""))
    except ValueError:
        raise BadInput(texts("input_bad_number", value=value)) from None


def _date(value: str, texts: Texts) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadInput(texts("input_bad_date", value=value)) from None


def _choice(value: str, allowed: tuple[str, ...], texts: Texts) -> str:
    if value not in allowed:
        raise BadInput(texts("input_unknown_choice", value=value))
    return value


def _schedule(form: Mapping[str, str], texts: Texts) -> dict[str, Any]:
    tranches = []
    for number in range(1, SCHEDULE_ROWS + 1):
        percent, due = _text(form, f"percent_{number}"), _text(form, f"due_{number}")
        if not percent and not due:
            continue
        if not percent or not due:
            raise BadInput(texts("input_tranche_incomplete", number=number))
        tranches.append({"percent": _number(percent, texts), "due": _date(due, texts)})
    if not tranches:
        raise BadInput(texts("input_no_tranches"))
    return {"tranches": tranches}


def _lose(form: Mapping[str, str], texts: Texts) -> dict[str, Any]:
    reason = _choice(_text(form, "reason"), LOSE_REASONS, texts)
    comment = _text(form, "comment") or None
    if reason == "OTHER" and not comment:
        raise BadInput(texts("input_comment_required_other"))
    return {"reason": reason, "comment": comment}


def _reject(form: Mapping[str, str], texts: Texts) -> dict[str, Any]:
    reason = _text(form, "reason")
    if not reason:
        raise BadInput(texts("input_reason_required"))
    return {"reason": reason}


def _payment(form: Mapping[str, str], texts: Texts, today: date) -> dict[str, Any]:
    amount = _number(_text(form, "amount"), texts)
    if amount <= 0:
        raise BadInput(texts("input_amount_positive"))
    paid_on = _text(form, "paid_on")
    return {"amount": amount, "paid_on": _date(paid_on, texts) if paid_on else today}


def _feedback(form: Mapping[str, str], texts: Texts) -> dict[str, Any]:
    agreed = _choice(_text(form, "agreed"), ("yes", "no"), texts)
    return {"agreed": agreed == "yes", "comment": _text(form, "comment") or None}


def _approval(form: Mapping[str, str], texts: Texts) -> dict[str, Any]:
    approved = _choice(_text(form, "approved"), ("yes", "no"), texts) == "yes"
    comment = _text(form, "comment") or None
    if not approved and not comment:
        raise BadInput(texts("input_comment_required_rejection"))
    return {"approved": approved, "comment": comment}


def _tasks(form: Mapping[str, str], texts: Texts) -> dict[str, Any]:
    chosen = {service: _text(form, service) == "yes" for service in SERVICES}
    if not any(chosen.values()):
        raise BadInput(texts("input_no_service"))
    return chosen


_BUILDERS: dict[str, tuple[type[BaseModel], Callable[[Mapping[str, str], Texts, date], Any]]] = {
    "accept_lead": (AcceptLead, lambda f, t, d: {}),
    "reject_lead": (RejectLead, lambda f, t, d: _reject(f, t)),
    "kp_feedback": (KpFeedback, lambda f, t, d: _feedback(f, t)),
    "approval_decision": (ApprovalDecision, lambda f, t, d: _approval(f, t)),
    "set_payment_schedule": (PaymentSchedule, lambda f, t, d: _schedule(f, t)),
    "record_payment": (RecordPayment, _payment),
    "request_tasks": (RequestTasks, lambda f, t, d: _tasks(f, t)),
    "start_process": (
        StartProcess,
        lambda f, t, d: {"kind": _choice(_text(f, "kind"), PROCESS_KINDS, t)},
    ),
    "documents_signed": (
        DocumentsSigned,
        lambda f, t, d: {
            "kind": _choice(_text(f, "kind"), ("invoice", "contract", "act", "upd"), t)
        },
    ),
    "lose_deal": (LoseDeal, lambda f, t, d: _lose(f, t)),
}


def build(action: str, form: Mapping[str, str], actor: Actor, texts: Texts, today: date) -> Command:
    """The update for a submitted form; `accept_lead` makes the acting user the manager."""
    entry = _BUILDERS.get(action)
    if entry is None:
        raise BadInput(texts("input_unknown_action"))
    model, fields_of = entry
    fields = fields_of(form, texts, today)
    if action == "accept_lead":
        fields["manager_id"] = actor.user_id
    try:
        payload = model.model_validate({**fields, "actor": actor})
    except ValidationError as exc:
        raise BadInput(texts("input_invalid", details=exc.errors()[0]["msg"])) from None
    return Command(action, payload)


# ---- the workflow's refusals (codes and parameters, workflows/refusals.py) in Russian ------


def refusal(
    cause: BaseException | None, texts: Texts, stage_names: Mapping[str, str] | None = None
) -> str:
    """An update's refusal (its failure cause) as the person reads it: the template of its
    code; stage codes are named with `stage_names` (code → Bitrix24 name) where given."""
    found = refusal_of(cause)
    if found is None:
        details = getattr(cause, "message", None) or str(cause or "")
        return texts("refusal_unknown", details=details)
    code, params = found
    names = stage_names or {}

    def text(name: str, **values: object) -> str:
        if name.startswith("stage_") and name[6:] in names:
            return names[name[6:]]
        return texts(name, **values)

    return refusal_text(code, params, text)
