"""The workflow ↔ 1C activities contract and the `LogistTaskMirror` child's messages.

Plain pydantic models (JSON on the wire). Money is `float` rounded to kopecks, as
`DealSnapshot.amount`; dates are the base's wall-clock dates read as aware datetimes.
Activity names are constants so workflow code can call them by name without importing
`activities/` (which does I/O).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Literal

from pydantic import Field, model_validator

from salesflow.workflows.models import Carried

# ---- activity names ----------------------------------------------------------------------

LOAD_KP_INTO_DEAL = "load_kp_into_deal"
CREATE_ONEC_TASK = "create_onec_task"
READ_ONEC_TASK = "read_onec_task"
CANCEL_ONEC_TASK = "cancel_onec_task"
SET_ONEC_TASK_DEADLINE = "set_onec_task_deadline"
REFLECT_TASK_PROGRESS = "reflect_task_progress"
FIND_INVOICE_PAYMENTS = "find_invoice_payments"
FETCH_CLOSING_DOCUMENTS = "fetch_closing_documents"

LOGIST_TASK_MIRROR = "LogistTaskMirror"


# ---- КП → deal product rows (R-KP-2) -----------------------------------------------------


class LoadKpRequest(Carried):
    """Load the КП's lines into the deal. `kp_number`/`direction` None: read from the deal
    (fields `portal.fields.kp` and `portal.fields.direction`)."""

    key: str
    deal_id: int
    kp_number: str | None = None
    direction: str | None = None


class KpLine(Carried):
    line: int
    nomenclature_ref: str
    name: str
    article: str = ""
    unit: str = ""
    unit_code: int | None = None
    quantity: float
    price: float
    amount: float
    vat_rate: float | None = None


class LoadKpResult(Carried):
    """`loaded`: the deal's product rows are the КП's lines (False: non-Russian direction,
    the rows' prices left alone, their nomenclature taken from 1C, a timeline comment says
    so). `changed`: this call wrote to Bitrix24."""

    loaded: bool
    changed: bool
    kp_number: str
    kp_ref: str | None = None
    amount: float = 0.0
    lines: list[KpLine] = Field(default_factory=list)
    comment: str | None = None
    # R-KP-2, non-Russian direction: the rows' 1C nomenclature (`lines`: article, name, unit
    # from 1C; no prices) and the rows 1C has no nomenclature for.
    unmatched: list[str] = Field(default_factory=list)


# ---- the logist's task mirrored into 1C (R-X6, R-AC-3) -----------------------------------


class CreateOneCTaskRequest(Carried):
    """A Task_ЗадачаИсполнителя for the logist; its Ref_Key is derived from `key` (standard
    attributes only; the optional extension also stores `key` in ИдентификаторБитрикс24)."""

    key: str
    deal_id: int
    bitrix_task_id: int
    title: str
    description: str = ""
    deadline: datetime | None = None
    responsible_id: int = 0  # the Bitrix24 user of the task, only for the link to it
    executor: str | None = None  # a 1C user (name or Ref_Key); None: settings.onec.logist_user


class CancelOneCTaskRequest(Carried):
    """The logist's 1C task (created with `key`) withdrawn: the deal was lost (compensation).
    `reason` is added to its РезультатВыполнения."""

    key: str
    reason: str


class OneCTaskDeadlineRequest(Carried):
    """The logist's 1C task (created with `key`) gets `deadline` as its СрокИсполнения: the
    mirrored Bitrix24 task's DEADLINE was moved by a person (fin14)."""

    key: str
    deadline: datetime


class OneCTaskStatus(Carried):
    """What 1C shows of the task; `comments` are the lines of РезультатВыполнения."""

    ref: str
    executed: bool
    accepted: bool
    comments: list[str] = Field(default_factory=list)
    executed_at: datetime | None = None


class ReflectProgressRequest(Carried):
    key: str
    bitrix_task_id: int
    status: OneCTaskStatus
    new_comments: list[str] = Field(default_factory=list)


class ReflectProgressResult(Carried):
    comments_added: int = 0
    started: bool = False
    completed: bool = False


class PollSchedule(Carried):
    """How `LogistTaskMirror` polls 1C: `first`, times `factor` after each quiet poll, at most
    `longest`; back to `first` when something changed. `polls_per_run` bounds one run's
    history (continue-as-new also happens whenever the server suggests it)."""

    first: timedelta = timedelta(minutes=1)
    factor: float = Field(2.0, ge=1.0)
    longest: timedelta = timedelta(minutes=30)
    polls_per_run: int = Field(500, ge=1)


class MirrorProgress(Carried):
    """The mirror's state, carried through continue-as-new."""

    ref: str | None = None
    mirrored: list[str] = Field(default_factory=list)
    started: bool = False
    delay: timedelta | None = None
    polls: int = 0
    reflect_error: str | None = None  # Bitrix24 refused for good: 1C is still followed
    told: bool = False  # a 1C configuration problem creating the task was told to the РОП


class LogistMirrorInput(Carried):
    """Input of `LogistTaskMirror`. `report_signal`: when set, the result is also signalled
    to the parent workflow under that name (it survives the parent's continue-as-new)."""

    deal_id: int
    bitrix_task_id: int
    key: str
    title: str
    description: str = ""
    deadline: datetime | None = None
    responsible_id: int = 0
    executor: str | None = None
    poll: PollSchedule = Field(default_factory=PollSchedule)
    report_signal: str | None = None
    progress: MirrorProgress | None = None
    # A 1C configuration problem creating the task: who is told (once), with what text
    # (`{problem}` is replaced by 1C's refusal), and how often creating is retried (or at once
    # on the `onec_configuration_fixed` signal).
    rop_id: int | None = None
    config_problem_text: str = ""
    config_retry: timedelta = timedelta(hours=1)


class LogistMirrorResult(Carried):
    """`error`: why the 1C task could not be created (then the mirror fails after reporting),
    or why progress could no longer be shown in Bitrix24 (e.g. the task was deleted)."""

    key: str
    bitrix_task_id: int
    ref: str = ""
    executed: bool
    comments: list[str] = Field(default_factory=list)
    error: str | None = None


# ---- payments (R-INV-3, R-PS-1) ----------------------------------------------------------


class FindPaymentsRequest(Carried):
    """Incoming payments for one invoice (by 1C Ref_Key or Number), optionally since a date."""

    invoice_ref: str | None = None
    invoice_number: str | None = None
    since: datetime | None = None
    # also the unposted and deletion-marked documents (Posted/DeletionMark say which), so that a
    # payment 1C took back is reversed in the ledger (issue 14 item 3)
    include_void: bool = False

    @model_validator(mode="after")
    def _invoice_named(self) -> FindPaymentsRequest:
        if not (self.invoice_ref or (self.invoice_number or "").strip()):
            raise ValueError("give invoice_ref or invoice_number")
        return self


class Payment(Carried):
    """`amount`: the part of the payment document allotted to this invoice."""

    ref: str
    number: str
    paid_on: date
    amount: float
    incoming_number: str = ""
    posted: bool = True  # the document's Posted
    deleted: bool = False  # the document's DeletionMark


# ---- closing documents (R-SH-3) ----------------------------------------------------------


class ClosingDocsRequest(Carried):
    """Closing documents based on an invoice (Ref_Key or Number) or issued to a counterparty
    (INN); with both, documents of either kind of link are returned once, and an invoice
    number 1C does not know is ignored (without an INN it is an error)."""

    inn: str | None = None
    invoice_ref: str | None = None
    invoice_number: str | None = None
    since: datetime | None = None

    @model_validator(mode="after")
    def _something_named(self) -> ClosingDocsRequest:
        if not (self.inn or self.invoice_ref or self.invoice_number):
            raise ValueError("give inn, invoice_ref or invoice_number")
        return self


class ClosingDocument(Carried):
    """`signed`: always False from a standard base (no ЭДО state on its documents): «signed»
    comes from Bitrix24 (docs/ONEC.md); kept for the shape of recorded histories."""

    kind: Literal["upd", "act"]
    ref: str
    number: str
    date: date
    signed: bool
    amount: float
