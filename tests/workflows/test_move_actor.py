"""R-X10 / issue 12: a stage move names who made it — in Bitrix24 the deal's MOVED_BY_ID (else
MODIFY_BY_ID) read with the deal, id and name; from the CLI the operator (patch
deal12-move-actor)."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowUpdateFailedError

from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import AcceptLead, Actor, Bitrix24Event, MoveStage
from salesflow.workflows.refusals import refusal_of
from tests.workflows.conftest import new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import IN_WORK_FIELDS, until
from tests.workflows.test_deal_pipeline import REFUSED


async def test_r_x10_a_move_in_bitrix24_names_the_person_who_moved_the_deal(run_deal) -> None:
    portal = FakePortal(new_deal(4301))
    async with run_deal(portal) as handle:
        await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=3))
        await until(handle, lambda v: v.stage == "IN_WORK" and bool(v.open_tasks))
        portal.deal.fields.update(IN_WORK_FIELDS)
        portal.deal.stage_id = "C1:UC_KP"
        portal.deal.fields.update(MODIFY_BY_ID="4", MOVED_BY_ID="4")
        portal.deal.moved_by_name = "Сергей Кузнецов"
        await handle.signal(
            DealWorkflow.bitrix24_event,
            Bitrix24Event(event="ONCRMDEALUPDATE", entity_id=portal.deal.id),
        )
        view = await until(handle, lambda v: v.stage == "KP")
    entry = next(h for h in view.history if h.stage == "KP")
    assert entry.cause == "moved by a person in Bitrix24"
    assert (
        entry.code == "moved_in_bitrix24"
    )  # the tab renders cause_<code> (patch deal12-history-codes)
    accepted = next(h for h in view.history if h.stage == "IN_WORK")
    assert (accepted.cause, accepted.code, accepted.params) == (
        "accepted by user 3",
        "accepted",
        {"user": 3},
    )
    assert entry.actor == Actor(user_id=4, name="Сергей Кузнецов", source="bitrix24")


async def test_r_x10_a_move_from_the_cli_names_the_operator(run_deal) -> None:
    portal = FakePortal(new_deal(4302))
    operator = Actor(user_id=2, name="admin (CLI)", source="cli")
    async with run_deal(portal) as handle:
        await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=3))
        await until(handle, lambda v: v.stage == "IN_WORK" and bool(v.open_tasks))
        portal.deal.fields.update(IN_WORK_FIELDS)
        await handle.execute_update(DealWorkflow.move_stage, MoveStage(to="KP", actor=operator))
        view = await until(handle, lambda v: v.stage == "KP")
    entry = next(h for h in view.history if h.stage == "KP")
    assert (entry.cause, entry.actor) == ("moved with the CLI", operator)


async def test_r_x10_refusals_reach_the_client_as_codes_with_parameters(run_deal) -> None:
    """Issue 12: a validator's refusal and move_stage's empty required fields carry a code and
    parameters to the client (the card and the CLI render them in Russian)."""
    portal = FakePortal(new_deal(4303))
    async with run_deal(portal) as handle:
        await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=3))
        await until(handle, lambda v: v.stage == "IN_WORK" and bool(v.open_tasks))
        with pytest.raises(REFUSED) as again:
            await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=3))
        with pytest.raises(WorkflowUpdateFailedError) as empty:
            await handle.execute_update(DealWorkflow.move_stage, MoveStage(to="KP"))
    assert refusal_of(getattr(again.value, "cause", None)) == (
        "wrong_stage",
        {"update": "accept_lead", "allowed": "NEW", "stage": "IN_WORK"},
    )
    code, params = refusal_of(empty.value.cause) or ("", {})
    assert code == "required_fields" and "Приоритет" in params["fields"]
