"""The activities as the workflows see them: typed references without I/O.

Each stub carries the Temporal name and the signature of a real activity in
`salesflow/activities/` (tests/workflows/test_activity_stubs.py holds them to it), so the
workflows call `workflow.execute_activity(stubs.fetch_deal, deal_id, ...)` and the argument and
result types are checked, while the workflow modules import nothing that does I/O. A stub's
Python name is its activity name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from salesflow.workflows.models import (
        ApprovalItemRead,
        ApprovalItemRequest,
        ApprovalItemStage,
        BoardUpdate,
        ClientMessageRequest,
        DealSnapshot,
        DealUpdateRequest,
        EmailRequest,
        LinkedDealRequest,
        NotifyRequest,
        PeopleAnswer,
        PeopleRequest,
        TaskDeadlineRequest,
        TaskDeferRequest,
        TaskReassignRequest,
        TaskRequest,
        TaskSnapshot,
        TimelineCommentRequest,
    )
    from salesflow.workflows.onec_models import (
        CANCEL_ONEC_TASK,
        CREATE_ONEC_TASK,
        FETCH_CLOSING_DOCUMENTS,
        FIND_INVOICE_PAYMENTS,
        LOAD_KP_INTO_DEAL,
        READ_ONEC_TASK,
        REFLECT_TASK_PROGRESS,
        SET_ONEC_TASK_DEADLINE,
        CancelOneCTaskRequest,
        ClosingDocsRequest,
        ClosingDocument,
        CreateOneCTaskRequest,
        FindPaymentsRequest,
        LoadKpRequest,
        LoadKpResult,
        OneCTaskDeadlineRequest,
        OneCTaskStatus,
        Payment,
        ReflectProgressRequest,
        ReflectProgressResult,
    )

ACTIVITY_TIMEOUT = timedelta(seconds=60)
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)

A = TypeVar("A")
R = TypeVar("R")


async def call(activity_fn: Callable[[A], Awaitable[R]], arg: A, *, summary: bool = True) -> R:
    """An activity under the workflows' common timeout and retry policy (Temporal retries)."""
    return await workflow.execute_activity(
        activity_fn,
        arg,
        start_to_close_timeout=ACTIVITY_TIMEOUT,
        retry_policy=RETRY,
        summary=activity_fn.__name__ if summary else None,
    )


def _stub() -> NotImplementedError:
    return NotImplementedError("a stub: the worker registers the real activity of this name")


# ---- Bitrix24 (salesflow/activities/bitrix24.py) ----------------------------------------


@activity.defn(name="fetch_deal")
async def fetch_deal(deal_id: int) -> DealSnapshot:
    raise _stub()


@activity.defn(name="update_deal")
async def update_deal(req: DealUpdateRequest) -> None:
    raise _stub()


@activity.defn(name="notify_users")
async def notify_users(req: NotifyRequest) -> None:
    raise _stub()


@activity.defn(name="create_task")
async def create_task(req: TaskRequest) -> int:
    raise _stub()


@activity.defn(name="send_client_message")
async def send_client_message(req: ClientMessageRequest) -> None:
    raise _stub()


@activity.defn(name="add_timeline_comment")
async def add_timeline_comment(req: TimelineCommentRequest) -> None:
    raise _stub()


@activity.defn(name="read_task_status")
async def read_task_status(task_id: int) -> str:
    raise _stub()


@activity.defn(name="read_task")
async def read_task(task_id: int) -> TaskSnapshot:
    raise _stub()


@activity.defn(name="complete_task")
async def complete_task(task_id: int) -> None:
    raise _stub()


@activity.defn(name="set_task_deadline")
async def set_task_deadline(req: TaskDeadlineRequest) -> bool:
    raise _stub()


@activity.defn(name="read_people")
async def read_people(req: PeopleRequest) -> PeopleAnswer:
    raise _stub()


@activity.defn(name="defer_task")
async def defer_task(req: TaskDeferRequest) -> None:
    raise _stub()


@activity.defn(name="reassign_task")
async def reassign_task(req: TaskReassignRequest) -> None:
    raise _stub()


@activity.defn(name="create_approval_item")
async def create_approval_item(req: ApprovalItemRequest) -> int:
    raise _stub()


@activity.defn(name="read_approval_item_stage")
async def read_approval_item_stage(req: ApprovalItemStage) -> str:
    raise _stub()


@activity.defn(name="read_approval_item")
async def read_approval_item(req: ApprovalItemStage) -> ApprovalItemRead:
    raise _stub()


@activity.defn(name="set_approval_item_stage")
async def set_approval_item_stage(req: ApprovalItemStage) -> None:
    raise _stub()


@activity.defn(name="create_linked_deal")
async def create_linked_deal(req: LinkedDealRequest) -> int:
    raise _stub()


# ---- mail and the board (activities/mail.py, activities/board.py) -----------------------


@activity.defn(name="send_email")
async def send_email(req: EmailRequest) -> None:
    raise _stub()


@activity.defn(name="update_board")
async def update_board(update: BoardUpdate) -> None:
    raise _stub()


# ---- 1C (salesflow/activities/onec.py) ---------------------------------------------------


@activity.defn(name=LOAD_KP_INTO_DEAL)
async def load_kp_into_deal(req: LoadKpRequest) -> LoadKpResult:
    raise _stub()


@activity.defn(name=CREATE_ONEC_TASK)
async def create_onec_task(req: CreateOneCTaskRequest) -> str:
    raise _stub()


@activity.defn(name=CANCEL_ONEC_TASK)
async def cancel_onec_task(req: CancelOneCTaskRequest) -> bool:
    raise _stub()


@activity.defn(name=SET_ONEC_TASK_DEADLINE)
async def set_onec_task_deadline(req: OneCTaskDeadlineRequest) -> bool:
    raise _stub()


@activity.defn(name=READ_ONEC_TASK)
async def read_onec_task(ref: str) -> OneCTaskStatus:
    raise _stub()


@activity.defn(name=REFLECT_TASK_PROGRESS)
async def reflect_task_progress(req: ReflectProgressRequest) -> ReflectProgressResult:
    raise _stub()


@activity.defn(name=FIND_INVOICE_PAYMENTS)
async def find_invoice_payments(req: FindPaymentsRequest) -> list[Payment]:
    raise _stub()


@activity.defn(name=FETCH_CLOSING_DOCUMENTS)
async def fetch_closing_documents(req: ClosingDocsRequest) -> list[ClosingDocument]:
    raise _stub()


STUBS = (
    fetch_deal,
    update_deal,
    notify_users,
    create_task,
    send_client_message,
    add_timeline_comment,
    read_task_status,
    read_task,
    complete_task,
    set_task_deadline,
    defer_task,
    read_people,
    reassign_task,
    create_approval_item,
    read_approval_item_stage,
    read_approval_item,
    set_approval_item_stage,
    create_linked_deal,
    send_email,
    update_board,
    load_kp_into_deal,
    create_onec_task,
    read_onec_task,
    cancel_onec_task,
    set_onec_task_deadline,
    reflect_task_progress,
    find_invoice_payments,
    fetch_closing_documents,
)
