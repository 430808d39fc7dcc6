"""The deal's row on the deal board (the read model behind `salesflow deal list`).

Every change of the deal's details marks the row dirty; one short local activity per burst of
changes writes it. A database that is down costs a line in the deal's history, never the deal.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from salesflow.workflows import activity_stubs as act
    from salesflow.workflows.deal_effects import DealEffects
    from salesflow.workflows.models import BoardUpdate, Deadline


class BoardPublisher:
    def __init__(self) -> None:
        self.fx: DealEffects | None = None
        self._task: asyncio.Task[None] | None = None
        self._dirty = False
        self._busy = False

    def mark_dirty(self) -> None:
        self._dirty = True

    def start(self, fx: DealEffects) -> None:
        self.fx = fx
        self._task = asyncio.create_task(self._publish())

    async def flush(self) -> None:
        """Wait until the row shows the deal's last state (the deal is about to close)."""
        if self._task is None:
            return
        self._dirty = True
        await workflow.wait_condition(lambda: not self._dirty and not self._busy)

    async def _publish(self) -> None:
        assert self.fx is not None
        while True:
            await workflow.wait_condition(lambda: self._dirty)
            self._dirty, self._busy = False, True
            try:
                await workflow.execute_local_activity(
                    act.update_board,
                    self._row(self.fx),
                    start_to_close_timeout=timedelta(seconds=10),
                    schedule_to_close_timeout=timedelta(minutes=2),
                )
            except ActivityError:
                self.fx.record(self.fx.s.stage, "deal board not updated (database unavailable)")
            finally:
                self._busy = False

    @staticmethod
    def _row(fx: DealEffects) -> BoardUpdate:
        s = fx.s
        tranches = [
            Deadline(
                name=f"tranche_{t.number}",
                due=fx.end_of_working_day(t.due),
                overdue=t.state == "overdue",
            )
            for t in s.payment_schedule
            if t.state != "paid"
        ]
        return BoardUpdate(
            deal_id=s.deal_id,
            title=s.deal.title if s.deal else "",
            stage=s.stage,
            manager_id=s.manager_id,
            amount=fx.amount(),
            document_set=s.document_set,
            deadlines=[*s.deadlines, *tranches],
        )
