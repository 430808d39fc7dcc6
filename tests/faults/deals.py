"""The deals of the fault tests and the people who drive them.

Each `Plan` is a deal with a script — what the manager, the РОП, the client and 1C users do —
and the stage the script leads to. `Deal` carries the script out through the same channels as
people: updates of the deal's workflow (what `salesflow deal …` sends; a few steps run the real
console script), edits in Bitrix24 (whose events reach the relay), and 1C. Every step is tried
again until it takes while the stack is faulted: an update keeps its ID across transport
failures (Temporal deduplicates it), and gets a new one only after a definite refusal. Each
step also notes the side effects it must cause, by idempotency key (`deal:<id>:<purpose>`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from emulators.onec.app import KP2_NUMBER, KP_NUMBER, ROMASHKA_INN
from salesflow.activities.onec import task_key_in
from salesflow.integrations.bitrix24.errors import Bitrix24Error
from salesflow.integrations.onec import F
from salesflow.integrations.onec.client import OneCClient
from salesflow.workflows.models import (
    AcceptLead,
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
    StartProcess,
    UpdateAck,
)
from salesflow.workflows.names import deal_workflow_id
from tests.faults.stack import FaultStack

STAGES = {
    "NEW": "C1:NEW",
    "IN_WORK": "C1:PREPARATION",
    "KP": "C1:UC_KP",
    "CONTRACT": "C1:UC_CONTRACT",
    "INVOICE": "C1:UC_INVOICE",
    "LAUNCH": "C1:UC_LAUNCH",
    "ACCEPTED": "C1:UC_ACCEPTED",
    "TO_SHIP": "C1:UC_TO_SHIP",
    "SHIPPED": "C1:UC_SHIPPED",
    "WON": "C1:WON",
    "LOSE": "C1:LOSE",
}
KP_TOTALS = {KP_NUMBER: 640_000.0, KP2_NUMBER: 214_000.0}  # the seeded КП in 1C
MANAGERS = (3, 4)
ROP = 2
STEP_SECONDS = 150.0  # one step may wait out a killed worker's activity timeouts (60–90 s)
KP_FIELDS = {"UF_CRM_PRIORITY": 11, "UF_CRM_DELIVERY_TERM": "30 дней"}


@dataclass
class Expected:
    """Side effects the script must have caused, as purposes (the key without `deal:<id>:`)."""

    tasks: set[str] = field(default_factory=set)
    client_emails: set[str] = field(default_factory=set)
    notifications: set[tuple[int, str]] = field(default_factory=set)  # (user, purpose)
    items: set[str] = field(default_factory=set)
    onec_tasks: set[str] = field(default_factory=set)
    accountant_mails: set[str] = field(default_factory=set)
    linked_deals: set[str] = field(default_factory=set)
    # Keys a test of their own checks (kind → purposes), left out of the general count.
    own_test: dict[str, set[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    name: str
    target: str
    amount: float
    script: Callable[[Deal], Awaitable[None]]
    direction: str = "Россия, Москва"
    kp: str = KP_NUMBER
    created_at: str = "NEW"  # a deal the pipeline meets at a later stage was there before it

    @property
    def effective_amount(self) -> float:
        """R-KP-2: with «Россия» in the direction the КП's lines from 1C replace the deal's
        product rows, and Bitrix24 sums them into the deal's amount."""
        if "Россия" in self.direction:
            return KP_TOTALS[self.kp]
        return self.amount


class Deal:
    def __init__(self, stack: FaultStack, plan: Plan, manager: int) -> None:
        self.stack = stack
        self.plan = plan
        self.id = 0  # given by Bitrix24 on `create`
        self.manager = manager
        self.expected = Expected()
        if plan.created_at == "NEW":
            self.expected.notifications |= {(m, "new:notify") for m in MANAGERS}
        self.steps: list[str] = []
        self.done = False
        self.amount = plan.effective_amount
        self.manual_payments: list[str] = []

    @property
    def invoice(self) -> str:
        return f"СЧ-9{self.id % 100_000:05d}"  # 1C numbers invoices in 9 characters

    def __repr__(self) -> str:
        return f"deal {self.id} ({self.plan.name} → {self.plan.target})"

    # ---- the workflow ------------------------------------------------------------------

    async def view(self) -> DealView | None:
        handle = self.stack.client.get_workflow_handle(deal_workflow_id(self.id))
        try:
            async with asyncio.timeout(6):
                return await handle.query(
                    "state", result_type=DealView, rpc_timeout=timedelta(seconds=5)
                )
        except (RPCError, TimeoutError, RuntimeError):
            return None
        except Exception as err:  # a query failing inside the worker is a finding, not noise
            if "not found" in str(err).lower():
                return None
            raise

    async def until(
        self, check: Callable[[DealView], bool], what: str, seconds: float = STEP_SECONDS
    ) -> DealView:
        deadline = time.monotonic() + seconds
        last: DealView | None = None
        while time.monotonic() < deadline:
            last = await self.view() or last
            if last is not None and check(last):
                return last
            await asyncio.sleep(0.5)
        stage = last.stage if last else "no answer"
        raise AssertionError(f"{self}: not within {seconds:.0f} s: {what} (last: {stage})")

    async def until_portal(self, check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + STEP_SECONDS
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self}: not within {STEP_SECONDS:.0f} s: {what}")
            await asyncio.sleep(0.3)

    async def update(self, step: str, name: str, payload: BaseModel) -> str:
        """Send the update until the workflow takes it; the update ID that was taken."""
        self.steps.append(step)
        handle = self.stack.client.get_workflow_handle(deal_workflow_id(self.id))
        deadline = time.monotonic() + STEP_SECONDS
        attempt, refusal = 0, ""
        while time.monotonic() < deadline:
            update_id = f"faults-{self.id}-{step}-{attempt}"
            try:
                async with asyncio.timeout(25):
                    await handle.execute_update(name, payload, id=update_id, result_type=UpdateAck)
                return update_id
            except WorkflowUpdateFailedError as err:  # refused (or failed): not taken
                attempt += 1
                refusal = str(getattr(err.cause, "message", None) or err.cause or err)
            except (
                RPCError,
                WorkflowUpdateRPCTimeoutOrCancelledError,
                TimeoutError,
                RuntimeError,
            ) as err:  # taken or not: the same ID again
                refusal = f"{type(err).__name__}: {err}"
            await asyncio.sleep(1.0)
        raise AssertionError(f"{self}: update {name} ({step}) never taken: {refusal}")

    async def cli(self, step: str, *args: str, done: Callable[[DealView], bool]) -> None:
        """`salesflow deal …` until the deal shows the step's effect."""
        self.steps.append(step)
        deadline = time.monotonic() + STEP_SECONDS
        out = ""
        while time.monotonic() < deadline:
            view = await self.view()
            if view is not None and done(view):
                return
            code, out = await self.stack.cli("deal", *args)
            if code == 0:
                return
            await asyncio.sleep(1.0)
        raise AssertionError(f"{self}: salesflow deal {' '.join(args)} failed: {out}")

    # ---- Bitrix24 ---------------------------------------------------------------------------

    def portal_deal(self) -> dict[str, Any]:
        return self.stack.portal.deals[self.id]

    async def edit(self, **fields: Any) -> None:
        """A person edits the deal in Bitrix24; its event goes to the relay."""
        await self.stack.b24("crm.deal.update", {"id": self.id, "fields": fields})

    async def create(self) -> int:
        fields = {
            "TITLE": f"Сбой-тест {self.plan.name}",
            "CATEGORY_ID": 1,
            "STAGE_ID": STAGES[self.plan.created_at],
            "ASSIGNED_BY_ID": self.manager,
            "OPPORTUNITY": self.plan.amount,
            "CURRENCY_ID": "RUB",
            "CONTACT_ID": 1,
            "COMPANY_ID": 1,
            "UF_CRM_DIRECTION": self.plan.direction,
            "UF_CRM_KP": self.plan.kp,
            "UF_CRM_INN": ROMASHKA_INN,
        }
        self.id = int(await self.stack.b24("crm.deal.add", {"fields": fields}))
        return self.id

    # ---- the steps -------------------------------------------------------------------------

    async def accept(self, via_cli: bool = False) -> None:
        if via_cli:
            await self.cli(
                "accept",
                "accept",
                str(self.id),
                "--manager",
                str(self.manager),
                done=lambda v: v.stage != "NEW",
            )
        else:
            await self.update("accept", "accept_lead", AcceptLead(manager_id=self.manager))
        self.expected.tasks.add("iw:check_products")
        self.expected.client_emails.add("iw:client_message")

    async def reject(self) -> None:
        await self.update("reject", "reject_lead", RejectLead(reason="Нецелевой запрос"))

    async def to_kp(self, refused_first: bool = False) -> None:
        """The manager fills Приоритет and Срок поставки and drags the deal to КП in Bitrix24."""
        await self.until(
            lambda v: v.stage == "IN_WORK" and bool(self.portal_deal().get("UF_CRM_KP_DATE")),
            "IN_WORK with the КП date set",
        )
        if refused_first:  # R-X3: the move with empty fields is undone and told
            await self.edit(STAGE_ID=STAGES["KP"])
            await self.until_portal(
                lambda: (
                    self._notified(self.manager, "refused_move:1")
                    and self.portal_deal()["STAGE_ID"] == STAGES["IN_WORK"]
                ),
                "the move to КП refused",
            )
            self.expected.notifications.add((self.manager, "refused_move:1"))
        await self.edit(STAGE_ID=STAGES["KP"], **KP_FIELDS)
        await self.until(lambda v: v.stage == "KP" and v.kp_round == 1, "КП round 1")
        self.expected.tasks |= {"kp:send_kp", "kp:feedback:1"}

    def _notified(self, user: int, purpose: str) -> bool:
        tag = f"deal:{self.id}:{purpose}"
        return any(
            n.get("TAG") == tag and n.get("USER_ID") == user
            for n in self.stack.portal.notifications
        )

    async def kp_feedback(self, agreed: bool) -> None:
        view = await self.until(lambda v: v.stage == "KP" and v.kp_round >= 1, "КП feedback due")
        # «КП отправлено» goes once the КП is sent: its task done or the client's first answer.
        self.expected.client_emails.add("kp:client_message")
        n = view.kp_round
        await self.update(
            f"kp-feedback-{n}",
            "kp_feedback",
            KpFeedback(agreed=agreed, comment=None if agreed else "дорого"),
        )
        if not agreed:
            self.expected.tasks |= {f"kp:objection:{n}", f"kp:feedback:{n + 1}"}
            await self.until(lambda v: v.kp_round == n + 1, f"КП round {n + 1}")
            # «Возврат на задачу» (rules.rework_before_next_round, on by default): the manager
            # completes the objection task in Bitrix24; its ONTASKUPDATE, through the relay,
            # starts the next round's feedback task.
            await self.complete_task(f"kp:objection:{n}")
            await self.until(
                lambda v: any(t.key.endswith(f":kp:feedback:{n + 1}") for t in v.open_tasks),
                f"КП round {n + 1}'s feedback task",
            )
            return
        await self.until(lambda v: v.stage == "CONTRACT", "CONTRACT")
        if self.amount > 150_000:
            self.expected.tasks.add("ct:approval:1")
            self.expected.items.add("approval:1")
            await self.until(
                lambda v: any(p.kind == "approval" for p in v.processes), "approval started"
            )
        else:
            self.expected.tasks.add("ct:send_documents")

    async def approve(self) -> None:
        await self.update("approve", "approval_decision", ApprovalDecision(approved=True))
        self.expected.tasks.add("ct:send_documents")
        # The update answers within its wait even when the approval child is still retrying
        # through the faults; a person fills the fields once the documents task is there.
        await self.until(
            lambda v: any(t.key.endswith(":ct:send_documents") for t in v.open_tasks),
            "documents task after the approval",
        )

    async def contract_fields(self) -> None:
        """The invoice is issued in 1C; the manager fills Счет, Договор, Оплата in Bitrix24."""
        await self.stack.onec_create(
            "Document_СчетНаОплатуКлиенту",
            {
                "Number": self.invoice,
                "СуммаДокумента": self.amount,
                "Контрагент_Key": await self._romashka(),
            },
        )
        await self.edit(
            UF_CRM_INVOICE=self.invoice, UF_CRM_CONTRACT=f"Д-{self.id}", UF_CRM_PAYMENT_TERMS=31
        )

    async def _romashka(self) -> str:
        conf = self.stack.settings.onec
        for _ in range(60):
            try:
                async with OneCClient(conf.odata_url, conf.user, conf.password) as onec:
                    found = await onec.find_one("Catalog_Контрагенты", F("ИНН") == ROMASHKA_INN)
                    assert found is not None
                    return str(found["Ref_Key"])
            except AssertionError:
                raise
            except Exception:
                await asyncio.sleep(0.5)
        raise AssertionError("1C never answered")

    async def to_invoice(self, in_bitrix: bool) -> None:
        await self.until(lambda v: v.stage == "CONTRACT", "CONTRACT")
        await self.until_portal(
            lambda: self.portal_deal().get("UF_CRM_INVOICE") == self.invoice, "invoice field"
        )
        await self.move("INVOICE", in_bitrix)

    async def sign(self, kind: str) -> None:
        await self.update(f"signed-{kind}", "documents_signed", DocumentsSigned(kind=kind))  # type: ignore[arg-type]

    async def _invoice_sent(self) -> None:
        """The client pays the invoice once it has it: after the «получить оплату» task."""
        await self.until(lambda v: v.stage == "INVOICE", "INVOICE")
        await self.until_portal(
            lambda: self._bitrix_task_status("inv:get_payment:1") != "", "the payment task"
        )

    async def pay_in_1c(self) -> None:
        await self._invoice_sent()
        await self.stack.onec_admin("payments", {"invoice": self.invoice, "amount": self.amount})
        await self.until(lambda v: v.stage == "LAUNCH", "LAUNCH after the 1C payment")
        self.expected.tasks.add("la:control_works")

    async def pay_by_hand(self) -> None:
        await self._invoice_sent()
        payment = RecordPayment(amount=self.amount, paid_on=date.today(), source="manual")
        self.manual_payments.append(await self.update("pay", "record_payment", payment))
        await self.until(lambda v: v.stage == "LAUNCH", "LAUNCH after the payment")
        self.expected.tasks.add("la:control_works")

    async def schedule(self) -> None:
        due = date.today() + timedelta(days=30)
        await self.update(
            "schedule",
            "set_payment_schedule",
            PaymentSchedule.model_validate({"tranches": [{"percent": 100, "due": due}]}),
        )

    async def move(self, stage: str, in_bitrix: bool = False, via_cli: bool = False) -> None:
        if in_bitrix:
            self.steps.append(f"bitrix-move-{stage}")
            await self.edit(STAGE_ID=STAGES[stage])
            await self.until(lambda v: v.stage == stage, stage)
        elif via_cli:
            await self.cli(
                f"move-{stage}", "move", str(self.id), stage, done=lambda v: v.stage == stage
            )
        else:
            await self.update(
                f"move-{stage}", "move_stage", MoveStage.model_validate({"to": stage})
            )
        self.expected.tasks |= STAGE_TASKS.get(stage, set())
        self.expected.client_emails |= STAGE_EMAILS.get(stage, set())
        if stage == "ACCEPTED":
            self.expected.onec_tasks.add("ac:ship_goods:1c")
            # the client told the work on the order started (client_messages.py, issue 14)
            self.expected.client_emails.add(f"client:logist_started:{self._mirror}")

    @property
    def _mirror(self) -> str:
        """The workflow id of the logist task's 1C mirror (the client messages' key)."""
        return f"deal-{self.id}-1c-ac-ship_goods"

    async def logist_sees_task_in_1c(self) -> str:
        """The logist's task has reached 1C (the logist works there); its Ref_Key."""
        key = f"deal:{self.id}:ac:ship_goods:1c"
        await self.until_portal(lambda: bool(self._onec_task(key)), "the 1C task exists")
        return str(self._onec_task(key)[0]["Ref_Key"])

    async def logist_done_in_1c(self) -> None:
        """The logist completes the mirrored task in 1C; Bitrix24 shows it completed."""
        ref = await self.logist_sees_task_in_1c()
        await self.stack.onec_admin(f"tasks/{ref}/complete", {"comment": "Отгружено, ТТН 77"})
        self.expected.client_emails.add(f"client:logist_done:{self._mirror}")
        await self.until_portal(
            lambda: self._bitrix_task_status("ac:ship_goods") == "5",
            "the logist's Bitrix24 task completed",
        )

    async def complete_task(self, purpose: str) -> None:
        """A person completes the deal's task in Bitrix24 (`tasks.task.complete`)."""
        self.steps.append(f"complete-{purpose}")
        key = f"deal:{self.id}:{purpose}"
        await self.until_portal(
            lambda: any(t.get("XML_ID") == key for t in self.stack.portal.tasks.values()),
            f"the task {purpose} exists",
        )
        task = next(t for t in self.stack.portal.tasks.values() if t.get("XML_ID") == key)
        try:
            await self.stack.b24("tasks.task.complete", {"taskId": int(task["ID"])})
        except Bitrix24Error:  # a retry after a lost answer: already completed is fine
            if str(task["STATUS"]) != "5":
                raise

    def _onec_task(self, key: str) -> list[dict[str, Any]]:
        tasks = self.stack.onec_base.all("Task_ЗадачаИсполнителя")
        return [t for t in tasks if task_key_in(t.get("Описание")) == key]

    def _bitrix_task_status(self, purpose: str) -> str:
        key = f"deal:{self.id}:{purpose}"
        found = [t for t in self.stack.portal.tasks.values() if t.get("XML_ID") == key]
        return str(found[0]["STATUS"]) if found else ""

    async def close_documents(self, with_upd_in_1c: bool) -> None:
        await self.until(lambda v: v.stage == "SHIPPED", "SHIPPED")
        if with_upd_in_1c:
            upd = await self.stack.onec_admin("upd", {"basis": self.plan.kp})
            await self.stack.onec_admin(f"upd/{upd['Ref_Key']}/sign", {"signed": True})
        await self.sign("act")
        await self.sign("upd")
        await self.until(lambda v: v.stage == "WON", "WON")
        self.expected.accountant_mails.add("sh:mail_accountant")
        self.expected.client_emails |= {"sh:client_documents", "won:feedback_form"}
        self.expected.linked_deals.add("won:engineers_deal")

    async def lose(self, how: str) -> None:
        if how == "cli":
            await self.cli(
                "lose",
                "lose",
                str(self.id),
                "--reason",
                "OTHER",
                "--comment",
                "Проект заморожен",
                done=lambda v: v.stage == "LOSE",
            )
        elif how == "bitrix":
            self.steps.append("bitrix-lose")
            await self.edit(STAGE_ID=STAGES["LOSE"], UF_CRM_LOSS_REASON=42)
        else:
            await self.update("lose", "lose_deal", LoseDeal(reason="NO_MONEY"))
        await self.until(lambda v: v.stage == "LOSE", "LOSE")

    async def request_tasks(self) -> None:
        """R-X6: engineers and logistics (mirrored into 1C)."""
        await self.update(
            "request-tasks", "request_tasks", RequestTasks(engineers=True, logistics=True)
        )
        # one key per (deal, service, round): the first round of each (deal12-one-service-task)
        self.expected.tasks |= {"request:engineers:r1", "request:logistics:r1"}
        self.expected.onec_tasks.add("request:logistics:r1:1c")
        self.expected.client_emails.add(
            f"client:logist_started:deal-{self.id}-1c-request-logistics-r1"
        )

    async def start_process(self) -> None:
        await self.update("process", "start_process", StartProcess(kind="import_order"))
        self.expected.tasks.add("process:import_order:1")


STAGE_TASKS = {
    "INVOICE": {"inv:get_payment:1"},
    "ACCEPTED": {"ac:control_packing", "ac:check_payment", "ac:ship_goods"},
    "TO_SHIP": {"ts:control_shipping"},
    "SHIPPED": {"sh:act", "sh:upd"},
}
STAGE_EMAILS = {"INVOICE": {"inv:client_message"}, "SHIPPED": {"sh:client_message"}}


# ---- scripts -----------------------------------------------------------------------------


async def stays_new(deal: Deal) -> None:
    await deal.until(lambda v: v.stage == "NEW", "the workflow started")


async def stays_new_edited(deal: Deal) -> None:
    await stays_new(deal)
    await deal.edit(TITLE=f"Сбой-тест {deal.plan.name} (уточнено)")
    await deal.edit(COMMENTS="Клиент перезвонит")


async def in_work(deal: Deal) -> None:
    await deal.accept()


async def in_work_cli(deal: Deal) -> None:
    await deal.accept(via_cli=True)


async def in_work_requests(deal: Deal) -> None:
    await deal.accept()
    await deal.request_tasks()
    await deal.start_process()


async def at_kp(deal: Deal) -> None:
    await deal.accept()
    await deal.to_kp()


async def at_kp_second_round(deal: Deal) -> None:
    await at_kp(deal)
    await deal.kp_feedback(agreed=False)


async def at_kp_refused_move(deal: Deal) -> None:
    await deal.accept()
    await deal.to_kp(refused_first=True)


async def at_contract(deal: Deal) -> None:
    await at_kp(deal)
    await deal.kp_feedback(agreed=True)


async def at_contract_approved(deal: Deal) -> None:
    await at_contract(deal)
    await deal.approve()


async def at_invoice(deal: Deal, in_bitrix: bool) -> None:
    await at_contract(deal)
    if deal.amount > 150_000:
        await deal.approve()
    await deal.contract_fields()
    await deal.to_invoice(in_bitrix)


async def at_invoice_bitrix(deal: Deal) -> None:
    await at_invoice(deal, in_bitrix=True)


async def at_invoice_update(deal: Deal) -> None:
    await at_invoice(deal, in_bitrix=False)


async def at_launch(deal: Deal, paid_in_1c: bool) -> None:
    await at_invoice(deal, in_bitrix=False)
    await deal.sign("invoice")
    if deal.amount > 500_000:
        await deal.sign("contract")
    await (deal.pay_in_1c() if paid_in_1c else deal.pay_by_hand())


async def at_launch_1c(deal: Deal) -> None:
    await at_launch(deal, paid_in_1c=True)


async def at_launch_manual(deal: Deal) -> None:
    await at_launch(deal, paid_in_1c=False)


async def at_accepted(deal: Deal) -> None:
    await at_launch(deal, paid_in_1c=False)
    await deal.schedule()
    await deal.move("ACCEPTED")


async def at_accepted_bitrix_logist_done(deal: Deal) -> None:
    await at_launch(deal, paid_in_1c=True)
    await deal.schedule()
    await deal.move("ACCEPTED", in_bitrix=True)
    await deal.logist_done_in_1c()


async def won(deal: Deal) -> None:
    await at_launch(deal, paid_in_1c=deal.id % 2 == 0)
    await deal.schedule()
    await deal.move("ACCEPTED")
    await deal.logist_sees_task_in_1c()
    await deal.move("TO_SHIP", via_cli=deal.amount > 500_000)
    await deal.move("SHIPPED", in_bitrix=deal.amount <= 150_000)
    await deal.close_documents(with_upd_in_1c=deal.amount > 500_000)


async def won_imported_at_shipped(deal: Deal) -> None:
    """A deal already at SHIPPED when the pipeline meets it; it signs when the conductor says
    (its e-mail to the accountant is where the worker gets killed)."""
    await deal.until(lambda v: v.stage == "SHIPPED", "SHIPPED")
    deal.expected.tasks |= STAGE_TASKS["SHIPPED"]
    deal.expected.client_emails |= STAGE_EMAILS["SHIPPED"]
    await deal.until_portal(
        lambda: deal._bitrix_task_status("sh:upd") != "", "the closing documents' tasks"
    )
    await deal.stack.sign_now.wait()
    await deal.close_documents(with_upd_in_1c=False)
    deal.expected.own_test["accountant_mails"] = {"sh:mail_accountant"}


async def won_before_its_logist_task_reaches_1c(deal: Deal) -> None:
    """1C refuses to create this deal's tasks (a lock conflict) from ACCEPTED until the deal is
    WON, which people reach in seconds; then 1C takes them again."""
    await at_launch(deal, paid_in_1c=False)
    await deal.schedule()
    door = deal.stack.onec_door
    door.refuse_tasks_of.add(deal.id)
    try:
        await deal.move("ACCEPTED")
        deal.expected.onec_tasks.discard("ac:ship_goods:1c")
        deal.expected.own_test["onec_tasks"] = {"ac:ship_goods:1c"}
        await deal.until_portal(lambda: door.refused_posts[deal.id] > 0, "1C refused the task")
        await deal.move("TO_SHIP")
        await deal.move("SHIPPED")
        await deal.close_documents(with_upd_in_1c=False)
    finally:
        door.refuse_tasks_of.discard(deal.id)


async def lost_rejected(deal: Deal) -> None:
    await deal.until(lambda v: v.stage == "NEW", "the workflow started")
    await deal.reject()
    await deal.until(lambda v: v.stage == "LOSE", "LOSE")


async def lost_at_kp_cli(deal: Deal) -> None:
    await at_kp(deal)
    await deal.lose("cli")


async def lost_at_invoice_in_bitrix(deal: Deal) -> None:
    """Lost by a person in Bitrix24 while 1C refuses (a lock conflict) the workflow's reads of
    the deal's invoice payments, so that poll is being retried when the deal closes."""
    await at_invoice(deal, in_bitrix=False)
    await deal._invoice_sent()
    door = deal.stack.onec_door
    door.refuse_reads_naming.add(deal.invoice)
    try:
        await deal.until_portal(
            lambda: door.refused_reads[deal.invoice] > 0, "1C refused the payments' read"
        )
        await deal.lose("bitrix")
    finally:
        door.refuse_reads_naming.discard(deal.invoice)


KZ = "Казахстан"
PLANS: list[Plan] = [
    Plan("won-640k-approval", "WON", 640_000, won),
    Plan("won-214k-approval", "WON", 214_000, won, kp=KP2_NUMBER),
    Plan("won-100k", "WON", 100_000, won, direction=KZ),
    Plan("won-imported-at-shipped", "WON", 100_000, won_imported_at_shipped, created_at="SHIPPED"),
    Plan("won-1c-refuses-task", "WON", 95_000, won_before_its_logist_task_reaches_1c, direction=KZ),
    Plan("accepted", "ACCEPTED", 120_000, at_accepted, direction="Беларусь"),
    Plan("accepted-logist-done", "ACCEPTED", 90_000, at_accepted_bitrix_logist_done, direction=KZ),
    Plan("launch-1c-payment", "LAUNCH", 110_000, at_launch_1c, direction=KZ),
    Plan("launch-manual-payment", "LAUNCH", 640_000, at_launch_manual),
    Plan("invoice-bitrix-move", "INVOICE", 640_000, at_invoice_bitrix),
    Plan("invoice-move-update", "INVOICE", 140_000, at_invoice_update, direction=KZ),
    Plan("lost-at-invoice", "LOSE", 100_000, lost_at_invoice_in_bitrix, direction=KZ),
    Plan("contract-approval-pending", "CONTRACT", 214_000, at_contract, kp=KP2_NUMBER),
    Plan("contract-approved", "CONTRACT", 640_000, at_contract_approved),
    Plan("contract-invoice-only", "CONTRACT", 100_000, at_contract, direction=KZ),
    Plan("kp", "KP", 640_000, at_kp),
    Plan("kp-second-round", "KP", 214_000, at_kp_second_round, kp=KP2_NUMBER),
    Plan("kp-refused-move-kz", "KP", 200_000, at_kp_refused_move, direction=KZ),
    Plan("lost-at-kp", "LOSE", 640_000, lost_at_kp_cli),
    Plan("in-work", "IN_WORK", 640_000, in_work),
    Plan("in-work-cli", "IN_WORK", 300_000, in_work_cli),
    Plan("in-work-requests", "IN_WORK", 100_000, in_work_requests),
    Plan("lost-rejected", "LOSE", 50_000, lost_rejected),
    Plan("new", "NEW", 640_000, stays_new),
    Plan("new-edited", "NEW", 200_000, stays_new_edited),
    Plan("new-small", "NEW", 10_000, stays_new),
]
