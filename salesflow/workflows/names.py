"""Names of the Temporal contract (CONTRACT.md): task queue, IDs, signals, search attributes."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

TASK_QUEUE = "sales-pipeline"
WORKFLOW_TYPE = "DealWorkflow"
SIGNAL_BITRIX24_EVENT = "bitrix24_event"
# Signals the deal's children send back to `DealWorkflow` (by name: the children cannot import
# the workflow that starts them).
SIGNAL_APPROVAL_DONE = "approval_done"
SIGNAL_PROCESS_DONE = "process_done"
SIGNAL_LOGIST_TASK_DONE = "logist_task_done"
# `salesflow doctor --fix-applied`: the 1C configuration was fixed; waiting 1C steps retry now.
SIGNAL_ONEC_CONFIG_FIXED = "onec_configuration_fixed"

DEAL_ID = SearchAttributeKey.for_int("DealId")
DEAL_STAGE = SearchAttributeKey.for_keyword("DealStage")
DEAL_MANAGER = SearchAttributeKey.for_int("DealManager")
DEAL_AMOUNT = SearchAttributeKey.for_float("DealAmount")
DEAL_OVERDUE = SearchAttributeKey.for_bool("DealOverdue")
SEARCH_ATTRIBUTES = (DEAL_ID, DEAL_STAGE, DEAL_MANAGER, DEAL_AMOUNT, DEAL_OVERDUE)
# `temporal server start-dev --search-attribute NAME=TYPE` spelling of the same keys.
SEARCH_ATTRIBUTE_TYPES = {
    "DealId": "Int",
    "DealStage": "Keyword",
    "DealManager": "Int",
    "DealAmount": "Double",
    "DealOverdue": "Bool",
}


def deal_workflow_id(deal_id: int) -> str:
    return f"deal-{deal_id}"


# ---- Bitrix24 events the pipeline uses (the relay forwards them, the workflow reads them) ----
ONCRMDEALADD = "ONCRMDEALADD"
ONCRMDEALUPDATE = "ONCRMDEALUPDATE"
ONTASKADD = "ONTASKADD"
ONTASKUPDATE = "ONTASKUPDATE"
DEAL_EVENTS = frozenset({ONCRMDEALADD, ONCRMDEALUPDATE})
# The deal leaves the pipeline (deal_changes.py): forwarded to a running workflow only, never
# starting one; ONCRMDEALMOVETOCATEGORY carries the new CATEGORY_ID (research/bitrix24.md).
ONCRMDEALDELETE = "ONCRMDEALDELETE"
ONCRMDEALMOVETOCATEGORY = "ONCRMDEALMOVETOCATEGORY"
LEAVE_EVENTS = frozenset({ONCRMDEALDELETE, ONCRMDEALMOVETOCATEGORY})
# fetch_deal's error type when crm.deal.get answers "Not found" (the deal was deleted)
DEAL_NOT_FOUND = "DealNotFound"
TASK_EVENTS = frozenset({ONTASKADD, ONTASKUPDATE})
# Changes of an object that exists: a second change within the same second is a new change.
UPDATE_EVENTS = frozenset({ONCRMDEALUPDATE, ONTASKUPDATE})
# Bitrix24 `tasks.task.get` STATUS of a completed task (research/bitrix24.md §tasks: 5 completed).
TASK_COMPLETED = "5"


def in_pipeline(category_id: int | None, pipeline_category_id: int) -> bool:
    """A deal belongs to the «Продажа» pipeline when its CATEGORY_ID is the configured one."""
    return category_id is not None and category_id == pipeline_category_id
