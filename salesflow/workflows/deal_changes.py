"""The deal that changes under its workflow (issue 14 item 7).

    change in Bitrix24                         the workflow
    deleted (ONCRMDEALDELETE, or crm.deal.get  ends: open automatic tasks get a comment and are
    "Not found" on any read); moved to another deferred, deadlines dropped, children cancelled,
    pipeline (ONCRMDEALMOVETOCATEGORY, or a    the end in the history, the РОП and the manager
    re-read showing another CATEGORY_ID)       told from a template           [LEAVES]
    moved back to NEW                          a new acceptance is waited for (R-NEW again,
                                               under new keys)                [BACK_TO_NEW]
    amount / CURRENCY_ID changed at CONTRACT   the document set (R-KP-5) and the approval
    before the contract is signed              recomputed, the manager told   [DOCUMENT_SET]
    a CURRENCY_ID other than RUB               converted with `rules.currency_rates`; without
                                               a rate refused with a notice, the deal waits at
                                               КП for RUB or a rate           [DOCUMENT_SET]
    moved back from WON/LOSE (the relay starts `rules.reopen`: "refuse" (default) puts it
    a new run with `reopened_from`)            back and tells the manager and the РОП;
                                               "new_run" goes on from its stage under new
                                               keys                           [REOPEN]

The default is "refuse": a won deal has told the client, the accountant and «Инженеры»; a new
run would do its stages' work again, which a person should decide by creating a new deal.

A deal moved *into* «Продажа» is started by the relay (salesflow/relay/forwarder.py). The
rates are part of the deal's rules snapshot (a rate is a business term of the deal, frozen
like the thresholds it is compared with).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from salesflow.workflows import patches

with workflow.unsafe.imports_passed_through():
    from salesflow.workflows import activity_stubs as act
    from salesflow.workflows import causes as C
    from salesflow.workflows import rules as R
    from salesflow.workflows.deal_effects import DealEffects
    from salesflow.workflows.models import (
        Bitrix24Event,
        NotifyRequest,
        Stage,
        TaskDeferRequest,
    )
    from salesflow.workflows.names import (
        DEAL_NOT_FOUND,
        LEAVE_EVENTS,
        ONCRMDEALDELETE,
        in_pipeline,
    )

LEAVES = "deal-changes-leave"
BACK_TO_NEW = "deal-changes-back-to-new"
DOCUMENT_SET = "deal-changes-document-set"
REOPEN = "deal-changes-reopen"
APPROVAL = "approval"  # ProcessState.kind of the «Согласование» child (children.py)
BASE_CURRENCY = "RUB"


class DealChanges:
    def __init__(self, fx: DealEffects) -> None:
        self.fx = fx
        self.s = fx.s
        self.rules = fx.rules

    # ---- deleted, moved out -------------------------------------------------------------

    def deal_gone(self, err: ActivityError) -> bool:
        """A read of the deal failed: True when Bitrix24 says it does not exist (deleted) —
        the workflow ends instead of failing."""
        cause = err.cause
        if not (isinstance(cause, ApplicationError) and cause.type == DEAL_NOT_FOUND):
            return False
        if not patches.patched(LEAVES):
            return False
        self._leave("deleted", C.cause("ended_not_found"))
        return True

    async def take_events(self, events: list[Bitrix24Event]) -> bool:
        """The deal's events include a deletion or a move of pipeline: True when the deal has
        left «Продажа» (the other events of the batch are not followed then)."""
        if not any(e.event in LEAVE_EVENTS for e in events) or not patches.patched(LEAVES):
            return False
        if any(e.event == ONCRMDEALDELETE for e in events):
            self._leave("deleted", C.cause("ended_deleted"))
            return True
        await self.fx.refresh_deal()  # moved: its new CATEGORY_ID read
        return self.left_pipeline()

    def left_pipeline(self) -> bool:
        """After a read of the deal: True when it has left «Продажа» (deleted, or now in
        another pipeline)."""
        if self.s.ended:
            return True
        deal = self.s.deal
        if deal is None or in_pipeline(deal.category_id, self.rules.category_id):
            return False
        if not patches.patched(LEAVES):
            return False
        self._leave("moved_out", C.cause("ended_moved_out", category=deal.category_id))
        return True

    def _leave(self, reason: str, cause: str) -> None:
        if not self.s.ended:
            self.s.ended = reason
            self.fx.record(self.s.stage, cause)  # «…: the workflow ends» (causes.py)

    async def finish(self) -> None:
        """The deal left the pipeline: its open automatic tasks get the reason as a comment and
        are deferred (the logist's 1C task is 1C's, its mirror is cancelled with the
        children), its deadlines are dropped, and the РОП and the manager are told."""
        fx, s = self.fx, self.s
        reason = s.ended
        comment = fx._rendered(f"task_comment_deal_{reason}")
        for task in list(s.open_tasks):
            purpose = task.key.removeprefix(fx.key(""))
            if f"mirror:{purpose}" in s.done:
                continue
            await fx.once(
                f"defer:{purpose}",
                act.defer_task,
                TaskDeferRequest(
                    key=fx.key(f"defer:{purpose}"), task_id=task.task_id, comment=comment
                ),
            )
            if f"defer:{purpose}" in s.done:
                s.open_tasks = [t for t in s.open_tasks if t.key != task.key]
        s.deadlines = []
        fx.sync_overdue()
        users = list(dict.fromkeys([self.rules.people.rop, fx.responsible()]))
        purpose = f"ended:{reason}"
        await fx.once(
            purpose,
            act.notify_users,
            NotifyRequest(
                key=fx.key(purpose), user_ids=users, message=fx._rendered(f"notify_deal_{reason}")
            ),
        )

    # ---- reopened after WON / LOSE ---------------------------------------------------------

    async def reopened(self, final: Stage) -> bool:
        """A new run of a deal moved back from `final` in Bitrix24 (the relay started it):
        `rules.reopen` "refuse" puts it back to `final` and tells the manager and the РОП
        (True: this run ends); "new_run" goes on from the stage it is at, its side effects
        under new keys (`DealEffects.key`)."""
        fx, s = self.fx, self.s
        if not patches.patched(REOPEN):
            return False
        assert s.deal is not None
        target = fx.stage_of(s.deal.stage_id)
        if self.rules.reopen == "new_run":
            s.counters["reopen"] = s.counters.get("reopen", 0) + 1
            fx.record(final, C.cause("reopened", final=final, target=target))
            return False
        cause = C.cause("reopen_refused", final=final, target=target)
        fx.enter(final, cause, now=workflow.now())
        await fx.update_deal({"STAGE_ID": self.rules.stages[final]})
        names = self.rules.templates
        purpose = f"reopen_refused:{s.deal.stage_id}"
        await fx.once(
            purpose,
            act.notify_users,
            NotifyRequest(
                key=fx.key(purpose),
                user_ids=list(dict.fromkeys([fx.responsible(), self.rules.people.rop])),
                message=fx._rendered(
                    "notify_reopen_refused",
                    stage=names.get(f"stage_{final}", final),
                    target=names.get(f"stage_{target}", str(target)),
                ),
            ),
        )
        return True

    # ---- moved back to NEW ---------------------------------------------------------------

    def entered(self, left: Stage) -> None:
        """After a move: a deal moved back to NEW waits for a new acceptance (R-NEW), its
        notices and reminders under new keys (`new_prefix`)."""
        s = self.s
        if s.stage != Stage.NEW or left == Stage.NEW or not patches.patched(BACK_TO_NEW):
            return
        s.intents.accept = s.intents.reject = None
        round_no = s.counters.get("new:round", 1) + 1
        s.counters["new:round"] = round_no
        self.fx.record(Stage.NEW, C.cause("new_round", round=round_no))

    def new_prefix(self) -> str:
        """The purpose prefix of R-NEW's notices: "new", then "new:<round>" for later rounds."""
        round_no = self.s.counters.get("new:round", 1)
        return "new" if round_no <= 1 else f"new:{round_no}"

    # ---- the amount and its currency -----------------------------------------------------

    def currency(self) -> str:
        deal = self.s.deal
        raw = deal.fields.get("CURRENCY_ID") if deal else None
        return str(raw).strip().upper() if isinstance(raw, str) and raw.strip() else BASE_CURRENCY

    def rub_amount(self) -> float | None:
        """The deal's amount in RUB (its currency converted); None without a rate."""
        currency = self.currency()
        if currency == BASE_CURRENCY:
            return self.fx.amount()
        rate = self.rules.currency_rates.get(currency)
        return None if rate is None else self.fx.amount() * rate

    async def agreed_document_set(self) -> str | None:
        """R-KP-5 when the КП is agreed: the set of the amount in RUB. A currency without a
        configured rate is refused with a notice; the deal waits (re-reading on each change)
        for RUB or a rate. None: a person moved or lost the deal meanwhile."""
        if not patches.patched(DOCUMENT_SET):
            return R.document_set(self.fx.amount(), self.rules)
        while True:
            rub = self.rub_amount()
            if rub is not None:
                return R.document_set(rub, self.rules)
            await self._refuse_currency()
            reads = self.s.counters.get("deal_reads", 0)

            def reread(r: int = reads) -> bool:
                return self.s.counters.get("deal_reads", 0) > r

            await self.fx.wait(reread)
            if self.fx.interrupted():
                return None

    async def _refuse_currency(self) -> None:
        fx, currency = self.fx, self.currency()
        purpose = f"currency_refused:{currency}:{fx.amount():g}"
        if purpose in self.s.done:
            return
        fx.record(self.s.stage, C.cause("no_rate", currency=currency))
        await fx.once(
            purpose,
            act.notify_users,
            NotifyRequest(
                key=fx.key(purpose),
                user_ids=[fx.responsible()],
                message=fx._rendered("notify_currency_rate_missing", currency=currency),
            ),
        )

    async def follow_amount(self) -> None:
        """After a read at CONTRACT, before the contract is signed: the document set of the
        amount now; a changed set is told to the manager and the stage starts again (a new
        approval round when the new set needs one; a running approval is cancelled)."""
        s, fx = self.s, self.fx
        if s.stage != Stage.CONTRACT or s.document_set is None or s.ended:
            return
        if "signed:contract" in s.done or fx.field("signed_contract").strip():
            return
        if not patches.patched(DOCUMENT_SET):
            return
        rub = self.rub_amount()
        if rub is None:
            await self._refuse_currency()
            return
        old, new = s.document_set, R.document_set(rub, self.rules)
        if new == old:
            return
        s.document_set = new
        number = fx.bump("document_set_changes")
        fx.record(
            s.stage,
            C.cause("document_set_changed", rub=f"{rub:g}", old_set=str(old), new_set=new),
        )
        again = new != "invoice"
        await self._cancel_approval()
        if again:
            fx.bump("approval")  # a new round with the new amount
        s.approved = None
        await fx.once(
            f"document_set:{number}",
            act.notify_users,
            NotifyRequest(
                key=fx.key(f"document_set:{number}"),
                user_ids=[fx.responsible()],
                message=fx._rendered(
                    "notify_document_set_changed",
                    amount=f"{fx.amount():g} {self.currency()}",
                    old=fx._rendered(f"document_set_{old}"),
                    new=fx._rendered(f"document_set_{new}"),
                    approval=fx._rendered("notify_document_set_approval") if again else "",
                ),
            ),
        )
        if s.intents.moved_to is None and s.intents.lose is None:
            s.intents.moved_to = Stage.CONTRACT  # the stage runs again with the new set

    async def _cancel_approval(self) -> None:
        for process in self.s.processes:
            if process.kind == APPROVAL and process.state == "running":
                handle = workflow.get_external_workflow_handle(process.workflow_id)
                with contextlib.suppress(Exception):  # it may have finished already
                    await handle.cancel()
                process.state = "cancelled"

    def after(
        self, first: Callable[[], Awaitable[None]], *then: Callable[[], Awaitable[None]]
    ) -> Callable[[], Awaitable[None]]:
        """The deal-read hook: `first` (the field intents), the amount followed, then `then`
        (the people read when due)."""

        async def all_of() -> None:
            await first()
            await self.follow_amount()
            for step in then:
                await step()

        return all_of
