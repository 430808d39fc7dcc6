"""People are read when used, not frozen in a deal's rules (issue 14 item 7).

The РОП, the managers, the logist, the service users, the director and the accountant's
address come from the configuration the workers run with, read by the activity `read_people`
(a regular activity, not a local one: it also asks Bitrix24 `user.get` which of the deal's
people are deactivated, I/O with retries and the portal's rate limit). Its answer is in the
history, so a replay sees the same people. It is read before each stage and after a deal
change, at most once per `rules.people_refresh_minutes` of workflow time; the mapping replaces
the one in the deal's rules (carried through continue-as-new), so every later notice, task and
escalation goes to the people of the configuration now.

A deactivated user (ACTIVE=false) hands their work to the РОП: the deal's manager becomes the
РОП (ASSIGNED_BY_ID too), the user's open automatic tasks are reassigned to the РОП, a service
user's or the logist's new tasks go to the РОП, and the РОП is told once per user.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

from salesflow.workflows import patches

with workflow.unsafe.imports_passed_through():
    from salesflow.workflows import activity_stubs as act
    from salesflow.workflows import causes as C
    from salesflow.workflows.activity_stubs import call
    from salesflow.workflows.deal_effects import DealEffects
    from salesflow.workflows.models import (
        FINAL_STAGES,
        NotifyRequest,
        PeopleAnswer,
        PeopleRequest,
        TaskReassignRequest,
    )
    from salesflow.workflows.names import DEAL_MANAGER

PEOPLE_READ = "people-read-when-used"
READ_AT = "people:read_at"  # counters: the workflow time (epoch seconds) of the last read


class PeopleLookup:
    def __init__(self, fx: DealEffects) -> None:
        self.fx = fx
        self.s = fx.s
        self.rules = fx.rules

    async def refresh(self) -> None:
        """Read the people when the last read is older than the refresh interval."""
        s = self.s
        if s.stage in FINAL_STAGES or s.ended:
            return
        now = int(workflow.now().timestamp())
        last = s.counters.get(READ_AT, 0)
        if last and now - last < self.rules.people_refresh_minutes * 60:
            return
        if not patches.patched(PEOPLE_READ):
            return
        s.counters[READ_AT] = now
        users = {t.responsible_id for t in s.open_tasks}
        if s.manager_id:
            users.add(s.manager_id)
        try:
            answer = await call(act.read_people, PeopleRequest(user_ids=sorted(users)))
        except ActivityError as err:
            self.fx.record(s.stage, C.cause("people_not_read", error=err.cause or err))
            return
        await self._apply(answer)

    async def _apply(self, answer: PeopleAnswer) -> None:
        rules, fx = self.rules, self.fx
        people, inactive = answer.people.model_copy(deep=True), set(answer.inactive)
        if people.rop != rules.people.rop:
            fx.record(self.s.stage, C.cause("rop_changed", old=rules.people.rop, new=people.rop))
        rop = people.rop
        if rop not in inactive:  # a deactivated user's work goes to the РОП
            people.managers = [m for m in people.managers if m not in inactive] or [rop]
            if people.logist in inactive:
                people.logist = rop
            people.services = {k: rop if v in inactive else v for k, v in people.services.items()}
            if people.director in inactive:
                people.director = 0
        rules.people = people
        rules.accountant_email = answer.accountant_email
        if rop not in inactive:
            for user in sorted(inactive):
                await self._hand_over(user, rop)

    async def _hand_over(self, user: int, rop: int) -> None:
        """The deactivated `user`'s part of this deal goes to the РОП, told once."""
        s, fx = self.s, self.fx
        handed: list[str] = []
        if s.manager_id == user:
            s.manager_id = rop
            workflow.upsert_search_attributes([DEAL_MANAGER.value_set(rop)])
            await fx.update_deal({"ASSIGNED_BY_ID": rop})
            handed.append(fx._rendered("handover_manager"))
        for task in s.open_tasks:
            if task.responsible_id != user:
                continue
            await fx.once(
                f"reassign:{task.task_id}:{rop}",
                act.reassign_task,
                TaskReassignRequest(task_id=task.task_id, responsible_id=rop),
            )
            task.responsible_id = rop
            handed.append(f"«{task.title}»")
        if not handed:
            return
        fx.record(s.stage, C.cause("user_deactivated", user=user, rop=rop))
        purpose = f"deactivated:{user}"
        await fx.once(
            purpose,
            act.notify_users,
            NotifyRequest(
                key=fx.key(purpose),
                user_ids=[rop],
                message=fx._rendered(
                    "notify_user_deactivated", user=str(user), work=", ".join(handed)
                ),
            ),
        )
        fx.details()
