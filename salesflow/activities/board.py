"""The read model: the deal board row of a deal, written on each change of its workflow."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from salesflow.store.board import DealBoardRow, save_deal
from salesflow.workflows.models import BoardUpdate


class BoardActivities:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def all(self) -> list[object]:
        return [self.update_board]

    @activity.defn(name="update_board")
    async def update_board(self, update: BoardUpdate) -> None:
        row = DealBoardRow(
            deal_id=update.deal_id,
            title=update.title,
            stage=update.stage,
            manager_id=update.manager_id,
            amount=update.amount,
            document_set=update.document_set,
            overdue=any(d.overdue for d in update.deadlines),
            updated_at=activity.info().current_attempt_scheduled_time,
        )
        await save_deal(self.engine, row, [(d.name, d.due, d.overdue) for d in update.deadlines])
