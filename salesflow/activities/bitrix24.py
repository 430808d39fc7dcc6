"""Activities that act in Bitrix24: one side effect each, each idempotent by its key.

Markers: tasks carry the key in XML_ID (looked up among the deal's tasks), client e-mails in
the activity's ORIGIN_ID, «Согласование» items their xmlId, linked deals their ORIGIN_ID,
timeline comments their text; notifications their TAG (the messenger replaces a same-tag one,
so a late-landing notification and its retry show as one). A create whose answer was lost is
repeated only after `bitrix24.settle_seconds` without finding its marker (`once.py`).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from salesflow.activities.bitrix24_batch import Bitrix24Batch
from salesflow.activities.errors import refuse, remote_errors
from salesflow.activities.once import Settle, found, once
from salesflow.config.settings import Settings
from salesflow.config.snapshot import people_rules
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.integrations.bitrix24.errors import Bitrix24Error, NotFound
from salesflow.workflows.models import (
    ApprovalItemRead,
    ApprovalItemRequest,
    ApprovalItemStage,
    ClientMessageRequest,
    DealSnapshot,
    DealUpdateRequest,
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
from salesflow.workflows.names import DEAL_NOT_FOUND, TASK_COMPLETED
from salesflow.workflows.rules import render

TASK_DEFERRED = "6"  # tasks.task.get STATUS of a deferred task (research/bitrix24.md §tasks)

ORIGINATOR = "salesflow"
DEAL_OWNER_TYPE = 2
CONTACT_OWNER_TYPE = 3


def _bitrix_time(value: Any) -> str:
    return value.isoformat(timespec="seconds")


def _file_id(value: dict[str, Any]) -> str:
    """A file field's value as crm.deal.get returns it, `{id, showUrl, downloadUrl}`
    (github.com/bitrix-tools/b24-rest-docs/issues/94): kept as the file's ID."""
    return str(value.get("id") or "")


def deal_snapshot(raw: dict[str, Any]) -> DealSnapshot:
    fields: dict[str, str | list[str] | None] = {}
    for name, value in raw.items():
        if isinstance(value, list):
            fields[name] = [_file_id(v) if isinstance(v, dict) else str(v) for v in value]
        elif isinstance(value, dict):
            fields[name] = _file_id(value) or None
        elif value is None or isinstance(value, str | int | float | bool):
            fields[name] = None if value is None else str(value)
    return DealSnapshot(
        id=int(raw["ID"]),
        title=str(raw.get("TITLE") or ""),
        stage_id=str(raw.get("STAGE_ID") or ""),
        category_id=int(raw.get("CATEGORY_ID") or 0),
        assigned_by_id=int(raw.get("ASSIGNED_BY_ID") or 0),
        amount=float(raw.get("OPPORTUNITY") or 0),
        fields=fields,
    )


def mover_id(fields: Mapping[str, Any]) -> int:
    """Who last moved the deal's stage: MOVED_BY_ID, else the last modifier MODIFY_BY_ID (both
    crm.deal fields, research/bitrix24.md); 0 when neither is known."""
    for name in ("MOVED_BY_ID", "MODIFY_BY_ID"):
        raw = fields.get(name)
        if isinstance(raw, str) and raw.isdigit() and int(raw):
            return int(raw)
    return 0


def full_name(user: dict[str, Any]) -> str:
    parts = (user.get("LAST_NAME"), user.get("NAME"), user.get("SECOND_NAME"))
    return " ".join(p for p in parts if p)


class UserNames:
    """Users' full names for the integrator's views, remembered for a while per worker (a name
    rarely changes; one `user.get` per responsible instead of one per deal read). A user the
    portal does not answer for has no name: the views fall back to the ID."""

    TTL_SECONDS = 600.0

    def __init__(self, client: Bitrix24Client) -> None:
        self.client = client
        self._known: dict[int, tuple[str, float]] = {}

    async def name(self, user_id: int) -> str:
        if not user_id:
            return ""
        known = self._known.get(user_id)
        if known and time.monotonic() - known[1] < self.TTL_SECONDS:
            return known[0]
        try:
            users = await self.client.call("user.get", {"ID": user_id})
        except Bitrix24Error:
            return known[0] if known else ""
        user: dict[str, Any] = next(
            (u for u in users or [] if str(u.get("ID")) == str(user_id)), {}
        )
        self._known[user_id] = (full_name(user), time.monotonic())
        return self._known[user_id][0]


async def timeline_comment_once(
    client: Bitrix24Client, settle: Settle, deal_id: int, text: str
) -> bool:
    """A comment on the deal's timeline, found again by its exact text; True when written now."""

    async def present() -> bool | None:
        # COMMENT asked for by name, as in the method's documented example (b24restdocs
        # crm.timeline.comment.list): the lookup must not rest on the default selection
        existing = await client.list_all(
            "crm.timeline.comment.list",
            {
                "filter": {"ENTITY_ID": deal_id, "ENTITY_TYPE": "deal"},
                "select": ["ID", "COMMENT"],
            },
        )
        return False if any(c.get("COMMENT") == text for c in existing) else None

    async def write() -> bool:
        await client.call(
            "crm.timeline.comment.add",
            {"fields": {"ENTITY_ID": deal_id, "ENTITY_TYPE": "deal", "COMMENT": text}},
        )
        return True

    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    with remote_errors():
        return await once(settle, f"deal:{deal_id}:comment:{digest}", present, write)


class Bitrix24Activities(Bitrix24Batch):
    """Holds the worker's one Bitrix24 client (one throttle per portal); the batched
    activities come from `Bitrix24Batch`."""

    def __init__(self, client: Bitrix24Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self._names = UserNames(client)
        self.settle = Settle(settings.bitrix24.settle_seconds)

    def all(self) -> list[Any]:
        return [
            self.fetch_deal,
            self.update_deal,
            self.notify_users,
            self.create_task,
            self.send_client_message,
            self.add_timeline_comment,
            self.read_task_status,
            self.read_task,
            self.complete_task,
            self.set_task_deadline,
            self.defer_task,
            self.read_people,
            self.reassign_task,
            self.create_approval_item,
            self.read_approval_item_stage,
            self.read_approval_item,
            self.set_approval_item_stage,
            self.create_linked_deal,
            self.leave_stage,  # issue 16: a stage's effects in one batch (bitrix24_batch.py)
        ]

    @activity.defn(name="fetch_deal")
    async def fetch_deal(self, deal_id: int) -> DealSnapshot:
        try:
            with remote_errors():
                raw = await self.client.call("crm.deal.get", {"id": deal_id})
        except ApplicationError as err:
            # crm.deal.get of a deleted deal: error "" / "Not found" (research/bitrix24.md)
            if isinstance(err.__cause__, NotFound):
                raise ApplicationError(
                    f"deal {deal_id} not found in Bitrix24", type=DEAL_NOT_FOUND, non_retryable=True
                ) from err
            raise
        deal = deal_snapshot(raw)
        deal.assigned_by_name = await self._names.name(deal.assigned_by_id)
        mover = mover_id(deal.fields)
        if mover:  # who moved the deal (a real crm.deal field, research/bitrix24.md)
            deal.moved_by_name = await self._names.name(mover)
        return deal

    @activity.defn(name="update_deal")
    async def update_deal(self, req: DealUpdateRequest) -> None:
        fields = {k: ("" if v is None else v) for k, v in req.fields.items()}
        with remote_errors():
            await self.client.call("crm.deal.update", {"id": req.deal_id, "fields": fields})

    @activity.defn(name="notify_users")
    async def notify_users(self, req: NotifyRequest) -> None:
        commands = {
            f"u{user_id}": (
                "im.notify.system.add",
                {
                    "USER_ID": user_id,
                    "MESSAGE": req.message,
                    "TAG": req.key,
                    "CLIENT_ID": ORIGINATOR,
                },
            )
            for user_id in dict.fromkeys(req.user_ids)
        }
        with remote_errors():
            outcome = await self.client.batch(commands)
        if outcome.errors:
            with remote_errors():
                raise next(iter(outcome.errors.values()))

    @activity.defn(name="create_task")
    async def create_task(self, req: TaskRequest) -> int:
        binding = f"D_{req.deal_id}"

        async def lookup() -> int | None:
            existing = await self.client.list_all(
                "tasks.task.list",
                {"filter": {"UF_CRM_TASK": binding}, "select": ["ID", "XML_ID"]},
            )
            for task in existing:
                if task.get("xmlId") == req.key:
                    return int(task["id"])
            return None

        async def create() -> int:
            fields: dict[str, Any] = {
                "TITLE": req.title,
                "DESCRIPTION": req.description,
                "RESPONSIBLE_ID": req.responsible_id,
                "CREATED_BY": req.created_by,
                "UF_CRM_TASK": [binding],
                "XML_ID": req.key,
            }
            if req.deadline is not None:
                fields["DEADLINE"] = _bitrix_time(req.deadline)
            created = await self.client.call("tasks.task.add", {"fields": fields})
            return int(created["task"]["id"])

        with remote_errors():
            return await once(self.settle, req.key, lookup, create)

    @activity.defn(name="send_client_message")
    async def send_client_message(self, req: ClientMessageRequest) -> None:
        """R-IW-1/R-X5: an e-mail to the deal's client, logged on the deal (crm.activity)."""

        async def sent() -> bool | None:
            return found(
                await self.client.call(
                    "crm.activity.list",
                    {
                        "filter": {
                            "OWNER_TYPE_ID": DEAL_OWNER_TYPE,
                            "OWNER_ID": req.deal_id,
                            "ORIGIN_ID": req.key,
                        },
                        "select": ["ID"],
                    },
                )
            )

        with remote_errors():
            await once(self.settle, req.key, sent, lambda: self._send_client_message(req))

    async def _send_client_message(self, req: ClientMessageRequest) -> bool:
        """The e-mail itself; its Bitrix24Errors reach `once` (an UnknownOutcome) unconverted."""
        looked_up = await self.client.batch(
            {
                "deal": ("crm.deal.get", {"id": req.deal_id}),
                **({"manager": ("user.get", {"ID": req.manager_id})} if req.manager_id else {}),
            }
        )
        if looked_up.errors:
            raise next(iter(looked_up.errors.values()))
        deal = looked_up.result["deal"]
        manager = (looked_up.result.get("manager") or [{}])[0]
        contact_id = int(deal.get(self.settings.portal.fields.client) or 0)
        if not contact_id:
            raise refuse(f"deal {req.deal_id} has no client contact", "ClientMissing")
        contact = await self.client.call("crm.contact.get", {"id": contact_id})
        emails = [e.get("VALUE") for e in contact.get("EMAIL") or [] if e.get("VALUE")]
        if not emails:
            raise refuse(f"client contact {contact_id} has no e-mail", "ClientEmailMissing")
        text = render(
            req.template,
            manager_name=full_name(manager),
            manager_position=manager.get("WORK_POSITION") or "",
            manager_phone=manager.get("WORK_PHONE") or manager.get("PERSONAL_MOBILE") or "",
            manager_email=manager.get("EMAIL") or "",
        )
        sender = f"{full_name(manager)} <{manager['EMAIL']}>" if manager.get("EMAIL") else ""
        await self.client.call(
            "crm.activity.add",
            {
                "fields": {
                    "OWNER_TYPE_ID": DEAL_OWNER_TYPE,
                    "OWNER_ID": req.deal_id,
                    "TYPE_ID": 4,
                    "DIRECTION": 2,
                    "COMPLETED": "Y",
                    "SUBJECT": req.subject,
                    "DESCRIPTION": text,
                    "DESCRIPTION_TYPE": 1,
                    "RESPONSIBLE_ID": req.manager_id or self.settings.portal.users.rop,
                    "COMMUNICATIONS": [
                        {
                            "VALUE": emails[0],
                            "ENTITY_ID": contact_id,
                            "ENTITY_TYPE_ID": CONTACT_OWNER_TYPE,
                        }
                    ],
                    "ORIGINATOR_ID": ORIGINATOR,
                    "ORIGIN_ID": req.key,
                    "SETTINGS": {"MESSAGE_FROM": sender} if sender else {},
                }
            },
        )
        return True

    @activity.defn(name="add_timeline_comment")
    async def add_timeline_comment(self, req: TimelineCommentRequest) -> None:
        """A comment on the deal's timeline; the same text twice is written once."""
        await timeline_comment_once(self.client, self.settle, req.deal_id, req.text)

    @activity.defn(name="read_task_status")
    async def read_task_status(self, task_id: int) -> str:
        """The task's STATUS code ("5" = completed); a deleted task counts as completed."""
        with remote_errors():
            found = await self.client.call(
                "tasks.task.get", {"taskId": task_id, "select": ["ID", "STATUS"]}
            )
        task = found.get("task") if isinstance(found, dict) else None
        return str(task.get("status")) if task else "5"

    @activity.defn(name="read_task")
    async def read_task(self, task_id: int) -> TaskSnapshot:
        """The task's STATUS, DEADLINE and RESPONSIBLE_ID (tasks.task.get answers camelCase
        keys, b24restdocs tasks/tasks-task-get.md); a deleted task counts as completed."""
        with remote_errors():
            found = await self.client.call(
                "tasks.task.get",
                {
                    "taskId": task_id,
                    "select": ["ID", "STATUS", "DEADLINE", "RESPONSIBLE_ID", "CLOSED_BY"],
                },
            )
        task = found.get("task") if isinstance(found, dict) else None
        if not task:
            return TaskSnapshot(task_id=task_id, status=TASK_COMPLETED)
        deadline: datetime | None = None
        raw = task.get("deadline")
        if raw:
            with contextlib.suppress(ValueError):
                deadline = datetime.fromisoformat(str(raw))
        # CLOSED_BY: who completed it (a tasks.task field, returned camelCase `closedBy`; the
        # emulator's BASE_FIELDS follow the portal's task field list)
        closer = str(task.get("closedBy") or "")
        closed_by = int(closer) if closer.isdigit() else 0
        return TaskSnapshot(
            task_id=task_id,
            status=str(task.get("status")),
            deadline=deadline,
            responsible_id=int(task.get("responsibleId") or 0),
            closed_by=closed_by,
            closed_by_name=await self._names.name(closed_by) if closed_by else "",
        )

    @activity.defn(name="read_people")
    async def read_people(self, req: PeopleRequest) -> PeopleAnswer:
        """The people mapping of this worker's configuration (a changed mapping reaches the
        deals once the workers run with it) and which of those users and of `user_ids` are
        deactivated in Bitrix24: user.get answers for every user, inactive ones with
        ACTIVE=false (DOCS `user/user-get.md`); a user it does not answer for stays as is."""
        people = people_rules(self.settings)
        ids = {people.rop, people.logist, people.director, *people.managers}
        ids |= set(people.services.values()) | set(req.user_ids)
        ids = {i for i in ids if i}
        commands = {f"u{i}": ("user.get", {"ID": i}) for i in sorted(ids)}
        with remote_errors():
            outcome = await self.client.batch(commands)
        inactive = []
        for key, users in outcome.result.items():
            for user in users or []:
                if str(user.get("ID")) == key[1:] and user.get("ACTIVE") is False:
                    inactive.append(int(key[1:]))
        return PeopleAnswer(
            people=people, accountant_email=self.settings.smtp.accountant, inactive=sorted(inactive)
        )

    @activity.defn(name="defer_task")
    async def defer_task(self, req: TaskDeferRequest) -> None:
        """A deal that left the pipeline: its open automatic task gets the reason as a comment
        (once: looked up by its text) and is deferred; a completed, deferred or deleted task
        stays as it is."""
        with remote_errors():
            got = await self.client.call(
                "tasks.task.get", {"taskId": req.task_id, "select": ["ID", "STATUS"]}
            )
            task = got.get("task") if isinstance(got, dict) else None
            if not isinstance(task, dict):
                return  # deleted with the deal
            existing = await self.client.call("task.commentitem.getlist", {"TASKID": req.task_id})
            if req.comment not in {str(c.get("POST_MESSAGE") or "") for c in existing or []}:
                await self.client.call(
                    "task.commentitem.add",
                    {"TASKID": req.task_id, "FIELDS": {"POST_MESSAGE": req.comment}},
                )
            if str(task.get("status")) not in (TASK_COMPLETED, TASK_DEFERRED):
                await self.client.call("tasks.task.defer", {"taskId": req.task_id})

    @activity.defn(name="complete_task")
    async def complete_task(self, task_id: int) -> None:
        """An automatic task whose stage the deal has left is completed (issue 14); one that is
        completed already, or deleted, stays as it is (completing it again is refused)."""
        if await self.read_task_status(task_id) == TASK_COMPLETED:
            return
        try:
            with remote_errors():
                await self.client.call("tasks.task.complete", {"taskId": task_id})
        except ApplicationError:
            if await self.read_task_status(task_id) == TASK_COMPLETED:
                return  # completed by a person meanwhile
            raise

    @activity.defn(name="set_task_deadline")
    async def set_task_deadline(self, req: TaskDeadlineRequest) -> bool:
        """The automatic task's DEADLINE moved with the deal field it follows (fin14):
        `tasks.task.update` with `fields.DEADLINE` (b24restdocs tasks/tasks-task-update.md), read
        first — a task completed, deleted or already at that moment (to the minute) is left as
        it is. True: rewritten now."""
        current = await self.read_task(req.task_id)
        if current.status == TASK_COMPLETED:
            return False
        if current.deadline is not None and abs(current.deadline - req.deadline) < timedelta(
            minutes=1
        ):
            return False
        with remote_errors():
            await self.client.call(
                "tasks.task.update",
                {"taskId": req.task_id, "fields": {"DEADLINE": req.deadline}},
            )
        return True

    @activity.defn(name="reassign_task")
    async def reassign_task(self, req: TaskReassignRequest) -> None:
        """The task's responsible (`tasks.task.update` RESPONSIBLE_ID); setting the same
        responsible again changes nothing, so a retry after a lost answer is harmless."""
        with remote_errors():
            await self.client.call(
                "tasks.task.update",
                {"taskId": req.task_id, "fields": {"RESPONSIBLE_ID": req.responsible_id}},
            )

    @activity.defn(name="create_approval_item")
    async def create_approval_item(self, req: ApprovalItemRequest) -> int:
        """R-KP-6: the «Согласование» item linked to the deal (`parentId2`), marker xmlId."""

        async def lookup() -> int | None:
            existing = await self.client.call(
                "crm.item.list",
                {
                    "entityTypeId": req.entity_type_id,
                    "filter": {"parentId2": req.deal_id},
                    "select": ["id", "xmlId"],
                },
            )
            for item in existing.get("items", []):
                if item.get("xmlId") == req.key:
                    return int(item["id"])
            return None

        async def create() -> int:
            created = await self.client.call(
                "crm.item.add",
                {
                    "entityTypeId": req.entity_type_id,
                    "fields": {
                        "title": req.title,
                        "categoryId": req.category_id,
                        "stageId": req.stage_id,
                        "assignedById": req.assigned_by_id,
                        "parentId2": req.deal_id,
                        "xmlId": req.key,
                    },
                },
            )
            return int(created["item"]["id"])

        with remote_errors():
            return await once(self.settle, req.key, lookup, create)

    @activity.defn(name="read_approval_item_stage")
    async def read_approval_item_stage(self, req: ApprovalItemStage) -> str:
        with remote_errors():
            found = await self.client.call(
                "crm.item.get", {"entityTypeId": req.entity_type_id, "id": req.item_id}
            )
        return str(found["item"].get("stageId") or "")

    @activity.defn(name="read_approval_item")
    async def read_approval_item(self, req: ApprovalItemStage) -> ApprovalItemRead:
        """The item's stage and its last mover (`movedBy` of crm.item.get, camelCase as every
        crm.item key — research/bitrix24.md §6), named by user.get (issue 12: who decided)."""
        with remote_errors():
            found = await self.client.call(
                "crm.item.get", {"entityTypeId": req.entity_type_id, "id": req.item_id}
            )
        item = found["item"]
        raw = item.get("movedBy") or item.get("updatedBy") or 0
        mover = int(raw) if str(raw).isdigit() else 0
        name = await self._names.name(mover) if mover else ""
        return ApprovalItemRead(
            stage_id=str(item.get("stageId") or ""), moved_by=mover, moved_by_name=name
        )

    @activity.defn(name="set_approval_item_stage")
    async def set_approval_item_stage(self, req: ApprovalItemStage) -> None:
        with remote_errors():
            await self.client.call(
                "crm.item.update",
                {
                    "entityTypeId": req.entity_type_id,
                    "id": req.item_id,
                    "fields": {"stageId": req.stage_id},
                },
            )

    @activity.defn(name="create_linked_deal")
    async def create_linked_deal(self, req: LinkedDealRequest) -> int:
        """R-WON-2: the deal in the «Инженеры» pipeline, found again by its ORIGIN_ID."""

        async def lookup() -> int | None:
            existing = await self.client.call(
                "crm.deal.list", {"filter": {"ORIGIN_ID": req.key}, "select": ["ID"]}
            )
            return int(existing[0]["ID"]) if existing else None

        async def create() -> int:
            source = await self.client.call("crm.deal.get", {"id": req.source_deal_id})
            fields = {
                "TITLE": req.title,
                "CATEGORY_ID": req.category_id,
                "ASSIGNED_BY_ID": source.get("ASSIGNED_BY_ID"),
                "OPPORTUNITY": source.get("OPPORTUNITY"),
                "CURRENCY_ID": source.get("CURRENCY_ID") or "RUB",
                "CONTACT_ID": source.get("CONTACT_ID"),
                "COMPANY_ID": source.get("COMPANY_ID"),
                "ORIGINATOR_ID": ORIGINATOR,
                "ORIGIN_ID": req.key,
                "COMMENTS": f"Создана из сделки №{req.source_deal_id}",
            }
            created = await self.client.call(
                "crm.deal.add", {"fields": {k: v for k, v in fields.items() if v is not None}}
            )
            return int(created)

        with remote_errors():
            return await once(self.settle, req.key, lookup, create)
