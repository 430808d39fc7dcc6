"""Same-named test doubles of the activities for workflow tests (time-skipping server)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from temporalio import activity

from workflows.models import (
    ClientMessageRequest,
    DealSnapshot,
    DealUpdateRequest,
    NotifyRequest,
    TaskRequest,
    TimelineCommentRequest,
)


@dataclass
class FakePortal:
    """Remembers what the workflow asked Bitrix24 to do; keys make writes idempotent."""

    deal: DealSnapshot
    tasks: dict[str, TaskRequest] = field(default_factory=dict)
    task_ids: dict[str, int] = field(default_factory=dict)
    notifications: list[NotifyRequest] = field(default_factory=list)
    client_messages: dict[str, ClientMessageRequest] = field(default_factory=dict)
    updates: list[DealUpdateRequest] = field(default_factory=list)
    comments: dict[str, TimelineCommentRequest] = field(default_factory=dict)
    create_task_attempts: int = 0
    fail_first_create_after_success: bool = False
    _ids: itertools.count = field(default_factory=lambda: itertools.count(100))

    def activities(self) -> list:
        portal = self

        @activity.defn(name="fetch_deal")
        async def fetch_deal(deal_id: int) -> DealSnapshot:
            return portal.deal.model_copy(deep=True)

        @activity.defn(name="notify_users")
        async def notify_users(req: NotifyRequest) -> None:
            portal.notifications.append(req)

        @activity.defn(name="create_task")
        async def create_task(req: TaskRequest) -> int:
            portal.create_task_attempts += 1
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

        return [
            fetch_deal,
            notify_users,
            create_task,
            update_deal,
            send_client_message,
            add_timeline_comment,
        ]

    def titles(self) -> list[str]:
        return [t.title for t in self.tasks.values()]
