"""Accepted events into the inbox by group commit; new rows go straight to the forwarder.

A POST is answered only after the transaction holding its event has committed. New rows are
stored already claimed while the forwarder has room (`Forwarder.room`) and handed to it at
once, so the common path costs one shared write to record and one shared write to settle.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from salesflow.relay.forwarder import Forwarder
from salesflow.relay.group_commit import GroupCommit
from salesflow.store import inbox
from salesflow.store.inbox import NewEvent, Recorded


class Recorder:
    def __init__(self, engine: AsyncEngine, forwarder: Forwarder) -> None:
        self.engine = engine
        self.forwarder = forwarder
        self._commit: GroupCommit[NewEvent, Recorded] = GroupCommit(self._write)

    async def record(self, event: NewEvent) -> Recorded:
        """The event's row once it is durably in the inbox (`is_new` False for a repeat)."""
        return await self._commit.submit(event)

    async def _write(self, events: Sequence[NewEvent]) -> list[Recorded]:
        forwarder = self.forwarder
        done = await inbox.record_many(
            self.engine, events, claim=forwarder.room(), lease=forwarder.options.lease
        )
        for recorded in done:
            if recorded.claimed is not None:
                forwarder.submit(recorded.claimed)
            elif recorded.is_new:
                forwarder.fell_behind()
        return done

    async def close(self) -> None:
        await self._commit.close()
