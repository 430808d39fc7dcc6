"""Bitrix24's own deal fields drive the process (issue 12 item 3): a deal re-read after a
Bitrix24 event is turned into people's intents, each taken once.

    field                      becomes                                     key (state.done)
    «Статус КП» (list)         the КП answer of the running round (R-KP-4) kp:field_answer:<round>
    six Да/Нет service fields  one task per service and round (R-X6)      request:<service>:r<n>
    Подписанный счет/договор,  that document signed (R-INV, R-SH)          signed:<kind>
    Акт, УПД (file: filled)
    Ответственный              the deal's manager; open automatic tasks    reassign:<task>:<user>
                               reassigned (tasks.task.update)

Who acted is the deal's last modifier (`MODIFY_BY_ID` of crm.deal.get).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio import workflow

from salesflow.workflows import patches

with workflow.unsafe.imports_passed_through():
    from salesflow.workflows import activity_stubs as act
    from salesflow.workflows.causes import cause
    from salesflow.workflows.deal_effects import DealEffects
    from salesflow.workflows.models import (
        FINAL_STAGES,
        Actor,
        KpFeedback,
        Stage,
        TaskReassignRequest,
    )
    from salesflow.workflows.names import DEAL_MANAGER

RESPONSIBLE_FOLLOWED = "bitrix24-responsible-followed"
# One service task per (deal, service, round), whether asked for on the card/CLI or with the
# Да/Нет field: purpose `request:<service>:r<round>`; a request while that round's task is
# being created or open is the same request. A new round once it is completed.
ONE_SERVICE_TASK = "deal12-one-service-task"

SERVICES = ("engineers", "purchasing", "logistics", "production", "lawyer", "metrologist")
SIGNED_FIELDS = {
    "invoice": "signed_invoice",
    "contract": "signed_contract",
    "act": "act",
    "upd": "upd",
}
_YES = {"1", "y", "yes", "true", "да"}


class FieldIntents:
    """Reads the deal's fields after each event-driven re-read; `request_service` creates a
    service's task (the workflow's, so the logistics task is mirrored into 1C)."""

    def __init__(
        self,
        fx: DealEffects,
        request_service: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self.fx = fx
        self.s = fx.s
        self._request_service = request_service

    async def follow(self) -> None:
        if self.s.deal is None or self.s.stage in FINAL_STAGES:
            return
        await self._responsible()
        self._kp_status()
        await self._services()
        self._signed()

    async def _responsible(self) -> None:
        """The responsible changed in Bitrix24: the deal's manager from now on (new tasks and
        notices go to them), and the open automatic tasks of the old one are reassigned."""
        s = self.s
        assert s.deal is not None
        old, new = s.manager_id, s.deal.assigned_by_id
        if s.stage == Stage.NEW or old is None or not new or new == old:
            return
        if not patches.patched(RESPONSIBLE_FOLLOWED):
            return
        s.manager_id = new
        workflow.upsert_search_attributes([DEAL_MANAGER.value_set(new)])
        actor = self.actor()
        by = f" by user {actor.user_id}" if actor else ""
        self.fx.record(s.stage, cause("responsible_changed", by=by, old=old, new=new), actor)
        for task in s.open_tasks:
            if task.responsible_id != old:
                continue  # a service's or the logist's task stays theirs
            await self.fx.once(
                f"reassign:{task.task_id}:{new}",
                act.reassign_task,
                TaskReassignRequest(task_id=task.task_id, responsible_id=new),
            )
            task.responsible_id = new
        self.fx.details()

    def actor(self) -> Actor | None:
        assert self.s.deal is not None
        deal = self.s.deal
        raw = deal.fields.get("MODIFY_BY_ID")
        if isinstance(raw, str) and raw.isdigit() and int(raw):
            # fetch_deal names the mover (MOVED_BY_ID, else MODIFY_BY_ID): the same user here
            moved = deal.fields.get("MOVED_BY_ID")
            same = moved in (None, "", "0", raw)
            return Actor(user_id=int(raw), name=deal.moved_by_name if same else "")
        return None

    def _value(self, name: str) -> str:
        assert self.s.deal is not None
        code = self.fx.rules.fields.get(name)
        raw = self.s.deal.fields.get(code) if code else None
        if isinstance(raw, list):
            return ",".join(v for v in raw if v)
        return (raw or "").strip()

    def _kp_status(self) -> None:
        """«Статус КП» set during a КП round is that round's answer (once per round)."""
        s, n = self.s, self.s.kp_round
        if s.stage != Stage.KP or not n or s.intents.feedback is not None:
            return
        purpose = f"kp:field_answer:{n}"
        if purpose in s.done:
            return
        meaning = {str(v): k for k, v in self.fx.rules.enums.get("kp_status", {}).items()}.get(
            self._value("kp_status")
        )
        if meaning not in ("agreed", "not_agreed"):
            return
        s.done.append(purpose)
        s.intents.feedback = KpFeedback(agreed=meaning == "agreed", actor=self.actor())
        self.fx.record(s.stage, cause("kp_status_field", round=n, answer=meaning), self.actor())

    def service_round(self, service: str) -> str | None:
        """The purpose of a new request for `service` (patch ONE_SERVICE_TASK), or None when
        the service's current round is still being created or open."""
        counter = f"request:{service}:round"
        n = self.s.counters.get(counter, 0)
        if n:
            key = self.fx.key(f"request:{service}:r{n}")
            creating = self.s.counters.get(f"request:{service}:creating", 0)
            if creating or any(t.key == key for t in self.s.open_tasks):
                return None
        self.s.counters[counter] = n + 1
        return f"request:{service}:r{n + 1}"

    async def request(self, service: str, purpose: str) -> None:
        """The service's task of `purpose`, marked as being created meanwhile (a request that
        comes then is the same one)."""
        marker = f"request:{service}:creating"
        self.s.counters[marker] = 1
        try:
            await self._request_service(service, purpose)
        finally:
            self.s.counters.pop(marker, None)

    async def _services(self) -> None:
        """«Да» in a service field: that service's task, once per deal however often toggled."""
        for service in SERVICES:
            purpose = f"request:{service}:field"
            if purpose in self.s.done or purpose in self.s.counters:
                continue
            if self._value(f"need_{service}").casefold() not in _YES:
                continue
            # marked before the task is created: a re-read while it is created asks nothing again
            self.s.counters[purpose] = 1
            if patches.patched(ONE_SERVICE_TASK):
                shared = self.service_round(service)
                if shared is None:
                    continue  # asked for already (the card, the CLI): that task is this one
                self.fx.record(self.s.stage, cause("service_field", service=service), self.actor())
                await self.request(service, shared)
                continue
            self.fx.record(self.s.stage, cause("service_field", service=service), self.actor())
            await self._request_service(service, purpose)

    def _signed(self) -> None:
        """A signed-document field filled: that document is signed (once per kind)."""
        for kind, name in SIGNED_FIELDS.items():
            purpose = f"signed:{kind}"
            if purpose in self.s.done or not self._value(name):
                continue
            self.s.done.append(purpose)
            if kind in ("act", "upd"):
                if kind in self.s.signed:
                    continue  # known already (the workflow wrote the field itself)
                self.s.signed.append(kind)
            self.fx.record(self.s.stage, cause("signed_field", kind=kind), self.actor())
