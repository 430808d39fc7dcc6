"""What the client receives about the work on the order (issue 14 item 6; the seed's
«уведомления клиентам о работе по заказу клиента»), each message once, from templates:

    the work moves                      message (template); key in `done`
    the logist's 1C task put to work /  client_order_logist_started / _done;
    executed                            client:logist_started|done:<child workflow>
    a process («Заказ Импорт»,          client_order_process_done;
    «Производство», «Закупки») done     client:process_done:<child workflow>
    «Срок поставки» changed, LAUNCH on  client_order_delivery_term; client:delivery_term:<value>
    the deal won (R-WON-1)              client_won_feedback + client_won_form_link (the
                                        configured CRM form); won:feedback_form

The messages follow the deal's state (its processes and the deal as last read), in a loop of
their own beside the stages, so a signal handler only changes state. «Срок поставки» set
before LAUNCH is the term agreed, not a move: it is noted without a message.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from temporalio import workflow

from salesflow.workflows import patches

with workflow.unsafe.imports_passed_through():
    from salesflow.workflows import rules as R
    from salesflow.workflows.deal_effects import DealEffects
    from salesflow.workflows.models import FINAL_STAGES, Stage

ORDER_MESSAGES = "client-order-messages"
WON_FORM_LINK = "won-feedback-form-link"
LOGIST_PROCESS = "1c_logist_task"  # ProcessState.kind of the logist's 1C task (children.py)
PROCESS_KINDS = ("import_order", "production", "purchasing")
ORDER_STAGES = frozenset({Stage.LAUNCH, Stage.ACCEPTED, Stage.TO_SHIP, Stage.SHIPPED})
TERM = "delivery_term"


@dataclass(frozen=True)
class News:
    purpose: str
    template: str | None  # None: only noted (client_seen), nothing sent
    values: dict[str, str]


class ClientMessages:
    def __init__(self, fx: DealEffects) -> None:
        self.fx = fx
        self.s = fx.s
        self.rules = fx.rules
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None and patches.patched(ORDER_MESSAGES):
            self._task = asyncio.create_task(self._follow())

    def won_text(self) -> str | None:
        """R-WON-1's text with the link to the configured CRM form (None: the template's)."""
        url = self.rules.feedback_form_url
        if not patches.patched(WON_FORM_LINK) or not url:
            return None
        link = R.render(self.fx._template("client_won_form_link"), form_url=url)
        return f"{self.rules.templates['client_won_feedback']}\n\n{link}"

    async def _follow(self) -> None:
        while True:
            await workflow.wait_condition(lambda: bool(self._news()))
            for news in self._news():
                await self._tell(news)

    def _news(self) -> list[News]:
        s, fx = self.s, self.fx
        if s.ended or (s.stage in FINAL_STAGES and s.stage != Stage.WON):
            return []
        found: list[News] = []
        for p in s.processes:
            if p.kind == LOGIST_PROCESS:
                what = s.client_seen.get(f"logist:{p.workflow_id}") or self._logist_title(
                    p.workflow_id
                )
                found.append(
                    News(f"client:logist_started:{p.workflow_id}", "started", {"what": what})
                )
                if p.state == "done":
                    found.append(
                        News(f"client:logist_done:{p.workflow_id}", "done", {"what": what})
                    )
            elif p.kind in PROCESS_KINDS and p.state == "done":
                process = fx._template(f"process_{p.kind}") or p.kind
                found.append(
                    News(f"client:process_done:{p.workflow_id}", "process", {"process": process})
                )
        term = fx.field(TERM).strip() if TERM in self.rules.fields else ""
        if term and term != s.client_seen.get(TERM):
            told = TERM in s.client_seen and s.stage in ORDER_STAGES
            found.append(News(f"client:{TERM}:{term}", "term" if told else None, {"term": term}))
        return [n for n in found if not self._settled(n)]

    def _settled(self, news: News) -> bool:
        done = self.s.done
        return news.purpose in done or f"failure:{news.purpose}" in done

    async def _tell(self, news: News) -> None:
        if news.template == "started":
            self.s.client_seen[f"logist:{news.purpose.split(':', 2)[2]}"] = news.values["what"]
        if news.purpose.startswith(f"client:{TERM}:"):
            self.s.client_seen[TERM] = news.values["term"]
            if news.template is None:
                return
        template = {
            "started": "client_order_logist_started",
            "done": "client_order_logist_done",
            "process": "client_order_process_done",
            "term": "client_order_delivery_term",
        }[news.template or ""]
        text = R.render(self.fx._template(template), deal_id=self.s.deal_id, **news.values)
        await self.fx.client_message(news.purpose, template, text=text)
        if not self._settled(news):  # e.g. interrupted: not asked again in this loop
            self.s.done.append(f"failure:{news.purpose}")

    def _logist_title(self, workflow_id: str) -> str:
        """The logist's task's title, found by the mirror's ID (children.py `_mirror_id`)."""
        prefix = f"deal-{self.s.deal_id}-1c-"
        for task in self.s.open_tasks:
            purpose = task.key.removeprefix(self.fx.key(""))
            if workflow_id == prefix + purpose.replace(":", "-"):
                return task.title
        return self.fx._template("task_ship_goods")
