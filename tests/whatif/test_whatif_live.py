"""`salesflow whatif --deals` / `--since` (issue 15): the histories are fetched from the
configured namespace (here the Temporal dev server, where a worker with the doubles of
tests/workflows ran the deal), read only, and replayed on a private time-skipping server."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from salesflow.starter.cli import app
from salesflow.starter.whatif_commands import fetch_recordings
from salesflow.whatif.extract import extract
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import AcceptLead
from salesflow.workflows.names import deal_workflow_id
from tests.rules.test_migrate_cli import _rules
from tests.workflows.conftest import calendar_rules, deal_running, new_deal
from tests.workflows.doubles import FakePortal


async def test_whatif_deals_and_since_read_the_live_namespace(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    deal_id = 1531
    workflow_id = deal_workflow_id(deal_id)
    portal = FakePortal(new_deal(deal_id))
    rules = calendar_rules()
    async with deal_running(dev_env, portal, rules, workflow_id=workflow_id) as handle:
        await handle.execute_update(DealWorkflow.accept_lead, AcceptLead(manager_id=3))

        # --since: the deals started on or after the day (the dev server's other deals too)
        today = datetime.now(UTC).date()
        found = await fetch_recordings(dev_env.client, [], today)
        assert workflow_id in {r.workflow_id for r in found}

        higher = _rules(tmp_path, "higher", extra="contract_threshold = 1000000")
        environ = {"TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host}
        args = ["whatif", "--rules", str(higher), "--deals", str(deal_id), "--json"]
        result = await asyncio.to_thread(CliRunner().invoke, app, args, env=environ)
        assert result.exit_code == 0, result.output
        # the JSON document first; the worker's shutdown may log after it (stderr is mixed in)
        body, _ = json.JSONDecoder().raw_decode(result.output[result.output.index("{") :])
        (deal,) = body["deals"]
        assert deal["deal_id"] == deal_id and deal["workflow_id"] == workflow_id
        assert deal["rules_version"]["was"] == rules.version
        assert [c["rule"] for c in deal["rules_changed"]] == ["contract_threshold"]
        # taken into work, the document set not yet chosen: the threshold changes nothing yet
        assert deal["changes"] == {}
        # read only: the live deal runs on, and the world said to it only what the test did
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        world = extract(await handle.fetch_history()).world
        assert [(e.kind, e.name) for e in world] == [("update", "accept_lead")]
