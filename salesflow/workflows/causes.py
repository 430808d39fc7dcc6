"""History causes as codes (issue 12): `cause(code, **params)` is the English text the state
and the integrator have always had — a `str` — that also carries its code and parameters.
`DealEffects.record` keeps both in the `HistoryEntry` (patch deal12-history-codes); the deal
card's Russian tab renders the template `cause_<code>` (salesflow/config/templates.py) with
the parameters, and an entry without a code (older histories, causes not yet coded) as its
English text."""

from __future__ import annotations

from typing import Any

# code → the English text (str.format with the parameters)
CAUSES: dict[str, str] = {
    "found": "deal found in Bitrix24",
    "accepted": "accepted by user {user}",
    "lead_rejected": "lead rejected: {reason}",
    "moved_in_bitrix24": "moved by a person in Bitrix24",
    "moved_with_cli": "moved with the CLI",
    "automation": "automation",
    "lost": "lost: {reason}",
    "kp_feedback": "КП feedback round {round}: {answer}",
    "kp_agreed": "КП agreed; document set {document_set}",
    "approval_rejected": "internal approval rejected: {comment}",
    "approval_approved": "internal approval approved",
    "payment_received": "payment received",
    "closing_documents": "closing documents signed and sent",
    "signed": "{kind} signed",
    "signed_field": "{kind} signed (field filled in Bitrix24)",
    "process_started": "process started: {name}",
    "process_done": "process {kind} done",
    "task_completed": "task {task_id} completed in Bitrix24",
    "move_refused": "move to {target} refused: empty {fields}",
    "waiting_for_fields": "waiting for {fields} before {target}",
    "responsible_changed": "responsible changed in Bitrix24{by}: user {old} → user {new}",
    "kp_status_field": "«Статус КП» set in Bitrix24 (round {round}): {answer}",
    "service_field": "{service} task asked for in Bitrix24",
    "payment": "payment {amount} on {paid_on} ({source})",
    "payment_confirmed": "payment {amount} confirmed by 1C {document}",
    "payment_onec": "payment {amount} on {paid_on} (1C {document})",
    "payment_posted_again": "payment {amount} posted again in 1C {document}",
    "payment_known_from_onec": "payment {amount} already received from 1C {document}",
    "payment_reversed": "payment {amount} reversed: 1C {document} unposted or deleted",
    "schedule_set": "payment schedule set: {count} tranches",
    "schedule_amended": "payment schedule amended: {old} → {new}",
    "payments_closed": "payment control closed by the РОП: {comment}",
    "payments_go_on": "payment control goes on: tranches {numbers} open",
    "postpayment": "postpayment: waiting for the signatures, not the money",
    "kp_loaded": "КП {number}: {lines} lines",
    "reopened": "reopened after {final} in Bitrix24: a new run from {target}",
    "reopen_refused": "moved back from {final} to {target} in Bitrix24: refused (rules.reopen)",
    "new_round": "back at NEW: waiting for a new acceptance (round {round})",
    "no_rate": "no rate for {currency}: the document set cannot be chosen",
    "document_set_changed": "amount {rub} RUB: document set {old_set} → {new_set}",
    "ended_not_found": "deal not found in Bitrix24 (crm.deal.get): deleted: the workflow ends",
    "ended_deleted": "deal deleted in Bitrix24 (ONCRMDEALDELETE): the workflow ends",
    "ended_moved_out": "deal moved to pipeline {category} in Bitrix24: the workflow ends",
    "logist_failed": "1C logist task failed: {error}",
    "logist_done": "1C logist task {ref} executed={executed}",
    "logist_withdrawn": "1C logist task of {purpose} withdrawn (deal lost)",
    "rop_changed": "РОП changed: user {old} → user {new}",
    "user_deactivated": "user {user} deactivated in Bitrix24: work handed to the РОП {rop}",
    "people_not_read": "people not read, the last known kept: {error}",
}

# the workflow's own doing (no person behind it): the tab's «Кто» says so (actor_automatic)
AUTOMATIC: frozenset[str] = frozenset(
    {
        "found",
        "automation",
        "payment_received",
        "payment_confirmed",
        "closing_documents",
        "process_done",
        "move_refused",
        "waiting_for_fields",
        "payment_onec",
        "payment_posted_again",
        "payment_reversed",
        "payments_go_on",
        "postpayment",
        "kp_loaded",
        "no_rate",
        "document_set_changed",
        "ended_not_found",
        "logist_done",
        "logist_failed",
        "logist_withdrawn",
        "people_not_read",
    }
)

Param = str | int | float


class Cause(str):
    """An English cause that knows its code and parameters."""

    code: str
    params: dict[str, Param]

    def __new__(cls, code: str, params: dict[str, Param]) -> Cause:
        made = super().__new__(cls, CAUSES[code].format(**params))
        made.code, made.params = code, params
        return made


def cause(code: str, **params: Any) -> Cause:
    return Cause(code, {k: v if isinstance(v, int | float) else str(v) for k, v in params.items()})
