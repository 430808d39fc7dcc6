"""The reconciliation scan: deals of the «Продажа» category modified since the cursor become
inbox rows, so a deal whose event was dropped, or that changed while the relay was down, is
still signalled.

`crm.deal.list {filter: {CATEGORY_ID, >DATE_MODIFY: cursor - overlap}, order: {DATE_MODIFY: ASC,
ID: ASC}, start: -1}` pages by keys, not offsets (a deal modified during the scan moves to the
end of the order, which would shift offset pages): after a full page the rest of its last
second is walked by ID, then the scan goes on after that second. Each page is recorded before
the cursor (the greatest DATE_MODIFY recorded, in the database) moves past it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from salesflow.config.settings import Settings
from salesflow.relay import bitrix24_time
from salesflow.relay.forwarder import Bitrix24Caller, Forwarder
from salesflow.relay.observations import Unusable, from_scanned_deal
from salesflow.store import cursors

log = logging.getLogger("salesflow.relay")

CURSOR = "bitrix24.deal_scan.date_modify"
PAGE_SIZE = 50
_ORDER = {"DATE_MODIFY": "ASC", "ID": "ASC"}
_SELECT = ["ID", "DATE_MODIFY", "CATEGORY_ID"]


@dataclass
class ScanResult:
    since: str  # the lower bound used (exclusive)
    seen: int = 0  # deals listed
    recorded: int = 0  # inbox rows to forward: new, or re-opened (see `observations`)
    cursor: str | None = None  # the cursor after the scan


class DealScanner:
    def __init__(self, settings: Settings, engine: AsyncEngine, forwarder: Forwarder) -> None:
        self.settings = settings
        self.engine = engine
        self.forwarder = forwarder
        self.recorded_total = 0

    async def cursor(self) -> str | None:
        return await cursors.get(self.engine, CURSOR)

    async def scan(self) -> ScanResult:
        client = self.forwarder.bitrix24_client
        if client is None:
            raise RuntimeError("no Bitrix24 client configured")
        relay = self.settings.relay
        stored = await self.cursor()
        cursor = bitrix24_time.parse(stored)
        if cursor is None:
            since = datetime.now(UTC) - timedelta(minutes=relay.scan_lookback_minutes)
        else:
            since = cursor - timedelta(seconds=relay.scan_overlap_seconds)
        result = ScanResult(since=bitrix24_time.filter_value(since), cursor=stored)
        async for page in self._pages(client, since):
            result.seen += len(page)
            result.recorded += await self._record(page)
            latest = page[-1].get("DATE_MODIFY")
            moment = bitrix24_time.parse(latest)
            if moment is not None and (cursor is None or moment > cursor):
                cursor, result.cursor = moment, str(latest)
                await cursors.put(self.engine, CURSOR, result.cursor)
        if result.cursor is None:  # a first scan that found nothing: start here next time
            result.cursor = result.since
            await cursors.put(self.engine, CURSOR, result.cursor)
        log.info(
            "deal scan since %s: %s deals modified, %s inbox rows to forward, cursor %s",
            result.since,
            result.seen,
            result.recorded,
            result.cursor,
        )
        return result

    async def _pages(
        self, client: Bitrix24Caller, since: datetime
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of deals in (DATE_MODIFY, ID) order, each deal once."""
        lower, after_id = bitrix24_time.filter_value(since), None
        while True:
            filter_: dict[str, Any] = {"CATEGORY_ID": self.settings.portal.category_id}
            if after_id is None:
                filter_[">DATE_MODIFY"] = lower
            else:  # the rest of one second, by ID
                filter_.update({">=DATE_MODIFY": lower, "<=DATE_MODIFY": lower, ">ID": after_id})
            found = await client.call(
                "crm.deal.list",
                {"filter": filter_, "order": _ORDER, "select": _SELECT, "start": -1},
            )
            page = [row for row in found or [] if isinstance(row, dict)]
            if page:
                yield page
            if len(page) >= PAGE_SIZE:
                lower, after_id = str(page[-1].get("DATE_MODIFY")), page[-1].get("ID")
            elif after_id is not None:
                after_id = None  # that second is done: go on after it
            else:
                return

    async def _record(self, page: list[dict[str, Any]]) -> int:
        new = 0
        for deal in page:
            try:
                observation = from_scanned_deal(deal)
            except Unusable as exc:
                log.warning("deal scan: %s", exc)
                continue
            row_id, forward = await observation.record(self.engine)
            if forward:
                new += 1
                self.recorded_total += 1
                self.forwarder.kick(row_id)
        return new
