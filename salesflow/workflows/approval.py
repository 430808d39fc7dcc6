"""`InternalApproval`: the smart process «Согласование» for one deal (R-KP-6, R-KP-7, R-CT-1).

Creates the item linked to the deal, then waits for a decision: `decide` (forwarded from the
deal's `approval_decision` update) or the item's stage changed by a person in Bitrix24 (polled).
The result is returned and also signalled to the deal (`approval_done`), which survives the
deal's continue-as-new.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow

from salesflow.workflows import patches

with workflow.unsafe.imports_passed_through():
    from salesflow.workflows import activity_stubs as act
    from salesflow.workflows.activity_stubs import call
    from salesflow.workflows.models import (
        Actor,
        ApprovalDecision,
        ApprovalInput,
        ApprovalItemStage,
        ApprovalResult,
    )
    from salesflow.workflows.names import SIGNAL_APPROVAL_DONE

CLOSE_ITEM_WHEN_CANCELLED = "approval-item-closed-when-cancelled"
# fin14: the compensation reads the item first — one a person already closed (SUCCESS/FAIL,
# crm.item stageId, bitrix24.md §6) keeps the person's decision
CLOSE_READS_FIRST = "fin14-approval-close-reads-first"
ITEM_MOVER = "fin12-approval-item-mover"  # the poll reads who moved the item (the decider)


@workflow.defn(name="InternalApproval")
class InternalApproval:
    @workflow.init
    def __init__(self, inp: ApprovalInput) -> None:
        self.decision: ApprovalDecision | None = None

    @workflow.signal
    def decide(self, decision: ApprovalDecision) -> None:
        if self.decision is None:
            self.decision = decision

    @workflow.run
    async def run(self, inp: ApprovalInput) -> ApprovalResult:
        item_id = await call(act.create_approval_item, inp.item)
        try:
            result = await self._decided(inp, item_id)
        except asyncio.CancelledError:
            # the deal closed under the approval (LOSE): the item is closed, not left open
            if patches.patched(CLOSE_ITEM_WHEN_CANCELLED):
                rules = inp.rules
                if workflow.patched(CLOSE_READS_FIRST):
                    stage = await call(
                        act.read_approval_item_stage,
                        ApprovalItemStage(
                            entity_type_id=rules.entity_type_id, item_id=item_id, stage_id=""
                        ),
                    )
                    if stage in (rules.stage_approved, rules.stage_rejected):
                        raise
                await call(
                    act.set_approval_item_stage,
                    ApprovalItemStage(
                        entity_type_id=rules.entity_type_id,
                        item_id=item_id,
                        stage_id=rules.stage_rejected,
                    ),
                )
            raise
        parent = workflow.get_external_workflow_handle(inp.parent_id)
        await parent.signal(SIGNAL_APPROVAL_DONE, result)
        return result

    async def _decided(self, inp: ApprovalInput, item_id: int) -> ApprovalResult:
        rules = inp.rules
        result: ApprovalResult | None = None
        while result is None:
            try:
                await workflow.wait_condition(
                    lambda: self.decision is not None,
                    timeout=timedelta(minutes=rules.poll_minutes),
                    timeout_summary="poll the «Согласование» item",
                )
            except TimeoutError:
                asked = ApprovalItemStage(
                    entity_type_id=rules.entity_type_id, item_id=item_id, stage_id=""
                )
                actor: Actor | None = None
                if workflow.patched(ITEM_MOVER):
                    read = await call(act.read_approval_item, asked)
                    stage = read.stage_id
                    if read.moved_by:
                        actor = Actor(user_id=read.moved_by, name=read.moved_by_name)
                else:
                    stage = await call(act.read_approval_item_stage, asked)
                if stage in (rules.stage_approved, rules.stage_rejected):
                    result = ApprovalResult(
                        key=inp.key,
                        approved=stage == rules.stage_approved,
                        comment="решение принято в Битрикс24",
                        item_id=item_id,
                        actor=actor,
                    )
                continue
            decision = self.decision
            assert decision is not None
            target = rules.stage_approved if decision.approved else rules.stage_rejected
            await call(
                act.set_approval_item_stage,
                ApprovalItemStage(
                    entity_type_id=rules.entity_type_id, item_id=item_id, stage_id=target
                ),
            )
            result = ApprovalResult(
                key=inp.key,
                approved=decision.approved,
                comment=decision.comment,
                item_id=item_id,
                actor=decision.actor,
            )
        return result
