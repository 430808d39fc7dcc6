"""Bitrix24's own deal fields drive the process (issue 12 item 3): a field set in Bitrix24 and
the ONCRMDEALUPDATE event (which carries only the ID) become the people's intents, once each."""

from __future__ import annotations

from datetime import date

from salesflow.config.templates import DEFAULT_TEMPLATES
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import Bitrix24Event, RecordPayment, RequestTasks
from tests.workflows.conftest import new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import complete_in_bitrix24, drive_to, rework_done, until

FEEDBACK = DEFAULT_TEMPLATES["task_kp_feedback"]
OBJECTION = DEFAULT_TEMPLATES["task_kp_objection"]
AGREED, NOT_AGREED = "21", "22"


async def changed_in_bitrix24(handle, portal: FakePortal, **fields: str | None) -> None:
    portal.deal.fields.update(fields)
    portal.deal.fields["MODIFY_BY_ID"] = "3"
    await handle.signal(
        DealWorkflow.bitrix24_event,
        Bitrix24Event(event="ONCRMDEALUPDATE", entity_id=portal.deal.id),
    )


def count(portal: FakePortal, title: str) -> int:
    return sum(1 for t in portal.titles() if t == title)


async def test_r_kp_4_kp_status_field_answers_each_round_once(run_deal) -> None:
    portal = FakePortal(new_deal(4101))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: v.kp_round == 1)
        await changed_in_bitrix24(handle, portal, UF_CRM_KP_STATUS=NOT_AGREED)
        await until(handle, lambda v: v.kp_round == 2)
        # round 2 starts with the field cleared: it holds this round's answer only
        assert portal.deal.fields["UF_CRM_KP_STATUS"] is None
        await rework_done(handle, portal, "kp:objection:1", "kp:feedback:2")
        # a re-read of the deal (another field changed) answers nothing
        await changed_in_bitrix24(handle, portal, UF_CRM_DELIVERY_TERM="45 дней")
        await changed_in_bitrix24(handle, portal, UF_CRM_DELIVERY_TERM="40 дней")
        await changed_in_bitrix24(handle, portal, UF_CRM_KP_STATUS=AGREED)
        view = await until(handle, lambda v: v.stage == "CONTRACT")
    assert count(portal, FEEDBACK) == 2
    assert count(portal, OBJECTION) == 1
    assert portal.deal.fields["UF_CRM_KP_STATUS"] == AGREED
    answers = [h.cause for h in view.history if "«Статус КП»" in h.cause]
    assert answers == [
        "«Статус КП» set in Bitrix24 (round 1): not_agreed",
        "«Статус КП» set in Bitrix24 (round 2): agreed",
    ]


async def test_r_kp_4_kp_status_field_set_twice_in_a_round_is_one_answer(run_deal) -> None:
    portal = FakePortal(new_deal(4102))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: v.kp_round == 1)
        await changed_in_bitrix24(handle, portal, UF_CRM_KP_STATUS=NOT_AGREED)
        await changed_in_bitrix24(handle, portal, UF_CRM_KP_STATUS=NOT_AGREED)
        await until(handle, lambda v: v.kp_round == 2)
        await rework_done(handle, portal, "kp:objection:1", "kp:feedback:2")
        view = await until(handle, lambda v: count(portal, FEEDBACK) == 2)
    assert view.kp_round == 2
    assert count(portal, OBJECTION) == 1


SERVICE_FIELDS = {
    "UF_CRM_NEED_ENGINEERS": "engineers",
    "UF_CRM_NEED_PURCHASING": "purchasing",
    "UF_CRM_NEED_PRODUCTION": "production",
    "UF_CRM_NEED_LAWYER": "lawyer",
    "UF_CRM_NEED_METROLOGIST": "metrologist",
}


def service_tasks(portal: FakePortal, service: str) -> list:
    return [t for k, t in portal.tasks.items() if f":request:{service}:" in k]


async def test_r_x6_service_fields_make_one_task_each_however_toggled(run_deal) -> None:
    portal = FakePortal(new_deal(4103))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: v.kp_round == 1)
        for value in ("0", "1", "0", "1"):  # Нет → Да → Нет → Да
            await changed_in_bitrix24(handle, portal, **dict.fromkeys(SERVICE_FIELDS, value))
        await until(
            handle,
            lambda v: all(service_tasks(portal, s) for s in SERVICE_FIELDS.values()),
        )
        await changed_in_bitrix24(handle, portal, UF_CRM_NEED_LOGISTICS="1")
        await until(handle, lambda v: bool(portal.onec_tasks))
        await changed_in_bitrix24(handle, portal, UF_CRM_NEED_LOGISTICS="0")
        await changed_in_bitrix24(handle, portal, UF_CRM_NEED_LOGISTICS="1")
        await changed_in_bitrix24(handle, portal, UF_CRM_NEED_LAWYER="0")
        view = await until(
            handle,
            lambda v: sum("task asked for in Bitrix24" in h.cause for h in v.history) == 6,
        )
    for service in (*SERVICE_FIELDS.values(), "logistics"):
        assert len(service_tasks(portal, service)) == 1, service
    assert service_tasks(portal, "lawyer")[0].responsible_id == 9  # portal.users.lawyer
    assert service_tasks(portal, "logistics")[0].responsible_id == 5  # portal.users.logist
    assert len(portal.onec_tasks) == 1  # the logistics task is mirrored into 1C
    assert view.stage == "KP"


async def test_r_inv_r_sh_signed_document_fields_count_as_signed(run_deal) -> None:
    portal = FakePortal(new_deal(4104))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "SHIPPED")
        await until(handle, lambda v: len(v.open_tasks) >= 2)
        await changed_in_bitrix24(handle, portal, UF_CRM_ACT="4711")
        view = await until(handle, lambda v: any("act signed" in h.cause for h in v.history))
        assert view.stage == "SHIPPED"
        await changed_in_bitrix24(handle, portal, UF_CRM_UPD="4712")
        view = await until(handle, lambda v: v.stage == "WON")
    assert len(portal.emails) == 1
    signed = [h.cause for h in view.history if "field filled in Bitrix24" in h.cause]
    assert signed == [
        "act signed (field filled in Bitrix24)",
        "upd signed (field filled in Bitrix24)",
    ]


async def test_r_inv_signed_invoice_and_contract_fields_count_as_signed(run_deal) -> None:
    portal = FakePortal(new_deal(4105))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "INVOICE")
        await until(handle, lambda v: v.invoice_round == 1)
        await changed_in_bitrix24(
            handle, portal, UF_CRM_SIGNED_INVOICE="4801", UF_CRM_SIGNED_CONTRACT="4802"
        )
        await changed_in_bitrix24(handle, portal, UF_CRM_SIGNED_INVOICE="4801")
        await handle.execute_update(
            DealWorkflow.record_payment,
            RecordPayment(amount=320000, paid_on=date.today(), source="manual"),
        )
        view = await until(handle, lambda v: v.stage == "LAUNCH")
    signed = [h.cause for h in view.history if "field filled in Bitrix24" in h.cause]
    assert signed == [
        "invoice signed (field filled in Bitrix24)",
        "contract signed (field filled in Bitrix24)",
    ]
    # issue 12: who filled them — the deal's last modifier (MODIFY_BY_ID)
    filled = [h.actor for h in view.history if "field filled in Bitrix24" in h.cause]
    assert [a.user_id if a else None for a in filled] == [3, 3]


async def test_r_x6_a_service_asked_for_on_the_card_and_with_its_field_is_one_task(
    run_deal,
) -> None:
    """Issue 12: one key per (deal, service, round) whichever way the request came (patch
    deal12-one-service-task); a new round once the task is completed."""
    portal = FakePortal(new_deal(4105))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: v.kp_round == 1)
        await handle.execute_update(DealWorkflow.request_tasks, RequestTasks(lawyer=True))
        await until(handle, lambda v: bool(service_tasks(portal, "lawyer")))
        await changed_in_bitrix24(handle, portal, UF_CRM_NEED_LAWYER="1")  # the same request
        await handle.execute_update(DealWorkflow.request_tasks, RequestTasks(lawyer=True))
        view = await handle.query(DealWorkflow.state)
        assert len(service_tasks(portal, "lawyer")) == 1
        assert [t.key for t in view.open_tasks if ":request:" in t.key] == [
            "deal:4105:request:lawyer:r1"
        ]
        await complete_in_bitrix24(handle, portal, "request:lawyer:r1")
        await until(handle, lambda v: not any(":request:" in t.key for t in v.open_tasks))
        await handle.execute_update(DealWorkflow.request_tasks, RequestTasks(lawyer=True))
        await until(handle, lambda v: len(service_tasks(portal, "lawyer")) == 2)
    assert sorted(k.rsplit(":", 1)[1] for k in portal.tasks if ":request:lawyer:" in k) == [
        "r1",
        "r2",
    ]
