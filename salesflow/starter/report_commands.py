"""`salesflow report …`: figures from the deal board read model."""

from __future__ import annotations

import asyncio

import typer
from rich.table import Table

from salesflow.starter.deal_commands import console, read_board
from salesflow.store import board

app = typer.Typer(help="Reports from the deal board.", no_args_is_help=True)


@app.command()
def sla() -> None:
    """Deadlines met, missed and still open, per stage and manager."""
    rows = asyncio.run(read_board(board.sla))
    table = Table("stage", "manager", "met", "missed", "open", "missed %")
    for row in rows:
        closed = int(row["met"]) + int(row["missed"])
        share = f"{100 * int(row['missed']) / closed:.0f}" if closed else "—"
        table.add_row(
            str(row["stage"]),
            str(row["manager_id"] or "—"),
            str(row["met"]),
            str(row["missed"]),
            str(row["open"]),
            share,
        )
    console.print(table)
