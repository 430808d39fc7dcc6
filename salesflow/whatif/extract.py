"""A deal's recorded history → what the world said to it (issue 15, `whatif`).

The world is everything the workflow did not decide itself: its input (the deal id, the rules
snapshot, carried state), the signals and updates it received with their times, what each
activity answered (Bitrix24, 1C, the mail outbox) and what its children returned. The
workflow's own commands (tasks asked for, messages sent, timers) are *not* taken: the replay
lets the workflow decide them again under other rules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

JSON_ENCODINGS = (b"json/plain", b"json/protobuf")


@dataclass(frozen=True)
class WorldEvent:
    """A signal or an update the deal received."""

    event_id: int
    at: datetime
    kind: str  # "signal" | "update"
    name: str
    args: list[Any]
    update_id: str = ""


@dataclass(frozen=True)
class Answer:
    """One activity call and what the world answered (a result, or a failure's message)."""

    event_id: int
    at: datetime
    activity_type: str
    match: str  # activity type + idempotency key (or the whole input when it has none)
    after: int  # how many world events the deal had received when it was called
    input: list[Any]
    result: Any = None
    failure: str | None = None


@dataclass
class Recording:
    workflow_id: str
    run_id: str
    started_at: datetime
    input: dict[str, Any]
    world: list[WorldEvent] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    children: dict[str, Any] = field(default_factory=dict)  # child workflow id → its result
    ended_at: datetime | None = None  # closed (completed, failed, continued…); None: running
    patches: list[str] = field(default_factory=list)  # the `workflow.patched` ids it took

    @property
    def deal_id(self) -> int:
        return int(self.input["deal_id"])

    @property
    def last_at(self) -> datetime:
        """The last moment the history knows of."""
        times = [self.started_at] + [e.at for e in self.world] + [a.at for a in self.answers]
        return self.ended_at or max(times)


def decode(payloads: Payloads | None) -> list[Any]:
    return [decode_one(p) for p in (payloads.payloads if payloads else [])]


PATCH_MARKER, PATCH_DATA = "core_patch", "patch-data"  # how the SDK records `patched`


def decode_one(payload: Payload) -> Any:
    encoding = payload.metadata.get("encoding", b"")
    if encoding in JSON_ENCODINGS:
        return json.loads(payload.data)
    if encoding == b"binary/null":
        return None
    raise ValueError(
        f"a payload in encoding {encoding!r} cannot be read (codecs are not supported)"
    )


def match_key(activity_type: str, args: list[Any]) -> str:
    """Activities are matched by type and idempotency key (`key`), else by their whole input."""
    first = args[0] if len(args) == 1 else args
    if isinstance(first, dict) and isinstance(first.get("key"), str):
        return f"{activity_type}|key={first['key']}"
    return f"{activity_type}|input={json.dumps(first, sort_keys=True, ensure_ascii=False)}"


def _at(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)


def extract(history: WorkflowHistory) -> Recording:
    events = list(history.events)
    if not events or events[0].event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        raise ValueError(f"{history.workflow_id}: the history does not start with the start event")
    started = events[0].workflow_execution_started_event_attributes
    if started.workflow_type.name != "DealWorkflow":
        raise ValueError(
            f"{history.workflow_id}: a {started.workflow_type.name} history, not a DealWorkflow"
        )
    (inp,) = decode(started.input)
    rec = Recording(
        workflow_id=history.workflow_id,
        run_id=started.original_execution_run_id,
        started_at=_at(events[0]),
        input=inp,
    )
    scheduled: dict[int, tuple[HistoryEvent, str, list[Any], int]] = {}
    child_ids: dict[int, str] = {}
    closing = {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    }
    T = EventType
    for ev in events:
        kind = ev.event_type
        if kind == T.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            a = ev.workflow_execution_signaled_event_attributes
            rec.world.append(
                WorldEvent(ev.event_id, _at(ev), "signal", a.signal_name, decode(a.input))
            )
        elif kind == T.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            req = ev.workflow_execution_update_accepted_event_attributes.accepted_request
            rec.world.append(
                WorldEvent(
                    ev.event_id,
                    _at(ev),
                    "update",
                    req.input.name,
                    decode(req.input.args),
                    req.meta.update_id,
                )
            )
        elif kind == T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            s = ev.activity_task_scheduled_event_attributes
            args = decode(s.input)
            scheduled[ev.event_id] = (ev, s.activity_type.name, args, len(rec.world))
        elif kind == T.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            c = ev.activity_task_completed_event_attributes
            result = decode(c.result)
            _answer(rec, scheduled.pop(c.scheduled_event_id), result[0] if result else None)
        elif kind == T.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            f = ev.activity_task_failed_event_attributes
            _answer(rec, scheduled.pop(f.scheduled_event_id), None, f.failure.message or "failed")
        elif kind == T.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
            t = ev.activity_task_timed_out_event_attributes
            _answer(rec, scheduled.pop(t.scheduled_event_id), None, "timed out")
        elif kind == T.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            child_ids[ev.event_id] = (
                ev.start_child_workflow_execution_initiated_event_attributes.workflow_id
            )
        elif kind == T.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
            c2 = ev.child_workflow_execution_completed_event_attributes
            result = decode(c2.result)
            rec.children[c2.workflow_execution.workflow_id] = result[0] if result else None
        elif kind == T.EVENT_TYPE_MARKER_RECORDED:
            m = ev.marker_recorded_event_attributes
            if m.marker_name == PATCH_MARKER and PATCH_DATA in m.details:
                data = decode(m.details[PATCH_DATA])
                if data and isinstance(data[0], dict) and isinstance(data[0].get("id"), str):
                    rec.patches.append(data[0]["id"])
        elif kind in closing:
            rec.ended_at = _at(ev)
    return rec


def _answer(
    rec: Recording,
    call: tuple[HistoryEvent, str, list[Any], int],
    result: Any,
    failure: str | None = None,
) -> None:
    ev, activity_type, args, after = call
    rec.answers.append(
        Answer(
            ev.event_id,
            _at(ev),
            activity_type,
            match_key(activity_type, args),
            after,
            args,
            result,
            failure,
        )
    )


def load_history_file(path: Path) -> Recording:
    """A history exported as JSON (`temporal workflow show --output json`, tests/histories)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable JSON history ({exc})") from None
    return extract(WorkflowHistory.from_json(path.stem, data))
