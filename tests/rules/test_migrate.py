"""`salesflow rules migrate` (issue 15): a running deal takes another rule set on purpose, on
the time-skipping server; refused, with the reason in Russian, where the new rules make the
deal's current state impossible."""

from __future__ import annotations

from salesflow.config.snapshot import rules_version
from salesflow.config.templates import Templates
from salesflow.starter.rules_migrate import migrate
from salesflow.whatif.extract import extract
from salesflow.workflows import migration
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import AcceptLead, DealRules, ProcessState, Stage
from salesflow.workflows.refusals import refusal_text
from tests.workflows.conftest import calendar_rules, new_deal
from tests.workflows.doubles import FakePortal


def _new_rules(**overrides: object) -> DealRules:
    return calendar_rules(**overrides)


async def test_migrate_dry_run_then_for_real_on_a_running_deal(run_deal, skip_env) -> None:
    old = calendar_rules()
    new = _new_rules(contract_threshold=1_000_000, invoice_contract_threshold=700_000)
    assert old.version and new.version and old.version != new.version
    portal = FakePortal(new_deal(1501))
    async with run_deal(portal, old) as handle:
        await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=3))
        client = skip_env.client

        dry = await migrate(client, 1501, new, dry_run=True, workflow_id=handle.id)
        assert (dry.was, dry.to, dry.refused, dry.done) == (old.version, new.version, None, False)
        assert "contract_threshold" in dry.changed
        assert (await handle.query(DealWorkflow.rules_snapshot)).version == old.version

        done = await migrate(client, 1501, new, dry_run=False, workflow_id=handle.id)
        assert done.done and done.refused is None
        assert (await handle.query(DealWorkflow.rules_snapshot)).contract_threshold == 1_000_000
        view = await handle.query(DealWorkflow.state)
        recorded = extract(await handle.fetch_history())  # what `whatif` would take of it
    assert view.rules_version == new.version
    assert [e.name for e in recorded.world if e.kind == "update"] == [
        "accept_lead",
        "migrate_rules",
    ]
    assert view.history[-1].cause == f"rules migrated: {old.version} → {new.version}"
    assert view.history[-1].actor is None


async def test_migrate_refused_where_the_manager_is_not_in_the_new_rules(run_deal, skip_env):
    old = calendar_rules()
    new = DealRules.model_validate(
        old.model_dump() | {"people": old.people.model_dump() | {"managers": [4]}}
    )
    portal = FakePortal(new_deal(1502))
    async with run_deal(portal, old) as handle:
        await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=3))
        dry = await migrate(skip_env.client, 1502, new, dry_run=True, workflow_id=handle.id)
        real = await migrate(skip_env.client, 1502, new, dry_run=False, workflow_id=handle.id)
        kept = await handle.query(DealWorkflow.rules_snapshot)
    reason = (
        "Ответственный сделки №1502 (пользователь 3) не входит в список менеджеров новых правил."
    )
    assert dry.refused == reason and real.refused == reason and not real.done
    assert dry.code == real.code == "migrate_manager" and real.params == dry.params
    assert kept.version == old.version


def _refusal(stage: Stage, document_set: str | None, new: DealRules, **kw: object) -> str | None:
    """The refusal's Russian text, as the CLI renders its code (None: no refusal)."""
    args: dict = dict(
        deal_id=7,
        stage=stage,
        category_id=1,
        manager_id=3,
        document_set=document_set,
        amount=640_000.0,
        processes=[],
        new=new,
    )
    found = migration.refusal(**(args | kw))
    return None if found is None else refusal_text(found.code, found.params, Templates())


def test_r_kp_5_migrate_refused_where_the_chosen_document_set_would_change() -> None:
    new = _new_rules(contract_threshold=1_000_000, invoice_contract_threshold=700_000)
    assert _refusal(Stage.KP, None, new) is None  # not chosen yet: the new thresholds decide
    assert _refusal(Stage.INVOICE, "contract_and_invoice", new) == (
        "Сделка №7 уже на стадии «Счет» с комплектом «Договор и счёт»; по новым правилам"
        " сумма 640 000 ₽ требует комплект «Счёт»."
    )
    assert _refusal(Stage.INVOICE, "contract_and_invoice", calendar_rules()) is None


def test_migrate_refused_for_closed_deals_other_pipelines_and_running_approvals() -> None:
    same = calendar_rules()
    assert _refusal(Stage.WON, None, same) == (
        "Сделка №7 закрыта («Сделка успешна»): её правила не меняются."
    )
    assert "не относится к воронке" in (_refusal(Stage.KP, None, same, category_id=9) or "")
    approval = [ProcessState(kind="approval", workflow_id="a")]
    cheap = _new_rules(contract_threshold=1_000_000, invoice_contract_threshold=700_000)
    refused = _refusal(Stage.CONTRACT, None, cheap, processes=approval) or ""
    assert "идёт внутреннее согласование" in refused


def test_rules_version_is_stable_and_names_the_set() -> None:
    a, b = calendar_rules(), calendar_rules()
    assert rules_version(a) == rules_version(b) == a.version
    named = calendar_rules(name="q4")
    assert named.version.startswith("q4@")
    holiday = calendar_rules(extra_holidays=["2026-12-31"])
    assert holiday.version != a.version  # a calendar override is a rule
