"""R-X2 when the portal finishes late (issue 11, finding 6): a create whose answer was lost is
not repeated while it may still land, and is repeated once it cannot have.

Real parts: the Temporal dev server retrying the real activities (the product's retry policy),
both emulators over HTTP, each behind a `LateProxy` that delivers every create only after the
client gave up (client timeout 0.5 s, delivery after 2 s, settle window 4 s) — or loses it;
the calls after it pass at once, so a create repeated too early would land twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from emulators.asgi_server import serve
from emulators.bitrix24.app import create_app as create_bitrix24
from emulators.bitrix24.state import Portal
from emulators.onec.app import create_app as create_onec
from emulators.onec.seed import KP_NUMBER
from salesflow.activities.bitrix24 import Bitrix24Activities
from salesflow.activities.onec import TASK_KEY_TEXT, TASKS, OneCActivities
from salesflow.config.settings import Settings
from salesflow.config.templates import DEFAULT_TEMPLATES
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.integrations.onec.client import OneCClient
from salesflow.workflows.activity_stubs import ACTIVITY_TIMEOUT, RETRY
from tests.activities.late_proxy import LateProxy, bitrix24_creates, onec_creates

SECRET = "latesecret"
CLIENT_TIMEOUT = 0.5
LATE = 2.0  # the portal finishes the call this long after receiving it
SETTLE = 4.0


@workflow.defn(sandboxed=False)
class LateProbe:
    """Calls activities by name, concurrently, as DealWorkflow does: the product's policy."""

    @workflow.run
    async def run(self, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        return list(
            await asyncio.gather(
                *(
                    workflow.execute_activity(
                        name, arg, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=RETRY
                    )
                    for name, arg in calls
                )
            )
        )


@dataclass
class Rig:
    portal: Portal
    direct: Bitrix24Client  # the test's own calls, around the proxy
    onec: OneCClient
    b24_proxy: LateProxy
    onec_proxy: LateProxy
    client: Any

    async def run(self, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        """The activities to their end, then every late create landed."""
        done = await self.client.execute_workflow(
            LateProbe.run, calls, id=f"late-{uuid.uuid4()}", task_queue=self.queue
        )
        await self.b24_proxy.drain()
        await self.onec_proxy.drain()
        return done

    queue: str = ""


@asynccontextmanager
async def late_rig(env: WorkflowEnvironment, *, lose_first: bool = False) -> AsyncIterator[Rig]:
    b24_app = create_bitrix24(secret=SECRET, rate_per_second=None)
    onec_app = create_onec()
    async with serve(b24_app) as b24, serve(onec_app) as onec_server:
        b24_proxy = LateProxy(b24.url, bitrix24_creates, delay=LATE, lose_first=lose_first)
        onec_proxy = LateProxy(onec_server.url, onec_creates, delay=LATE, lose_first=lose_first)
        async with serve(b24_proxy) as b24_front, serve(onec_proxy) as onec_front:
            odata = "/trade/odata/standard.odata/"
            settings = Settings.model_validate(
                {
                    "bitrix24": {
                        "webhook_url": f"{b24_front.url}/rest/1/{SECRET}/",
                        "timeout_seconds": CLIENT_TIMEOUT,
                        "settle_seconds": SETTLE,
                    },
                    "onec": {"odata_url": onec_front.url + odata, "settle_seconds": SETTLE},
                }
            )
            conf = settings.onec
            queue = f"late-{uuid.uuid4()}"
            async with (
                Bitrix24Client(
                    settings.bitrix24.webhook_url,
                    rate_per_second=0,
                    timeout=CLIENT_TIMEOUT,
                    coalesce=False,  # a create's request carries nothing but the create
                ) as bitrix24,
                Bitrix24Client(f"{b24.url}/rest/1/{SECRET}/", rate_per_second=0) as direct,
                OneCClient(conf.odata_url, conf.user, conf.password, timeout=CLIENT_TIMEOUT) as oc,
                OneCClient(onec_server.url + odata, conf.user, conf.password) as onec_direct,
                Worker(
                    env.client,
                    task_queue=queue,
                    workflows=[LateProbe],
                    activities=[
                        *Bitrix24Activities(bitrix24, settings).all(),
                        *OneCActivities(oc, bitrix24, settings).all(),
                    ],
                    workflow_runner=UnsandboxedWorkflowRunner(),
                ),
            ):
                try:
                    yield Rig(
                        b24_app.state.portal,
                        direct,
                        onec_direct,
                        b24_proxy,
                        onec_proxy,
                        env.client,
                        queue,
                    )
                finally:
                    await b24_proxy.aclose()
                    await onec_proxy.aclose()


async def _deal(rig: Rig, **fields: Any) -> int:
    base = {"TITLE": "Поставка", "CATEGORY_ID": 1, "STAGE_ID": "C1:NEW", "OPPORTUNITY": 640000}
    return int(await rig.direct.call("crm.deal.add", {"fields": {**base, **fields}}))


async def _task(rig: Rig, deal_id: int) -> int:
    fields = {"TITLE": "Отгрузить", "RESPONSIBLE_ID": 5, "UF_CRM_TASK": [f"D_{deal_id}"]}
    return int((await rig.direct.call("tasks.task.add", {"fields": fields}))["task"]["id"])


async def _every_kind(rig: Rig) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    deal = await _deal(rig, CONTACT_ID=1, UF_CRM_KP=KP_NUMBER, UF_CRM_DIRECTION="Россия")
    ship, progress = await _task(rig, deal), await _task(rig, deal)
    keys = {kind: f"deal:{deal}:late:{kind}" for kind in ("task", "mail", "notify", "item")}
    keys |= {k: f"deal:{deal}:late:{k}" for k in ("linked", "rows", "1c", "progress")}
    ids = {"deal": deal, "ship": ship, "progress": progress, "keys": keys}
    calls: list[tuple[str, dict[str, Any]]] = [
        (
            "create_task",
            {
                "key": keys["task"],
                "deal_id": deal,
                "title": "Проверить товарные позиции",
                "responsible_id": 3,
                "created_by": 2,
            },
        ),
        (
            "send_client_message",
            {
                "key": keys["mail"],
                "deal_id": deal,
                "manager_id": 3,
                "subject": "Ваша заявка взята в обработку",
                "template": DEFAULT_TEMPLATES["client_taken_into_work"],
            },
        ),
        ("notify_users", {"key": keys["notify"], "user_ids": [3, 4], "message": "Новая заявка"}),
        ("add_timeline_comment", {"key": "c", "deal_id": deal, "text": "Комментарий поздно"}),
        (
            "create_approval_item",
            {
                "key": keys["item"],
                "deal_id": deal,
                "entity_type_id": 1032,
                "category_id": 3,
                "stage_id": "DT1032_3:NEW",
                "title": "Согласование",
                "assigned_by_id": 3,
            },
        ),
        (
            "create_linked_deal",
            {"key": keys["linked"], "source_deal_id": deal, "category_id": 2, "title": "Инженеры"},
        ),
        ("load_kp_into_deal", {"key": keys["rows"], "deal_id": deal}),
        (
            "create_onec_task",
            {
                "key": keys["1c"],
                "deal_id": deal,
                "bitrix_task_id": ship,
                "title": "Отгрузить товар клиенту",
                "responsible_id": 5,
            },
        ),
        (
            "reflect_task_progress",
            {
                "key": keys["progress"],
                "bitrix_task_id": progress,
                "status": {"ref": "r", "executed": False, "accepted": False},
                "new_comments": ["Груз собран"],
            },
        ),
    ]
    return ids, calls


async def _effects(rig: Rig, ids: dict[str, Any]) -> dict[str, int]:
    """How many of each side effect the systems hold (read around the proxies)."""
    deal, keys = ids["deal"], ids["keys"]
    tasks = await rig.direct.list_all(
        "tasks.task.list", {"filter": {"UF_CRM_TASK": f"D_{deal}"}, "select": ["ID", "XML_ID"]}
    )
    comments = await rig.direct.list_all(
        "crm.timeline.comment.list", {"filter": {"ENTITY_ID": deal, "ENTITY_TYPE": "deal"}}
    )
    items = await rig.direct.call(
        "crm.item.list", {"entityTypeId": 1032, "filter": {"parentId2": deal}}
    )
    linked = await rig.direct.call("crm.deal.list", {"filter": {"ORIGIN_ID": keys["linked"]}})
    task_comments = await rig.direct.call("task.commentitem.getlist", {"TASKID": ids["progress"]})
    marker = TASK_KEY_TEXT.format(key=keys["1c"])  # the key in the task's description
    onec_tasks = [t for t in await rig.onec.list_all(TASKS) if marker in str(t)]
    notified = [n for n in rig.portal.notifications if keys["notify"] in str(n["TAG"])]
    return {
        "task": sum(1 for t in tasks if t.get("xmlId") == keys["task"]),
        "mail": sum(1 for m in rig.portal.emails if str(m["OWNER_ID"]) == str(deal)),
        "notify_user_3": sum(1 for n in notified if n["USER_ID"] == 3),
        "notify_user_4": sum(1 for n in notified if n["USER_ID"] == 4),
        "comment": sum(1 for c in comments if c["COMMENT"] == "Комментарий поздно"),
        "item": len(items["items"]),
        "linked": len(linked),
        "rows": len(await rig.direct.call("crm.deal.productrows.get", {"id": deal})),
        "1c": len(onec_tasks),
        "progress": sum(1 for c in task_comments if "Груз собран" in c["POST_MESSAGE"]),
    }


ONE_EACH = {
    "task": 1,
    "mail": 1,
    "notify_user_3": 1,
    "notify_user_4": 1,
    "comment": 1,
    "item": 1,
    "linked": 1,
    "rows": 3,  # the КП's three lines, set once
    "1c": 1,
    "progress": 1,
}


async def test_r_x2_late_portal_every_create_lands_once(dev_env: WorkflowEnvironment) -> None:
    async with late_rig(dev_env) as rig:
        ids, calls = await _every_kind(rig)
        await rig.run(calls)
        effects = await _effects(rig, ids)
        forwarded = dict(rig.b24_proxy.forwarded) | dict(rig.onec_proxy.forwarded)
    assert effects == ONE_EACH
    # Every create reached the systems once, though its first answer came too late; the
    # notifications are sent again (their TAG replaces the earlier one: shown once above).
    assert forwarded.pop("im.notify.system.add") == 2 * 2  # two users, twice
    assert forwarded == {
        "tasks.task.add": 1,
        "crm.activity.add": 1,
        "crm.timeline.comment.add": 1,
        "crm.item.add": 1,
        "crm.deal.add": 1,
        "crm.deal.productrows.set": 1,
        "task.commentitem.add": 1,
        TASKS: 1,
    }


async def test_r_x2_lost_create_is_made_again_only_after_the_settle_window(
    dev_env: WorkflowEnvironment,
) -> None:
    async with late_rig(dev_env, lose_first=True) as rig:
        ids, calls = await _every_kind(rig)
        await rig.run([call for call in calls if call[0] in ("create_task", "create_onec_task")])
        effects = await _effects(rig, ids)
        arrivals = rig.b24_proxy.arrivals["tasks.task.add"], rig.onec_proxy.arrivals[TASKS]
    assert (effects["task"], effects["1c"]) == (1, 1)
    for first, again in arrivals:  # the lost create, then one more — after the window
        assert again - first >= SETTLE
