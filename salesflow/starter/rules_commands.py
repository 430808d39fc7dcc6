"""`salesflow rules …`: rule set versions, their differences, and moving running deals."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from salesflow.config.settings import ConfigError, load_settings
from salesflow.config.snapshot import rules_diff, rules_version
from salesflow.config.templates import Templates
from salesflow.config.temporal_client import connect
from salesflow.starter.deal_commands import operator_actor
from salesflow.starter.rules_migrate import Migration, migrate
from salesflow.starter.whatif_commands import parse_deals
from salesflow.whatif.run import new_rules
from salesflow.workflows.models import Actor, DealRules

app = typer.Typer(
    help="Rule set versions: show, diff, migrate running deals.", no_args_is_help=True
)
console = Console(soft_wrap=True)


def fail(message: str) -> None:
    console.print(message, style="red", markup=False, highlight=False)
    raise typer.Exit(2)


def load_rules(path: Path) -> DealRules:
    """A rule set from a configuration file (TOML) or a rules snapshot (JSON)."""
    if not path.is_file():
        fail(f"{path}: no such file")
    try:
        return new_rules(path)(None)
    except ConfigError as err:
        fail(str(err))
    raise AssertionError  # unreachable


def _short(value: Any) -> str:
    text = "—" if value is None else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "…"


@app.command()
def version(rules: Path) -> None:
    """The version of a rule set (a configuration file or a snapshot)."""
    typer.echo(rules_version(load_rules(rules)))


@app.command()
def diff(
    a: Path,
    b: Path,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The rules that differ between two rule sets (configuration files or snapshots)."""
    ra, rb = load_rules(a), load_rules(b)
    changes = rules_diff(ra, rb)
    if as_json:
        body = {
            "a": rules_version(ra),
            "b": rules_version(rb),
            "changes": [{"rule": k, "a": x, "b": y} for k, x, y in changes],
        }
        typer.echo(json.dumps(body, ensure_ascii=False, indent=2, default=str))
        return
    console.print(f"{rules_version(ra)} → {rules_version(rb)}", markup=False)
    table = Table("rule", str(a), str(b))
    for key, x, y in changes:
        table.add_row(key, _short(x), _short(y))
    console.print(table if changes else "no difference")


@app.command("migrate")
def migrate_command(
    to: Annotated[
        Path, typer.Option("--to", help="the rule set (configuration TOML or snapshot JSON)")
    ],
    deals: Annotated[str, typer.Option("--deals", help="deal ids, comma-separated")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check only, change nothing")] = False,
    as_user: Annotated[int, typer.Option("--as", help="the Bitrix24 user you act for")] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Move chosen running deals to another rule set (an update recorded in each deal's
    history); a deal whose current state the new rules make impossible is refused, with why."""
    new = load_rules(to)
    ids = parse_deals(deals)
    results = asyncio.run(_migrate(ids, new, dry_run, operator_actor(as_user)))
    if as_json:
        body = [dataclasses.asdict(r) | {"dry_run": dry_run} for r in results]
        typer.echo(json.dumps(body, ensure_ascii=False, indent=2))
    else:
        for r in results:
            if r.refused:
                verdict = f"refused: {r.refused}" + (f" ({r.code})" if r.code else "")
            else:
                verdict = "would migrate" if dry_run else "migrated"
            console.print(
                f"deal {r.deal_id}: {r.was} → {r.to} ({len(r.changed)} rules differ): {verdict}",
                markup=False,
                highlight=False,
            )
    if any(r.refused for r in results):
        raise typer.Exit(1)


async def _migrate(ids: list[int], new: DealRules, dry_run: bool, actor: Actor) -> list[Migration]:
    try:
        settings = load_settings()
        client = await connect(settings)
        texts = Templates(settings.templates, settings.deal_card.templates)
    except (ConfigError, RuntimeError) as err:
        fail(str(err))
    return [await migrate(client, deal_id, new, dry_run, actor, texts=texts) for deal_id in ids]
