"""`salesflow rules migrate`: chosen running deals take another rule set (issue 15)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from salesflow.config.snapshot import rules_diff, rules_version
from salesflow.config.templates import Templates
from salesflow.workflows import migration
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import Actor, DealRules, MigrateRules
from salesflow.workflows.names import deal_workflow_id
from salesflow.workflows.refusals import Render, refusal_of, refusal_text


@dataclass
class Migration:
    deal_id: int
    was: str  # the version the deal ran
    to: str
    changed: list[str]  # the rules that differ
    refused: str | None  # why not (Russian), None: migrated (or would be, in a dry run)
    done: bool = False
    code: str | None = None  # the refusal's code (workflows/refusals.py), if refused
    params: dict[str, Any] | None = None  # and its parameters


def _refused(result: Migration, code: str, params: dict[str, Any], texts: Render) -> None:
    result.code, result.params = code, params
    result.refused = refusal_text(code, params, texts)


async def migrate(
    client: Client,
    deal_id: int,
    new: DealRules,
    dry_run: bool,
    actor: Actor | None = None,
    workflow_id: str | None = None,
    texts: Render | None = None,
) -> Migration:
    """Check (dry run) or move one running deal to `new`; a refusal names the reason, in
    Russian rendered with `texts` (the configured templates; default: the built-in ones)."""
    texts = texts or Templates()
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
        refusal = migration.refusal(
            deal_id=deal_id,
            stage=view.stage,
            category_id=None,  # not in the view; the update's validator checks it
            manager_id=view.manager_id,
            document_set=view.document_set,
            amount=view.amount,
            processes=view.processes,
            new=new,
        )
        if refusal is not None:
            _refused(result, refusal.code, refusal.params, texts)
        return result
    try:
        await handle.execute_update(
            DealWorkflow.migrate_rules, MigrateRules(rules=new, actor=actor)
        )
        result.done = True
    except WorkflowUpdateFailedError as err:
        found = refusal_of(err.cause)
        if found is None:  # not a refusal of the validator: its message as it is
            result.refused = getattr(err.cause, "message", None) or str(err.cause or err)
        else:
            _refused(result, *found, texts)
    return result
