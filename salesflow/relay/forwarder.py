"""Inbox rows → Temporal: signal-with-start of the deal's workflow, or a signal for task events.

Every row ends `forwarded`, `ignored` (with the reason) or `failed` (a permanent error, with the
reason), or stays `pending` after a transient failure (Temporal or Bitrix24 unreachable, rate
limits, 5xx) and is tried again later with exponential backoff — nothing recorded is dropped.

Rows of the safety nets (offline queue, deal scan: `relay.observations`) are `ignored` when the
deal's last signal already followed their modification (`store.signal_marks`). A safety-net row
reads the deal (its DATE_MODIFY decides); an online deal event does not when the deal's pipeline
is known (`store.deal_pipelines`: learned from earlier reads and ONCRMDEALMOVETOCATEGORY): its
mark is the portal's time when the signal was sent (`PortalClock`, a lower bound), which covers
the same changes as a read at that moment would — the workflow reads the deal after the signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from salesflow.config.redact import redact
from salesflow.config.settings import Settings
from salesflow.config.snapshot import build_rules
from salesflow.relay import bitrix24_time
from salesflow.relay.bitrix24_errors import Bitrix24Verdict, classify
from salesflow.relay.group_commit import GroupCommit
from salesflow.relay.observations import is_safety_net
from salesflow.store import deal_pipelines, inbox, signal_marks
from salesflow.store.deal_pipelines import Pipeline
from salesflow.store.inbox import InboxEvent, InboxStatus, Settlement
from salesflow.store.signal_marks import NewMark
from salesflow.workflows.models import Bitrix24Event, DealInput, DealRules, DealView, Stage
from salesflow.workflows.names import (
    DEAL_EVENTS,
    DEAL_ID,
    ONCRMDEALDELETE,
    SIGNAL_BITRIX24_EVENT,
    TASK_EVENTS,
    WORKFLOW_TYPE,
    deal_workflow_id,
    in_pipeline,
)

log = logging.getLogger("salesflow.relay")

DEAL_BINDING = re.compile(r"^D_(\d+)$")
# A deal moved to another pipeline; data[FIELDS] = {ID, CATEGORY_ID, STAGE_ID} (bitrix24.md §deals).
MOVED_TO_CATEGORY = "ONCRMDEALMOVETOCATEGORY"
REOPENED = "deal moved back from its final stage: a new run (rules.reopen decides)"
COMPLETED = WorkflowExecutionStatus.COMPLETED
PIPELINES_HELD = 200_000  # deals whose pipeline is held in memory (the table holds all)


class Bitrix24Caller(Protocol):
    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any: ...


@dataclass(frozen=True)
class ForwarderOptions:
    poll_interval: float = 2.0  # seconds between passes of the retry loop
    batch: int = 10  # rows claimed at once; a batch must be done well within `lease`
    backoff_base: float = 1.0  # first retry after this many seconds, doubling each attempt
    backoff_cap: float = 300.0
    # How long a claimed row is held before another forwarder may take it (a crashed process).
    lease: timedelta = timedelta(minutes=5)
    rpc_timeout: timedelta = timedelta(seconds=10)
    max_kicks: int = 64  # forwards in flight (Bitrix24 reads and signals at once)
    # Rows claimed ahead for the forwards in flight: the app records new rows claimed while
    # there is room (no second write to claim them); past it they wait for the loop.
    max_ahead: int = 512


@dataclass(frozen=True)
class Outcome:
    status: InboxStatus
    reason: str | None = None
    mark: NewMark | None = None  # what the signal was based on, noted with the settlement
    pipeline: Pipeline | None = None  # the deal's pipeline learned, noted with the settlement


@dataclass(frozen=True)
class Settled:
    settlement: Settlement
    mark: NewMark | None
    pipeline: Pipeline | None


class Transient(Exception):
    """Try the row again later."""


class Permanent(Exception):
    """The row can never be delivered as it is."""


class Forwarder:
    """Decides and delivers inbox rows; `temporal_client` and `bitrix24_client` may be swapped."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        temporal_client: Client,
        bitrix24_client: Bitrix24Caller | None,
        options: ForwarderOptions | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.temporal_client = temporal_client
        self.bitrix24_client = bitrix24_client
        self.options = options or ForwarderOptions()
        self.observer: Callable[[InboxEvent, InboxStatus], None] | None = None
        self.last_error: str | None = None
        self._rules: tuple[date, DealRules] | None = None
        self._kicked: set[asyncio.Task[Any]] = set()
        self._queue: asyncio.Queue[InboxEvent] = asyncio.Queue()
        self._ahead = 0  # rows submitted and not yet settled
        self._workers: list[asyncio.Task[None]] = []
        self._behind = False  # due rows may wait in the inbox beyond `max_ahead`
        self._wake = asyncio.Event()
        self._settler: GroupCommit[Settled, None] = GroupCommit(self._write_settled)
        self._pipelines: dict[int, Pipeline] = {}
        self.clock = bitrix24_time.PortalClock()
        # Rows of one object go one at a time, and a signal's mark counts from the moment the
        # signal is sent (`_unwritten` until its group commit is done): a safety-net row of the
        # same change, forwarded meanwhile, sees it and is not signalled twice.
        self._serial = EntitySerializer()
        self._unwritten: dict[tuple[str, int], signal_marks.Mark] = {}

    def _deal_link(self, deal_id: int) -> str:
        """The deal in Bitrix24 (the portal's origin only: the webhook path holds a secret)."""
        parts = urlsplit(self.settings.bitrix24.webhook_url)
        return f"[Сделка в Битрикс24]({parts.scheme}://{parts.netloc}/crm/deal/details/{deal_id}/)"

    def latest_mark(self, kind: str, entity_id: int) -> signal_marks.Mark | None:
        """The mark of a signal sent and not yet written to `signal_mark` (else None)."""
        return self._unwritten.get((kind, entity_id))

    # ---- delivery of one row ---------------------------------------------------------------

    async def deliver(self, row: InboxEvent) -> Outcome:
        """Act on one row; raise Transient or Permanent when it cannot be settled now."""
        if row.event in DEAL_EVENTS:
            return await self._deal_event(row)
        if row.event in TASK_EVENTS:
            return await self._task_event(row)
        if row.event == MOVED_TO_CATEGORY:
            return await self._moved(row)
        if row.event == ONCRMDEALDELETE:
            return await self._deleted(row)
        return Outcome(InboxStatus.IGNORED, f"{row.event} is not used by the pipeline")

    async def _deal_event(self, row: InboxEvent) -> Outcome:
        if not is_safety_net(row.payload_data()):
            known = await self._pipeline(row.entity_id)
            if known is not None:
                return await self._known_deal_event(row, known)
        deal, read_at = await self._bitrix24_timed("crm.deal.get", {"id": row.entity_id})
        if deal is None:
            return Outcome(InboxStatus.IGNORED, f"deal {row.entity_id} not found in Bitrix24")
        deal = deal if isinstance(deal, dict) else {}
        category = _int(deal.get("CATEGORY_ID"))
        learned = None
        if category is not None:
            learned = Pipeline(row.entity_id, category, deal_summary(row.entity_id, deal))
            self._remember(learned)
        wanted = self.settings.portal.category_id
        if not in_pipeline(category, wanted):
            return Outcome(
                InboxStatus.IGNORED,
                f"deal {row.entity_id} is in category {category}, not «Продажа» ({wanted})",
                pipeline=learned,
            )
        modified = bitrix24_time.epoch(deal.get("DATE_MODIFY"))
        covered = await self._covered(row, signal_marks.DEAL, modified)
        if covered is not None:
            return Outcome(
                InboxStatus.IGNORED,
                f"deal {row.entity_id} was signalled after its change at"
                f" {deal.get('DATE_MODIFY')} already (inbox row {covered.row_id})",
                pipeline=learned,
            )
        if not await self._signal_deal(row, deal_summary(row.entity_id, deal)):
            if await self._reopen(row, deal):
                return Outcome(InboxStatus.FORWARDED, REOPENED, pipeline=learned)
            return Outcome(InboxStatus.IGNORED, "deal workflow closed", pipeline=learned)
        mark = _mark(row, signal_marks.DEAL, modified, read_at)
        return Outcome(InboxStatus.FORWARDED, mark=mark, pipeline=learned)

    async def _known_deal_event(self, row: InboxEvent, known: Pipeline) -> Outcome:
        """An online event of a deal whose pipeline is known: routed without a read."""
        wanted = self.settings.portal.category_id
        if not in_pipeline(known.category_id, wanted):
            return Outcome(
                InboxStatus.IGNORED,
                f"deal {row.entity_id} is in category {known.category_id}, not «Продажа»"
                f" ({wanted}) as last learned",
            )
        sent = self.clock.now_at_least(time.monotonic())
        if not await self._signal_deal(row, known.summary or deal_summary(row.entity_id, {})):
            if await self._reopen(row):
                return Outcome(InboxStatus.FORWARDED, REOPENED)
            return Outcome(InboxStatus.IGNORED, "deal workflow closed")
        mark = None
        if sent is not None:  # every change of a second that had ended when the signal went
            mark = NewMark(signal_marks.DEAL, row.entity_id, math.floor(sent) - 1, sent, row.id)
        return Outcome(InboxStatus.FORWARDED, mark=mark)

    async def _moved(self, row: InboxEvent) -> Outcome:
        """ONCRMDEALMOVETOCATEGORY: the deal's new pipeline is noted. Moved out of «Продажа»: the
        running workflow is signalled (it ends, deal_changes.py); moved in: signal-with-start,
        a new run when the deal's workflow had closed (left the pipeline before). Otherwise
        the ONCRMDEALUPDATE the portal sends with it is what signals (a lost or late one is
        made up by the scan)."""
        fields = row.payload_data().get("data")
        fields = fields.get("FIELDS") if isinstance(fields, dict) else None
        category = _int(fields.get("CATEGORY_ID")) if isinstance(fields, dict) else None
        known = await self._pipeline(row.entity_id)
        summary = known.summary if known else ""
        if category is None:  # e.g. an offline-queue row (no data): ask once
            deal = await self._bitrix24("crm.deal.get", {"id": row.entity_id})
            if not isinstance(deal, dict) or _int(deal.get("CATEGORY_ID")) is None:
                return Outcome(InboxStatus.IGNORED, f"deal {row.entity_id} not found in Bitrix24")
            category, summary = _int(deal.get("CATEGORY_ID")), deal_summary(row.entity_id, deal)
            assert category is not None
        learned = Pipeline(row.entity_id, category, summary)
        self._remember(learned)
        wanted = self.settings.portal.category_id
        if in_pipeline(category, wanted) and not (known and in_pipeline(known.category_id, wanted)):
            # moved into «Продажа»: its workflow starts (a new run after one that ended when
            # the deal left the pipeline; a deal moved in at WON/LOSE starts nothing)
            stage = fields.get("STAGE_ID") if isinstance(fields, dict) else None
            final = self._deal_rules().stage_code(str(stage or "")) in ("WON", "LOSE")
            title = summary or deal_summary(row.entity_id, {})
            if not final and await self._signal_deal(row, title, new_run=True):
                return Outcome(InboxStatus.FORWARDED, pipeline=learned)
        elif (
            not in_pipeline(category, wanted)
            and (known is None or in_pipeline(known.category_id, wanted))
            and await self._signal_running(row)
        ):
            # moved out of «Продажа»: its running workflow ends (deal_changes.py)
            return Outcome(InboxStatus.FORWARDED, pipeline=learned)
        return Outcome(
            InboxStatus.IGNORED,
            f"deal {row.entity_id} moved to category {category}: noted",
            pipeline=learned,
        )

    async def _deleted(self, row: InboxEvent) -> Outcome:
        """ONCRMDEALDELETE: the deal's running workflow ends (deal_changes.py); nothing starts."""
        if await self._signal_running(row):
            return Outcome(InboxStatus.FORWARDED)
        return Outcome(
            InboxStatus.IGNORED, f"no running deal workflow ({deal_workflow_id(row.entity_id)})"
        )

    async def _reopen(self, row: InboxEvent, deal: dict[str, Any] | None = None) -> bool:
        """An event of a deal whose workflow has closed: a deal moved back from WON/LOSE in
        Bitrix24 gets a new run told the stage its closed run ended at (the workflow refuses
        or goes on by `rules.reopen`, deal_changes.py). Costs a Temporal describe and result
        read, and a deal read when the event came unread — for events of closed deals only."""
        handle = self.temporal_client.get_workflow_handle(
            deal_workflow_id(row.entity_id), result_type=DealView
        )
        timeout = self.options.rpc_timeout
        try:
            if (await handle.describe(rpc_timeout=timeout)).status != COMPLETED:
                return False  # terminated, failed, timed out: not a deal that was closed
            closed = await handle.result(follow_runs=False, rpc_timeout=timeout)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise _temporal_error(exc) from exc
        if closed.ended or closed.stage not in (Stage.WON, Stage.LOSE):
            return False
        if deal is None:
            found = await self._bitrix24("crm.deal.get", {"id": row.entity_id})
            deal = found if isinstance(found, dict) else {}
        rules = self._deal_rules()
        code = rules.stage_code(str(deal.get("STAGE_ID") or ""))
        if not in_pipeline(_int(deal.get("CATEGORY_ID")), rules.category_id):
            return False
        if code is None or code in (Stage.WON, Stage.LOSE):
            return False  # still closed: an edit of a closed deal
        try:
            await self.temporal_client.start_workflow(
                WORKFLOW_TYPE,
                DealInput(deal_id=row.entity_id, rules=rules, reopened_from=closed.stage),
                id=deal_workflow_id(row.entity_id),
                task_queue=self.settings.temporal.task_queue,
                start_signal=SIGNAL_BITRIX24_EVENT,
                start_signal_args=[_signal(row)],
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                search_attributes=_deal_attributes(row.entity_id),
                static_summary=deal_summary(row.entity_id, deal),
                static_details=self._deal_link(row.entity_id),
                rpc_timeout=timeout,
            )
        except RPCError as exc:
            raise _temporal_error(exc) from exc
        return True

    async def _signal_running(self, row: InboxEvent) -> bool:
        """Signal the deal's workflow if it runs (never start one); False when none runs."""
        handle = self.temporal_client.get_workflow_handle(deal_workflow_id(row.entity_id))
        try:
            await handle.signal(
                SIGNAL_BITRIX24_EVENT, _signal(row), rpc_timeout=self.options.rpc_timeout
            )
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise _temporal_error(exc) from exc
            return False
        return True

    async def _pipeline(self, deal_id: int) -> Pipeline | None:
        known = self._pipelines.get(deal_id)
        if known is None:
            known = await deal_pipelines.get(self.engine, deal_id)
            if known is not None:
                self._remember(known)
        return known

    def _remember(self, pipeline: Pipeline) -> None:
        if len(self._pipelines) >= PIPELINES_HELD and pipeline.deal_id not in self._pipelines:
            self._pipelines.clear()  # the table still knows them
        self._pipelines[pipeline.deal_id] = pipeline

    async def _covered(
        self, row: InboxEvent, kind: str, modified: int | None
    ) -> signal_marks.Mark | None:
        """For a safety-net row: the mark of a signal that already followed its change."""
        if modified is None or not is_safety_net(row.payload_data()):
            return None
        unwritten = self._unwritten.get((kind, row.entity_id))
        if unwritten is not None and signal_marks.covers(unwritten, modified, row.ts):
            return unwritten  # no need to read the table
        mark = await signal_marks.get(self.engine, kind, row.entity_id)
        if mark is not None and signal_marks.covers(mark, modified, row.ts):
            return mark
        return None

    async def _signal_deal(self, row: InboxEvent, summary: str, new_run: bool = False) -> bool:
        """Signal-with-start the deal's workflow; False when that workflow has closed (with
        `new_run`, a deal moved into the pipeline, a closed workflow gets a new run).

        A start carries the Web UI's static summary and details (the deal as first read);
        Temporal keeps them only when this call starts the workflow."""
        try:
            await self.temporal_client.start_workflow(
                WORKFLOW_TYPE,
                DealInput(deal_id=row.entity_id, rules=self._deal_rules()),
                id=deal_workflow_id(row.entity_id),
                task_queue=self.settings.temporal.task_queue,
                start_signal=SIGNAL_BITRIX24_EVENT,
                start_signal_args=[_signal(row)],
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE
                if new_run
                else WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=_deal_attributes(row.entity_id),
                static_summary=summary,
                static_details=self._deal_link(row.entity_id),
                rpc_timeout=self.options.rpc_timeout,
            )
        except WorkflowAlreadyStartedError:
            return False
        except RPCError as exc:
            raise _temporal_error(exc) from exc
        return True

    async def _task_event(self, row: InboxEvent) -> Outcome:
        found, read_at = await self._bitrix24_timed(
            "tasks.task.get",
            {"taskId": row.entity_id, "select": ["ID", "UF_CRM_TASK", "CHANGED_DATE"]},
        )
        task = found.get("task") if isinstance(found, dict) else None
        if not isinstance(task, dict):
            return Outcome(InboxStatus.IGNORED, f"task {row.entity_id} not found in Bitrix24")
        deals = _bound_deals(task.get("ufCrmTask", task.get("UF_CRM_TASK")))
        if not deals:
            return Outcome(InboxStatus.IGNORED, f"task {row.entity_id} is not bound to a deal")
        changed = task.get("changedDate", task.get("CHANGED_DATE"))
        modified = bitrix24_time.epoch(changed)
        covered = await self._covered(row, signal_marks.TASK, modified)
        if covered is not None:
            return Outcome(
                InboxStatus.IGNORED,
                f"task {row.entity_id} was signalled after its change at {changed} already"
                f" (inbox row {covered.row_id})",
            )
        delivered: list[int] = []
        for deal_id in deals:
            handle = self.temporal_client.get_workflow_handle(deal_workflow_id(deal_id))
            try:
                await handle.signal(
                    SIGNAL_BITRIX24_EVENT, _signal(row), rpc_timeout=self.options.rpc_timeout
                )
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise _temporal_error(exc) from exc
                continue
            delivered.append(deal_id)
        if not delivered:
            names = ", ".join(deal_workflow_id(d) for d in deals)
            return Outcome(InboxStatus.IGNORED, f"no running deal workflow ({names})")
        return Outcome(InboxStatus.FORWARDED, mark=_mark(row, signal_marks.TASK, modified, read_at))

    async def _bitrix24(self, method: str, params: dict[str, Any]) -> Any:
        """The method's result, None when the object does not exist (or is not visible)."""
        result, _ = await self._bitrix24_timed(method, params, timed=False)
        return result

    async def _bitrix24_timed(
        self, method: str, params: dict[str, Any], *, timed: bool = True
    ) -> tuple[Any, float | None]:
        """The result and the portal's time when the call started (None when unknown)."""
        client = self.bitrix24_client
        if client is None:
            raise Transient("no Bitrix24 client configured")
        call_raw = getattr(client, "call_raw", None) if timed else None
        try:
            if call_raw is None:
                return await client.call(method, params), None
            response = await call_raw(method, params)
            start = _portal_start(getattr(response, "time", None))
            if start is not None:
                self.clock.observe(start, time.monotonic())
            return response.result, start
        except Exception as exc:
            verdict = classify(exc)
            if verdict is Bitrix24Verdict.NOT_FOUND:
                return None, None
            if verdict is Bitrix24Verdict.PERMANENT:
                raise Permanent(f"Bitrix24 {method}: {_describe(exc)}") from exc
            raise Transient(f"Bitrix24 {method}: {_describe(exc)}") from exc

    def _deal_rules(self) -> DealRules:
        today = date.today()
        if self._rules is None or self._rules[0] != today:
            self._rules = (today, build_rules(self.settings, today))
        return self._rules[1]

    # ---- settling rows ---------------------------------------------------------------------

    async def process(self, row: InboxEvent) -> InboxStatus:
        """Deliver a claimed row and record the result in the inbox."""
        assert row.id is not None
        key = (_kind(row), row.entity_id)
        try:
            async with self._serial.one_at_a_time(key):
                outcome = await self.deliver(row)
                mark = outcome.mark
                if mark is not None:
                    self._unwritten[key] = signal_marks.Mark(mark.modified, mark.read_at, row.id)
        except asyncio.CancelledError:
            await asyncio.shield(inbox.release(self.engine, [row.id]))
            raise
        except Permanent as exc:
            outcome = Outcome(InboxStatus.FAILED, str(exc))
        except Exception as exc:
            delay = self._backoff(row.attempts)
            reason = _describe(exc)
            self.last_error = reason
            log.warning(
                "inbox row %s (%s %s) not forwarded, attempt %s, retry in %.1fs: %s",
                row.id,
                row.event,
                row.entity_id,
                row.attempts,
                delay.total_seconds(),
                reason,
            )
            await inbox.retry_later(self.engine, row.id, reason, delay)
            self._observe(row, InboxStatus.PENDING)
            return InboxStatus.PENDING
        self.last_error = None
        if outcome.status is InboxStatus.FAILED:
            log.error("inbox row %s failed for good: %s", row.id, outcome.reason)
        settled = Settlement(row.id, outcome.status, outcome.reason)
        try:
            await self._settler.submit(Settled(settled, outcome.mark, outcome.pipeline))
        finally:
            written = self._unwritten.get(key)
            if written is not None and written.row_id == row.id:
                del self._unwritten[key]
        self._observe(row, outcome.status)
        return outcome.status

    async def _write_settled(self, items: Sequence[Settled]) -> list[None]:
        """Settlements, the signals' marks and the pipelines learned, of many rows in one
        transaction."""
        async with self.engine.begin() as conn:
            await signal_marks.note_all(conn, [i.mark for i in items if i.mark is not None])
            await deal_pipelines.note_all(
                conn, [i.pipeline for i in items if i.pipeline is not None]
            )
            await inbox.settle_all(conn, [i.settlement for i in items])
        return [None] * len(items)

    def _observe(self, row: InboxEvent, status: InboxStatus) -> None:
        if self.observer is not None:
            self.observer(row, status)

    def _backoff(self, attempts: int) -> timedelta:
        seconds = self.options.backoff_base * 2 ** max(attempts - 1, 0)
        return timedelta(seconds=min(seconds, self.options.backoff_cap))

    async def forward(self, row_id: int) -> InboxStatus | None:
        """Claim one row and process it; None when it is not due or someone else holds it."""
        row = await inbox.claim(self.engine, row_id, lease=self.options.lease)
        return None if row is None else await self.process(row)

    async def drain(self) -> int:
        """Process the due pending rows, oldest first; return how many were processed.

        The pass ends at the first transient failure: Temporal or Bitrix24 being down would fail
        the rest alike, so they are given back untried and wait for the next pass.
        """
        done = 0
        while True:
            rows = await inbox.claim_pending(
                self.engine, self.options.batch, lease=self.options.lease
            )
            for index, row in enumerate(rows):
                try:
                    status = await self.process(row)
                except BaseException:
                    await asyncio.shield(inbox.release(self.engine, _ids(rows[index + 1 :])))
                    raise
                done += 1
                if status is InboxStatus.PENDING:
                    await inbox.release(self.engine, _ids(rows[index + 1 :]))
                    return done
            if len(rows) < self.options.batch:
                return done

    async def run(self) -> None:
        """The retry loop, every `poll_interval` seconds (sooner when rows wait), until cancelled:
        while forwarding works, due rows go to the forwards in flight; after a failure, `drain`
        tries them one at a time and stops at the first that fails again."""
        while True:
            try:
                if self.last_error is None:
                    await self._top_up()
                else:
                    await self.drain()
            except Exception as exc:  # the database itself is down: keep trying
                self.last_error = f"inbox: {_describe(exc)}"
                log.warning("forwarder pass failed: %s", self.last_error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.options.poll_interval)
            self._wake.clear()

    async def _top_up(self) -> None:
        room = self.room()
        if room <= 0:
            return
        rows = await inbox.claim_pending(self.engine, room, lease=self.options.lease)
        self._behind = len(rows) == room
        for row in rows:
            self.submit(row)

    # ---- forwards in flight ------------------------------------------------------------------

    def room(self) -> int:
        """How many more claimed rows `submit` takes now."""
        return max(0, self.options.max_ahead - self._ahead)

    def submit(self, row: InboxEvent) -> None:
        """Forward a row this process has claimed, with at most `max_kicks` in flight."""
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._work(), name=f"relay-forward-{n}")
                for n in range(self.options.max_kicks)
            ]
        self._ahead += 1
        self._queue.put_nowait(row)

    def fell_behind(self) -> None:
        """New rows were recorded unclaimed (no room): the loop takes them when room frees."""
        self._behind = True

    async def _work(self) -> None:
        while True:
            row = await self._queue.get()
            try:
                await self.process(row)
            except Exception as exc:
                self.last_error = f"inbox: {_describe(exc)}"
                log.warning("forwarding inbox row %s failed: %s", row.id, self.last_error)
            finally:
                self._ahead -= 1
            if self._behind and self.room() >= self.options.max_ahead // 2:
                self._wake.set()

    def kick(self, row_id: int) -> None:
        """Forward a freshly recorded row in the background (the loop is the safety net)."""
        if len(self._kicked) >= self.options.max_kicks:
            return
        self._spawn(self._forward_quietly(row_id))

    async def _forward_quietly(self, row_id: int) -> None:
        try:
            await self.forward(row_id)
        except Exception as exc:
            self.last_error = f"inbox: {_describe(exc)}"
            log.warning("forwarding inbox row %s failed: %s", row_id, self.last_error)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._kicked.add(task)
        task.add_done_callback(self._kicked.discard)

    def spawn(self, work: Awaitable[None], done: Callable[[], None]) -> None:
        """Run `work` in the background until `close` (its failure is logged); then `done()`."""

        async def run() -> None:
            try:
                await work
            except Exception as exc:
                log.warning("relay background work failed: %s", _describe(exc))
            finally:
                done()

        self._spawn(run())

    async def close(self) -> None:
        """Cancel background forwards; their rows go back to pending for the next start."""
        tasks = [*self._kicked, *self._workers]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers = []
        queued: list[InboxEvent] = []
        while not self._queue.empty():
            queued.append(self._queue.get_nowait())
        self._ahead = 0
        await self._settler.close()
        await inbox.release(self.engine, _ids(queued))


def _kind(row: InboxEvent) -> str:
    return signal_marks.TASK if row.event in TASK_EVENTS else signal_marks.DEAL


class EntitySerializer:
    """One holder at a time per key; a key's lock lives only while someone uses it."""

    def __init__(self) -> None:
        self._locks: dict[Any, asyncio.Lock] = {}
        self._users: dict[Any, int] = {}

    @contextlib.asynccontextmanager
    async def one_at_a_time(self, key: Any) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]


def _mark(
    row: InboxEvent, kind: str, modified: int | None, read_at: float | None
) -> NewMark | None:
    """Without a mark a later safety-net row of the same change only signals once more."""
    if modified is None or read_at is None:
        return None
    return NewMark(kind, row.entity_id, modified, read_at, row.id)


def _signal(row: InboxEvent) -> Bitrix24Event:
    return Bitrix24Event(event=row.event, entity_id=row.entity_id, ts=row.ts)


def _portal_start(time_info: Any) -> float | None:
    start = time_info.get("start") if isinstance(time_info, dict) else None
    return float(start) if isinstance(start, int | float) else None


def _ids(rows: list[InboxEvent]) -> list[int]:
    return [row.id for row in rows if row.id is not None]


def _deal_attributes(deal_id: int) -> TypedSearchAttributes:
    return TypedSearchAttributes([SearchAttributePair(DEAL_ID, deal_id)])


def _bound_deals(bindings: Any) -> list[int]:
    if isinstance(bindings, str):
        bindings = [bindings]
    if not isinstance(bindings, list):
        return []
    found = (DEAL_BINDING.match(str(b)) for b in bindings)
    return sorted({int(m.group(1)) for m in found if m})


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _temporal_error(exc: RPCError) -> Exception:
    if exc.status == RPCStatusCode.INVALID_ARGUMENT:
        return Permanent(f"Temporal refused: {exc.message}")
    return Transient(f"Temporal: {exc.status.name if exc.status else '?'} {exc.message}")


def _describe(exc: BaseException) -> str:
    """The reason kept in `inbox_event.reason`, logged and shown by /healthz: redacted."""
    text = str(exc) or type(exc).__name__
    text = text if isinstance(exc, Transient | Permanent) else f"{type(exc).__name__}: {text}"
    return redact(text)


SUMMARY_BYTES = 200  # Temporal's limit for a static summary


def deal_summary(deal_id: int, deal: dict[str, Any]) -> str:
    """«title» · amount currency · «Продажа» №id — within the summary's 200 bytes."""
    try:
        value = float(deal.get("OPPORTUNITY") or 0)
    except (TypeError, ValueError):
        value = 0.0
    amount = f"{value:,.0f}".replace(",", "\u00a0")
    tail = f" · {amount} {deal.get('CURRENCY_ID') or 'RUB'} · «Продажа» №{deal_id}"
    title = str(deal.get("TITLE") or "")
    room = SUMMARY_BYTES - len(tail.encode()) - len("«»…".encode())
    if len(title.encode()) > room:  # cut at a character boundary within the bytes left
        title = title.encode()[:room].decode(errors="ignore") + "…"
    return f"«{title}»{tail}"
