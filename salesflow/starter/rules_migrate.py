"""`salesflow rules migrate`: chosen running deals take another rule set (issue 15)."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from salesflow.config.snapshot import rules_diff, rules_version
from salesflow.workflows import migration
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import Actor, DealRules, MigrateRules
from salesflow.workflows.names import deal_workflow_id


@dataclass
class Migration:
    deal_id: int
    was: str  # the version the deal ran
    to: str
    changed: list[str]  # the rules that differ
    refused: str | None  # why not (Russian), None: migrated (or would be, in a dry run)
    done: bool = False


async def migrate(
    client: Client,
    deal_id: int,
    new: DealRules,
    dry_run: bool,
    actor: Actor | None = None,
    workflow_id: str | None = None,
) -> Migration:
    """Check (dry run) or move one running deal to `new`; a refusal names the reason."""
    handle = client.get_workflow_handle(workflow_id or deal_workflow_id(deal_id))
    try:
        old = await handle.query(DealWorkflow.rules_snapshot)
        view = await handle.query(DealWorkflow.state)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return Migration(deal_id, "—", rules_version(new), [], "no workflow for this deal")
        raise
    result = Migration(
        deal_id,
        old.version or rules_version(old),
        new.version or rules_version(new),
        [key for key, _, _ in rules_diff(old, new)],
        None,
    )
    if dry_run:
        result.refused = migration.refusal(
            deal_id=deal_id,
            stage=view.stage,
            category_id=None,  # not in the view; the update's validator checks it
            manager_id=view.manager_id,
            document_set=view.document_set,
            amount=view.amount,
            processes=view.processes,
            new=new,
        )
        return result
    try:
        await handle.execute_update(
            DealWorkflow.migrate_rules, MigrateRules(rules=new, actor=actor)
        )
        result.done = True
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        result.refused = getattr(cause, "message", None) or str(cause or err)
    return result
