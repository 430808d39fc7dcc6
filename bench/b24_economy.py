"""Bench: Bitrix24 REST economy of the client against the emulator (prints figures, no asserts).

1. Requests per full deal lifecycle — the calls the pipeline makes (deal get/update, ~15 tasks
   with their idempotency lookups, notifications, client e-mails, product rows, timeline
   comments, the «Согласование» item with one stage poll), issued concurrently where the
   workflow would (phases run in order, the activities of a phase at once):
   through the coalescing client vs a naive one-call-per-action client. Counted by the
   emulator's per-request counter. Target: ≤ 25 requests per lifecycle.
2. Many deals at once (default 500, `--deals`) against the emulator's 2 req/s bucket (burst
   50): QUERY_LIMIT_EXCEEDED answers that surfaced (goal 0) and the run time against the
   bucket's theoretical minimum for the requests it took (goal ≤ 1.2×). By default each deal
   runs the start of the pipeline (`--phases new,in_work`); `--phases all` runs the whole
   lifecycle (slow at 2 req/s: about 1.5 requests per deal-lifecycle).

    python -m bench.b24_economy [--deals 500] [--phases new,in_work|all]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from emulators.asgi_server import serve
from emulators.bitrix24.app import create_app
from emulators.bitrix24.deals import create_deal
from emulators.bitrix24.registry import CallContext
from emulators.bitrix24.state import Portal
from salesflow.integrations.bitrix24 import Bitrix24Client, QueryLimitExceeded

SECRET = "benchsecret"
ROP, MANAGER, LOGIST = 2, 3, 5
SERVICES = {"engineers": 6, "purchasing": 7, "logistics": 5, "production": 8, "lawyer": 9}
SERVICES["metrologist"] = 10
CONTACT = 1
APPROVAL = 1032


@dataclass
class Counters:
    rejected: int = 0


class Actions:
    """The pipeline's side effects, issued as its activities issue them.

    `naive` turns every command into its own request (no coalescing, no `batch`).
    """

    def __init__(self, b24: Bitrix24Client, counters: Counters, *, naive: bool) -> None:
        self.b24 = b24
        self.naive = naive
        self.counters = counters

    async def _guard(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except QueryLimitExceeded:
            self.counters.rejected += 1
            return None

    async def call(self, method: str, params: Mapping[str, Any]) -> Any:
        return await self._guard(self.b24.call(method, params))

    async def batch(self, commands: dict[str, tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
        if self.naive:
            return {key: await self.call(m, p) for key, (m, p) in commands.items()}
        outcome = await self._guard(self.b24.batch(commands))
        return outcome.result if outcome is not None else {}

    # ---- activities
    async def fetch_deal(self, deal: int) -> None:
        await self.call("crm.deal.get", {"id": deal})

    async def update_deal(self, deal: int, fields: dict[str, Any]) -> None:
        await self.call("crm.deal.update", {"id": deal, "fields": fields})

    async def notify(self, deal: int, users: list[int], purpose: str) -> None:
        await self.batch(
            {
                f"u{user}": (
                    "im.notify.system.add",
                    {
                        "USER_ID": user,
                        "MESSAGE": f"Сделка {deal}: {purpose}",
                        "TAG": f"deal:{deal}:{purpose}",
                        "CLIENT_ID": "salesflow",
                    },
                )
                for user in users
            }
        )

    async def task(self, deal: int, purpose: str, responsible: int) -> None:
        key = f"deal:{deal}:{purpose}:1"
        existing = await self._guard(
            self.b24.list_all(
                "tasks.task.list",
                {"filter": {"UF_CRM_TASK": f"D_{deal}"}, "select": ["ID", "XML_ID"]},
            )
        )
        if any(t.get("xmlId") == key for t in existing or []):
            return
        await self.call(
            "tasks.task.add",
            {
                "fields": {
                    "TITLE": f"{purpose} по сделке {deal}",
                    "RESPONSIBLE_ID": responsible,
                    "CREATED_BY": ROP,
                    "UF_CRM_TASK": [f"D_{deal}"],
                    "XML_ID": key,
                    "DEADLINE": "2030-01-01T18:00:00+03:00",
                }
            },
        )

    async def client_email(self, deal: int, purpose: str) -> None:
        key = f"deal:{deal}:{purpose}:1"
        sent = await self.call(
            "crm.activity.list",
            {"filter": {"OWNER_TYPE_ID": 2, "OWNER_ID": deal, "ORIGIN_ID": key}, "select": ["ID"]},
        )
        if sent:
            return
        await self.batch(
            {"deal": ("crm.deal.get", {"id": deal}), "manager": ("user.get", {"ID": MANAGER})}
        )
        await self.call("crm.contact.get", {"id": CONTACT})
        await self.call(
            "crm.activity.add",
            {
                "fields": {
                    "OWNER_TYPE_ID": 2,
                    "OWNER_ID": deal,
                    "TYPE_ID": 4,
                    "DIRECTION": 2,
                    "COMPLETED": "Y",
                    "SUBJECT": purpose,
                    "DESCRIPTION": "Добрый день!",
                    "DESCRIPTION_TYPE": 1,
                    "RESPONSIBLE_ID": MANAGER,
                    "COMMUNICATIONS": [
                        {"VALUE": "ivanov@romashka.example.ru", "ENTITY_ID": 1, "ENTITY_TYPE_ID": 3}
                    ],
                    "ORIGINATOR_ID": "salesflow",
                    "ORIGIN_ID": key,
                    "SETTINGS": {"MESSAGE_FROM": "Иван Петров <petrov@example.ru>"},
                }
            },
        )

    async def timeline(self, deal: int, text: str) -> None:
        existing = await self._guard(
            self.b24.list_all(
                "crm.timeline.comment.list", {"filter": {"ENTITY_ID": deal, "ENTITY_TYPE": "deal"}}
            )
        )
        if any(c.get("COMMENT") == text for c in existing or []):
            return
        await self.call(
            "crm.timeline.comment.add",
            {"fields": {"ENTITY_ID": deal, "ENTITY_TYPE": "deal", "COMMENT": text}},
        )

    async def product_rows(self, deal: int) -> None:
        await self.call("crm.deal.productrows.get", {"id": deal})
        rows = [
            {"PRODUCT_NAME": f"Позиция {i}", "PRICE": 1000 + i, "QUANTITY": 2} for i in range(3)
        ]
        await self.call("crm.deal.productrows.set", {"id": deal, "rows": rows})

    async def approval(self, deal: int) -> None:
        key = f"deal:{deal}:approval:1"
        found = await self.call(
            "crm.item.list",
            {"entityTypeId": APPROVAL, "filter": {"=xmlId": key}, "select": ["id"]},
        )
        items = (found or {}).get("items") or []
        if items:
            item_id = items[0]["id"]
        else:
            created = await self.call(
                "crm.item.add",
                {
                    "entityTypeId": APPROVAL,
                    "fields": {
                        "title": f"Согласование сделки {deal}",
                        "parentId2": deal,
                        "xmlId": key,
                        "assignedById": ROP,
                        "categoryId": 3,
                        "stageId": "DT1032_3:NEW",
                    },
                },
            )
            item_id = created["item"]["id"] if created else 0
        # the child workflow polls the item's stage once before the decision arrives
        await self.call("crm.item.get", {"entityTypeId": APPROVAL, "id": item_id})
        await self.call(
            "crm.item.update",
            {"entityTypeId": APPROVAL, "id": item_id, "fields": {"stageId": "DT1032_3:SUCCESS"}},
        )


Phase = Callable[[Actions, int], list[Awaitable[None]]]


def _new(a: Actions, d: int) -> list[Awaitable[None]]:
    return [a.fetch_deal(d), a.notify(d, [ROP, MANAGER, 4], "new"), a.task(d, "take", ROP)]


def _in_work(a: Actions, d: int) -> list[Awaitable[None]]:
    return [
        a.update_deal(d, {"ASSIGNED_BY_ID": MANAGER, "STAGE_ID": "C1:PREPARATION"}),
        a.client_email(d, "greeting"),
        a.task(d, "kp_feedback", MANAGER),
    ]


async def _kp_then_approval(a: Actions, d: int) -> None:
    await a.product_rows(d)
    await a.approval(d)


def _kp(a: Actions, d: int) -> list[Awaitable[None]]:
    return [
        _kp_then_approval(a, d),
        a.update_deal(d, {"UF_CRM_KP": f"КП-{d}", "STAGE_ID": "C1:UC_KP"}),
        a.timeline(d, "КП выставлено"),
        a.notify(d, [ROP], "kp"),
    ]


def _contract(a: Actions, d: int) -> list[Awaitable[None]]:
    return [
        a.update_deal(d, {"STAGE_ID": "C1:UC_CONTRACT"}),
        a.task(d, "contract", SERVICES["lawyer"]),
        a.task(d, "invoice", MANAGER),
        a.client_email(d, "invoice"),
    ]


def _launch(a: Actions, d: int) -> list[Awaitable[None]]:
    tasks = [a.task(d, f"service_{name}", user) for name, user in SERVICES.items()]
    return [
        a.update_deal(d, {"STAGE_ID": "C1:UC_LAUNCH"}),
        *tasks,
        a.notify(d, list(dict.fromkeys(SERVICES.values())), "launch"),
    ]


def _shipping(a: Actions, d: int) -> list[Awaitable[None]]:
    return [
        a.update_deal(d, {"STAGE_ID": "C1:UC_TO_SHIP"}),
        a.task(d, "ship", LOGIST),
        a.task(d, "payment_control", MANAGER),
        a.task(d, "accept", MANAGER),
        a.timeline(d, "Отгружено"),
    ]


def _close(a: Actions, d: int) -> list[Awaitable[None]]:
    return [
        a.update_deal(d, {"STAGE_ID": "C1:WON"}),
        a.task(d, "act", MANAGER),
        a.task(d, "upd", MANAGER),
        a.client_email(d, "thanks"),
        a.notify(d, [ROP, MANAGER], "won"),
    ]


PHASES: dict[str, Phase] = {
    "new": _new,
    "in_work": _in_work,
    "kp": _kp,
    "contract": _contract,
    "launch": _launch,
    "shipping": _shipping,
    "close": _close,
}


async def lifecycle(actions: Actions, deal: int, phases: list[str]) -> None:
    for name in phases:
        await asyncio.gather(*PHASES[name](actions, deal))


def seed_deals(portal: Portal, count: int) -> list[int]:
    """Deals created directly in the portal (not through the bucket)."""
    ctx = CallContext(portal, 1)
    fields = {"TITLE": "Заявка", "CATEGORY_ID": 1, "CONTACT_ID": CONTACT, "OPPORTUNITY": 100000}
    ids = [create_deal(ctx, dict(fields)) for _ in range(count)]
    portal.event_log.clear()
    return ids


async def measure_lifecycle(url: str, portal: Portal, *, naive: bool) -> int:
    [deal] = seed_deals(portal, 1)
    before = portal.requests
    async with Bitrix24Client(
        f"{url}/rest/1/{SECRET}/", rate_per_second=0, coalesce=not naive
    ) as b24:
        await lifecycle(Actions(b24, Counters(), naive=naive), deal, list(PHASES))
    return portal.requests - before


async def load(url: str, portal: Portal, deals: int, phases: list[str]) -> dict[str, float]:
    ids = seed_deals(portal, deals)
    portal.bucket.reset()
    before_requests, before_rejected = portal.requests, sum(portal.rejected.values())
    before_batches, before_inner = portal.calls["batch"], sum(portal.batch_calls.values())
    counters = Counters()
    started = time.perf_counter()
    async with Bitrix24Client(f"{url}/rest/1/{SECRET}/", rate_per_second=2, burst=50) as b24:
        actions = Actions(b24, counters, naive=False)
        await asyncio.gather(*(lifecycle(actions, deal, phases) for deal in ids))
    elapsed = time.perf_counter() - started
    requests = portal.requests - before_requests
    batches = portal.calls["batch"] - before_batches
    commands = sum(portal.batch_calls.values()) - before_inner + requests - batches
    return {
        "elapsed": elapsed,
        "requests": requests,
        "commands": commands,
        "rejected_portal": sum(portal.rejected.values()) - before_rejected,
        "rejected_client": counters.rejected,
        "minimum": max(0.0, (requests - 50) / 2.0),
    }


async def run(deals: int, phases: list[str]) -> None:
    app = create_app(secret=SECRET, rate_per_second=None, operating_limit=None)
    portal: Portal = app.state.portal
    async with serve(app) as server:
        batched = await measure_lifecycle(server.url, portal, naive=False)
        naive = await measure_lifecycle(server.url, portal, naive=True)
        print("1. REST requests per full deal lifecycle (7 phases, 15 tasks)")
        print(f"   coalesced client : {batched:4d} requests   (target ≤ 25)")
        print(f"   one call / action: {naive:4d} requests")
        print(f"   ratio naive / coalesced: {naive / max(batched, 1):.1f}×")
        portal.bucket.configure(2.0, 50)
        print(f"\n2. {deals} deals at once through phases {','.join(phases)} (2 req/s, burst 50)")
        figures = await load(server.url, portal, deals, phases)
    minimum = figures["minimum"]
    ratio = figures["elapsed"] / minimum if minimum else float("nan")
    print(
        f"   HTTP requests     : {figures['requests']:.0f} "
        f"({figures['commands'] / max(figures['requests'], 1):.1f} commands each)"
    )
    print(
        f"   QUERY_LIMIT_EXCEEDED: {figures['rejected_portal']:.0f} answered by the portal, "
        f"{figures['rejected_client']:.0f} surfaced to callers (goal 0)"
    )
    print(f"   run time          : {figures['elapsed']:.1f} s")
    print(f"   bucket minimum    : {minimum:.1f} s  ((requests − 50) / 2)")
    print(f"   ratio             : {ratio:.2f}×  (target ≤ 1.2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=500, help="deals driven at once")
    parser.add_argument(
        "--phases",
        default="new,in_work",
        help=f"phases each deal runs in the load part: 'all' or some of {','.join(PHASES)}",
    )
    args = parser.parse_args()
    phases = list(PHASES) if args.phases == "all" else args.phases.split(",")
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        parser.error(f"unknown phases: {', '.join(unknown)}")
    asyncio.run(run(args.deals, phases))


if __name__ == "__main__":
    main()
