"""The small reply of `DealWorkflow`'s updates (issue 16 item 3, lean histories).

An update's result is stored in the workflow's history (WORKFLOW_EXECUTION_UPDATE_COMPLETED);
when every update answered with the whole `DealView`, a lifecycle's history carried a dozen
copies of the deal's state. The reply is now an `UpdateAck`: the stage after the update and
the causes it added to the deal's history. Callers that need more query `state`.

Replay does not compare an update's result with the recorded one (it is a protocol message,
not a command), so the smaller reply needs no `workflow.patched`: old histories replay as they
are, and their recorded `DealView` results still read as an `UpdateAck` (its fields default).
"""

from __future__ import annotations

from salesflow.workflows.models import DealState, UpdateAck

MAX_CHANGES = 5  # causes carried in a reply; more are in the `state` query's history


def since(state: DealState) -> int:
    """A mark taken when an update starts: how many history entries the deal had."""
    return len(state.history)


def ack(state: DealState, mark: int) -> UpdateAck:
    """The reply of an update that started at `mark` (see `since`)."""
    added = state.history[mark:] if 0 <= mark <= len(state.history) else []
    return UpdateAck(
        deal_id=state.deal_id,
        stage=state.stage,
        kp_round=state.kp_round,
        changed=[entry.cause for entry in added][-MAX_CHANGES:],
    )
