"""1C outages seen from workflow code (`run_with_outage_watch`) on the time-skipping server.

The 1C activity is a same-named test double that fails like a base behind a dead IIS
(retryable) while the fake clock — the server's time of each attempt — says 1C is down.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from salesflow.workflows import activity_stubs
from salesflow.workflows.models import Carried, NotifyRequest
from salesflow.workflows.onec_models import LOAD_KP_INTO_DEAL, LoadKpRequest, LoadKpResult
from salesflow.workflows.outage import run_with_outage_watch
from salesflow.workflows.sandbox import workflow_runner


class ProbeInput(Carried):
    deal_id: int
    notify_after: timedelta


class ProbeResult(Carried):
    started: datetime
    finished: datetime
    notified_at: list[datetime]
    result: LoadKpResult


@workflow.defn(name="OneCOutageProbe")
class OneCOutageProbe:
    """What a DealWorkflow stage does: one 1C step, the manager told once of a long outage."""

    @workflow.run
    async def run(self, inp: ProbeInput) -> ProbeResult:
        started = workflow.now()
        notified_at: list[datetime] = []
        key = f"deal:{inp.deal_id}:kp_rows"

        async def notify() -> None:
            notified_at.append(workflow.now())
            await workflow.execute_activity(
                activity_stubs.notify_users,
                NotifyRequest(key=f"{key}:onec_outage", user_ids=[3], message="1С недоступна"),
                start_to_close_timeout=timedelta(seconds=30),
            )

        result = await run_with_outage_watch(
            activity_stubs.load_kp_into_deal,
            LoadKpRequest(key=key, deal_id=inp.deal_id, kp_number="КП-000123", direction="Россия"),
            notify=notify,
            after=inp.notify_after,
        )
        return ProbeResult(
            started=started, finished=workflow.now(), notified_at=notified_at, result=result
        )


@dataclass
class FlakyOneC:
    """1C that is down for `down_for` from the first attempt; then the КП loads once."""

    down_for: timedelta
    refuse: bool = False
    first_attempt: datetime | None = None
    attempts: int = 0
    loads: Counter[str] = field(default_factory=Counter)
    notifications: list[NotifyRequest] = field(default_factory=list)

    def activities(self) -> list:
        onec = self

        @activity.defn(name=LOAD_KP_INTO_DEAL)
        async def load_kp_into_deal(req: LoadKpRequest) -> LoadKpResult:
            now = activity.info().current_attempt_scheduled_time
            onec.attempts += 1
            onec.first_attempt = onec.first_attempt or now
            if onec.refuse:
                raise ApplicationError("КП не найдено", type="1C.KpNotFound", non_retryable=True)
            if now < onec.first_attempt + onec.down_for:
                raise ApplicationError(
                    "1C: Сервис недоступен (HTTP 503)", type="1C.OneCUnavailable"
                )
            changed = req.key not in onec.loads
            onec.loads[req.key] += 1
            return LoadKpResult(loaded=True, changed=changed, kp_number="КП-000123")

        @activity.defn(name="notify_users")
        async def notify_users(req: NotifyRequest) -> None:
            onec.notifications.append(req)

        return [load_kp_into_deal, notify_users]


async def _probe(env: WorkflowEnvironment, onec: FlakyOneC, notify_after: timedelta) -> ProbeResult:
    queue = f"outage-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[OneCOutageProbe],
        activities=onec.activities(),
        workflow_runner=workflow_runner(),
    ):
        return await env.client.execute_workflow(
            OneCOutageProbe.run,
            ProbeInput(deal_id=42, notify_after=notify_after),
            id=f"probe-{uuid.uuid4()}",
            task_queue=queue,
        )


async def test_1c_down_two_hours_manager_told_once_and_kp_loaded_once(
    skip_env: WorkflowEnvironment,
) -> None:
    onec = FlakyOneC(down_for=timedelta(hours=2))
    outcome = await _probe(skip_env, onec, notify_after=timedelta(minutes=30))

    # Retried under the policy (backoff to 3 min), not a hand-made loop: dozens of attempts.
    assert 20 < onec.attempts < 80, onec.attempts
    # The manager is told exactly once, when the threshold passed.
    assert [n.key for n in onec.notifications] == ["deal:42:kp_rows:onec_outage"]
    assert len(outcome.notified_at) == 1
    late = outcome.notified_at[0] - (outcome.started + timedelta(minutes=30))
    assert timedelta(0) <= late < timedelta(seconds=5), late
    # The step succeeded when 1C came back, and its side effect happened once.
    waited = outcome.finished - outcome.started
    assert timedelta(hours=2) <= waited <= timedelta(hours=2, minutes=7), waited  # ≤ 2 backoffs
    assert outcome.result.loaded and outcome.result.changed
    assert onec.loads == Counter({"deal:42:kp_rows": 1})


async def test_short_1c_hiccup_tells_nobody(skip_env: WorkflowEnvironment) -> None:
    onec = FlakyOneC(down_for=timedelta(minutes=10))
    outcome = await _probe(skip_env, onec, notify_after=timedelta(minutes=30))
    assert onec.attempts > 2
    assert onec.notifications == [] and outcome.notified_at == []
    assert onec.loads == Counter({"deal:42:kp_rows": 1})


async def test_a_refusal_is_not_retried_and_not_an_outage(skip_env: WorkflowEnvironment) -> None:
    onec = FlakyOneC(down_for=timedelta(0), refuse=True)
    with pytest.raises(WorkflowFailureError) as caught:
        await _probe(skip_env, onec, notify_after=timedelta(minutes=30))
    assert "КП не найдено" in str(caught.value.cause.cause)
    assert onec.attempts == 1 and onec.notifications == []
