"""The workflow's refusals as data: a code and its parameters (issue 12).

A validator refuses with `refuse(code, **params)`: an `ApplicationError` of type `Refusal`
whose first detail is `{"code": …, "params": {…}}` and whose message stays English (for logs
and the integrator). Whoever shows it to a person renders the Russian template
`refusal_<code>` (salesflow/config/templates.py) with the parameters — the deal card and the
CLI alike (`refusal_text`; document set codes in `was_set`/`would_set` by their names). A
refusal is also a `ValueError`, so callers that caught the validators' ValueError keep
working. Validators are not recorded in histories: changing what they raise needs no patch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from temporalio.exceptions import ApplicationError

REFUSAL_TYPE = "Refusal"

# code → the English message (str.format with the parameters); the Russian texts are the
# templates `refusal_<code>`. The schedule's problems are codes of their own (`problems`).
MESSAGES: dict[str, str] = {
    "wrong_stage": "{update} is allowed at {allowed}; the deal is at {stage}",
    "already_decided": "the lead has already been taken or rejected",
    "not_a_manager": "manager_id {manager_id} is not a sales manager (configured: {known})",
    "reason_required": "reason must not be empty",
    "no_feedback_awaited": "no КП feedback is awaited right now",
    "no_approval_running": "no internal approval is running for this deal",
    "rejection_needs_comment": "a rejection needs a comment for the manager",
    "paid_in_future": "paid_on {paid_on} is in the future",
    "paid_too_early": "paid_on {paid_on} is long before the deal started ({started})",
    "no_payment_control": "no payment control is running for this deal",
    "schedule_set": "the payment schedule is already set",
    "schedule_invalid": "{details}",
    "closed": "the deal is closed ({stage})",
    "nothing_requested": "set at least one of: {services}",
    "already_at": "the deal is already at {stage}",
    "use_lose_deal": "use lose_deal, which asks for a reason",
    "already_moving": "the deal is already moving",
    "already_losing": "the deal is already being lost",
    "other_needs_comment": "reason OTHER («Другое») requires a comment",
    "required_fields": "required fields are empty: {fields}",
    # `migrate_rules` (issue 15, workflows/migration.py): the new rules cannot govern the deal.
    "migrate_closed": "deal {deal_id} is closed ({stage}): its rules do not change",
    "migrate_pipeline": "deal {deal_id} is in category {category}; the new rules': {new_category}",
    "migrate_stage": "the new rules have no stage {stage}, where deal {deal_id} is",
    "migrate_manager": "the deal's manager {manager_id} is not among the new rules' managers",
    "migrate_document_set": (
        "deal {deal_id} is at {stage} with document set {was_set}; under the new rules"
        " {amount} needs {would_set}"
    ),
    "migrate_approval": "an internal approval is running; the new rules need none",
    # `amend_payment_schedule` (issue 14 item 2, workflows/payments.py).
    "schedule_not_set": "the payment schedule is not set yet: set it, not amend it",
    "schedule_all_paid": "every tranche is paid: nothing to amend",
    "schedule_drops_paid": "tranche {number} ({percent}% due {due}) is paid: keep it as it is",
    # The payment schedule's problems (rules.plan_schedule), inside `schedule_invalid`.
    "schedule_no_tranches": "the schedule has no tranches",
    "schedule_too_many": "at most {max} tranches",
    "tranche_not_positive": "tranche {number}: percent must be positive, got {percent}",
    "tranche_before_start": "tranche {number}: due {due} is before the deal's start {start}",
    "schedule_repeated_dues": "repeated due dates: {dues}",
    "schedule_percent_sum": "percents sum to {total}, not 100",
}


class Refusal(ApplicationError, ValueError):
    """A refused update: `code` and `params` (JSON values) travel as the error's details."""

    def __init__(self, code: str, params: Mapping[str, Any]) -> None:
        if code not in MESSAGES:
            raise KeyError(f"unknown refusal code {code!r}")
        self.code = code
        self.params = dict(params)
        super().__init__(
            _english(code, self.params),
            {"code": code, "params": self.params},
            type=REFUSAL_TYPE,
            non_retryable=True,
        )


def refuse(code: str, **params: Any) -> Refusal:
    return Refusal(code, params)


def _english(code: str, params: Mapping[str, Any]) -> str:
    if code == "schedule_invalid":
        return "; ".join(_english(p["code"], p["params"]) for p in params.get("problems", []))
    try:
        return MESSAGES[code].format(**params)
    except (KeyError, IndexError, ValueError):
        return MESSAGES[code]


def refusal_of(err: BaseException | None) -> tuple[str, dict[str, Any]] | None:
    """(code, params) of a refusal as the client sees it (an update's failure cause), if so."""
    while err is not None:
        # any ApplicationError with a code: move_stage's RequiredFieldsMissing carries one too
        if isinstance(err, ApplicationError) and err.details:
            detail = err.details[0]
            if isinstance(detail, Mapping) and isinstance(detail.get("code"), str):
                return detail["code"], dict(detail.get("params") or {})
        err = err.__cause__
    return None


Render = Callable[..., str]


def refusal_text(code: str, params: Mapping[str, Any], text: Render) -> str:
    """The Russian text of a refusal: `text(name, **values)` renders a template by name
    (templates.Templates). Stage codes become their names (`stage_<code>`), a schedule's
    problems are listed one by one."""
    values = dict(params)
    if "stage" in values:
        values["stage"] = text(f"stage_{values['stage']}")
    for name in ("was_set", "would_set"):  # document set codes (R-KP-5) by their names
        if name in values:
            values[name] = text(f"document_set_{values[name]}")
    if code == "schedule_invalid":
        values["details"] = "; ".join(
            text(f"refusal_{p['code']}", **p["params"]) for p in params.get("problems", [])
        )
    return text(f"refusal_{code}", **values)
