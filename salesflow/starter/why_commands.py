"""`salesflow deal why <id>`: the deal's story, the chain behind a thing, what it waits for
(the `why` query of `DealWorkflow`, issue 15), in Russian."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from temporalio.client import Client, WorkflowQueryFailedError

from salesflow.starter.deal_commands import DealId, _fail, _run, _timezone, console
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.names import deal_workflow_id
from salesflow.workflows.why import WhyRequest, WhyView


class WhatChoice(StrEnum):
    task = "task"
    stage = "stage"
    deadline = "deadline"


def parse_at(text: str, timezone: str) -> datetime:
    """`--at`: ISO 8601 or «dd.mm.yyyy HH:MM»; without a zone, the portal's."""
    for parse in (datetime.fromisoformat, lambda t: datetime.strptime(t, "%d.%m.%Y %H:%M")):
        try:
            moment = parse(text)
        except ValueError:
            continue
        return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(timezone))
    raise ValueError(f"--at {text!r}: expected 2026-12-02T10:14 or «02.12.2026 10:14»")


def why(
    deal_id: DealId,
    at: Annotated[str, typer.Option(help="the story up to this moment (portal's zone)")] = "",
    what: Annotated[WhatChoice | None, typer.Option(help="the chain for this thing")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Why the deal is where it is: its decisions with rules and inputs (the `why` query)."""
    moment = None
    if at:
        try:
            moment = parse_at(at, _timezone())
        except ValueError as err:
            _fail(str(err))
    req = WhyRequest(at=moment, what=what.value if what else None)

    async def action(client: Client) -> WhyView:
        handle = client.get_workflow_handle(deal_workflow_id(deal_id))
        try:
            return await handle.query(DealWorkflow.why, req)
        except WorkflowQueryFailedError as err:
            # e.g. a worker older than the `why` query still runs the deal
            _fail(f"the deal did not answer `why`: {err}")
            raise

    view: WhyView = _run(action)
    if as_json:
        print(json.dumps(view.model_dump(mode="json"), ensure_ascii=False, indent=2))
        return
    print_why(view)


def print_why(view: WhyView) -> None:
    console.print(f"Сделка №{view.deal_id}", markup=False)
    for line in view.story:
        console.print(f"  {line}", markup=False, highlight=False)
    if view.chain:
        console.print("Цепочка:", markup=False)
        for line in view.chain:
            console.print(f"  {line}", markup=False, highlight=False)
    if view.waiting:
        console.print(view.waiting, markup=False, highlight=False)
