"""Messages and state of `DealWorkflow`: plain pydantic models, JSON on the wire."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from salesflow.config.templates import DEFAULT_TEMPLATES


class Stage(StrEnum):
    """The «Продажа» pipeline's stages in order (PIPELINE.md); the values are the codes that
    histories, the CLI and the contract carry."""

    NEW = "NEW"
    IN_WORK = "IN_WORK"
    KP = "KP"
    CONTRACT = "CONTRACT"
    INVOICE = "INVOICE"
    LAUNCH = "LAUNCH"
    ACCEPTED = "ACCEPTED"
    TO_SHIP = "TO_SHIP"
    SHIPPED = "SHIPPED"
    WON = "WON"
    LOSE = "LOSE"


FINAL_STAGES: frozenset[Stage] = frozenset({Stage.WON, Stage.LOSE})
# The pipeline's forward order; LOSE can be reached from any stage.
STAGE_ORDER: tuple[Stage, ...] = tuple(code for code in Stage if code is not Stage.LOSE)


class Carried(BaseModel):
    """A message carried in workflow history and through continue-as-new. Fields it does not
    know are ignored: during a rolling deploy an older worker reads a newer worker's state."""

    model_config = ConfigDict(extra="ignore")


# ---- the rules snapshot carried in the input ---------------------------------------------


class DeadlineRule(Carried):
    minutes: int
    working_time: bool = True


class CalendarSnapshot(Carried):
    """Non-working dates and transferred working weekend dates of the RU production calendar."""

    holidays: list[date] = Field(default_factory=list)
    workdays: list[date] = Field(default_factory=list)
    first_year: int
    last_year: int


class PeopleRules(Carried):
    rop: int
    managers: list[int]
    logist: int
    services: dict[str, int]
    director: int = 0  # the last rung of the reminder ladder (R-X4); 0: none


ReminderRung = Literal["manager", "rop", "director"]
LADDER: tuple[ReminderRung, ...] = ("manager", "rop", "director")


class ReminderRules(Carried):
    """R-X4 reminders after a deadline has passed: at an interval per deadline kind, only in
    working hours of business days (R-X9) unless switched off, at most `daily_cap` a day per
    deadline (0: no cap), to a ladder: `ladder_step` reminders per rung, then the next rung
    joins (manager → РОП → director)."""

    interval_minutes: dict[str, int] = Field(default_factory=dict)
    working_hours_only: bool = True
    daily_cap: int = 4
    ladder: list[ReminderRung] = Field(default_factory=lambda: list(LADDER))
    ladder_step: int = 2


class ApprovalRules(Carried):
    entity_type_id: int
    category_id: int
    stage_new: str
    stage_approved: str
    stage_rejected: str
    poll_minutes: float  # an int in histories recorded before: the same timer


class DealRules(Carried):
    # The rule set's version (`salesflow.config.snapshot.rules_version`) and optional name
    # (`rules.name`); "" in snapshots built before versions existed.
    version: str = ""
    name: str = ""
    category_id: int
    engineers_category_id: int
    approval: ApprovalRules
    stages: dict[str, str]
    fields: dict[str, str]
    enums: dict[str, dict[str, int]]
    people: PeopleRules
    timezone: str
    work_start: str
    work_end: str
    deadlines: dict[str, DeadlineRule]
    kp_agreement_business_days: int
    reminder_interval_minutes: int
    reminders: ReminderRules = Field(default_factory=lambda: ReminderRules())
    payment_round_business_days: int = 3
    payment_reminder_days_before: int = 2
    payment_overdue_reminder_hours: int = 24
    payment_match_days: int = 3  # a person's payment and 1C's within this many days are one
    payment_control_after_won: bool = False  # R-PS-1: open tranches chased after WON
    onec_poll_seconds: int = 3600
    # Next round after the objection task (field_intents). The settings default is on; a snapshot
    # from before the field (an older deal, a recorded history) keeps the earlier behaviour: off.
    rework_before_next_round: bool = False
    onec_task_poll_seconds: int = 60
    contract_threshold: float
    invoice_contract_threshold: float
    onec_outage_notify_minutes: int = 30
    onec_config_retry_minutes: int = 60  # a 1C step refused as a configuration problem
    accountant_email: str = "buh@example.ru"
    # RUB per unit of a deal's CURRENCY_ID, for the thresholds of R-KP-5 (deal_changes.py)
    currency_rates: dict[str, float] = Field(default_factory=dict)
    people_refresh_minutes: int = 60  # people read when used (people_lookup.py)
    reopen: Literal["refuse", "new_run"] = "refuse"  # a deal moved back from WON/LOSE
    feedback_form_url: str = ""  # R-WON-1: the Bitrix24 CRM form the WON message links to
    calendar: CalendarSnapshot
    # the configured calendar overrides (in `calendar` too): a rule, where the calendar is data
    extra_holidays: list[str] = Field(default_factory=list)
    extra_workdays: list[str] = Field(default_factory=list)
    templates: dict[str, str]
    # Issue 16 item 3: a snapshot built with `lean_templates` (config/snapshot.build_rules)
    # carries in history only the templates that differ from the code's defaults
    # (config/templates.DEFAULT_TEMPLATES); the others are filled in from the defaults of the
    # code that reads it — so a deal running when a default text changes uses the new text
    # (replay does not compare activity inputs). Snapshots without the flag (older deals,
    # recorded histories) carry and read every template as before.
    lean_templates: bool = False

    @model_validator(mode="after")
    def _defaults_filled_in(self) -> DealRules:
        if self.lean_templates:
            self.templates = {**DEFAULT_TEMPLATES, **self.templates}
        return self

    @field_serializer("templates")
    def _only_what_differs(self, templates: dict[str, str]) -> dict[str, str]:
        if not self.lean_templates:
            return templates
        return {k: v for k, v in templates.items() if DEFAULT_TEMPLATES.get(k) != v}

    def stage_code(self, status_id: str) -> str | None:
        for code, portal_id in self.stages.items():
            if portal_id == status_id:
                return code
        return None


# ---- workflow input, signals, updates ----------------------------------------------------


class Bitrix24Event(Carried):
    event: str
    entity_id: int
    ts: int = 0


class Actor(Carried):
    """Who sent a person's command (R-X10): the Bitrix24 user, from the deal card or the CLI.
    Optional on every update (None: not known, as in histories recorded before it)."""

    user_id: int
    name: str = ""
    source: Literal["bitrix24", "cli"] = "bitrix24"


class HistoryEntry(Carried):
    at: datetime
    stage: str
    cause: str  # English, for the integrator (with `code`: causes.CAUSES[code] filled in)
    actor: Actor | None = None  # the person whose command caused it (R-X10); None: automation
    code: str = ""  # the cause's code (causes.py); the tab shows the template cause_<code>
    params: dict[str, str | int | float] = Field(default_factory=dict)


class OpenTask(Carried):
    key: str
    task_id: int
    title: str
    responsible_id: int
    deadline: datetime | None = None


class TaskSnapshot(Carried):
    """What `read_task` returns of a Bitrix24 task (tasks.task.get): its STATUS code, its
    DEADLINE (None: none), its responsible, and who closed it (CLOSED_BY; 0: open/unknown)."""

    task_id: int
    status: str
    deadline: datetime | None = None
    responsible_id: int = 0
    closed_by: int = 0
    closed_by_name: str = ""


class TaskDeadlineRequest(Carried):
    """An automatic task's DEADLINE rewritten because the deal field it follows moved
    (fin14, tasks.task.update DEADLINE)."""

    task_id: int
    deadline: datetime


class Deadline(Carried):
    """A running deadline. Those watched beside the stage (R-X4) say what they watch: the
    stage they end with, or the task / child workflow whose completion ends them."""

    name: str
    due: datetime
    overdue: bool = False
    what: str = ""
    kind: str = ""
    stage: str = ""
    task_id: int | None = None
    workflow_id: str | None = None
    responsible_id: int | None = None
    # issue 14 item 2 (deadlines.py): what the due follows — a deal field (its last seen raw
    # value in `basis`) and/or the DEADLINE of the task `task_key` moved by a person
    field: str = ""
    basis: str = ""
    task_key: str = ""
    # fin14: further tasks sharing this due (the Акт and УПД tasks of `closing_documents`)
    more_task_keys: list[str] = Field(default_factory=list)


class DealSnapshot(Carried):
    """What the workflow last read of the deal in Bitrix24."""

    id: int
    title: str = ""
    stage_id: str = ""
    category_id: int = 0
    assigned_by_id: int = 0
    assigned_by_name: str = ""  # the responsible's full name, for the integrator's views
    moved_by_name: str = ""  # MOVED_BY_ID's (else MODIFY_BY_ID's) full name: who moved it last
    amount: float = 0.0
    fields: dict[str, str | list[str] | None] = Field(default_factory=dict)


# ---- updates of the later stages (CONTRACT.md) -------------------------------------------


class KpFeedback(Carried):
    agreed: bool
    comment: str | None = None
    actor: Actor | None = None


class ApprovalDecision(Carried):
    approved: bool
    comment: str | None = None
    actor: Actor | None = None


class RecordPayment(Carried):
    amount: float = Field(gt=0, le=1e12)
    paid_on: date
    source: Literal["1c", "manual"] = "manual"
    actor: Actor | None = None


class Tranche(Carried):
    percent: float
    due: date


class PaymentSchedule(Carried):
    tranches: list[Tranche]
    actor: Actor | None = None


class RequestTasks(Carried):
    engineers: bool = False
    purchasing: bool = False
    logistics: bool = False
    production: bool = False
    lawyer: bool = False
    metrologist: bool = False
    actor: Actor | None = None


class StartProcess(Carried):
    kind: Literal["import_order", "production", "purchasing"]
    actor: Actor | None = None


class ClosePayments(Carried):
    """The РОП ends the payment control of a won deal with tranches still open (R-PS-1)."""

    comment: str = Field(min_length=1)
    actor: Actor | None = None


class DocumentsSigned(Carried):
    kind: Literal["act", "upd", "invoice", "contract"]
    actor: Actor | None = None


class MigrateRules(Carried):
    """`salesflow rules migrate`: the running deal takes this rules snapshot from now on."""

    rules: DealRules
    actor: Actor | None = None


class MoveStage(Carried):
    """A person moves the deal (as dragging it in Bitrix24 would); same rules as R-X3."""

    to: Stage
    actor: Actor | None = None


class TrancheState(Carried):
    number: int
    percent: float
    due: date
    amount: float
    paid: float = 0.0
    state: Literal["planned", "reminded", "overdue", "paid"] = "planned"
    paid_on: date | None = None


class ProcessState(Carried):
    kind: str
    workflow_id: str
    state: Literal["running", "done", "failed", "cancelled"] = "running"


class PaymentRecord(Carried):
    """A payment in the deal's ledger (R-PS-1). `document`: the 1C payment document it is
    (or was matched to); `matched`: a person's record and 1C's are this one payment."""

    amount: float
    paid_on: date
    source: str
    document: str = ""
    matched: bool = False


class Decision(Carried):
    """One decision the deal's workflow took (issue 15): when (workflow time), which rule (a
    PIPELINE.md id and the configuration key), the inputs it read, the outcome, who acted."""

    seq: int
    when: datetime
    kind: str  # decisions.KINDS
    stage: str = ""
    rule: str = ""  # R-… of PIPELINE.md
    key: str = ""  # the configuration key the rule reads (rules.…)
    subject: str = ""  # what it is about: a task's purpose, a deadline's name, a stage
    inputs: dict[str, str] = Field(default_factory=dict)
    outcome: str = ""
    actor: Actor | None = None


class DecisionLog(Carried):
    """The deal's decisions, bounded: the last entries in full, older ones as counts per kind
    (and the business minutes of the stages they left, for SLA figures)."""

    seq: int = 0
    entries: list[Decision] = Field(default_factory=list)
    older: dict[str, int] = Field(default_factory=dict)
    older_stage_minutes: dict[str, int] = Field(default_factory=dict)
    timeline: list[int] = Field(default_factory=list)  # seqs whose timeline comment is due


class PeopleIntents(Carried):
    """What people asked for that the main loop has not acted on yet; part of `DealState`, so it
    is carried through continue-as-new."""

    accept: AcceptLead | None = None
    reject: RejectLead | None = None
    lose: LoseDeal | None = None
    moved_to: Stage | None = None
    moved_by: Actor | None = None  # who made that move (patch deal12-move-actor)
    feedback: KpFeedback | None = None
    approval: ApprovalResult | None = None


class DealState(Carried):
    deal_id: int
    stage: Stage = Stage.NEW
    manager_id: int | None = None
    deal: DealSnapshot | None = None
    document_set: str | None = None
    open_tasks: list[OpenTask] = Field(default_factory=list)
    deadlines: list[Deadline] = Field(default_factory=list)
    payment_schedule: list[TrancheState] = Field(default_factory=list)
    payments: list[PaymentRecord] = Field(default_factory=list)
    processes: list[ProcessState] = Field(default_factory=list)
    signed: list[str] = Field(default_factory=list)
    kp_round: int = 0
    invoice_round: int = 0
    approved: bool | None = None
    history: list[HistoryEntry] = Field(default_factory=list)
    done: list[str] = Field(default_factory=list)
    pending_events: list[Bitrix24Event] = Field(default_factory=list)
    lose_reason: str | None = None
    lose_comment: str | None = None
    reject_reason: str | None = None
    stage_entered_at: datetime | None = None
    counters: dict[str, int] = Field(default_factory=dict)
    intents: PeopleIntents = Field(default_factory=lambda: PeopleIntents())
    payments_closed: str | None = None  # the РОП closed the payment control after WON (why)
    decisions: DecisionLog = Field(default_factory=lambda: DecisionLog())  # issue 15
    # The deal left the «Продажа» pipeline under the workflow (deal_changes.py): "deleted"
    # (ONCRMDEALDELETE or crm.deal.get "Not found") or "moved_out" (another CATEGORY_ID).
    ended: str = ""
    # what the client was last told per subject (client_messages.py), e.g. «Срок поставки»
    client_seen: dict[str, str] = Field(default_factory=dict)


class DealInput(Carried):
    deal_id: int
    rules: DealRules
    state: DealState | None = None
    # The relay starts a new run for a deal moved back from a final stage in Bitrix24: the
    # stage its closed run ended at (deal_changes.py: refused or a new run, `rules.reopen`).
    reopened_from: Stage | None = None


class AcceptLead(Carried):
    manager_id: int
    actor: Actor | None = None


class RejectLead(Carried):
    reason: str
    actor: Actor | None = None

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("reason must not be empty")
        return value.strip()


class LoseDeal(Carried):
    reason: Literal["NO_MONEY", "COMPETITOR", "NOT_TARGET", "NO_DECISION", "TOO_LONG", "OTHER"]
    comment: str | None = None
    actor: Actor | None = None


class DealView(Carried):
    """The `state` query: the deal's process state for people and scripts."""

    deal_id: int
    stage: Stage
    manager_id: int | None
    manager_name: str = ""  # the responsible's full name as Bitrix24 last gave it ("" unknown)
    amount: float
    document_set: str | None
    open_tasks: list[OpenTask]
    deadlines: list[Deadline]
    payment_schedule: list[TrancheState]
    payments: list[PaymentRecord] = Field(default_factory=list)
    processes: list[ProcessState] = Field(default_factory=list)
    kp_round: int = 0
    invoice_round: int = 0
    history: list[HistoryEntry]
    rules_version: str = ""  # the version of the rule set the deal runs ("" before versions)
    ended: str = ""  # "deleted" / "moved_out": the deal left the pipeline (DealState.ended)


class UpdateAck(Carried):
    """The reply of every update (issue 16, lean histories): accepted, the deal's stage and
    KП round after it, and the causes the update added to the deal's history — not the whole
    `DealView`, which went into history with every reply. The full state is the `state`
    query. Every field has a default, so a `DealView` (what workers before this answered)
    reads as an `UpdateAck` too (extra fields ignored)."""

    accepted: bool = True
    deal_id: int = 0
    stage: Stage | None = None
    kp_round: int = 0
    changed: list[str] = Field(default_factory=list)


# ---- activity requests (the workflow → activities contract) -----------------------------


class NotifyRequest(Carried):
    """Bitrix24 notifications to people; `key` is the idempotency tag of this notification."""

    key: str
    user_ids: list[int]
    message: str


class TaskRequest(Carried):
    key: str
    deal_id: int
    title: str
    description: str = ""
    responsible_id: int
    created_by: int
    deadline: datetime | None = None


class PeopleRequest(Carried):
    """The people mapping of the current configuration, and which of `user_ids` (and of the
    mapping's users) Bitrix24 says are deactivated (user.get ACTIVE=false)."""

    user_ids: list[int] = Field(default_factory=list)


class PeopleAnswer(Carried):
    people: PeopleRules
    accountant_email: str
    inactive: list[int] = Field(default_factory=list)


class TaskDeferRequest(Carried):
    """An automatic task of a deal that left the pipeline: the reason as a task comment, then
    deferred (tasks.task.defer), so its people see why it stopped (issue 14 item 7)."""

    key: str
    task_id: int
    comment: str


class TaskReassignRequest(Carried):
    """A task's new responsible (the deal's responsible changed in Bitrix24)."""

    task_id: int
    responsible_id: int


class DealUpdateRequest(Carried):
    deal_id: int
    fields: dict[str, str | int | float | None]


class ClientMessageRequest(Carried):
    """A message to the deal's client; `{manager_*}` placeholders are filled from Bitrix24."""

    key: str
    deal_id: int
    manager_id: int | None
    subject: str
    template: str


class TimelineCommentRequest(Carried):
    key: str
    deal_id: int
    text: str


class ApprovalItemRequest(Carried):
    """The «Согласование» smart-process item linked to the deal (R-KP-6)."""

    key: str
    deal_id: int
    entity_type_id: int
    category_id: int
    stage_id: str
    title: str
    assigned_by_id: int


class ApprovalItemStage(Carried):
    entity_type_id: int
    item_id: int
    stage_id: str


class ApprovalItemRead(Carried):
    """The «Согласование» item as read (crm.item.get): its stage and who moved it last
    (`movedBy`, a crm.item field; 0 when not given) with that user's full name."""

    stage_id: str
    moved_by: int = 0
    moved_by_name: str = ""


class EmailRequest(Carried):
    """An e-mail over SMTP (R-SH-3); `key` becomes its Message-ID and its outbox entry."""

    key: str
    to: list[str]
    subject: str
    body: str
    # fin14 (R-SH-3): the files in these `file` fields of deal `deal_id` go as attachments
    deal_id: int = 0
    attach_fields: list[str] = Field(default_factory=list)


class LinkedDealRequest(Carried):
    """R-WON-2: a deal in another pipeline linked to this one (ORIGIN_ID is the key)."""

    key: str
    source_deal_id: int
    category_id: int
    title: str


# ---- child workflows ---------------------------------------------------------------------


class ApprovalInput(Carried):
    deal_id: int
    key: str
    item: ApprovalItemRequest
    rules: ApprovalRules
    parent_id: str


class ApprovalResult(Carried):
    key: str
    approved: bool
    comment: str | None = None
    item_id: int | None = None
    actor: Actor | None = None  # who decided: the card's user, or the item's mover (movedBy)


class ProcessInput(Carried):
    deal_id: int
    kind: str
    task: TaskRequest
    parent_id: str
    poll_minutes: int = 30


class ProcessResult(Carried):
    kind: str
    workflow_id: str
    task_id: int
    done: bool


class BoardUpdate(Carried):
    """The deal's row on the board (read model), sent on each change."""

    deal_id: int
    title: str
    stage: str
    manager_id: int | None
    amount: float
    document_set: str | None
    deadlines: list[Deadline]


PeopleIntents.model_rebuild()
DealState.model_rebuild()
DealInput.model_rebuild()
