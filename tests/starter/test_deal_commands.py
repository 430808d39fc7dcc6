"""`salesflow deal …` replies: a finished deal, an update the deal moves on after, deadlines."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, get_args

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from typer.testing import CliRunner

from salesflow.starter import deal_commands
from salesflow.starter.deal_commands import (
    Outcome,
    finished_deal,
    format_when,
    send_update,
    update_reply,
)
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import (
    AcceptLead,
    Actor,
    DealView,
    DocumentsSigned,
    KpFeedback,
    LoseDeal,
    RecordPayment,
    StartProcess,
    UpdateAck,
)


def _view(stage: str) -> DealView:
    return DealView(
        deal_id=7,
        stage=stage,
        manager_id=3,
        amount=640000.0,
        document_set=None,
        open_tasks=[],
        deadlines=[],
        payment_schedule=[],
        history=[],
    )


class _Description:
    def __init__(self, status: WorkflowExecutionStatus) -> None:
        self.status = status


class FakeHandle:
    """A deal workflow at `stage` whose updates answer at `after` (the workflow answers once
    the deal has taken its step), or closed."""

    def __init__(
        self, stage: str, after: str | None = None, closed: WorkflowExecutionStatus | None = None
    ) -> None:
        self.stage = stage
        self.after = after or stage
        self.closed = closed
        self.updates: list[Any] = []
        self.queries: list[Any] = []

    async def describe(self) -> _Description:
        return _Description(self.closed or WorkflowExecutionStatus.RUNNING)

    async def query(self, query: Any, result_type: Any = None) -> DealView:
        self.queries.append(query)
        return _view(self.stage)

    async def execute_update(self, update: Any, payload: Any, result_type: Any = None) -> UpdateAck:
        if self.closed:
            raise RPCError("workflow execution already completed", RPCStatusCode.NOT_FOUND, b"")
        self.updates.append(update)
        self.stage = self.after
        return UpdateAck(deal_id=7, stage=self.stage)


async def test_an_update_on_a_finished_deal_says_closed_and_at_which_stage() -> None:
    handle = FakeHandle("WON", closed=WorkflowExecutionStatus.COMPLETED)
    outcome = await send_update(handle, DealWorkflow.kp_feedback, KpFeedback(agreed=True))  # type: ignore[arg-type]  # a fake handle
    assert outcome.closed == "COMPLETED"
    reply = update_reply(7, outcome)
    assert "closed" in reply and "WON" in reply
    assert "no workflow" not in reply


async def test_a_missing_workflow_is_not_reported_as_closed() -> None:
    class Missing(FakeHandle):
        async def describe(self) -> _Description:
            raise RPCError("not found", RPCStatusCode.NOT_FOUND, b"")

    assert await finished_deal(Missing("NEW")) is None  # type: ignore[arg-type]  # a fake handle


async def test_kp_feedback_answers_with_the_stage_after_the_move() -> None:
    handle = FakeHandle("KP", after="CONTRACT")
    outcome = await send_update(handle, DealWorkflow.kp_feedback, KpFeedback(agreed=True))  # type: ignore[arg-type]  # a fake handle
    assert outcome.view.stage == "CONTRACT"
    assert update_reply(7, outcome) == "deal 7: moved from KP to [bold]CONTRACT[/bold]"
    # by reference: the workflow's update and query methods; the reply is a small UpdateAck,
    # so the deal is queried once before and once after (no polling)
    assert handle.updates == [DealWorkflow.kp_feedback]
    assert handle.queries == [DealWorkflow.state, DealWorkflow.state]


def test_a_move_not_yet_taken_says_moving_to() -> None:
    outcome = Outcome(view=_view("NEW"), before="NEW")
    assert "moving to KP" in update_reply(7, outcome, target="KP")


def test_deadlines_print_in_the_portal_zone() -> None:
    moment = datetime(2026, 12, 2, 6, 30, tzinfo=UTC)
    assert format_when(moment, "Europe/Moscow") == "02.12.2026 09:30 Europe/Moscow"
    assert format_when(None, "Europe/Moscow") == ""


def test_r_x10_every_cli_update_names_the_operator(monkeypatch) -> None:
    """No anonymous action: `--as <user id>` (or SALESFLOW_OPERATOR), else the OS user."""
    monkeypatch.setattr("getpass.getuser", lambda: "integrator")
    operator = deal_commands.operator_actor(0)
    sent = deal_commands.with_operator(KpFeedback(agreed=True), operator)
    assert sent.actor == Actor(user_id=0, name="integrator (CLI)", source="cli")
    as_five = deal_commands.operator_actor(5)
    assert deal_commands.with_operator(AcceptLead(manager_id=5), as_five).actor.user_id == 5
    own = Actor(user_id=9, name="Иванов", source="bitrix24")
    assert deal_commands.with_operator(KpFeedback(agreed=True, actor=own), as_five).actor == own
    # the callback hands the operator to the command in its context, no module state
    sent_with: list[object] = []
    monkeypatch.setattr(deal_commands, "_update", lambda op, *a, **k: sent_with.append(op))
    result = CliRunner().invoke(deal_commands.app, ["--as", "4", "accept", "7", "--manager", "4"])
    assert result.exit_code == 0, result.output
    assert sent_with == [Actor(user_id=4, name="integrator (CLI)", source="cli")]


@pytest.mark.parametrize(
    ("choices", "model", "field"),
    [
        (deal_commands.LoseReason, LoseDeal, "reason"),
        (deal_commands.PaymentSource, RecordPayment, "source"),
        (deal_commands.ProcessKind, StartProcess, "kind"),
        (deal_commands.DocumentKind, DocumentsSigned, "kind"),
    ],
)
def test_cli_choices_are_the_update_models_values(choices, model, field) -> None:
    assert {c.value for c in choices} == set(get_args(model.model_fields[field].annotation))


def test_a_choice_outside_the_list_is_refused_by_the_cli_naming_it() -> None:
    result = CliRunner().invoke(deal_commands.app, ["lose", "7", "--reason", "BORED"])
    assert result.exit_code == 2
    assert "BORED" in result.output and "NO_MONEY" in result.output


def test_r_x10_the_cli_prints_a_refusal_in_russian_with_its_code() -> None:
    """Issue 12: the workflow refuses with a code; the CLI renders its template and the code."""
    from salesflow.config.settings import Settings
    from salesflow.starter.deal_commands import refusal_message
    from salesflow.workflows.refusals import refuse

    settings = Settings()
    line = refusal_message(refuse("closed", stage="WON"), settings)
    assert line == "сделка уже закрыта («Сделка успешна») (код: closed)"
    configured = Settings.model_validate({"templates": {"refusal_closed": "закрыта"}})
    assert refusal_message(refuse("closed", stage="WON"), configured) == "закрыта (код: closed)"
    assert refusal_message(RuntimeError("boom"), settings) == "boom"
