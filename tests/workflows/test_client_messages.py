"""Issue 14 item 6 on the time-skipping server: what the client receives — the WON message
with the link to the configured CRM form (R-WON-1), and the work on the order as it moves
(the logist's 1C task, a process, «Срок поставки»), each message once
(salesflow/workflows/client_messages.py).

Deal IDs of this module: 7_481 … 7_489.
"""

from __future__ import annotations

from datetime import timedelta

from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import Bitrix24Event, DocumentsSigned, StartProcess
from tests.workflows.conftest import calendar_rules, new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import drive_to, until

FORM = "https://b24-demo.bitrix24.ru/pub/form/7_otzyv/k3x9a1/"


def sent(portal: FakePortal, part: str) -> list[str]:
    return [m.template for k, m in portal.client_messages.items() if part in k]


async def test_r_won_1_the_won_message_carries_the_crm_form_link(run_deal) -> None:
    rules = calendar_rules(onec_poll_seconds=86_400).model_copy(update={"feedback_form_url": FORM})
    portal = FakePortal(new_deal(7481))
    async with run_deal(portal, rules) as handle:
        await drive_to(handle, portal, "SHIPPED")
        for kind in ("act", "upd"):
            await handle.execute_update(DealWorkflow.documents_signed, DocumentsSigned(kind=kind))
        await until(handle, lambda v: v.stage == "WON")
        await until(handle, lambda _: bool(sent(portal, ":won:feedback_form")))
    (text,) = sent(portal, ":won:feedback_form")
    assert text.startswith("Уважаемый клиент! Мы рады сотрудничать") and FORM in text


async def test_r_ac_3_the_client_is_told_when_the_logist_task_starts_and_is_done(
    run_deal, skip_env
) -> None:
    portal = FakePortal(new_deal(7482))
    async with run_deal(portal, calendar_rules(onec_poll_seconds=86_400)) as handle:
        await drive_to(handle, portal, "ACCEPTED")
        await until(handle, lambda _: bool(sent(portal, ":client:logist_started:")))
        for task in portal.onec_tasks.values():
            task["done"] = True
        await skip_env.sleep(timedelta(minutes=2))  # the mirror's next read of 1C
        await until(handle, lambda _: bool(sent(portal, ":client:logist_done:")))
    (started,) = sent(portal, ":client:logist_started:")
    (done,) = sent(portal, ":client:logist_done:")
    assert "начата работа: Отгрузить товар клиенту" in started
    assert "выполнено: Отгрузить товар клиенту" in done


async def test_r_x7_the_client_is_told_when_a_process_is_done(run_deal, skip_env) -> None:
    portal = FakePortal(new_deal(7483))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "IN_WORK")
        await handle.execute_update(DealWorkflow.start_process, StartProcess(kind="production"))
        await until(handle, lambda _: any(":process:production:1" in k for k in portal.tasks))
        portal.completed_tasks.add(portal.task_ids["deal:7483:process:production:1"])
        await skip_env.sleep(timedelta(minutes=31))
        await until(handle, lambda _: bool(sent(portal, ":client:process_done:")))
    (text,) = sent(portal, ":client:process_done:")
    assert "завершён этап «Производство»" in text


async def test_r_x5_the_client_is_told_when_the_delivery_term_moves_once(run_deal) -> None:
    portal = FakePortal(new_deal(7484))
    async with run_deal(portal, calendar_rules(onec_poll_seconds=86_400)) as handle:
        await drive_to(handle, portal, "LAUNCH")  # «Срок поставки» 30 дней set at IN_WORK
        await until(handle, lambda v: bool(v.open_tasks))
        assert not sent(portal, ":client:delivery_term:")
        for term in ("45 дней", "45 дней"):  # the same value twice: one message
            portal.deal.fields["UF_CRM_DELIVERY_TERM"] = term
            await handle.signal(
                DealWorkflow.bitrix24_event,
                Bitrix24Event(event="ONCRMDEALUPDATE", entity_id=portal.deal.id),
            )
        await until(handle, lambda _: bool(sent(portal, ":client:delivery_term:")))
    (text,) = sent(portal, ":client:delivery_term:")
    assert "Срок поставки по вашему заказу №7484 изменён: 45 дней" in text
    assert "{manager_name}" in text  # filled by the activity with the manager's card
