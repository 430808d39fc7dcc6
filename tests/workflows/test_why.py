"""Issue 15 items 1, 2, 4: decisions recorded as data, `why` in Russian, the Bitrix24 timeline
comments once per decision, the SLA figures; on the time-skipping server with the doubles."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from salesflow.config.templates import DEFAULT_TEMPLATES
from salesflow.worker import WORKFLOW_FAILURE_EXCEPTION_TYPES, WORKFLOWS
from salesflow.workflows import decisions as D
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import (
    AcceptLead,
    Actor,
    Bitrix24Event,
    ClientMessageRequest,
    DealInput,
    Decision,
    DecisionLog,
    LoseDeal,
    MoveStage,
    TimelineCommentRequest,
)
from salesflow.workflows.sandbox import workflow_runner
from salesflow.workflows.why import WhyRequest, WhyView, decision_text, explain
from tests.workflows.conftest import calendar_rules, new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import IN_WORK_FIELDS, at_stage, drive_to, rework_done, until
from tests.workflows.test_continue_as_new import can_env  # noqa: F401  (a server suggesting CAN)

CYRILLIC = set("абвгдеёжзийклмнопрстуфхцчшщъыьэюя")


class TimelinePortal(FakePortal):
    """Timeline comments as Bitrix24 keeps them: a list, found again by exact text (the real
    activity's lookup, `timeline_comment_once`); the first attempt of each fails after
    writing (the answer lost), so every comment is retried."""

    timeline: list[str]

    def activities(self) -> list:
        self.timeline = []
        portal = self

        @activity.defn(name="add_timeline_comment")
        async def add_timeline_comment(req: TimelineCommentRequest) -> None:
            if req.text not in portal.timeline:
                portal.timeline.append(req.text)
            if activity.info().attempt == 1:
                raise RuntimeError("connection reset after the comment was written")

        others = [
            a
            for a in super().activities()
            if getattr(a, "__temporal_activity_definition").name != "add_timeline_comment"
        ]
        return [*others, add_timeline_comment]


async def _start(env: WorkflowEnvironment, portal: FakePortal):
    queue = f"test-{uuid.uuid4()}"
    worker = Worker(
        env.client,
        task_queue=queue,
        workflows=WORKFLOWS,
        activities=portal.activities(),
        workflow_failure_exception_types=WORKFLOW_FAILURE_EXCEPTION_TYPES,
        workflow_runner=workflow_runner(),
    )
    return worker, queue


async def _why(handle, what: str | None = None) -> WhyView:
    return await handle.query(DealWorkflow.why, WhyRequest(what=what))  # type: ignore[arg-type]


async def test_r_x4_r_x3_r_kp_5_why_tells_the_deal_in_russian_and_the_timeline_once(
    skip_env: WorkflowEnvironment,
) -> None:
    portal = TimelinePortal(new_deal(1501))
    worker, queue = await _start(skip_env, portal)
    async with worker:
        handle = await skip_env.client.start_workflow(
            DealWorkflow.run,
            DealInput(deal_id=1501, rules=calendar_rules()),
            id=f"deal-1501-{uuid.uuid4().hex[:6]}",
            task_queue=queue,
        )
        try:
            # R-NEW-4: nobody takes the lead within the hour: missed, escalated to the РОП
            await skip_env.sleep(timedelta(minutes=61))
            await until(handle, lambda v: any(d.overdue for d in v.deadlines))
            await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=3))
            await at_stage(handle, "IN_WORK")
            await until(handle, lambda v: bool(v.open_tasks))
            # R-X3: a person's move with empty fields is refused (CLI) and returned (Bitrix24)
            with pytest.raises(WorkflowUpdateFailedError):
                await handle.execute_update(
                    DealWorkflow.move_stage,
                    MoveStage(to="KP", actor=Actor(user_id=3, name="Анна Петрова")),
                )
            portal.deal.stage_id = "C1:UC_KP"
            await handle.signal(
                DealWorkflow.bitrix24_event, Bitrix24Event(event="ONCRMDEALUPDATE", entity_id=1501)
            )
            await until(handle, lambda v: any("refused" in h.cause for h in v.history))
            await drive_to(handle, portal, "CONTRACT")
            await until(handle, lambda v: any(p.kind == "approval" for p in v.processes))
            why = await _why(handle, "stage")
            due = [d for d in why.decisions if d.kind in D.TIMELINE_KINDS][1:]  # not the first
            for _ in range(100):  # each write is retried once (after its backoff)
                if len(portal.timeline) >= len(due):
                    break
                await skip_env.sleep(timedelta(seconds=5))
            story = "\n".join(why.story)
            deadlines = await _why(handle, "deadline")
            tasks = await _why(handle, "task")
            handle_id = handle.id
        finally:
            await handle.terminate()
    kinds = {d.kind for d in why.decisions}
    assert {
        "stage_entered",
        "stage_refused",
        "refusal",
        "task_created",
        "message_sent",
        "document_set",
        "approval_needed",
        "deadline_armed",
        "deadline_met",
        "deadline_missed",
        "escalation",
    } <= kinds
    chain = "\n".join(why.chain)
    assert "Договор и счёт: сумма 640\u00a0000\u00a0₽ > 500\u00a0000\u00a0₽" in chain
    assert "(rules.contract_threshold)" in chain and "R-KP-5" in chain
    assert "согласование запущено" in chain
    assert "заявку взял в работу менеджер 3" in story
    assert "отклонено действие «move_stage»" in story and "Анна Петрова" in story
    assert "перевод на стадию «КП» отменён" in story
    assert "эскалация" in story
    assert "срок «take_into_work» пропущен" in "\n".join(deadlines.chain)
    assert any("выполнен вовремя" in line for line in deadlines.chain)
    assert any("создана задача «Проверить товарные позиции»" in x for x in tasks.chain)
    assert why.waiting.startswith("Сейчас: стадия «Договор» с ")
    # each stage change, refusal and escalation once on the timeline, though every write
    # was retried
    assert len(portal.timeline) == len(set(portal.timeline)) == len(due)
    assert any(c.startswith("Стадия сделки: КП. Причина:") for c in portal.timeline)
    assert handle_id


async def test_r_lose_1_a_deadline_closed_by_the_loss_is_dropped_not_met(run_deal) -> None:
    portal = FakePortal(new_deal(1502))
    async with run_deal(portal) as handle:
        await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=3))
        await until(handle, lambda v: any(d.name == "kp_agreement" for d in v.deadlines))
        await handle.execute_update(DealWorkflow.lose_deal, LoseDeal(reason="NO_MONEY"))
        await at_stage(handle, "LOSE")
        why = await _why(handle, "deadline")
        plain = await handle.query(DealWorkflow.why)  # no request: the whole story
    assert plain.story and not plain.chain
    dropped = [d for d in why.decisions if d.kind == "deadline_dropped"]
    assert [d.subject for d in dropped] == ["kp_agreement"]
    met = [d.subject for d in why.decisions if d.kind == "deadline_met"]
    assert met == ["take_into_work"]  # taken in time; the КП date was not met, but dropped
    assert why.sla is not None and why.sla.dropped == {"IN_WORK": 1}
    assert why.sla.met == {"NEW": 1}
    assert "сделка проиграна: нет денег" in "\n".join(why.story)
    assert why.waiting.startswith("Сделка закрыта: «Сделка провалена»")


class RefusingMailPortal(FakePortal):
    """Bitrix24 refuses the client's e-mail for good (a failure the РОП is told of)."""

    def activities(self) -> list:
        @activity.defn(name="send_client_message")
        async def send_client_message(req: ClientMessageRequest) -> None:
            raise ApplicationError("client has no e-mail", non_retryable=True)

        others = [
            a
            for a in super().activities()
            if getattr(a, "__temporal_activity_definition").name != "send_client_message"
        ]
        return [*others, send_client_message]


async def test_r_kp_5_r_x8_small_deal_skips_approval_and_a_failure_is_told(run_deal) -> None:
    deal = new_deal(1503)
    deal.amount = 100000.0
    portal = RefusingMailPortal(deal)
    async with run_deal(portal) as handle:
        portal.deal.fields.update(IN_WORK_FIELDS)
        await drive_to(handle, portal, "CONTRACT")
        view = await until(handle, lambda v: bool(v.open_tasks) and v.stage == "CONTRACT")
        why = await _why(handle, "stage")
    assert view.document_set == "invoice"
    chain = "\n".join(why.chain)
    assert "Счёт: сумма 100\u00a0000\u00a0₽ ≤ 150\u00a0000\u00a0₽" in chain
    assert "Счёт: внутреннее согласование не нужно" in chain
    failures = [d for d in why.decisions if d.kind == "failure_told"]
    assert failures and failures[0].subject == "failure:iw:client_message"
    assert "сбой сообщён РОП: salesflow: сделка №1503: шаг «iw:client_message» не выполнен" in (
        "\n".join(why.story)
    )


def _decision(kind: str, seq: int = 1, **inputs: str) -> Decision:
    return Decision(
        seq=seq,
        when=datetime(2026, 12, 2, 7, 14, tzinfo=UTC),
        kind=kind,
        stage="KP",
        subject="KP" if kind.startswith("stage") else "kp_feedback_1",
        inputs=inputs,
        outcome="contract_and_invoice" if kind == "document_set" else "",
    )


SAMPLE_INPUTS: dict[str, dict[str, str]] = {
    "stage_entered": {"cause": "accepted by user 3"},
    "stage_refused": {"empty": "Приоритет"},
    "task_created": {"title": "Отправить КП клиенту", "responsible": "3", "deadline": "02.12"},
    "message_sent": {"to": "3", "text": "Просрочено"},
    "document_set": {
        "amount": "640000",
        "contract_threshold": "500000",
        "invoice_contract_threshold": "150000",
    },
    "approval_needed": {"document_set": "contract_and_invoice"},
    "approval_skipped": {"document_set": "invoice"},
    "deadline_armed": {"due": "02.12.2026 18:00", "what": "Обратная связь по КП"},
    "deadline_moved": {"due": "03.12.2026 18:00", "was": "02.12.2026 18:00"},
    "deadline_met": {"due": "02.12.2026 18:00"},
    "deadline_missed": {"due": "02.12.2026 18:00"},
    "deadline_dropped": {"due": "02.12.2026 18:00"},
    "escalation": {"to": "1", "text": "Срок пропущен"},
    "refusal": {"reason": "empty: Приоритет"},
    "failure_told": {"text": "1С недоступна"},
}


@pytest.mark.parametrize("kind", D.KINDS)
def test_issue_15_every_decision_kind_reads_in_russian(kind: str) -> None:
    text = decision_text(_decision(kind, **SAMPLE_INPUTS[kind]), DEFAULT_TEMPLATES)
    assert "{" not in text, text
    assert CYRILLIC & set(text.lower()), text


def test_issue_15_decisions_bounded_older_summarised() -> None:
    rules = calendar_rules()
    log = DecisionLog()
    for n in range(D.KEEP + 50):
        kind = "stage_entered" if n % 10 == 0 else "message_sent"
        entry = _decision(kind, seq=n + 1)
        entry.when = datetime(2026, 12, 1, 6, 0, tzinfo=UTC) + timedelta(hours=n)
        entry.subject = "KP" if kind == "stage_entered" else ""
        log.entries.append(entry)
        D.prune(log, rules)
    assert len(log.entries) == D.KEEP
    assert sum(log.older.values()) == 50 and log.older["stage_entered"] == 5
    assert log.older_stage_minutes["KP"] > 0
    assert log.entries[0].seq == 51


def test_issue_15_one_long_stage_stays_bounded() -> None:
    rules = calendar_rules()
    log = DecisionLog()
    log.entries.append(_decision("stage_entered", seq=1))
    for n in range(D.KEEP + 20):
        log.entries.append(_decision("message_sent", seq=n + 2))
        D.prune(log, rules)
    assert len(log.entries) == D.KEEP and log.entries[0].kind == "stage_entered"
    assert log.older == {"message_sent": 21}


def test_r_x9_business_minutes_skip_nights_and_weekends() -> None:
    rules = calendar_rules()  # Europe/Moscow, 09:00–18:00
    friday_5pm = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)  # 17:00 MSK
    monday_10am = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)  # 10:00 MSK
    assert D.business_minutes(friday_5pm, monday_10am, rules) == 120


def test_issue_15_why_at_a_moment_tells_the_story_so_far() -> None:
    from salesflow.workflows.models import DealState

    rules = calendar_rules()
    state = DealState(deal_id=1)
    early = _decision("stage_entered", seq=1, cause="accepted by user 3")
    late = _decision("stage_entered", seq=2, cause="payment received")
    late.when += timedelta(days=1)
    state.decisions.entries = [early, late]
    why = explain(state, rules, WhyRequest(at=early.when), early.when)
    assert len(why.story) == 1 and "менеджер 3" in why.story[0]
    assert why.story[0].startswith("02.12.2026 10:14 — ")


async def test_r_inv_2_r_x9_sla_figures_from_the_decisions(run_deal, skip_env, monkeypatch) -> None:
    from salesflow.starter import report_commands, why_commands

    portal = FakePortal(new_deal(1504))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "INVOICE")
        await until(handle, lambda v: v.invoice_round == 1)
        for _ in range(8):  # the first invoice round runs out unpaid (R-INV-2)
            view = await handle.query(DealWorkflow.state)
            if any(t.key.endswith(":inv:objection:1") for t in view.open_tasks):
                break
            await skip_env.sleep(timedelta(days=1))
        # «Возврат на задачу»: the objection worked off, the second round starts
        await rework_done(handle, portal, "inv:objection:1", "inv:get_payment:2")
        await drive_to(handle, portal, "LAUNCH")
        why = await _why(handle)
    sla = why.sla
    assert sla is not None and sla.manager_id == 3
    assert sla.kp_rounds == 1 and sla.invoice_rounds == 2
    assert sla.missed == {"INVOICE": 1} and sla.escalations == {"INVOICE": 1}
    hours = {s.stage: s.business_minutes for s in sla.stages}
    assert {"NEW", "IN_WORK", "KP", "CONTRACT", "INVOICE", "LAUNCH"} <= set(hours)
    assert hours["INVOICE"] > 8 * 60  # days of waiting, counted in business hours only
    assert hours["INVOICE"] < 6 * 9 * 60
    rows = {(r["manager_id"], r["stage"]): r for r in report_commands.sla_rows([sla])}
    assert rows[(3, "INVOICE")]["invoice_rounds"] == 2
    assert rows[(3, "INVOICE")]["missed"] == 1 and rows[(3, "INVOICE")]["escalations"] == 1
    assert rows[(3, "KP")]["kp_rounds"] == 1 and rows[(3, "KP")]["deals"] == 1

    # the CLI prints the same answer (the query's reply stands in for Temporal here)
    from typer.testing import CliRunner

    from salesflow.starter.cli import app

    monkeypatch.setattr(why_commands, "_run", lambda action: why)
    printed = CliRunner().invoke(app, ["deal", "why", "1504", "--what", "deadline"])
    assert printed.exit_code == 0, printed.output
    assert "Сделка №1504" in printed.output and "Сейчас: стадия" in printed.output
    as_json = CliRunner().invoke(app, ["deal", "why", "1504", "--json"])
    assert '"kind": "stage_entered"' in as_json.output
    bad = CliRunner().invoke(app, ["deal", "why", "1504", "--at", "вчера"])
    assert bad.exit_code == 1 and "--at" in bad.output
    monkeypatch.setattr(report_commands, "_run", lambda action: [sla])
    table = CliRunner().invoke(app, ["report", "sla", "--csv"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].startswith("section,manager_id,stage,deals,business_hours")
    assert any(line.startswith("stage,3,INVOICE,1,") for line in lines)


def test_r_ps_1_days_late_per_tranche() -> None:
    from datetime import date

    from salesflow.workflows.models import DealState, TrancheState
    from salesflow.workflows.why import sla

    state = DealState(deal_id=9, manager_id=3)
    state.payment_schedule = [
        TrancheState(
            number=1,
            percent=50,
            due=date(2026, 12, 1),
            amount=1,
            state="paid",
            paid_on=date(2026, 12, 4),
        ),
        TrancheState(number=2, percent=50, due=date(2026, 12, 10), amount=1, state="overdue"),
        TrancheState(number=3, percent=0, due=date(2026, 12, 30), amount=1),
    ]
    figures = sla(state, calendar_rules(), datetime(2026, 12, 15, 9, 0, tzinfo=UTC))
    assert [t.days_late for t in figures.tranches] == [3, 5, 0]


async def test_issue_15_continue_as_new_carries_the_decisions_bounded(
    can_env,  # noqa: F811
    monkeypatch,
) -> None:
    from salesflow.starter import report_commands
    from tests.workflows.conftest import deal_running

    monkeypatch.setattr(D, "KEEP", 12)  # the workflow reads it (passed through the sandbox)
    portal = FakePortal(new_deal(1505))
    async with deal_running(can_env, portal) as handle:
        first_run = (await handle.describe()).run_id
        await drive_to(handle, portal, "CONTRACT")
        why = await _why(handle)
        last_run = (await handle.describe()).run_id
        collected: list = []
        for _ in range(50):  # what `report sla` asks Temporal (visibility, then `why`)
            collected = await report_commands.collect(can_env.client, 100)
            if any(s.deal_id == 1505 for s in collected):
                break
            await asyncio.sleep(0.1)
    mine = [s for s in collected if s.deal_id == 1505]
    assert len(mine) == 1 and mine[0].kp_rounds == 1
    assert first_run != last_run  # the deal went on in new runs
    assert len(why.decisions) == 12
    seqs = [d.seq for d in why.decisions]
    assert seqs == sorted(seqs) and seqs[-1] == 12 + sum(why.older.values())
    assert why.older.get("task_created", 0) + why.older.get("message_sent", 0) > 0
    assert why.story[0].startswith("более ранние решения (сводка):")
    assert why.sla is not None and {s.stage for s in why.sla.stages} >= {"NEW", "IN_WORK", "KP"}
