"""Moving a running deal to another rule set on purpose (issue 15, `salesflow rules migrate`).

`refusal` says, in Russian (templates `migrate_refused_*`), why the new rules make the deal's
current state impossible, or None when the deal can take them. The same check runs in the
`migrate_rules` update's validator and in `rules migrate --dry-run`. Deadlines already running
keep their due time; what the deal does from now on follows the new rules.
"""

from __future__ import annotations

from salesflow.config.templates import DEFAULT_TEMPLATES
from salesflow.workflows import rules as R
from salesflow.workflows.models import (
    FINAL_STAGES,
    STAGE_ORDER,
    DealRules,
    ProcessState,
    Stage,
)
from salesflow.workflows.names import in_pipeline

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
) -> str | None:
    """Why `new` cannot govern this deal as it stands (Russian), or None."""

    def say(key: str, **values: object) -> str:
        template = new.templates.get(key) or DEFAULT_TEMPLATES[key]
        stage_name = new.templates.get(f"stage_{stage}") or DEFAULT_TEMPLATES.get(
            f"stage_{stage}", str(stage)
        )
        return R.render(template, deal_id=deal_id, stage=stage_name, **values)

    if stage in FINAL_STAGES:
        return say("migrate_refused_closed")
    if category_id is not None and not in_pipeline(category_id, new.category_id):
        return say("migrate_refused_pipeline", category=category_id, new_category=new.category_id)
    if str(stage) not in new.stages:
        return say("migrate_refused_stage")
    if manager_id is not None and stage != Stage.NEW and manager_id not in new.people.managers:
        return say("migrate_refused_manager", manager_id=manager_id)
    if document_set and stage in DOCUMENT_SET_CHOSEN:
        would = R.document_set(amount, new)
        if would != document_set:
            return say(
                "migrate_refused_document_set",
                was=say(f"document_set_{document_set}"),
                would=say(f"document_set_{would}"),
                amount=f"{amount:,.0f}".replace(",", " "),
            )
    running = [p for p in processes if p.kind == "approval" and p.state == "running"]
    if running and R.document_set(amount, new) == "invoice":
        return say("migrate_refused_approval")
    return None
