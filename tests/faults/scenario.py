"""The batch under faults: the deals' scripts run while a conductor breaks the stack, then the
stack is left to settle and everything the assertions need is read from the systems' own
records (the emulators, the SMTP mailbox, the relay's inbox, Temporal).

Timeline, in seconds after the 25 deals were created (the scripts wait for none of it):
  0 …   Bitrix24 answers 30 % of REST calls 503 QUERY_LIMIT_EXCEEDED; 20–150 ms latency on
        every call (answers held back after the work is done); 1C 50 ms latency; events go out
        with up to 1.5 s jitter (they overtake each other) and each reaches the relay twice
        (`Tee`); forged events are POSTed to the relay every 1.5 s until 50
  1     the next 8 Bitrix24 calls get the web server's HTML 503 (`POST /_emulator/faults`)
  5     the relay is stopped (SIGTERM) for 4 s while people keep changing deals
  20    no more 503s (the latency stays)
  26    the imported deal signs; the worker is SIGKILLed when the SMTP server holds its e-mail
        to the accountant and has not yet answered (`MailTrap`); started again 1 s later
  31    the worker is SIGKILLed while Bitrix24 has done one of its writes (tasks.task.add if
        one comes within 5 s) and the answer is on the way; started again
  33    the Temporal dev server is stopped (SIGTERM) for 3 s and started on its SQLite file;
        the worker, started meanwhile, exits (it cannot connect) and is started again by the
        supervisor, as `restart: unless-stopped` does in deploy/
  ~41   1C drops every connection for 6–12 s; 2 s in, the worker is SIGKILLed mid-write again
  …     the latency and the jitter end with the scripts; the stack settles.

Why the 503s end before the kills: a worker killed mid-activity leaves that attempt to its
start-to-close timeout — bounded here to `stack.ATTEMPT_SECONDS` (20 s) by
`temporal.activity_attempt_seconds` instead of the workflows' 60 s (Bitrix24) and 90 s (1C),
with the clients giving up after 10 s — and the retry after a timeout waits
`initial_interval × 2^(attempt−1)`: an activity throttled a dozen times (each
QUERY_LIMIT_EXCEEDED retried after 1 s by `next_retry_delay`) would then wait minutes. The
settling waits until the last kill is `ORPHAN_SECONDS` (28 s) old, so every orphaned attempt has
been retried and anything it doubled would show.

The 1C outage is a few seconds of real time (the dev server does not skip time) while the
notice threshold cannot go below one minute (`onec.outage_notify_after_minutes` ≥ 1, set to 1
here): the outage shows as 1C work retried and done once after 1C is back; the notice after the
threshold is covered on the time-skipping server by tests/workflows/test_onec_outage.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlmodel import select
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from emulators.bitrix24.seed import LOCAL_APP_ACCESS_TOKEN
from salesflow.integrations.bitrix24 import php_form
from salesflow.relay.app import EVENTS_PATH
from salesflow.store import inbox
from salesflow.store.db import make_engine, session
from salesflow.store.inbox import InboxEvent
from salesflow.store.outbox import MailAttempt
from salesflow.workflows.models import DealView
from salesflow.workflows.names import deal_workflow_id
from tests.faults.deals import MANAGERS, PLANS, Deal, Plan
from tests.faults.records import Records
from tests.faults.stack import ATTEMPT_SECONDS, FIRST_DEAL_ID, MUTATING, TOKEN, FaultStack

FORGED_TS_BASE = 1_000_000_000  # no genuine event carries a ts this old
FORGED_DEALS = (8_999_901, 8_999_902)  # deals that exist nowhere
THROTTLE_SECONDS = 20.0  # Bitrix24 answers 30 % of calls 503 this long
LATENCY_SECONDS = 120.0  # the latency and the event jitter last until the scripts end, or this
FORGING_SECONDS = 50.0
NOTHING_IN_FLIGHT = "(nothing in flight)"
QUIET_SECONDS = 5.0  # the relay's scan runs every 4 s (stack.py)
# An attempt orphaned by a kill: its bounded timeout, the 1C policy's first retry (5 s), margin.
ORPHAN_SECONDS = ATTEMPT_SECONDS + 5.0 + 3.0


@dataclass
class Forged:
    body: bytes
    ts: int
    entity_id: int
    status: int  # the relay's answer, 0 when it was down


@dataclass
class Outcome:
    deals: list[Deal]
    errors: dict[int, str]
    views: dict[int, DealView | None]
    statuses: dict[int, str]
    rows: list[InboxEvent]
    forged: list[Forged]
    forged_workflows: dict[int, str]
    kills: list[str]
    timeline: list[str]
    seconds: float
    onec_outage_requests: int
    stack: FaultStack
    mail_attempts: dict[str, int] = field(default_factory=dict)  # the worker's outbox
    notes: list[str] = field(default_factory=list)

    @property
    def ids(self) -> set[int]:
        return {d.id for d in self.deals}


def _manager(index: int) -> int:
    return MANAGERS[index % len(MANAGERS)]


async def run_batch(stack: FaultStack, plans: list[Plan] = PLANS, faults: bool = True) -> Outcome:
    started = time.monotonic()
    deals = [Deal(stack, plan, _manager(i)) for i, plan in enumerate(plans)]
    if faults:
        stack.chaos.rate, stack.chaos.latency = 0.3, (0.02, 0.15)
        stack.onec_base.faults.update({"latency": 0.05})
        stack.portal.event_jitter = 1.5
    stack.note(f"faults {'on' if faults else 'off'}; people create the deals")
    await asyncio.gather(*(deal.create() for deal in deals))
    assert sorted(d.id for d in deals) == list(
        range(FIRST_DEAL_ID + 1, FIRST_DEAL_ID + 1 + len(deals))
    )
    scripts_done = asyncio.Event()
    conductor = Conductor(stack, deals)
    conducting = asyncio.create_task(conductor.run(scripts_done) if faults else _noop())
    forging = asyncio.create_task(conductor.forge_until(scripts_done))
    results = await asyncio.gather(*(_play(deal) for deal in deals), return_exceptions=True)
    scripts_done.set()
    stack.note("scripts done")
    await conducting
    await forging
    errors = {d.id: f"{type(r).__name__}: {r}" for d, r in zip(deals, results, strict=True) if r}
    await settle(stack, deals, conductor)
    views, statuses = await final_views(stack, deals)
    notes = [
        await diagnose(stack, deal, views[deal.id])
        for deal in deals
        if deal.id in errors or (views[deal.id] is None or views[deal.id].stage != deal.plan.target)
    ]
    rows = await inbox_rows(stack)
    mail_attempts = await outbox_attempts(stack)
    resent = Records(stack).resent_notifications({d.id for d in deals})
    stack.note(f"notifications sent again after a lost answer (replaced by TAG): {resent}")
    forged_workflows = {deal_id: await _workflow_status(stack, deal_id) for deal_id in FORGED_DEALS}
    return Outcome(
        deals=deals,
        errors=errors,
        views=views,
        statuses=statuses,
        rows=rows,
        forged=conductor.forged,
        forged_workflows=forged_workflows,
        kills=conductor.kills,
        timeline=stack.log,
        seconds=time.monotonic() - started,
        onec_outage_requests=conductor.outage_requests,
        stack=stack,
        notes=notes,
        mail_attempts=mail_attempts,
    )


async def _noop() -> None:
    return None


async def _play(deal: Deal) -> None:
    await deal.plan.script(deal)
    deal.done = True
    deal.stack.note(f"{deal} done")


class Conductor:
    """Breaks the stack on schedule; forges events."""

    def __init__(self, stack: FaultStack, deals: list[Deal]) -> None:
        self.stack = stack
        self.deals = deals
        self.deal_ids = [d.id for d in deals]
        self.kills: list[str] = []
        self.forged: list[Forged] = []
        self.outage_requests = 0
        self.last_kill = 0.0
        self.t0 = time.monotonic()

    async def _at(self, second: float) -> None:
        await asyncio.sleep(max(0.0, self.t0 + second - time.monotonic()))

    async def run(self, scripts_done: asyncio.Event) -> None:
        stack = self.stack
        await self._at(1)
        await self.html_burst(8)
        await self._at(5)
        stack.note("relay: SIGTERM (down for 4 s)")
        stack.relay.stop()
        await asyncio.sleep(4)
        await stack.start_relay()
        stack.note("relay: up again")
        await self._at(THROTTLE_SECONDS)
        stack.chaos.rate = 0.0
        stack.note("Bitrix24: no more 503s (the latency stays)")
        # A kill now would catch activities that were throttled a dozen times: their next
        # retry after the timeout would wait 2^attempt s (see the module's docstring).
        await self._at(THROTTLE_SECONDS + 6)
        await self.kill_worker_at_smtp()
        await self._at(THROTTLE_SECONDS + 11)
        await self.kill_worker_mid_call({"tasks.task.add"})
        await self._at(THROTTLE_SECONDS + 13)
        stack.note("Temporal: SIGTERM (down for 3 s)")
        stack.temporal.stop(grace=5)
        await asyncio.sleep(3)
        await stack.start_temporal()
        stack.note("Temporal: up again on its database")
        onec_outage = asyncio.create_task(self.onec_outage(6, 40))
        await asyncio.sleep(2)
        await self.kill_worker_mid_call({"crm.activity.add"})
        await onec_outage
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(scripts_done.wait(), LATENCY_SECONDS)
        stack.chaos.calm()
        stack.onec_base.faults.reset()
        stack.portal.event_jitter = 0.0
        stack.note("faults off")

    async def kill_worker_at_smtp(self) -> None:
        """The imported deal signs its documents; the worker is SIGKILLed when the SMTP server
        holds the accountant's e-mail but has not yet answered (`MailTrap`)."""
        stack = self.stack
        trap = stack.mail_trap
        imported = next(d for d in self.deals if d.plan.created_at == "SHIPPED")
        trap.message_id = f"<deal.{imported.id}.sh.mail_accountant@salesflow>"
        trap.armed.set()
        stack.sign_now.set()
        deadline = time.monotonic() + 30
        while not trap.sprung.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not trap.sprung.is_set():
            stack.note("the e-mail to the accountant never came: no SMTP kill")
            return
        self.last_kill = time.monotonic()
        self.kills.append("smtp")
        stack.note(f"worker: SIGKILL while the SMTP server holds {trap.message_id}")
        await asyncio.sleep(1)
        stack.start_worker()
        stack.note("worker: started again")

    async def html_burst(self, count: int) -> None:
        """The next calls meet the web server's HTML 503 page (`POST /_emulator/faults`)."""
        url = f"{self.stack.bitrix24_url}/_emulator/faults"
        answer = await self.stack.http.post(url, json={"count": count, "status": 503})
        assert answer.status_code == 200, answer.text
        self.stack.note(f"Bitrix24: the next {count} calls get an HTML 503")

    async def kill_worker_mid_call(self, wanted: set[str]) -> None:
        """SIGKILL in the middle of an activity: preferably while Bitrix24 has carried out a
        write of the worker (one of `wanted` for 4 s, then any for 6 s) and the answer is on
        its way; else while any call of the worker to Bitrix24 or 1C is being answered."""
        stack = self.stack
        chaos, door = stack.chaos, stack.onec_door
        choices = [(4.0, frozenset(wanted)), (6.0, MUTATING), (20.0, None)]
        hit = ""
        for seconds, methods in choices:
            deadline = time.monotonic() + seconds
            while not hit and time.monotonic() < deadline:
                hit = chaos.answering("worker", methods)
                if not hit and methods is None and door.in_flight:
                    hit = "1C OData call"
                if not hit:
                    await asyncio.sleep(0.002)
            if hit:
                break
        stack.worker.kill()
        self.last_kill = time.monotonic()
        self.kills.append(hit or NOTHING_IN_FLIGHT)
        stack.note(f"worker: SIGKILL while answering {hit or 'nothing'}")
        await asyncio.sleep(1)
        stack.start_worker()
        stack.note("worker: started again")

    async def onec_outage(self, seconds: float, longest: float) -> None:
        """1C drops every connection for `seconds`, longer (up to `longest`) until some calls
        have met it."""
        base, door = self.stack.onec_base, self.stack.onec_door
        base.faults.update({"down": "reset"})
        began = time.monotonic()
        self.stack.note(f"1C: unreachable for {seconds:.0f}–{longest:.0f} s")
        while time.monotonic() - began < longest:
            await asyncio.sleep(0.2)
            if time.monotonic() - began >= seconds and door.refused >= 3:
                break
        base.faults.update({"down": None})
        self.outage_requests = self.stack.onec_door.refused
        self.stack.note(f"1C: back ({self.outage_requests} calls dropped meanwhile)")

    async def forge_until(self, scripts_done: asyncio.Event) -> None:
        """Events that did not come from the portal: wrong, missing or look-alike tokens."""
        variants = [
            ("ONCRMDEALUPDATE", "forged-token"),
            ("ONCRMDEALADD", None),
            ("ONCRMDEALUPDATE", TOKEN.upper()),
            ("ONTASKUPDATE", LOCAL_APP_ACCESS_TOKEN),
            ("ONCRMDEALADD", TOKEN + " "),
            ("ONCRMDEALUPDATE", ""),
        ]
        n = 0
        while not scripts_done.is_set() and time.monotonic() - self.t0 < FORGING_SECONDS:
            event, token = variants[n % len(variants)]
            real = self.deal_ids[n % len(self.deal_ids)]
            entity = FORGED_DEALS[n % 2] if n % 3 == 0 else real
            await self.forge(event, entity, token, FORGED_TS_BASE + n)
            n += 1
            await asyncio.sleep(1.5)

    async def forge(self, event: str, entity_id: int, token: str | None, ts: int) -> None:
        section = "FIELDS_AFTER" if event.startswith("ONTASK") else "FIELDS"
        form: dict[str, Any] = {
            "event": event,
            "event_handler_id": 1,
            "data": {section: {"ID": entity_id}},
            "ts": ts,
        }
        if token is not None:
            form["auth"] = {
                "domain": "127.0.0.1",
                "member_id": self.stack.portal.member_id,
                "application_token": token,
            }
        body = php_form.encode(form).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        try:
            answer = await self.stack.http.post(
                self.stack.relay_url + EVENTS_PATH, content=body, headers=headers
            )
            status = answer.status_code
        except Exception:
            status = 0
        self.forged.append(Forged(body, ts, entity_id, status))


async def settle(stack: FaultStack, deals: list[Deal], conductor: Conductor) -> None:
    """Wait for the side effects the scripts imply, an empty queue of inbox rows, the end of
    every activity attempt orphaned by a kill (its timeout, then its retry), and a quiet portal."""
    stack.note("settling")
    deadline = time.monotonic() + 120
    delivered, changed = -1, time.monotonic()
    while time.monotonic() < deadline:
        missing = missing_effects(stack, deals)
        pending = await _pending_rows(stack)
        orphans = conductor.last_kill + ORPHAN_SECONDS - time.monotonic()
        # The portal quiet too: its events of the last side effects (tasks completed as the
        # deals leave their stages) delivered, their second copies sent, and none new for
        # longer than the relay's scan interval (4 s), which makes up a dropped one.
        events = stack.chaos.app.state.events.describe()
        if events["delivered"] != delivered:
            delivered, changed = events["delivered"], time.monotonic()
        quiet = (
            events["pending"] == 0
            and not stack.tee.repeats
            and time.monotonic() - changed > QUIET_SECONDS
        )
        if not missing and not pending and orphans <= 0 and quiet:
            stack.note("settled")
            return
        await asyncio.sleep(1)
    stack.note(f"not settled: missing {missing_effects(stack, deals)}")


def missing_effects(stack: FaultStack, deals: list[Deal]) -> list[str]:
    records = Records(stack)
    missing = []
    for deal in deals:
        for kind, found in records.found_for(deal).items():
            wanted = getattr(deal.expected, kind)
            gone = wanted - set(found)
            if gone:
                missing.append(f"{deal.id} {kind}: {sorted(map(str, gone))}")
    return missing


async def _pending_rows(stack: FaultStack) -> int:
    engine = make_engine(stack.settings.database.url)
    try:
        return (await inbox.counts(engine))["pending"]
    except Exception:
        return -1
    finally:
        await engine.dispose()


async def final_views(
    stack: FaultStack, deals: list[Deal]
) -> tuple[dict[int, DealView | None], dict[int, str]]:
    views: dict[int, DealView | None] = {}
    statuses: dict[int, str] = {}
    for deal in deals:
        views[deal.id] = await deal.view()
        statuses[deal.id] = await _workflow_status(stack, deal.id)
    return views, statuses


async def _workflow_status(stack: FaultStack, deal_id: int) -> str:
    handle = stack.client.get_workflow_handle(deal_workflow_id(deal_id))
    try:
        described = await handle.describe(rpc_timeout=timedelta(seconds=5))
    except RPCError as err:
        return "not found" if err.status == RPCStatusCode.NOT_FOUND else f"error {err}"
    status = described.status
    return status.name if isinstance(status, WorkflowExecutionStatus) else str(status)


async def outbox_attempts(stack: FaultStack) -> dict[str, int]:
    """How many times the worker handed each e-mail to the SMTP server (its outbox)."""
    engine = make_engine(stack.settings.database.url)
    try:
        async with session(engine) as db:
            return {a.key: a.attempts for a in await db.exec(select(MailAttempt))}
    finally:
        await engine.dispose()


async def inbox_rows(stack: FaultStack) -> list[InboxEvent]:
    engine = make_engine(stack.settings.database.url)
    try:
        return await inbox.recent(engine, limit=1_000_000)
    finally:
        await engine.dispose()


async def diagnose(stack: FaultStack, deal: Deal, view: DealView | None) -> str:
    """Where a deal stands: its last history lines, pending activities and children."""
    lines = [f"{deal}: steps {deal.steps}"]
    if view is not None:
        lines += [f"  history: {h.stage}: {h.cause}" for h in view.history[-6:]]
    handle = stack.client.get_workflow_handle(deal_workflow_id(deal.id))
    try:
        raw = (await handle.describe(rpc_timeout=timedelta(seconds=5))).raw_description
    except RPCError as err:
        return "\n".join([*lines, f"  describe failed: {err}"])
    for act in raw.pending_activities:
        lines.append(
            f"  pending activity {act.activity_type.name}: attempt {act.attempt},"
            f" state {act.state}, last failure {act.last_failure.message[:160]!r}"
        )
    for child in raw.pending_children:
        lines.append(f"  pending child {child.workflow_id}")
    return "\n".join(lines)
