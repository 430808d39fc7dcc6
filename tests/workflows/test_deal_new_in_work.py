"""DealWorkflow at NEW and IN_WORK on the time-skipping server, activities as test doubles."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import AcceptLead, LoseDeal, RejectLead
from tests.workflows.conftest import new_deal
from tests.workflows.doubles import FakePortal

REFUSED = (WorkflowUpdateFailedError, RPCError, WorkflowUpdateRPCTimeoutOrCancelledError)


async def test_r_new_1_r_new_3_r_iw_1_r_iw_2_r_iw_3_r_x1_accept_then_in_work_actions(
    run_deal, skip_env
):
    portal = FakePortal(new_deal(1001))
    async with run_deal(portal) as handle:
        ack = await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=3))
        assert ack.stage == "IN_WORK"
        view = await handle.query(DealWorkflow.state)
        assert view.manager_id == 3
        await skip_env.sleep(timedelta(minutes=1))
        state = await handle.query(DealWorkflow.state)
    assert [n.user_ids for n in portal.notifications if n.key.endswith(":new:notify")] == [[3, 4]]
    assert portal.deal.stage_id == "C1:PREPARATION"
    assert portal.deal.assigned_by_id == 3
    # R-IW-2 / R-X1: exactly one task, manager responsible, РОП creator, linked to the deal.
    assert portal.titles() == ["Проверить товарные позиции"]
    task = next(iter(portal.tasks.values()))
    assert (task.responsible_id, task.created_by, task.deal_id) == (3, 2, 1001)
    # R-IW-1: exactly one client message.
    assert len(portal.client_messages) == 1
    message = next(iter(portal.client_messages.values()))
    assert message.manager_id == 3 and "персональный менеджер" in message.template
    # R-IW-3: the КП agreement date field is set.
    assert portal.deal.fields["UF_CRM_KP_DATE"]
    assert [h.stage for h in state.history] == ["NEW", "IN_WORK"]
    assert [t.title for t in state.open_tasks] == ["Проверить товарные позиции"]


async def test_r_new_4_r_x4_nobody_accepts_escalates_after_one_hour_and_reminds(run_deal, skip_env):
    portal = FakePortal(new_deal(1002))
    async with run_deal(portal) as handle:
        await skip_env.sleep(timedelta(minutes=59))
        keys = [n.key for n in portal.notifications]
        assert not any("overdue" in k for k in keys), keys
        await skip_env.sleep(timedelta(minutes=2))
        await handle.query(DealWorkflow.state)
        rop = [n for n in portal.notifications if n.key.endswith(":new:overdue")]
        assert len(rop) == 1 and rop[0].user_ids == [2]
        await skip_env.sleep(timedelta(minutes=65))
        await handle.query(DealWorkflow.state)
        reminders = [n for n in portal.notifications if ":new:reminder:" in n.key]
        assert len(reminders) == 2
        assert len({n.key for n in reminders}) == 2
        state = await handle.query(DealWorkflow.state)
        assert state.deadlines[0].overdue
        view = await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=4))
        assert view.stage == "IN_WORK"
    assert len([n for n in portal.notifications if n.key.endswith(":new:overdue")]) == 1


async def test_r_new_2_reject_needs_a_reason_then_loses_the_deal(run_deal):
    portal = FakePortal(new_deal(1003))
    async with run_deal(portal) as handle:
        with pytest.raises(REFUSED):
            await handle.execute_update(
                DealWorkflow.reject_lead, RejectLead.model_construct(reason=" ")
            )
        state = await handle.query(DealWorkflow.state)
        assert state.stage == "NEW"
        view = await handle.execute_update(
            DealWorkflow.reject_lead, RejectLead(reason="Нецелевой запрос")
        )
        assert view.stage == "LOSE"
        result = await handle.result()
    assert result.stage == "LOSE"
    assert portal.deal.stage_id == "C1:LOSE"
    assert portal.deal.fields["UF_CRM_REJECT_REASON"] == "Нецелевой запрос"


async def test_r_new_2_accept_by_unknown_manager_is_refused(run_deal):
    portal = FakePortal(new_deal(1004))
    async with run_deal(portal) as handle:
        with pytest.raises(REFUSED) as refused:
            await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=99))
        assert "99" in str(refused.value) or "99" in str(refused.value.__cause__)
        assert (await handle.query(DealWorkflow.state)).stage == "NEW"


async def test_r_x2_retry_after_success_creates_no_second_task(run_deal):
    portal = FakePortal(new_deal(1005), fail_first_create_after_success=True)
    async with run_deal(portal) as handle:
        await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=3))
        state = await _until(handle, lambda s: bool(s.open_tasks))
    assert portal.create_task_attempts == 2
    assert portal.titles() == ["Проверить товарные позиции"]
    assert len(state.open_tasks) == 1


async def test_r_iw_f_r_x3_move_to_kp_with_empty_fields_is_returned(run_deal, skip_env):
    portal = FakePortal(new_deal(1006))
    async with run_deal(portal) as handle:
        await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=3))
        portal.deal.stage_id = "C1:UC_KP"
        await handle.signal(DealWorkflow.bitrix24_event, _event(1006))
        await skip_env.sleep(timedelta(seconds=5))
        state = await handle.query(DealWorkflow.state)
        assert state.stage == "IN_WORK"
        assert portal.deal.stage_id == "C1:PREPARATION"
        refused = [n for n in portal.notifications if ":refused_move:" in n.key]
        assert len(refused) == 1
        assert "Приоритет" in refused[0].message and "Срок поставки" in refused[0].message
        portal.deal.fields.update(
            {"UF_CRM_PRIORITY": "11", "UF_CRM_KP": "КП-000123", "UF_CRM_DELIVERY_TERM": "30 дней"}
        )
        portal.deal.fields["CONTACT_ID"] = "1"
        portal.deal.stage_id = "C1:UC_KP"
        await handle.signal(DealWorkflow.bitrix24_event, _event(1006))
        await skip_env.sleep(timedelta(seconds=5))
        state = await handle.query(DealWorkflow.state)
    assert state.stage == "KP"
    assert ("KP", "moved by a person in Bitrix24") in [(h.stage, h.cause) for h in state.history]


async def test_r_x8_lose_from_in_work_with_other_needs_comment(run_deal):
    portal = FakePortal(new_deal(1007))
    async with run_deal(portal) as handle:
        await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=3))
        with pytest.raises(REFUSED):
            await handle.execute_update(DealWorkflow.lose_deal, LoseDeal(reason="OTHER"))
        view = await handle.execute_update(
            DealWorkflow.lose_deal, LoseDeal(reason="OTHER", comment="Клиент закрылся")
        )
        assert view.stage == "LOSE"
        await handle.result()
    assert portal.deal.fields["UF_CRM_LOSS_REASON"] == "46"
    assert portal.deal.fields["UF_CRM_LOSS_COMMENT"] == "Клиент закрылся"


async def _until(handle, check, seconds: float = 15.0):
    """Query until `check(state)` holds (a retry waits its real backoff on this server)."""
    for _ in range(int(seconds * 10)):
        state = await handle.query(DealWorkflow.state)
        if check(state):
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"state never satisfied the check: {state}")


def _event(deal_id: int):
    from salesflow.workflows.models import Bitrix24Event

    return Bitrix24Event(event="ONCRMDEALUPDATE", entity_id=deal_id, ts=0)
