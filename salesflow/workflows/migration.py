"""Moving a running deal to another rule set on purpose (issue 15, `salesflow rules migrate`).

`refusal` says why the new rules make the deal's current state impossible — a refusal code
`migrate_*` with its parameters (workflows/refusals.py; Russian templates `refusal_migrate_*`) —
or None when the deal can take them. The same check runs in the
`migrate_rules` update's validator and in `rules migrate --dry-run`. Deadlines already running
keep their due time; what the deal does from now on follows the new rules.
"""

from __future__ import annotations

from salesflow.workflows import rules as R
from salesflow.workflows.models import (
    FINAL_STAGES,
    STAGE_ORDER,
    DealRules,
    ProcessState,
    Stage,
)
from salesflow.workflows.names import in_pipeline
from salesflow.workflows.refusals import Refusal, refuse

# from CONTRACT on, the document set has been chosen (R-KP-5) and acted on
DOCUMENT_SET_CHOSEN = frozenset(STAGE_ORDER[STAGE_ORDER.index(Stage.CONTRACT) :])


def refusal(
    *,
    deal_id: int,
    stage: Stage,
    category_id: int | None,
    manager_id: int | None,
    document_set: str | None,
    amount: float,
    processes: list[ProcessState],
    new: DealRules,
) -> Refusal | None:
    """Why `new` cannot govern this deal as it stands (a refusal code), or None."""

    def no(code: str, **params: object) -> Refusal:
        return refuse(f"migrate_{code}", deal_id=deal_id, stage=str(stage), **params)

    if stage in FINAL_STAGES:
        return no("closed")
    if category_id is not None and not in_pipeline(category_id, new.category_id):
        return no("pipeline", category=category_id, new_category=new.category_id)
    if str(stage) not in new.stages:
        return no("stage")
    if manager_id is not None and stage != Stage.NEW and manager_id not in new.people.managers:
        return no("manager", manager_id=manager_id)
    if document_set and stage in DOCUMENT_SET_CHOSEN:
        would = R.document_set(amount, new)
        if would != document_set:
            amount_text = f"{amount:,.0f}".replace(",", " ")
            return no("document_set", was_set=document_set, would_set=would, amount=amount_text)
    running = [p for p in processes if p.kind == "approval" and p.state == "running"]
    if running and R.document_set(amount, new) == "invoice":
        return no("approval")
    return None
