"""Messages of the batched Bitrix24 activities (issue 16 items 3 and 5): one activity, one
Bitrix24 `batch` request, for a stage's independent effects."""

from __future__ import annotations

from pydantic import Field

from salesflow.workflows.models import Carried


class LeaveStageRequest(Carried):
    """A stage left: the deal's new STAGE_ID written and the stage's automatic tasks completed,
    in one `batch`. Both are idempotent by nature (the same STAGE_ID again changes nothing; a
    completed task is read first and left alone), so a lost answer is simply asked again."""

    deal_id: int
    stage_id: str | None = None  # None: Bitrix24 shows the stage already (a person moved it)
    task_ids: list[int] = Field(default_factory=list)


class LeaveStageResult(Carried):
    completed: list[int] = Field(default_factory=list)  # completed now, before, or deleted
    failed: dict[int, str] = Field(default_factory=dict)  # refused by Bitrix24: why
