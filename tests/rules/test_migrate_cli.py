"""`salesflow rules migrate` end to end (issue 15): the command against a deal running on the
Temporal dev server (a worker with the doubles of tests/workflows); `--dry-run` and for real,
the exit codes (0 migrated, 1 refused, 2 bad input) and `--json`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner, Result

from salesflow.starter.cli import app
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import AcceptLead
from salesflow.workflows.names import deal_workflow_id
from tests.workflows.conftest import calendar_rules, deal_running, new_deal
from tests.workflows.doubles import FakePortal

# calendar_rules() as a configuration file, with other thresholds / other managers
RULES = """
[rules]
{extra}
[rules.take_into_work]
minutes = 60
working_time = false
[rules.kp_feedback_task]
minutes = 60
working_time = false
[rules.reminders]
working_hours_only = false
{tables}
"""


def _rules(tmp_path: Path, name: str, extra: str = "", tables: str = "") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(RULES.format(extra=extra, tables=tables), encoding="utf-8")
    return path


async def _cli(env: WorkflowEnvironment, *args: str) -> Result:
    """The command as a person runs it (its own event loop, so in a thread), pointed at the
    dev server by the contract's variables."""
    environ = {"TEMPORAL_ADDRESS": env.client.service_client.config.target_host}
    return await asyncio.to_thread(
        CliRunner().invoke, app, ["rules", "migrate", *args], env=environ
    )


async def test_rules_migrate_cli_dry_run_then_for_real_then_refused(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    deal_id = 1521
    old = calendar_rules()
    higher = _rules(tmp_path, "higher", extra="contract_threshold = 1000000")
    portal = FakePortal(new_deal(deal_id))
    async with deal_running(dev_env, portal, old, workflow_id=deal_workflow_id(deal_id)) as handle:
        await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=3))

        dry = await _cli(dev_env, "--to", str(higher), "--deals", str(deal_id), "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert f"deal {deal_id}: {old.version} → " in dry.output and "would migrate" in dry.output
        assert (await handle.query(DealWorkflow.rules_snapshot)).version == old.version

        real = await _cli(dev_env, "--to", str(higher), "--deals", str(deal_id), "--json")
        assert real.exit_code == 0, real.output
        (body,) = json.loads(real.output)
        assert body["done"] is True and body["dry_run"] is False and body["refused"] is None
        assert body["was"] == old.version and "contract_threshold" in body["changed"]
        now = await handle.query(DealWorkflow.rules_snapshot)
        assert now.contract_threshold == 1_000_000 and now.version == body["to"]

        # the deal's manager (user 3) is not among the new rules' managers: refused, exit 1
        other = _rules(tmp_path, "other", tables="[portal.users]\nmanagers = [4]")
        refused = await _cli(dev_env, "--to", str(other), "--deals", str(deal_id), "--json")
        assert refused.exit_code == 1, refused.output
        (no,) = json.loads(refused.output)
        assert no["done"] is False and no["code"] == "migrate_manager"
        assert no["refused"] == (
            f"Ответственный сделки №{deal_id} (пользователь 3) не входит в список"
            " менеджеров новых правил."
        )
        text = await _cli(dev_env, "--to", str(other), "--deals", str(deal_id), "--dry-run")
        assert text.exit_code == 1 and "(migrate_manager)" in text.output
        assert (await handle.query(DealWorkflow.rules_snapshot)).version == now.version


async def test_rules_migrate_cli_names_a_missing_deal_and_bad_input(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    same = _rules(tmp_path, "same")
    missing = await _cli(dev_env, "--to", str(same), "--deals", "1529", "--json")
    assert missing.exit_code == 1
    assert json.loads(missing.output)[0]["refused"] == "no workflow for this deal"
    bad_deals = await _cli(dev_env, "--to", str(same), "--deals", "x")
    assert bad_deals.exit_code == 2 and "--deals" in bad_deals.output
    no_file = await _cli(dev_env, "--to", str(tmp_path / "none.toml"), "--deals", "1")
    assert no_file.exit_code == 2 and "no such file" in no_file.output
