"""`salesflow deal …`: a person's commands to a deal's workflow (updates) and its state (query)."""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from salesflow.config.settings import ConfigError, Settings, load_settings
from salesflow.config.templates import Templates
from salesflow.config.temporal_client import connect
from salesflow.store import board
from salesflow.store.db import database_engine, init_db
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import (
    AcceptLead,
    Actor,
    ApprovalDecision,
    DealView,
    DocumentsSigned,
    KpFeedback,
    LoseDeal,
    MoveStage,
    PaymentSchedule,
    RecordPayment,
    RejectLead,
    RequestTasks,
    Stage,
    StartProcess,
    UpdateAck,
)
from salesflow.workflows.names import deal_workflow_id
from salesflow.workflows.refusals import refusal_of, refusal_text

app = typer.Typer(
    help="Commands and queries for one deal's workflow (deal-<id>).", no_args_is_help=True
)
console = Console(soft_wrap=True)  # whole lines when output goes to a file
COMMAND_TIMEOUT = 30.0
M = TypeVar("M", bound=BaseModel)
DealId = Annotated[int, typer.Argument(help="the Bitrix24 deal ID")]


# The CLI's choices: the update models' Literals (tests/starter/test_deal_commands.py holds
# them equal).
class LoseReason(StrEnum):
    NO_MONEY = "NO_MONEY"
    COMPETITOR = "COMPETITOR"
    NOT_TARGET = "NOT_TARGET"
    NO_DECISION = "NO_DECISION"
    TOO_LONG = "TOO_LONG"
    OTHER = "OTHER"


class PaymentSource(StrEnum):
    MANUAL = "manual"
    ONEC = "1c"


class ProcessKind(StrEnum):
    IMPORT_ORDER = "import_order"
    PRODUCTION = "production"
    PURCHASING = "purchasing"


class DocumentKind(StrEnum):
    ACT = "act"
    UPD = "upd"
    INVOICE = "invoice"
    CONTRACT = "contract"


@app.callback()
def operator(
    ctx: typer.Context,
    as_user: int = typer.Option(
        0,
        "--as",
        envvar="SALESFLOW_OPERATOR",
        help="the Bitrix24 user ID you act for (recorded on each update; default: your OS user)",
    ),
) -> None:
    """Every update records who sent it (R-X10): the integrator's commands name the operator,
    handed to each command in its context (`ctx.obj`)."""
    ctx.obj = operator_actor(as_user)


def operator_actor(as_user: int = 0) -> Actor:
    """The CLI's actor: the Bitrix24 user given with --as, or the OS user (user_id 0)."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = "unknown"
    return Actor(user_id=as_user, name=f"{login} (CLI)", source="cli")


def with_operator(payload: M, operator: Actor | None) -> M:
    """The payload with the operator as its actor, unless it names one already."""
    if "actor" in type(payload).model_fields and getattr(payload, "actor", None) is None:
        return payload.model_copy(update={"actor": operator or operator_actor()})
    return payload


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(1)


def _run(action: Callable[[Client], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        try:
            settings = load_settings()
            client = await connect(settings)
        except ConfigError as err:
            _fail(str(err))
        except RuntimeError as err:
            _fail(f"cannot reach Temporal: {err}")
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                return await action(client)
        except TimeoutError:
            _fail(f"no answer within {COMMAND_TIMEOUT:.0f} s — is a worker running?")
        except WorkflowUpdateFailedError as err:
            _fail(refusal_message(err.cause or err, settings))
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                _fail("no workflow for this deal (has the relay seen it?)")
            _fail(err.message)

    return asyncio.run(go())


def refusal_message(cause: BaseException, settings: Settings) -> str:
    """A refused update as the CLI prints it: the Russian template of its code and the code
    (`refusal_code`); a failure without a code as its message."""
    found = refusal_of(cause)
    if found is None:
        return getattr(cause, "message", None) or str(cause)
    texts = Templates(settings.templates, settings.deal_card.templates)
    code, params = found
    return texts("refusal_code", text=refusal_text(code, params, texts), code=code)


@dataclass(frozen=True)
class Outcome:
    """What a command found: the deal's state, the stage before the command, whether it ended."""

    view: DealView
    before: str | None = None
    closed: str | None = None  # the workflow's closing status when the deal is finished


async def finished_deal(handle: WorkflowHandle[Any, Any]) -> Outcome | None:
    """A deal whose workflow has ended: its closing status and final state (a closed workflow
    still answers the `state` query), or None when there is no such workflow or it runs."""
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    if description.status in (None, WorkflowExecutionStatus.RUNNING):
        return None
    view = await handle.query(DealWorkflow.state)
    return Outcome(view=view, closed=description.status.name)


async def _finished_or_raise(handle: WorkflowHandle[Any, Any], err: RPCError) -> Outcome:
    if err.status != RPCStatusCode.NOT_FOUND:
        raise err
    outcome = await finished_deal(handle)
    if outcome is None:
        raise err
    return outcome


async def send_update(
    handle: WorkflowHandle[Any, Any],
    update: UpdateMethodMultiParam[[DealWorkflow, M], UpdateAck],
    payload: M,
) -> Outcome:
    """Send the update; the deal after the step the update makes it take (the workflow waits
    for that step, briefly, before it answers), or the deal closed meanwhile. The update's
    reply is a small `UpdateAck`; the deal is read with the `state` query after it."""
    try:
        before = (await handle.query(DealWorkflow.state)).stage
        await handle.execute_update(update, payload)
        view = await handle.query(DealWorkflow.state)
    except RPCError as err:
        return await _finished_or_raise(handle, err)
    return Outcome(view=view, before=before)


def update_reply(deal_id: int, outcome: Outcome, target: str | None = None) -> str:
    """The line a person reads after a command."""
    view = outcome.view
    if outcome.closed and outcome.before is None:
        return (
            f"deal {deal_id} is closed (workflow {outcome.closed.lower()}) at stage"
            f" [bold]{view.stage}[/bold]; nothing more can be done in it"
        )
    if outcome.closed:
        return f"deal {deal_id}: closed at stage [bold]{view.stage}[/bold]"
    if target is not None and view.stage != target:
        return f"deal {deal_id}: stage [bold]{view.stage}[/bold], moving to {target}"
    if outcome.before is not None and view.stage != outcome.before:
        return f"deal {deal_id}: moved from {outcome.before} to [bold]{view.stage}[/bold]"
    return f"deal {deal_id}: stage [bold]{view.stage}[/bold]"


def _update(
    operator: Actor | None,
    deal_id: int,
    update: UpdateMethodMultiParam[[DealWorkflow, M], UpdateAck],
    payload: M,
    target: str | None = None,
) -> None:
    payload = with_operator(payload, operator)

    async def action(client: Client) -> Outcome:
        handle = client.get_workflow_handle(deal_workflow_id(deal_id))
        return await send_update(handle, update, payload)

    outcome: Outcome = _run(action)
    console.print(update_reply(deal_id, outcome, target))
    if outcome.closed and outcome.before is None:
        print_view(outcome.view, _timezone())


def _timezone() -> str:
    try:
        return load_settings().rules.timezone
    except ConfigError:
        return Settings().rules.timezone


def format_when(moment: datetime | None, timezone: str) -> str:
    """dd.mm.yyyy HH:MM in the portal's time zone, the zone named."""
    if moment is None:
        return ""
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local:%d.%m.%Y %H:%M} {timezone}"


def _model(factory: Callable[[], M]) -> M:
    try:
        return factory()
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        _fail(problems)
        raise


@app.command()
def accept(
    ctx: typer.Context,
    deal_id: DealId,
    manager: Annotated[int, typer.Option(help="Bitrix24 user ID")],
) -> None:
    """Take the lead into work (R-NEW-2/3): the manager becomes responsible."""
    _update(
        ctx.obj, deal_id, DealWorkflow.accept_lead, _model(lambda: AcceptLead(manager_id=manager))
    )


@app.command()
def reject(
    ctx: typer.Context,
    deal_id: DealId,
    reason: Annotated[str, typer.Option(help="why the lead is rejected")],
) -> None:
    """Reject the lead with a reason (R-NEW-2)."""
    _update(ctx.obj, deal_id, DealWorkflow.reject_lead, _model(lambda: RejectLead(reason=reason)))


@app.command()
def lose(
    ctx: typer.Context,
    deal_id: DealId,
    reason: Annotated[LoseReason, typer.Option(help="why the deal is lost")],
    comment: Annotated[str, typer.Option(help="required for OTHER")] = "",
) -> None:
    """Lose the deal at any stage (R-LOSE-1, R-X8)."""
    _update(
        ctx.obj,
        deal_id,
        DealWorkflow.lose_deal,
        _model(
            lambda: LoseDeal.model_validate({"reason": reason.value, "comment": comment or None})
        ),
    )


@app.command("kp-feedback")
def kp_feedback(
    ctx: typer.Context,
    deal_id: DealId,
    agreed: Annotated[bool, typer.Option("--agreed/--not-agreed", help="the client's answer")],
    comment: Annotated[str, typer.Option(help="what the client said")] = "",
) -> None:
    """The client's answer on the КП (R-KP-4): not agreed starts another round."""
    _update(
        ctx.obj,
        deal_id,
        DealWorkflow.kp_feedback,
        _model(lambda: KpFeedback(agreed=agreed, comment=comment or None)),
    )


@app.command()
def approval(
    ctx: typer.Context,
    deal_id: DealId,
    approved: Annotated[bool, typer.Option("--approve/--reject", help="the internal decision")],
    comment: Annotated[str, typer.Option(help="required for a rejection")] = "",
) -> None:
    """The internal approval of the invoice/contract (R-KP-6/7), as «Согласование» would."""
    _update(
        ctx.obj,
        deal_id,
        DealWorkflow.approval_decision,
        _model(lambda: ApprovalDecision(approved=approved, comment=comment or None)),
    )


@app.command()
def pay(
    ctx: typer.Context,
    deal_id: DealId,
    amount: Annotated[float, typer.Option(help="roubles")],
    paid_on: Annotated[str, typer.Option("--date", help="YYYY-MM-DD")],
    source: Annotated[PaymentSource, typer.Option(help="who saw the money")] = (
        PaymentSource.MANUAL
    ),
) -> None:
    """Record a payment (R-INV-3, R-PS-1)."""
    _update(
        ctx.obj,
        deal_id,
        DealWorkflow.record_payment,
        _model(
            lambda: RecordPayment.model_validate(
                {"amount": amount, "paid_on": paid_on, "source": source.value}
            )
        ),
    )


@app.command()
def schedule(
    ctx: typer.Context,
    deal_id: DealId,
    tranches: Annotated[list[str], typer.Argument(help="PERCENT:YYYY-MM-DD, e.g. 50:2026-12-10")],
) -> None:
    """Set the payment schedule (R-LA-1): percents summing to 100 with due dates."""
    parsed = []
    for item in tranches:
        percent, _, due = item.partition(":")
        if not due:
            _fail(f"{item!r}: write PERCENT:YYYY-MM-DD")
        parsed.append({"percent": percent, "due": due})
    _update(
        ctx.obj,
        deal_id,
        DealWorkflow.set_payment_schedule,
        _model(lambda: PaymentSchedule.model_validate({"tranches": parsed})),
    )


@app.command("request-tasks")
def request_tasks(
    ctx: typer.Context,
    deal_id: DealId,
    engineers: bool = False,
    purchasing: bool = False,
    logistics: bool = False,
    production: bool = False,
    lawyer: bool = False,
    metrologist: bool = False,
) -> None:
    """Ask services for tasks (R-X6); logistics is mirrored into 1C."""
    _update(
        ctx.obj,
        deal_id,
        DealWorkflow.request_tasks,
        _model(
            lambda: RequestTasks(
                engineers=engineers,
                purchasing=purchasing,
                logistics=logistics,
                production=production,
                lawyer=lawyer,
                metrologist=metrologist,
            )
        ),
    )


@app.command()
def process(
    ctx: typer.Context,
    deal_id: DealId,
    kind: Annotated[ProcessKind, typer.Argument(help="the sub-process")],
) -> None:
    """Start a tracked sub-process (R-X7)."""
    _update(
        ctx.obj,
        deal_id,
        DealWorkflow.start_process,
        _model(lambda: StartProcess.model_validate({"kind": kind.value})),
    )


@app.command()
def signed(
    ctx: typer.Context,
    deal_id: DealId,
    kind: Annotated[DocumentKind, typer.Argument(help="the signed document")],
) -> None:
    """A document was signed by the client (R-SH-3, R-INV-F)."""
    _update(
        ctx.obj,
        deal_id,
        DealWorkflow.documents_signed,
        _model(lambda: DocumentsSigned.model_validate({"kind": kind.value})),
    )


@app.command()
def move(
    ctx: typer.Context,
    deal_id: DealId,
    to: Annotated[Stage, typer.Argument(help="stage code", case_sensitive=False)],
) -> None:
    """Move the deal as a person would in Bitrix24; required fields are checked (R-X3)."""
    _update(
        ctx.obj,
        deal_id,
        DealWorkflow.move_stage,
        _model(lambda: MoveStage.model_validate({"to": to.value})),
        target=to.value,
    )


@app.command()
def status(deal_id: DealId, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The deal's process state (the `state` query)."""

    async def action(client: Client) -> Outcome:
        handle = client.get_workflow_handle(deal_workflow_id(deal_id))
        finished = await finished_deal(handle)
        if finished is not None:
            return finished
        return Outcome(view=await handle.query(DealWorkflow.state))

    outcome: Outcome = _run(action)
    view = outcome.view
    if as_json:
        data = view.model_dump(mode="json")
        if outcome.closed:
            data["closed"] = outcome.closed
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    if outcome.closed:
        console.print(update_reply(deal_id, outcome))
    print_view(view, _timezone())


def print_view(view: DealView, timezone: str) -> None:
    """The deal's state as tables; times in the portal's zone."""
    console.print(
        f"deal {view.deal_id}: stage [bold]{view.stage}[/bold], manager {view.manager_id or '—'},"
        f" amount {view.amount:,.2f}"
    )
    table = Table("open task", "task id", "responsible", "deadline")
    for task in view.open_tasks:
        table.add_row(
            task.title,
            str(task.task_id),
            str(task.responsible_id),
            format_when(task.deadline, timezone),
        )
    console.print(table)
    deadlines = Table("deadline", "due", "overdue")
    for d in view.deadlines:
        deadlines.add_row(d.name, format_when(d.due, timezone), "yes" if d.overdue else "")
    console.print(deadlines)
    history = Table("when", "stage", "cause")
    for h in view.history:
        history.add_row(format_when(h.at, timezone), h.stage, h.cause)
    console.print(history)


@app.command("list")
def list_deals(
    stage: str = typer.Option("", help="only deals at this stage code"),
    limit: int = typer.Option(50),
    temporal: bool = typer.Option(False, "--temporal", help="ask Temporal visibility instead"),
) -> None:
    """Deals with stage, manager, amount, next deadline (from the deal board read model)."""
    if temporal:
        _list_from_visibility(stage, limit)
        return
    rows = asyncio.run(
        read_board(lambda engine: board.list_deals(engine, stage.upper() or None, limit))
    )
    timezone = _timezone()
    table = Table("deal", "title", "stage", "manager", "amount", "next deadline", "overdue")
    for row in rows:
        table.add_row(
            str(row.deal_id),
            row.title,
            row.stage,
            str(row.manager_id or ""),
            f"{row.amount:,.2f}",
            format_when(row.next_due, timezone),
            "yes" if row.overdue else "",
        )
    console.print(table)


async def read_board(read: Callable[[Any], Awaitable[Any]]) -> Any:
    try:
        settings = load_settings()
    except ConfigError as err:
        _fail(str(err))
    engine = database_engine(settings.database)
    try:
        await init_db(engine)
        return await read(engine)
    finally:
        await engine.dispose()


def _list_from_visibility(stage: str, limit: int) -> None:
    query = "WorkflowType = 'DealWorkflow'"
    if stage:
        query += f" AND DealStage = '{stage.upper()}'"

    async def action(client: Client) -> list[Any]:
        return [wf async for wf in client.list_workflows(query, limit=limit)]

    rows = _run(action)
    table = Table("workflow", "status", "stage", "manager", "amount", "overdue")
    for wf in rows:
        attrs = {key.name: value for key, value in _attributes(wf)}
        table.add_row(
            wf.id,
            wf.status.name if wf.status else "",
            str(attrs.get("DealStage", "")),
            str(attrs.get("DealManager", "")),
            str(attrs.get("DealAmount", "")),
            "yes" if attrs.get("DealOverdue") else "",
        )
    console.print(table)


def _attributes(wf: Any) -> list[tuple[Any, Any]]:
    return [(pair.key, pair.value) for pair in wf.typed_search_attributes]
