"""Patch checks with a generation marker: one marker per run instead of one per patch name.

Every `workflow.patched(name)` that answers True records a marker (once per name and run), so a
deal's history carried ~30 of them (11 KB, issue 16 item 3). Here a run decides ONCE, at its
first patch check, `workflow.patched(GENERATION)`:

- True (a run started, or first reaching a patch check, on this code): every name of
  `GENERATION_5` answers True with no marker of its own — exactly what `workflow.patched` answers
  outside replay, so the behaviour is that of a fresh run, minus the markers;
- False (replaying a history recorded before the generation marker existed): every check is the
  plain `workflow.patched(name)`, so the old history sees the very same calls and markers.

Temporal's rules this relies on (temporalio SDK `workflow.patched`, `_workflow_instance.
workflow_patch`; /work/shared/research/temporal.md 2.7): outside replay `patched` answers True
and records a marker the first time per name; in replay it answers True only if that marker is
in the history, and the answer is memoized for the run. The generation decision is made at the
same point of every replay (the first check), so it is deterministic; the decision lives on the
workflow instance (`workflow.instance()`), so it is per run also when modules are shared.

A patch added LATER must not be added to `GENERATION_5`: a run of generation 5 did not take it,
and answering True without its marker would break that run's replay. New names go through
`workflow.patched` (this `patched` does so for every name outside the set) until a later
generation marker (`generation-6` with its own frozen set) is introduced.
"""

from __future__ import annotations

from temporalio import workflow

GENERATION = "generation-5"

# Every patch name in the workflow code when the generation marker was introduced (2026-12-03,
# issue 16 item 3). Frozen: never add to it (see above).
GENERATION_5 = frozenset(
    {
        "approval-item-closed-when-cancelled",
        "bitrix24-fields-drive",
        "bitrix24-responsible-followed",
        "cancel-not-failure",
        "cancelled-children-say-so",
        "client-order-messages",
        "closing-documents-business-days",
        "complete-left-stage-tasks",
        "complete-round-tasks",
        "continue-as-new-drains-intents",
        "deal-board",
        "deal-changes-back-to-new",
        "deal-changes-document-set",
        "deal-changes-leave",
        "deal-changes-reopen",
        "deal12-history-codes",
        "deal12-move-actor",
        "deal12-one-service-task",
        "kp-load-per-round",
        "kp-message-when-sent",
        "lean-batched-move",
        "logist-done-closes-task",
        "lose-needs-reason",
        "mirror-onec-config-retry",
        "new-lead-reminder-policy",
        "onec-config-retry",
        "payment-ledger",
        "payment-notices-in-working-hours",
        "payment-reminder-policy",
        "payments-after-won",
        "people-read-when-used",
        "postpayment-skips-the-pay-loop",
        "reminders-after-missed-deadline",
        "rework-before-next-round",
        "skipped-stages-checked",
        "stage-task-deadlines",
        "timers-delivery-watched",
        "timers-follow-data",
        "timers-logist-deadline",
        "timers-payment-reversal",
        "timers-schedule-amend",
        "updates-answer-after-move",
        "watched-deadlines",
        "why-decisions",
        "why-timeline-comments",
        "won-feedback-form-link",
        "won-keeps-logist-mirrors",
    }
)

_ATTR = "_salesflow_patch_generation"


def generation() -> bool:
    """Whether this run is of generation 5 (decided, and its marker recorded, on first use)."""
    instance = workflow.instance()
    decided: bool | None = getattr(instance, _ATTR, None)
    if decided is None:
        decided = workflow.patched(GENERATION)
        setattr(instance, _ATTR, decided)
    return decided


def patched(name: str) -> bool:
    """`workflow.patched(name)`, answered by the generation marker for the names it covers."""
    if name in GENERATION_5 and generation():
        return True
    return workflow.patched(name)
