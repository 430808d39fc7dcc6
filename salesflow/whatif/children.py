"""Stand-ins of the deal's child workflows during a what-if replay (same names, no effects).

What a child told the deal came back as signals (`approval_done`, `logist_task_done`,
`process_done`), which are in the deal's history and are delivered by the replay as they were
recorded; the stand-ins only have to exist: the approval one takes the deal's `decide` signal
(forwarded from the `approval_decision` update) and ends, the others end at once.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from salesflow.workflows.models import ApprovalDecision, ApprovalInput, ApprovalResult
    from salesflow.workflows.names import SIGNAL_ONEC_CONFIG_FIXED
    from salesflow.workflows.onec_models import LOGIST_TASK_MIRROR


@workflow.defn(name="InternalApproval")
class ApprovalStandIn:
    def __init__(self) -> None:
        self.decision: ApprovalDecision | None = None

    @workflow.signal
    def decide(self, decision: ApprovalDecision) -> None:
        self.decision = self.decision or decision

    @workflow.run
    async def run(self, inp: ApprovalInput) -> ApprovalResult:
        await workflow.wait_condition(lambda: self.decision is not None)
        assert self.decision is not None
        return ApprovalResult(
            key=inp.key, approved=self.decision.approved, comment=self.decision.comment
        )


@workflow.defn(name=LOGIST_TASK_MIRROR)
class LogistMirrorStandIn:
    @workflow.signal(name=SIGNAL_ONEC_CONFIG_FIXED)
    def config_fixed(self) -> None:
        pass

    @workflow.run
    async def run(self, inp: Any) -> None:
        return None


@workflow.defn(name="DealProcess")
class ProcessStandIn:
    @workflow.run
    async def run(self, inp: Any) -> None:
        return None


STAND_INS: list[type] = [ApprovalStandIn, LogistMirrorStandIn, ProcessStandIn]
