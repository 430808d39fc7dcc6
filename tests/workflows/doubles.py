"""Same-named test doubles of the activities for workflow tests (time-skipping server)."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from salesflow.config.settings import Settings
from salesflow.config.snapshot import people_rules
from salesflow.workflows.batch_models import LeaveStageRequest, LeaveStageResult
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
    PeopleRules,
    TaskDeadlineRequest,
    TaskDeferRequest,
    TaskReassignRequest,
    TaskRequest,
    TaskSnapshot,
    TimelineCommentRequest,
)
from salesflow.workflows.names import DEAL_NOT_FOUND
from salesflow.workflows.onec_models import (
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


@dataclass
class FakePortal:
    """Remembers what the workflow asked Bitrix24 to do; keys make writes idempotent."""

    deal: DealSnapshot
    tasks: dict[str, TaskRequest] = field(default_factory=dict)
    task_ids: dict[str, int] = field(default_factory=dict)
    notifications: list[NotifyRequest] = field(default_factory=list)
    notified_at: dict[str, datetime] = field(default_factory=dict)  # key → server time
    client_messages: dict[str, ClientMessageRequest] = field(default_factory=dict)
    updates: list[DealUpdateRequest] = field(default_factory=list)
    comments: dict[str, TimelineCommentRequest] = field(default_factory=dict)
    approval_items: dict[str, dict] = field(default_factory=dict)
    completed_tasks: set[int] = field(default_factory=set)
    moved_deadlines: dict[int, datetime] = field(default_factory=dict)  # a person's DEADLINE
    rewritten_deadlines: list[tuple[int, datetime]] = field(default_factory=list)  # the workflow's
    reassigned: list[TaskReassignRequest] = field(default_factory=list)
    linked_deals: dict[str, LinkedDealRequest] = field(default_factory=dict)
    emails: dict[str, EmailRequest] = field(default_factory=dict)
    kp_loads: list[LoadKpRequest] = field(default_factory=list)
    onec_payments: list[Payment] = field(default_factory=list)
    onec_tasks: dict[str, dict] = field(default_factory=dict)
    onec_down: bool = False
    onec_payments_hang: bool = False  # reads of payments never answer (1C stuck on a lock)
    onec_payments_reads: int = 0
    onec_refuses_tasks: bool = False  # 1C refuses to create tasks (a lock conflict)
    board: list[BoardUpdate] = field(default_factory=list)
    create_task_attempts: int = 0
    fetch_gate: asyncio.Event | None = None  # reads of the deal wait on it
    request_gate: asyncio.Event | None = None  # tasks asked for by `request_tasks` wait on it
    fail_first_create_after_success: bool = False
    deleted: bool = False  # crm.deal.get answers "Not found" (the deal was deleted)
    deferred: dict[int, str] = field(default_factory=dict)  # task ID → the comment it got
    # the configuration's people now (read_people), and the users deactivated in Bitrix24
    # None: the people of the deal's rules (`deal_running` fills it in)
    people: PeopleRules | None = None
    inactive: set[int] = field(default_factory=set)
    accountant_email: str = "buh@example.ru"
    _ids: itertools.count = field(default_factory=lambda: itertools.count(100))

    def activities(self) -> list:
        portal = self

        @activity.defn(name="fetch_deal")
        async def fetch_deal(deal_id: int) -> DealSnapshot:
            if portal.fetch_gate is not None:
                await portal.fetch_gate.wait()
            if portal.deleted:
                raise ApplicationError(
                    f"deal {deal_id} not found in Bitrix24", type=DEAL_NOT_FOUND, non_retryable=True
                )
            return portal.deal.model_copy(deep=True)

        @activity.defn(name="notify_users")
        async def notify_users(req: NotifyRequest) -> None:
            portal.notifications.append(req)
            portal.notified_at.setdefault(req.key, activity.info().scheduled_time)

        @activity.defn(name="create_task")
        async def create_task(req: TaskRequest) -> int:
            portal.create_task_attempts += 1
            if portal.request_gate is not None and ":request:" in req.key:
                await portal.request_gate.wait()
            if req.key not in portal.task_ids:
                portal.tasks[req.key] = req
                portal.task_ids[req.key] = next(portal._ids)
                if portal.fail_first_create_after_success and activity.info().attempt == 1:
                    raise RuntimeError("connection reset after the task was created")
            return portal.task_ids[req.key]

        @activity.defn(name="update_deal")
        async def update_deal(req: DealUpdateRequest) -> None:
            portal.updates.append(req)
            for name, value in req.fields.items():
                if name == "STAGE_ID":
                    portal.deal.stage_id = str(value)
                elif name == "ASSIGNED_BY_ID":
                    portal.deal.assigned_by_id = int(value or 0)
                else:
                    portal.deal.fields[name] = None if value is None else str(value)

        @activity.defn(name="send_client_message")
        async def send_client_message(req: ClientMessageRequest) -> None:
            portal.client_messages.setdefault(req.key, req)

        @activity.defn(name="add_timeline_comment")
        async def add_timeline_comment(req: TimelineCommentRequest) -> None:
            portal.comments.setdefault(req.key, req)

        @activity.defn(name="create_approval_item")
        async def create_approval_item(req: ApprovalItemRequest) -> int:
            item = portal.approval_items.setdefault(
                req.key, {"id": 500 + len(portal.approval_items), "stage": req.stage_id}
            )
            return item["id"]

        def _item(item_id: int) -> dict:
            return next(i for i in portal.approval_items.values() if i["id"] == item_id)

        @activity.defn(name="read_approval_item_stage")
        async def read_approval_item_stage(req: ApprovalItemStage) -> str:
            return _item(req.item_id)["stage"]

        @activity.defn(name="read_approval_item")
        async def read_approval_item(req: ApprovalItemStage) -> ApprovalItemRead:
            item = _item(req.item_id)
            return ApprovalItemRead(
                stage_id=item["stage"],
                moved_by=item.get("moved_by", 0),
                moved_by_name=item.get("moved_by_name", ""),
            )

        @activity.defn(name="set_approval_item_stage")
        async def set_approval_item_stage(req: ApprovalItemStage) -> None:
            _item(req.item_id)["stage"] = req.stage_id

        @activity.defn(name="read_task_status")
        async def read_task_status(task_id: int) -> str:
            return "5" if task_id in portal.completed_tasks else "2"

        @activity.defn(name="read_task")
        async def read_task(task_id: int) -> TaskSnapshot:
            req = next((portal.tasks[k] for k, i in portal.task_ids.items() if i == task_id), None)
            return TaskSnapshot(
                task_id=task_id,
                status="5" if task_id in portal.completed_tasks else "2",
                deadline=portal.moved_deadlines.get(task_id, req.deadline if req else None),
                responsible_id=req.responsible_id if req else 0,
            )

        @activity.defn(name="complete_task")
        async def complete_task(task_id: int) -> None:
            portal.completed_tasks.add(task_id)

        @activity.defn(name="set_task_deadline")
        async def set_task_deadline(req: TaskDeadlineRequest) -> bool:
            current = await read_task(req.task_id)
            if current.status == "5" or current.deadline == req.deadline:
                return False
            portal.moved_deadlines[req.task_id] = req.deadline
            portal.rewritten_deadlines.append((req.task_id, req.deadline))
            return True

        @activity.defn(name="read_people")
        async def read_people(req: PeopleRequest) -> PeopleAnswer:
            people = portal.people or people_rules(Settings.model_validate({}))
            return PeopleAnswer(
                people=people.model_copy(deep=True),
                accountant_email=portal.accountant_email,
                inactive=sorted(portal.inactive),
            )

        @activity.defn(name="defer_task")
        async def defer_task(req: TaskDeferRequest) -> None:
            portal.deferred.setdefault(req.task_id, req.comment)

        @activity.defn(name="leave_stage")
        async def leave_stage(req: LeaveStageRequest) -> LeaveStageResult:
            if req.stage_id is not None:
                await update_deal(
                    DealUpdateRequest(deal_id=req.deal_id, fields={"STAGE_ID": req.stage_id})
                )
            for task_id in req.task_ids:
                await complete_task(task_id)
            return LeaveStageResult(completed=list(req.task_ids))

        @activity.defn(name="reassign_task")
        async def reassign_task(req: TaskReassignRequest) -> None:
            portal.reassigned.append(req)
            for key, task_id in portal.task_ids.items():
                if task_id == req.task_id:
                    portal.tasks[key].responsible_id = req.responsible_id

        @activity.defn(name="create_linked_deal")
        async def create_linked_deal(req: LinkedDealRequest) -> int:
            portal.linked_deals.setdefault(req.key, req)
            return 9000 + len(portal.linked_deals)

        @activity.defn(name="send_email")
        async def send_email(req: EmailRequest) -> None:
            portal.emails.setdefault(req.key, req)

        @activity.defn(name="update_board")
        async def update_board(update: BoardUpdate) -> None:
            portal.board.append(update)

        @activity.defn(name="load_kp_into_deal")
        async def load_kp_into_deal(req: LoadKpRequest) -> LoadKpResult:
            portal.check_onec()
            portal.kp_loads.append(req)
            russia = "россия" in str(portal.deal.fields.get("UF_CRM_DIRECTION") or "").lower()
            return LoadKpResult(loaded=russia, changed=True, kp_number="КП-000123")

        @activity.defn(name="find_invoice_payments")
        async def find_invoice_payments(req: FindPaymentsRequest) -> list[Payment]:
            portal.check_onec()
            portal.onec_payments_reads += 1
            if portal.onec_payments_hang:
                await asyncio.Event().wait()
            return list(portal.onec_payments)

        @activity.defn(name="fetch_closing_documents")
        async def fetch_closing_documents(req: ClosingDocsRequest) -> list[ClosingDocument]:
            portal.check_onec()
            return []

        @activity.defn(name="create_onec_task")
        async def create_onec_task(req: CreateOneCTaskRequest) -> str:
            portal.check_onec()
            if portal.onec_refuses_tasks:
                raise RuntimeError("1C: lock conflict")
            portal.onec_tasks.setdefault(
                req.key, {"ref": f"ref-{req.key}", "done": False, "deadline": req.deadline}
            )
            return portal.onec_tasks[req.key]["ref"]

        @activity.defn(name="cancel_onec_task")
        async def cancel_onec_task(req: CancelOneCTaskRequest) -> bool:
            portal.check_onec()
            task = portal.onec_tasks.get(req.key)
            if task is None or task["done"] or task.get("cancelled"):
                return False
            task["cancelled"] = req.reason
            return True

        @activity.defn(name="set_onec_task_deadline")
        async def set_onec_task_deadline(req: OneCTaskDeadlineRequest) -> bool:
            portal.check_onec()
            task = portal.onec_tasks.get(req.key)
            if task is None or task["done"] or task.get("cancelled"):
                return False
            if task["deadline"] == req.deadline:
                return False
            task["deadline"] = req.deadline
            return True

        @activity.defn(name="read_onec_task")
        async def read_onec_task(ref: str) -> OneCTaskStatus:
            task = next(t for t in portal.onec_tasks.values() if t["ref"] == ref)
            return OneCTaskStatus(ref=ref, executed=task["done"], accepted=True)

        @activity.defn(name="reflect_task_progress")
        async def reflect_task_progress(req: ReflectProgressRequest) -> ReflectProgressResult:
            return ReflectProgressResult(completed=req.status.executed)

        return [
            update_board,
            create_approval_item,
            read_approval_item_stage,
            read_approval_item,
            set_approval_item_stage,
            read_task_status,
            read_task,
            complete_task,
            set_task_deadline,
            defer_task,
            read_people,
            leave_stage,
            reassign_task,
            create_linked_deal,
            send_email,
            load_kp_into_deal,
            find_invoice_payments,
            fetch_closing_documents,
            create_onec_task,
            read_onec_task,
            cancel_onec_task,
            set_onec_task_deadline,
            reflect_task_progress,
            fetch_deal,
            notify_users,
            create_task,
            update_deal,
            send_client_message,
            add_timeline_comment,
        ]

    def check_onec(self) -> None:
        if self.onec_down:
            raise RuntimeError("1C is unreachable")

    def titles(self) -> list[str]:
        return [t.title for t in self.tasks.values()]
