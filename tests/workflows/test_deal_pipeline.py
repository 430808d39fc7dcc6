"""DealWorkflow from КП to WON and LOSE on the time-skipping server (activities as doubles).

One test per requirement, the ID in its name; each asserts what the requirement says.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError

from salesflow.config.templates import DEFAULT_TEMPLATES
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import (
    ApprovalDecision,
    DealView,
    DocumentsSigned,
    KpFeedback,
    LoseDeal,
    MoveStage,
    PaymentSchedule,
    RecordPayment,
    RequestTasks,
    StartProcess,
    Tranche,
)
from salesflow.workflows.onec_models import Payment
from tests.workflows.conftest import calendar_rules, new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import CONTRACT_FIELDS, drive_to, pass_days, rework_done, until

REFUSED = (WorkflowUpdateFailedError,)
try:  # the refusal of a validator arrives as an RPC error on some servers
    from temporalio.service import RPCError

    REFUSED = (WorkflowUpdateFailedError, RPCError)
except ImportError:  # pragma: no cover
    pass


APPROVAL_TASK = DEFAULT_TEMPLATES["task_internal_approval"]


def count(portal: FakePortal, title: str) -> int:
    return sum(1 for t in portal.titles() if t == title)


async def test_r_kp_1_r_kp_3_r_kp_4_three_rejected_rounds_make_three_pairs(run_deal) -> None:
    portal = FakePortal(new_deal(2001))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "KP")
        for round_no in (1, 2, 3):
            await until(handle, lambda v, n=round_no: v.kp_round == n)
            await handle.execute_update(
                DealWorkflow.kp_feedback, KpFeedback(agreed=False, comment="дорого")
            )
            await rework_done(
                handle, portal, f"kp:objection:{round_no}", f"kp:feedback:{round_no + 1}"
            )
        await until(handle, lambda v: v.kp_round == 4)
        view = await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=True))
        view = await until(handle, lambda v: v.stage == "CONTRACT")
    assert count(portal, "Отправить КП клиенту") == 1
    assert count(portal, "Связаться с клиентом, получить обратную связь по КП") == 4
    assert count(portal, "Отработать возражение, переформировать КП") == 3
    keys = [k for k in portal.tasks if ":kp:objection:" in k]
    assert sorted(k.rsplit(":", 1)[1] for k in keys) == ["1", "2", "3"]
    assert portal.deal.fields["UF_CRM_KP_STATUS"] == "21"
    feedback = [t for k, t in portal.tasks.items() if ":kp:feedback:" in k]
    assert all(t.deadline is not None for t in feedback)
    assert view.document_set == "contract_and_invoice"


async def test_r_kp_2_kp_loaded_from_1c_once_across_rounds(run_deal) -> None:
    portal = FakePortal(new_deal(2002))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: v.kp_round == 1)
        await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=False))
        await until(handle, lambda v: v.kp_round == 2)
    assert len(portal.kp_loads) == 1
    assert portal.kp_loads[0].key == "deal:2002:kp:load_from_1c"


async def test_r_kp_f_feedback_refused_outside_kp(run_deal) -> None:
    portal = FakePortal(new_deal(2003))
    async with run_deal(portal) as handle:
        with pytest.raises(REFUSED):
            await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=True))
        assert (await handle.query(DealWorkflow.state)).stage == "NEW"


async def test_r_kp_5_small_deal_skips_internal_approval(run_deal) -> None:
    deal = new_deal(2004)
    deal.amount = 150_000.0
    portal = FakePortal(deal)
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "CONTRACT")
        view = await until(
            handle, lambda v: any("подписание с клиентом" in t.title for t in v.open_tasks)
        )
    assert view.document_set == "invoice"
    assert not portal.approval_items
    assert (
        count(
            portal,
            APPROVAL_TASK,
        )
        == 0
    )
    assert any(t.startswith("Проверить товарные позиции, отправить Счет") for t in portal.titles())


async def test_r_kp_6_r_kp_7_r_ct_1_approval_item_then_task(run_deal) -> None:
    portal = FakePortal(new_deal(2005))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "CONTRACT")
        await until(handle, lambda v: any(p.kind == "approval" for p in v.processes))
        assert (
            count(
                portal,
                APPROVAL_TASK,
            )
            == 1
        )
        assert len(portal.approval_items) == 1
        with pytest.raises(REFUSED):  # a rejection needs a comment
            await handle.execute_update(
                DealWorkflow.approval_decision, ApprovalDecision(approved=False)
            )
        await handle.execute_update(DealWorkflow.approval_decision, ApprovalDecision(approved=True))
        view = await until(
            handle, lambda v: any("подписание с клиентом" in t.title for t in v.open_tasks)
        )
    item = next(iter(portal.approval_items.values()))
    assert item["stage"] == "DT1032_3:SUCCESS"
    assert [p.state for p in view.processes if p.kind == "approval"] == ["done"]


async def test_r_kp_7_rejected_approval_returns_to_kp_rework(run_deal) -> None:
    portal = FakePortal(new_deal(2006))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "CONTRACT")
        await until(handle, lambda v: any(p.kind == "approval" for p in v.processes))
        await handle.execute_update(
            DealWorkflow.approval_decision, ApprovalDecision(approved=False, comment="цена")
        )
        view = await until(handle, lambda v: v.stage == "KP" and v.kp_round == 2)
        await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=True))
        await until(handle, lambda v: v.stage == "CONTRACT")
        await until(handle, lambda v: sum(p.kind == "approval" for p in v.processes) == 2)
    assert next(iter(portal.approval_items.values()))["stage"] == "DT1032_3:FAIL"
    assert len(portal.approval_items) == 2
    assert count(portal, "Отработать возражение, переформировать КП") == 1
    rejected = [n for n in portal.notifications if ":ct:approval_rejected:" in n.key]
    assert len(rejected) == 1 and "цена" in rejected[0].message
    assert view.history[-1].stage == "KP"


async def test_r_kp_6_decision_taken_in_bitrix24_is_picked_up(run_deal, skip_env) -> None:
    portal = FakePortal(new_deal(2007))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "CONTRACT")
        await until(handle, lambda v: any(p.kind == "approval" for p in v.processes))
        await until(handle, lambda _: bool(portal.approval_items))
        next(iter(portal.approval_items.values()))["stage"] = "DT1032_3:SUCCESS"
        await skip_env.sleep(timedelta(minutes=11))
        await until(handle, lambda v: any("подписание с клиентом" in t.title for t in v.open_tasks))


async def test_r_ct_f_contract_fields_required_before_invoice(run_deal) -> None:
    portal = FakePortal(new_deal(2008))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "CONTRACT")
        await until(handle, lambda v: any(p.kind == "approval" for p in v.processes))
        await handle.execute_update(DealWorkflow.approval_decision, ApprovalDecision(approved=True))
        with pytest.raises(REFUSED) as refused:
            await handle.execute_update(DealWorkflow.move_stage, MoveStage(to="INVOICE"))
        assert "Счет" in str(refused.value.__cause__ or refused.value)
        assert (await handle.query(DealWorkflow.state)).stage == "CONTRACT"
        portal.deal.fields.update(CONTRACT_FIELDS)
        view = await handle.execute_update(DealWorkflow.move_stage, MoveStage(to="INVOICE"))
    assert view.stage == "INVOICE"


async def test_r_inv_1_r_inv_2_unpaid_loops_until_manual_payment(run_deal, skip_env) -> None:
    portal = FakePortal(new_deal(2009))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "INVOICE")
        await until(handle, lambda v: v.invoice_round == 1)
        portal.deal.fields["UF_CRM_PAYMENT_DATE"] = ""
        await pass_days(skip_env, 6)
        await rework_done(handle, portal, "inv:objection:1", "inv:get_payment:2")
        await until(handle, lambda v: v.invoice_round == 2)
        await pass_days(skip_env, 6)
        await rework_done(handle, portal, "inv:objection:2", "inv:get_payment:3")
        await until(handle, lambda v: v.invoice_round == 3)
        for kind in ("invoice", "contract"):
            await handle.execute_update(DealWorkflow.documents_signed, DocumentsSigned(kind=kind))
        await handle.execute_update(
            DealWorkflow.record_payment,
            RecordPayment(amount=640000, paid_on=date.today(), source="manual"),
        )
        view = await until(handle, lambda v: v.stage == "LAUNCH")
    assert count(portal, "Получить оплату от клиента") == 3
    assert count(portal, "Отработать возражение, переформировать Счет") == 2
    assert view.payments[0].source.startswith("manual")
    assert portal.deal.fields["UF_CRM_PAYMENT_DATE"]


async def test_r_inv_3_payment_found_in_1c_closes_the_pay_loop(run_deal, skip_env) -> None:
    portal = FakePortal(new_deal(2010))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "INVOICE")
        for kind in ("invoice", "contract"):
            await handle.execute_update(DealWorkflow.documents_signed, DocumentsSigned(kind=kind))
        portal.onec_payments.append(
            Payment(ref="p1", number="ПБ-17", paid_on=date.today(), amount=640000)
        )
        await skip_env.sleep(timedelta(minutes=61))
        view = await until(handle, lambda v: v.stage == "LAUNCH")
    assert [p.source for p in view.payments] == ["1c:ПБ-17"]


async def test_r_x4_closing_during_a_1c_payments_read_is_no_failure(run_deal) -> None:
    """The close stops the 1C payment poll mid-read: a cancellation, not a step failed for good."""
    portal = FakePortal(new_deal(2012))
    portal.onec_payments_hang = True
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "INVOICE")
        await until(handle, lambda v: portal.onec_payments_reads > 0)
        await handle.execute_update(
            DealWorkflow.lose_deal, LoseDeal(reason="COMPETITOR", comment=None)
        )
        result = await handle.result()
    assert result.stage == "LOSE"
    assert [n.key for n in portal.notifications if ":failure:" in n.key] == []
    assert not any("failed" in h.cause for h in result.history)


async def test_r_inv_f_signed_documents_required_before_launch(run_deal) -> None:
    portal = FakePortal(new_deal(2011))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "INVOICE")
        await handle.execute_update(
            DealWorkflow.record_payment,
            RecordPayment(amount=100, paid_on=date.today(), source="manual"),
        )
        await until(handle, lambda v: "waiting for" in v.history[-1].cause)
        blocked = [n for n in portal.notifications if ":blocked:INVOICE:" in n.key]
        assert len(blocked) == 1 and "Подписанный счет" in blocked[0].message
        for kind in ("invoice", "contract"):
            await handle.execute_update(DealWorkflow.documents_signed, DocumentsSigned(kind=kind))
        from salesflow.workflows.models import Bitrix24Event

        await handle.signal(
            DealWorkflow.bitrix24_event, Bitrix24Event(event="ONCRMDEALUPDATE", entity_id=2011)
        )
        await until(handle, lambda v: v.stage == "LAUNCH")


@pytest.mark.parametrize(
    ("tranches", "problem"),
    [
        ([(50, 10), (40, 20)], "sum to 90"),
        ([(-10, 10), (110, 20)], "must be positive"),
        ([(50, 10), (50, 10)], "repeated due dates"),
        ([(100, -30)], "before the deal's start"),
        ([], "no tranches"),
    ],
)
async def test_r_la_1_bad_schedule_refused_and_nothing_changes(run_deal, tranches, problem) -> None:
    portal = FakePortal(new_deal(2012))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "LAUNCH")
        bad = PaymentSchedule.model_construct(
            tranches=[Tranche(percent=p, due=date.today() + timedelta(days=d)) for p, d in tranches]
        )
        with pytest.raises(REFUSED) as refused:
            await handle.execute_update(DealWorkflow.set_payment_schedule, bad)
        assert problem in str(refused.value.__cause__ or refused.value)
        view = await handle.query(DealWorkflow.state)
    assert view.payment_schedule == []
    assert "UF_CRM_PAYMENT_SCHEDULE" not in portal.deal.fields


async def test_r_la_2_r_ps_2_schedule_visible_and_launch_task(run_deal) -> None:
    portal = FakePortal(new_deal(2013))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "ACCEPTED")
        view = await handle.query(DealWorkflow.state)
    assert count(portal, "Проконтролировать выполнение работ") == 1
    assert [t.percent for t in view.payment_schedule] == [50, 30, 10, 10]
    assert [t.amount for t in view.payment_schedule] == [320000, 192000, 64000, 64000]
    assert "50% 320000.00" in portal.deal.fields["UF_CRM_PAYMENT_SCHEDULE"]


async def test_r_la_f_schedule_required_before_accepted(run_deal) -> None:
    portal = FakePortal(new_deal(2014))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "LAUNCH")
        with pytest.raises(REFUSED) as refused:
            await handle.execute_update(DealWorkflow.move_stage, MoveStage(to="ACCEPTED"))
        assert "График оплаты" in str(refused.value.__cause__ or refused.value)


async def test_r_ps_1_r_ac_1_r_ts_1_tranche_reminded_overdue_escalated_then_closed(
    run_deal, skip_env
) -> None:
    portal = FakePortal(new_deal(2015))
    # 1C is not what this test is about: its payments polled daily and the logist's task done
    # at once, its reads do not fill the 23 days skipped below.
    async with run_deal(portal, calendar_rules(onec_poll_seconds=86_400)) as handle:
        await drive_to(handle, portal, "ACCEPTED")
        await until(handle, lambda _: bool(portal.onec_tasks))
        for task in portal.onec_tasks.values():
            task["done"] = True
        await skip_env.sleep(timedelta(minutes=2))  # the mirror's next read of 1C
        await until(handle, lambda v: all(p.state != "running" for p in v.processes))
        # 320 000 ₽ already paid in the pay loop covers tranche 1 (50 %).
        await until(handle, lambda v: v.payment_schedule[0].state == "paid")
        await pass_days(skip_env, 19)
        view = await until(handle, lambda v: v.payment_schedule[1].state == "reminded")
        await pass_days(skip_env, 2)
        view = await until(handle, lambda v: v.payment_schedule[1].state == "overdue")
        overdue = [n for n in portal.notifications if ":ps:2:overdue" in n.key]
        assert {tuple(n.user_ids) for n in overdue} == {(3,), (2,)}
        await pass_days(skip_env, 2)
        await until(handle, lambda _: any(":ps:2:overdue:2" in n.key for n in portal.notifications))
        await handle.execute_update(
            DealWorkflow.record_payment,
            RecordPayment(amount=192000, paid_on=date.today(), source="manual"),
        )
        view = await until(handle, lambda v: v.payment_schedule[1].state == "paid")
    reminders = [n for n in portal.notifications if n.key.startswith("deal:2015:ps:2:overdue:")]
    assert 2 <= len(reminders) <= 4  # one a day, not a flood
    assert view.payment_schedule[2].state == "planned"
    # each paid tranche says on which payment's date the money covered it
    assert [t.paid_on for t in view.payment_schedule] == [date.today(), date.today(), None, None]


async def test_r_ac_2_r_ac_3_tasks_and_logist_mirror(run_deal) -> None:
    portal = FakePortal(new_deal(2016))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "ACCEPTED")
        view = await until(handle, lambda v: any(p.kind == "1c_logist_task" for p in v.processes))
        await until(handle, lambda _: bool(portal.onec_tasks))
    assert count(portal, "Проконтролировать упаковку") == 1
    assert count(portal, "Проверить оплату по клиенту") == 1
    ship = next(t for t in portal.tasks.values() if t.title == "Отгрузить товар клиенту")
    assert (ship.responsible_id, ship.created_by) == (5, 3)
    assert list(portal.onec_tasks) == ["deal:2016:ac:ship_goods:1c"]
    assert view.stage == "ACCEPTED"


async def _won_while_1c_refuses_the_logist_task(
    handle, portal: FakePortal, skip_env, end: str
) -> tuple[DealView, str]:
    """Drive the deal to ACCEPTED while 1C refuses tasks, then close it (`end`: WON or LOSE)
    and let 1C accept tasks again; the view and the mirror's workflow ID."""
    portal.onec_refuses_tasks = True
    await drive_to(handle, portal, "ACCEPTED")
    view = await until(handle, lambda v: any(p.kind == "1c_logist_task" for p in v.processes))
    mirror = next(p.workflow_id for p in view.processes if p.kind == "1c_logist_task")
    if end == "WON":
        await drive_to(handle, portal, "SHIPPED")
        for kind in ("act", "upd"):
            await handle.execute_update(DealWorkflow.documents_signed, DocumentsSigned(kind=kind))
    else:
        await handle.execute_update(DealWorkflow.lose_deal, LoseDeal(reason="COMPETITOR"))
    result = await handle.result()
    portal.onec_refuses_tasks = False
    await skip_env.sleep(timedelta(minutes=10))
    return result, mirror


async def test_r_ac_3_logist_task_reaches_1c_though_the_deal_was_won_first(
    run_deal, skip_env
) -> None:
    portal = FakePortal(new_deal(2024))
    async with run_deal(portal) as handle:
        result, mirror = await _won_while_1c_refuses_the_logist_task(
            handle, portal, skip_env, "WON"
        )
        described = await skip_env.client.get_workflow_handle(mirror).describe()
    assert result.stage == "WON"
    assert list(portal.onec_tasks) == ["deal:2024:ac:ship_goods:1c"]
    assert described.status is not None and described.status.name == "RUNNING"


async def test_r_x8_lost_deal_cancels_the_logist_mirror(run_deal, skip_env) -> None:
    portal = FakePortal(new_deal(2025))
    async with run_deal(portal) as handle:
        result, mirror = await _won_while_1c_refuses_the_logist_task(
            handle, portal, skip_env, "LOSE"
        )
        described = await skip_env.client.get_workflow_handle(mirror).describe()
    assert result.stage == "LOSE"
    assert portal.onec_tasks == {}
    assert described.status is not None and described.status.name == "CANCELED"
    # `state` says what Temporal shows (issue 14 item 5)
    assert [p.state for p in result.processes if p.workflow_id == mirror] == ["cancelled"]


async def test_r_ts_2_shipping_control_task(run_deal) -> None:
    portal = FakePortal(new_deal(2017))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "TO_SHIP")
        await until(handle, lambda v: any("отгрузку-доставку" in t.title for t in v.open_tasks))
    assert count(portal, "Проконтролировать отгрузку-доставку") == 1


async def test_r_sh_1_r_sh_2_r_sh_3_r_sh_f_r_won_1_r_won_2_documents_then_won(run_deal) -> None:
    portal = FakePortal(new_deal(2018))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "SHIPPED")
        await until(
            handle,
            lambda v: len([t for t in v.open_tasks if "подписанный документ" in t.title]) == 2,
        )
        await handle.execute_update(DealWorkflow.documents_signed, DocumentsSigned(kind="act"))
        await handle.execute_update(DealWorkflow.documents_signed, DocumentsSigned(kind="upd"))
        result = await handle.result()
    assert result.stage == "WON"
    act = next(t for t in portal.tasks.values() if t.title.startswith("Отправить Акты"))
    upd = next(t for t in portal.tasks.values() if t.title.startswith("Отправить УПД"))
    assert act.deadline and upd.deadline
    entered = next(h.at for h in result.history if h.stage == "SHIPPED")
    assert act.deadline - entered == timedelta(days=1)
    (mail,) = portal.emails.values()
    assert mail.to == ["buh@example.ru"] and "Акт выполненных работ: подписан" in mail.body
    assert portal.deal.fields["UF_CRM_ACT"] and portal.deal.fields["UF_CRM_UPD"]
    assert portal.deal.stage_id == "C1:WON"
    (linked,) = portal.linked_deals.values()
    assert linked.category_id == 2 and linked.source_deal_id == 2018
    won = [m for m in portal.client_messages.values() if "won:feedback_form" in m.key]
    assert len(won) == 1 and "оставите отзыв" in won[0].template


async def test_r_sh_1_r_x4_deadline_missed_notifies_manager_and_rop(run_deal, skip_env) -> None:
    portal = FakePortal(new_deal(2019))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "SHIPPED")
        await skip_env.sleep(timedelta(days=1, minutes=5))
        await until(handle, lambda v: any(d.overdue for d in v.deadlines))
    overdue = [n for n in portal.notifications if ":closing_documents:overdue" in n.key]
    assert sorted(tuple(n.user_ids) for n in overdue) == [(2,), (3,)]


async def test_r_x5_client_told_at_key_stages(run_deal) -> None:
    portal = FakePortal(new_deal(2020))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "SHIPPED")
        await handle.execute_update(DealWorkflow.documents_signed, DocumentsSigned(kind="act"))
        await handle.execute_update(DealWorkflow.documents_signed, DocumentsSigned(kind="upd"))
        await handle.result()
    # The read model followed the deal to the end (issue: deal board).
    assert portal.board[-1].stage == "WON" and portal.board[-1].manager_id == 3
    assert {u.stage for u in portal.board} >= {"NEW", "KP", "INVOICE", "SHIPPED", "WON"}
    purposes = sorted(k.split(":", 2)[2] for k in portal.client_messages)
    assert purposes == [
        "client:logist_started:deal-2020-1c-ac-ship_goods",  # issue 14 item 6
        "inv:client_message",
        "iw:client_message",
        "kp:client_message",
        "sh:client_documents",
        "sh:client_message",
        "won:feedback_form",
    ]


async def test_r_x6_six_services_get_one_task_each_logistics_mirrored(run_deal) -> None:
    portal = FakePortal(new_deal(2021))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "IN_WORK")
        with pytest.raises(REFUSED):
            await handle.execute_update(DealWorkflow.request_tasks, RequestTasks())
        everything = RequestTasks(
            engineers=True,
            purchasing=True,
            logistics=True,
            production=True,
            lawyer=True,
            metrologist=True,
        )
        await handle.execute_update(DealWorkflow.request_tasks, everything)
        await until(handle, lambda _: bool(portal.onec_tasks))
    requested = [t for k, t in portal.tasks.items() if ":request:" in k]
    assert sorted(t.responsible_id for t in requested) == [5, 6, 7, 8, 9, 10]
    assert len(portal.onec_tasks) == 1


async def test_r_x7_process_started_tracked_and_finished(run_deal, skip_env) -> None:
    portal = FakePortal(new_deal(2022))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "IN_WORK")
        await handle.execute_update(DealWorkflow.start_process, StartProcess(kind="import_order"))
        view = await handle.query(DealWorkflow.state)
        assert [(p.kind, p.state) for p in view.processes] == [("import_order", "running")]
        await until(handle, lambda _: any(":process:import_order:1" in k for k in portal.tasks))
        task_id = portal.task_ids["deal:2022:process:import_order:1"]
        portal.completed_tasks.add(task_id)
        await skip_env.sleep(timedelta(minutes=31))
        view = await until(handle, lambda v: v.processes[0].state == "done")
    task = portal.tasks["deal:2022:process:import_order:1"]
    assert task.title.startswith("Процесс «Заказ Импорт»") and task.responsible_id == 7


async def test_r_x8_r_lose_1_lost_at_contract_ends_children(run_deal, skip_env) -> None:
    portal = FakePortal(new_deal(2023))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "CONTRACT")
        await until(handle, lambda v: any(p.kind == "approval" for p in v.processes))
        await handle.execute_update(
            DealWorkflow.lose_deal, LoseDeal(reason="COMPETITOR", comment=None)
        )
        result = await handle.result()
        child = skip_env.client.get_workflow_handle(result.processes[0].workflow_id)
        for _ in range(50):  # the child ends its compensation (the item closed) on its own
            described = await child.describe()
            if described.status is not None and described.status.name != "RUNNING":
                break
            await asyncio.sleep(0.1)
    assert result.stage == "LOSE"
    assert described.status is not None and described.status.name == "CANCELED"
    assert portal.deal.fields["UF_CRM_LOSS_REASON"] == "42"


async def test_r_kp_2_r_kp_4_reformed_kp_read_from_1c_again_each_round(run_deal) -> None:
    """After «не согласовано» the manager re-forms the КП; the client's answer to it brings the
    re-formed КП from 1C into the deal, once per round, before the document set is chosen."""
    portal = FakePortal(new_deal(2091))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: v.kp_round == 1)
        await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=False))
        await until(handle, lambda v: v.kp_round == 2)
        await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=False))
        await until(handle, lambda v: v.kp_round == 3)
        await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=True))
        await until(handle, lambda v: v.stage == "CONTRACT")
    assert [r.key for r in portal.kp_loads] == [
        "deal:2091:kp:load_from_1c",
        "deal:2091:kp:load_from_1c:2",
        "deal:2091:kp:load_from_1c:3",
    ]
