"""Issue 14 item 7 on the time-skipping server: the deal that changes under its workflow —
deleted, moved out of «Продажа», moved back to NEW, its amount or currency changed before the
contract is signed (salesflow/workflows/deal_changes.py).

Deal IDs of this module: 7_451 … 7_469.
"""

from __future__ import annotations

from datetime import timedelta

from salesflow.config.templates import DEFAULT_TEMPLATES
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import AcceptLead, Bitrix24Event, KpFeedback
from tests.workflows.conftest import calendar_rules, new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import drive_to, until

ROP = 2


async def event(handle, portal: FakePortal, name: str = "ONCRMDEALUPDATE") -> None:
    await handle.signal(
        DealWorkflow.bitrix24_event, Bitrix24Event(event=name, entity_id=portal.deal.id)
    )


def notices(portal: FakePortal, key: str) -> list:
    return [n for n in portal.notifications if n.key == key]


async def test_r_x8_a_deleted_deal_ends_its_workflow(run_deal) -> None:
    """ONCRMDEALDELETE: open tasks commented and deferred, deadlines dropped, the РОП told."""
    portal = FakePortal(new_deal(7451))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "KP")
        view = await until(handle, lambda v: v.kp_round == 1 and len(v.open_tasks) >= 2)
        portal.deleted = True
        await event(handle, portal, "ONCRMDEALDELETE")
        result = await handle.result()
    assert result.ended == "deleted" and result.stage == "KP"
    assert result.deadlines == [] and result.open_tasks == []
    comment = DEFAULT_TEMPLATES["task_comment_deal_deleted"].format(deal_id=7451)
    assert portal.deferred == {t.task_id: comment for t in view.open_tasks}
    (told,) = notices(portal, "deal:7451:ended:deleted")
    assert ROP in told.user_ids and "удалена" in told.message
    assert any("ONCRMDEALDELETE" in h.cause and "ends" in h.cause for h in result.history)


async def test_r_x8_a_deal_not_found_on_a_read_ends_like_a_deleted_one(run_deal) -> None:
    """crm.deal.get answers "Not found" (the delete event was lost): no failing workflow."""
    portal = FakePortal(new_deal(7452))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "IN_WORK")
        await until(handle, lambda v: bool(v.open_tasks))
        portal.deleted = True
        await event(handle, portal)  # any change: the re-read finds the deal gone
        result = await handle.result()
    assert result.ended == "deleted"
    assert notices(portal, "deal:7452:ended:deleted")
    assert any("not found in Bitrix24" in h.cause for h in result.history)


async def test_r_x8_a_deal_moved_out_of_the_pipeline_ends_its_workflow(run_deal) -> None:
    portal = FakePortal(new_deal(7453))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "IN_WORK")
        view = await until(handle, lambda v: bool(v.open_tasks))
        portal.deal.category_id, portal.deal.stage_id = 0, "NEW"
        await event(handle, portal, "ONCRMDEALMOVETOCATEGORY")
        result = await handle.result()
    assert result.ended == "moved_out" and result.stage == "IN_WORK"
    assert set(portal.deferred) == {t.task_id for t in view.open_tasks}
    (told,) = notices(portal, "deal:7453:ended:moved_out")
    assert ROP in told.user_ids and "перенесена" in told.message
    assert any("moved to pipeline 0" in h.cause for h in result.history)


async def test_r_new_2_a_deal_moved_back_to_new_waits_for_a_new_acceptance(
    run_deal, skip_env
) -> None:
    rules = calendar_rules()
    portal = FakePortal(new_deal(7454))
    async with run_deal(portal, rules) as handle:
        await drive_to(handle, portal, "IN_WORK")
        await until(handle, lambda v: bool(v.open_tasks))
        portal.deal.stage_id = rules.stages["NEW"]
        await event(handle, portal)
        await until(handle, lambda v: v.stage == "NEW")
        await skip_env.sleep(timedelta(minutes=5))
        view = await until(handle, lambda _: bool(notices(portal, "deal:7454:new:2:notify")))
        assert view.stage == "NEW"  # no bounce to IN_WORK
        # the new round's deadline escalates under its own keys
        await skip_env.sleep(timedelta(minutes=70))
        await until(handle, lambda _: bool(notices(portal, "deal:7454:new:2:overdue")))
        await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=4))
        view = await until(handle, lambda v: v.stage == "IN_WORK")
    assert view.manager_id == 4
    assert len(notices(portal, "deal:7454:new:notify")) == 1
    assert any("waiting for a new acceptance (round 2)" in h.cause for h in view.history)


async def test_r_kp_5_amount_changed_at_contract_flips_the_document_set(run_deal) -> None:
    """640 000 → 100 000 before the contract is signed: «Счёт» only; the running approval is
    cancelled; the manager is told. Back to 700 000: a new approval round."""
    portal = FakePortal(new_deal(7455))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "CONTRACT")
        await until(handle, lambda v: any(p.kind == "approval" for p in v.processes))
        portal.deal.amount = 100000.0
        await event(handle, portal)
        view = await until(handle, lambda v: v.document_set == "invoice")
        view = await until(handle, lambda v: all(p.state != "running" for p in v.processes))
        (told,) = notices(portal, "deal:7455:document_set:1")
        assert "«Счёт»" in told.message and "«Договор и счёт»" in told.message
        portal.deal.amount = 700000.0
        await event(handle, portal)
        view = await until(
            handle,
            lambda v: (
                sum(1 for p in v.processes if p.kind == "approval") == 2
                and v.document_set == "contract_and_invoice"
            ),
        )
    assert [p.state for p in view.processes if p.kind == "approval"] == ["cancelled", "running"]
    assert "заново" in notices(portal, "deal:7455:document_set:2")[0].message
    assert view.stage == "CONTRACT"


async def test_r_kp_5_an_amount_in_another_currency_is_converted_with_the_rate(run_deal) -> None:
    """10 000 USD at 92.5 RUB is 925 000 RUB: «Договор и счёт», not «Счёт»."""
    rules = calendar_rules(currency_rates={"USD": 92.5})
    deal = new_deal(7456, CURRENCY_ID="USD")
    deal.amount = 10000.0
    portal = FakePortal(deal)
    async with run_deal(portal, rules) as handle:
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: v.kp_round == 1)
        await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=True))
        view = await until(handle, lambda v: v.stage == "CONTRACT")
    assert view.document_set == "contract_and_invoice"


async def test_r_kp_5_a_currency_without_a_rate_is_refused_with_a_notice(run_deal) -> None:
    deal = new_deal(7457, CURRENCY_ID="EUR")
    deal.amount = 10000.0
    portal = FakePortal(deal)
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "KP")
        await until(handle, lambda v: v.kp_round == 1)
        await handle.execute_update(DealWorkflow.kp_feedback, KpFeedback(agreed=True))
        await until(handle, lambda _: any("EUR" in n.message for n in portal.notifications))
        view = await handle.query(DealWorkflow.state)
        assert view.stage == "KP" and view.document_set is None
        portal.deal.fields["CURRENCY_ID"] = "RUB"
        portal.deal.amount = 900000.0
        await event(handle, portal)
        view = await until(handle, lambda v: v.stage == "CONTRACT")
    assert view.document_set == "contract_and_invoice"
    assert any("no rate for EUR" in h.cause for h in view.history)


async def test_r_won_a_deal_moved_back_from_won_is_refused_by_default(run_deal) -> None:
    """The relay started a new run (reopened_from=WON): the deal is put back to WON."""
    rules = calendar_rules()
    deal = new_deal(7458)
    deal.stage_id = rules.stages["SHIPPED"]
    portal = FakePortal(deal)
    async with run_deal(portal, rules, reopened_from="WON") as handle:
        result = await handle.result()
    assert result.stage == "WON" and portal.deal.stage_id == rules.stages["WON"]
    (told,) = [n for n in portal.notifications if n.key.startswith("deal:7458:reopen_refused:")]
    assert ROP in told.user_ids and "«Сделка успешна»" in told.message
    assert not portal.tasks  # nothing of SHIPPED is done again


async def test_r_won_a_deal_moved_back_from_won_gets_a_new_run_when_configured(run_deal) -> None:
    rules = calendar_rules(reopen="new_run")
    deal = new_deal(7459)
    deal.stage_id = rules.stages["TO_SHIP"]
    portal = FakePortal(deal)
    async with run_deal(portal, rules, reopened_from="WON") as handle:
        view = await until(handle, lambda v: bool(v.open_tasks))
    assert view.stage == "TO_SHIP"
    assert list(portal.task_ids) == ["deal:7459:reopen1:ts:control_shipping"]  # new keys
    assert any("reopened after WON" in h.cause for h in view.history)
