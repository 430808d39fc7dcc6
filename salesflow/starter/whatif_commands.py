"""`salesflow whatif`: past deals replayed under new rules (issue 15); nothing live is touched."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from temporalio.client import Client

from salesflow.config.settings import ConfigError, load_settings
from salesflow.config.temporal_client import connect
from salesflow.whatif.diff import LISTS, SCALARS, totals
from salesflow.whatif.extract import Recording, extract, load_history_file
from salesflow.whatif.run import DealReport, new_rules, report_json, what_if
from salesflow.workflows.names import deal_workflow_id

console = Console(soft_wrap=True)
MAX_DEALS = 500  # one `--since` never replays more deals than this


def fail(message: str) -> None:
    console.print(message, style="red", markup=False, highlight=False)
    raise typer.Exit(2)


def parse_deals(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"--deals: comma-separated deal ids, not {text!r}") from None
    if not ids:
        raise typer.BadParameter("--deals: at least one deal id")
    return ids


async def fetch_recordings(client: Client, deals: list[int], since: date | None) -> list[Recording]:
    """The deals' histories from the configured namespace (read only)."""
    ids = [deal_workflow_id(d) for d in deals]
    if since is not None:
        query = f"WorkflowType = 'DealWorkflow' AND StartTime >= '{since.isoformat()}T00:00:00Z'"
        ids += [wf.id async for wf in client.list_workflows(query, limit=MAX_DEALS)]
    recordings = []
    for workflow_id in dict.fromkeys(ids):
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        recordings.append(extract(history))
    return recordings


def whatif(
    rules: Annotated[
        Path, typer.Option("--rules", help="the new configuration (TOML) or rules snapshot (JSON)")
    ],
    deals: Annotated[str, typer.Option("--deals", help="deal ids, comma-separated")] = "",
    since: Annotated[
        str, typer.Option("--since", help="deals started on or after this date (YYYY-MM-DD)")
    ] = "",
    history: Annotated[
        list[Path] | None,
        typer.Option("--history", help="a recorded history (JSON) instead of Temporal; repeatable"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What new rules would have changed in past deals: each deal's history is replayed
    through DealWorkflow on a private time-skipping server, with its own rules and with the
    new ones; Bitrix24, 1C and the live namespace are not touched."""
    try:
        rules_for = new_rules(rules)
    except ConfigError as err:
        fail(str(err))
    since_day: date | None = None
    if since:
        try:
            since_day = date.fromisoformat(since)
        except ValueError:
            fail(f"--since: a date YYYY-MM-DD, not {since!r}")
    deal_ids = parse_deals(deals) if deals else []
    if not (history or deal_ids or since_day):
        fail("say which deals: --deals 1,2,3, --since YYYY-MM-DD or --history file.json")
    try:
        recordings = [load_history_file(path) for path in history or []]
    except ValueError as err:
        fail(str(err))
    reports = asyncio.run(_whatif(recordings, deal_ids, since_day, rules_for))
    if as_json:
        typer.echo(report_json(reports))
    else:
        print_reports(reports)


async def _whatif(
    recordings: list[Recording], deals: list[int], since: date | None, rules_for: Any
) -> list[DealReport]:
    if deals or since:
        try:
            client = await connect(load_settings())
        except (ConfigError, RuntimeError) as err:
            fail(str(err))
        recordings += await fetch_recordings(client, deals, since)
    return await what_if(recordings, rules_for)


def _rows(change: dict[str, Any]) -> tuple[str, str]:
    """(was, would be) cells of one difference."""
    if "was" in change:
        return str(change["was"]), str(change["would_be"])
    return "\n".join(change["gone"]) or "—", "\n".join(change["added"]) or "—"


def print_reports(reports: list[DealReport]) -> None:
    table = Table("deal", "what", "was", "would be", show_lines=True)
    for report in reports:
        for name in (*SCALARS, *LISTS):
            change = report.diff.changes.get(name)
            if change is not None:
                table.add_row(str(report.deal_id), name.replace("_", " "), *_rows(change))
        if not report.diff.changed:
            table.add_row(str(report.deal_id), "no difference", "", "")
    console.print(table)
    for report in reports:
        changed = [k for k, a, _ in report.rules_changed if a is not None]
        console.print(
            f"deal {report.deal_id}: rules {report.version_was} → {report.version_would_be}"
            f" ({len(changed)} changed: {', '.join(changed[:8]) or '—'})",
            markup=False,
        )
        for note in report.diff.notes:
            console.print(f"  note: {note}", markup=False)
    total = totals([r.diff for r in reports])
    console.print(
        "total: " + ", ".join(f"{k} {v}" for k, v in total.items()), markup=False, highlight=False
    )
