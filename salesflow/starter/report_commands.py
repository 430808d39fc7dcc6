"""`salesflow report …`: figures from the deal board read model and from the deals' decisions."""

from __future__ import annotations

import asyncio
import csv
import sys
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.table import Table
from temporalio.client import Client

from salesflow.starter.deal_commands import _run, console, read_board
from salesflow.store import board
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.why import DealSla

app = typer.Typer(help="Reports from the deal board.", no_args_is_help=True)

SLA_COLUMNS = (
    "manager_id",
    "stage",
    "deals",
    "business_hours",
    "business_hours_avg",
    "kp_rounds",
    "invoice_rounds",
    "escalations",
    "met",
    "missed",
    "dropped",
)
DEALS = "WorkflowType = 'DealWorkflow' AND ExecutionStatus != 'ContinuedAsNew'"  # last runs
TRANCHE_COLUMNS = ("deal_id", "manager_id", "tranche", "due", "paid_on", "days_late")


@app.command()
def sla(
    as_csv: Annotated[bool, typer.Option("--csv", help="the decisions' figures as CSV")] = False,
    limit: Annotated[int, typer.Option(help="at most this many deals asked")] = 1000,
) -> None:
    """Deadlines met, missed and still open per stage and manager (the board); and, from the
    deals' decisions (the `why` query): time in stage in business hours, КП and invoice
    rounds, escalations, deadlines met/missed/dropped (closed by a loss), days late per
    tranche."""
    if as_csv:
        write_csv(_run(lambda client: collect(client, limit)))
        return
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
    slas: list[DealSla] = _run(lambda client: collect(client, limit))
    decisions = Table(*SLA_COLUMNS, title="from the deals' decisions")
    for entry in sla_rows(slas):
        decisions.add_row(*(str(entry[c]) for c in SLA_COLUMNS))
    console.print(decisions)
    tranches = Table(*TRANCHE_COLUMNS, title="tranches")
    for entry in tranche_rows(slas):
        tranches.add_row(*(str(entry[c] if entry[c] is not None else "—") for c in TRANCHE_COLUMNS))
    console.print(tranches)


# One deal's query: a deal no worker serves (a stopped worker, a task queue nobody polls)
# answers nothing, and must not hold the report for the whole command's timeout.
QUERY_TIMEOUT = timedelta(seconds=3)


async def collect(client: Client, limit: int) -> list[DealSla]:
    """Each deal's SLA figures (`why` query; a closed deal answers it too), eight deals asked
    at a time. A deal that does not answer (a worker older than the query) is named on stderr
    and left out."""
    gate = asyncio.Semaphore(8)

    async def one(workflow_id: str, run_id: str | None) -> DealSla | None:
        async with gate:
            try:
                handle = client.get_workflow_handle(workflow_id, run_id=run_id)
                view = await handle.query(DealWorkflow.why, rpc_timeout=QUERY_TIMEOUT)
            except Exception as err:  # one deal's silence must not end the report
                print(f"{workflow_id}: no SLA figures ({err})", file=sys.stderr)
                return None
            return view.sla

    deals = [(wf.id, wf.run_id) async for wf in client.list_workflows(DEALS, limit=limit)]
    found = await asyncio.gather(*(one(w, r) for w, r in deals))
    return [s for s in found if s is not None]


def sla_rows(slas: list[DealSla]) -> list[dict[str, Any]]:
    """Per manager and stage: deals, business hours in the stage (sum, average), rounds,
    escalations, deadlines met / missed / dropped."""
    rows: dict[tuple[int, str], dict[str, Any]] = {}

    def row(manager: int | None, stage: str) -> dict[str, Any]:
        key = (manager or 0, stage)
        if key not in rows:
            rows[key] = {c: 0 for c in SLA_COLUMNS} | {"manager_id": manager or 0, "stage": stage}
            rows[key]["deal_ids"] = set()
        return rows[key]

    for s in slas:
        for st in s.stages:
            r = row(s.manager_id, st.stage)
            r["deal_ids"].add(s.deal_id)
            r["business_hours"] += st.business_minutes / 60
        if s.kp_rounds:
            row(s.manager_id, "KP")["kp_rounds"] += s.kp_rounds
        if s.invoice_rounds:
            row(s.manager_id, "INVOICE")["invoice_rounds"] += s.invoice_rounds
        for column, counts in (
            ("escalations", s.escalations),
            ("met", s.met),
            ("missed", s.missed),
            ("dropped", s.dropped),
        ):
            for stage, n in counts.items():
                row(s.manager_id, stage)[column] += n
    out = []
    for key in sorted(rows):
        r = rows[key]
        deals = len(r.pop("deal_ids"))
        r["deals"] = deals
        r["business_hours_avg"] = round(r["business_hours"] / deals, 1) if deals else 0
        r["business_hours"] = round(r["business_hours"], 1)
        out.append(r)
    return out


def tranche_rows(slas: list[DealSla]) -> list[dict[str, Any]]:
    return [
        {
            "deal_id": s.deal_id,
            "manager_id": s.manager_id or 0,
            "tranche": t.number,
            "due": t.due,
            "paid_on": t.paid_on,
            "days_late": t.days_late,
        }
        for s in slas
        for t in s.tranches
    ]


def write_csv(slas: list[DealSla]) -> None:
    """For BI: a `section` column (`stage` rows, then `tranche` rows) and both column sets."""
    columns = ("section", *SLA_COLUMNS, *TRANCHE_COLUMNS[2:], "deal_id")
    out = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore")
    out.writeheader()
    for r in sla_rows(slas):
        out.writerow({"section": "stage", **r})
    for r in tranche_rows(slas):
        out.writerow({"section": "tranche", **r})
