"""Draining the portal's offline-event queue (bitrix24.md §9) into the inbox.

Safe loop, in the local application's context: `event.offline.get {clear: 0}` reserves a batch
under a process id → every row is recorded in the inbox (as `observations.from_offline`, so a
row and a scan of the same modification make one inbox row) → `event.offline.clear
{process_id}`; rows that cannot become inbox rows go to `event.offline.error`. The process id is
kept in the database until the clear, so a batch reserved before a crash or a database outage
is read again (`get {process_id}`) and finished, never stranded.

Without the `rest_offline_extended` feature (`clear: 0` answers a license error) rows are
listed with `event.offline.list`, recorded, and only then removed by `event.offline.get
{clear: 1}` limited to the IDs recorded; rows it returns changed meanwhile are recorded too.

The application's access token expires hourly: an OAuth client (`Bitrix24Client` with a token)
given to the drainer is called through `RefreshingCaller`, which refreshes the token on
`expired_token` and keeps each new pair in the database (`store/app_tokens.py`); a refused
refresh is logged with what to do, and the drain fails until then (the webhook path does not).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from salesflow.config.settings import Settings
from salesflow.integrations.bitrix24.errors import Bitrix24Error
from salesflow.integrations.bitrix24.oauth import RefreshingCaller, TokenBearer, TokenRefreshError
from salesflow.relay.app_token import AppTokenRefused, application_tokens, refusal_hint
from salesflow.relay.forwarder import Bitrix24Caller, Forwarder
from salesflow.relay.observations import Unusable, from_offline
from salesflow.starter.app_install import bind_offline_events
from salesflow.store import cursors

log = logging.getLogger("salesflow.relay")

PROCESS_CURSOR = "bitrix24.offline.process_id"
MAX_BATCHES = 20  # per run; the next run goes on
RESERVE, LIST_AND_CLEAR = "reserve", "list+clear"


@dataclass
class DrainResult:
    mode: str
    read: int = 0  # queue rows read
    recorded: int = 0  # inbox rows to forward: new, or re-opened (`observations`)
    cleared: int = 0  # rows removed from the queue
    errors: int = 0  # rows handed to event.offline.error


def _is_license_error(exc: Exception) -> bool:
    if not isinstance(exc, Bitrix24Error):
        return False
    return "LICENSE" in exc.code.upper() or "license" in exc.description.lower()


def _version(row: Mapping[str, Any]) -> tuple[str, str, str]:
    return str(row.get("ID")), str(row.get("MESSAGE_ID")), str(row.get("TIMESTAMP_X"))


def _events(answer: Any) -> list[dict[str, Any]]:
    events = answer.get("events") if isinstance(answer, Mapping) else None
    return [e for e in events or [] if isinstance(e, dict)]


class OfflineDrainer:
    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        forwarder: Forwarder,
        client: Bitrix24Caller | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.forwarder = forwarder
        self.tokens = application_tokens(settings, engine)
        self.client = client
        self.mode = RESERVE
        self.recorded_total = 0
        self._bound = False
        self._process_id: str | None = None
        self._refused: str | None = None

    @property
    def client(self) -> Bitrix24Caller | None:
        return self._client

    @client.setter
    def client(self, client: Bitrix24Caller | None) -> None:
        """An OAuth client (one that carries a replaceable token) is called through the token
        holder, which refreshes the token when it expires; other callers are used as they are."""
        self._client = client
        self._caller: Bitrix24Caller | None = client
        if isinstance(client, TokenBearer) and client.access_token is not None:
            self._caller = RefreshingCaller(client, self.tokens)

    @property
    def batch(self) -> int:
        return self.settings.relay.offline_batch

    async def drain(self) -> DrainResult:
        try:
            result = await self._drain()
        except TokenRefreshError as exc:
            hint = refusal_hint(exc)
            message = f"the local application's token cannot be refreshed ({exc}): {hint}"
            if message != self._refused:
                log.error("offline-queue drain stopped: %s", message)
            self._refused = message
            raise AppTokenRefused(message) from exc
        self._refused = None
        return result

    async def _drain(self) -> DrainResult:
        client = self._caller
        if client is None:
            raise RuntimeError("no application client for the offline queue")
        if not self._bound:
            try:
                await self._bind(client)
            except TokenRefreshError:
                raise
            except Exception as exc:  # drain what is bound; binding is tried again next run
                log.warning("could not bind the offline events: %s", exc)
        if self.mode == RESERVE:
            result = await self._drain_reserved(client)
        else:
            result = await self._drain_listed(client)
        if result.read:
            log.info(
                "offline queue (%s): %s rows read, %s inbox rows to forward, %s cleared, %s errors",
                result.mode,
                result.read,
                result.recorded,
                result.cleared,
                result.errors,
            )
        return result

    # ---- bindings ----------------------------------------------------------------------------

    async def _bind(self, client: Bitrix24Caller) -> None:
        """Bind the configured events as offline where they are not bound yet (the same code
        as `salesflow app install`)."""
        for event in await bind_offline_events(client, self.settings.relay.offline_events):
            log.info("bound %s as an offline event", event)
        self._bound = True

    # ---- with rest_offline_extended: reserve, record, clear ----------------------------------

    async def _drain_reserved(self, client: Bitrix24Caller) -> DrainResult:
        result = DrainResult(RESERVE)
        if self._process_id is None:
            self._process_id = await cursors.get(self.engine, PROCESS_CURSOR)
        for _ in range(MAX_BATCHES):
            resumed = self._process_id
            params: dict[str, Any] = {"clear": 0, "limit": self.batch}
            if resumed is not None:
                params["process_id"] = resumed  # a batch reserved before and not cleared
            try:
                answer = await client.call("event.offline.get", params)
            except Exception as exc:
                if resumed is not None or not _is_license_error(exc):
                    raise
                log.warning(
                    "the portal lacks rest_offline_extended (%s): draining the offline queue by"
                    " event.offline.list, then event.offline.get {clear: 1} for rows recorded",
                    exc,
                )
                self.mode = LIST_AND_CLEAR
                return await self._drain_listed(client)
            events = _events(answer)
            process_id = resumed or (answer.get("process_id") if events else None)
            if process_id is None:
                break
            if resumed is None:
                self._process_id = str(process_id)
                await cursors.put(self.engine, PROCESS_CURSOR, self._process_id)
            failed = await self._record(events, result)
            await self._finish(client, self._process_id or "", events, failed, result)
            if resumed is None and len(events) < self.batch:
                break
        return result

    async def _finish(
        self,
        client: Bitrix24Caller,
        process_id: str,
        events: Sequence[Mapping[str, Any]],
        failed: list[str],
        result: DrainResult,
    ) -> None:
        """Errors first (they leave the batch), then clear the rest of it."""
        failed = [message for message in failed if message]
        if failed:
            log.error("offline rows handed to event.offline.error: %s", ", ".join(failed))
            await client.call(
                "event.offline.error", {"process_id": process_id, "message_id": failed}
            )
            result.errors += len(failed)
        await client.call("event.offline.clear", {"process_id": process_id})
        result.cleared += len(events) - len(failed)
        self._process_id = None
        await cursors.remove(self.engine, PROCESS_CURSOR)

    # ---- without it: list, record, then clear what was recorded ------------------------------

    async def _drain_listed(self, client: Bitrix24Caller) -> DrainResult:
        result = DrainResult(LIST_AND_CLEAR)
        for _ in range(MAX_BATCHES):
            listed = await client.call(
                "event.offline.list", {"filter": {"ERROR": 0}, "order": {"ID": "ASC"}, "start": 0}
            )
            free = [r for r in listed or [] if isinstance(r, dict) and not r.get("PROCESS_ID")]
            free = free[: self.batch]
            if not free:
                break
            unusable = set(await self._record(free, result))
            for row in free:  # no error rows without the feature: the log keeps them
                if str(row.get("MESSAGE_ID") or "") in unusable:
                    log.error("offline row dropped from the queue: %s", row)
            ids = [int(row["ID"]) for row in free]
            answer = await client.call(
                "event.offline.get", {"clear": 1, "filter": {"@ID": ids}, "limit": len(ids)}
            )
            taken = _events(answer)
            result.cleared += len(taken)
            seen = {_version(row) for row in free}
            changed = [row for row in taken if _version(row) not in seen]  # upserted meanwhile
            if changed:
                await self._record(changed, result)
            if len(free) < self.batch:
                break
        return result

    # ---- rows → inbox ------------------------------------------------------------------------

    async def _record(self, events: Sequence[Mapping[str, Any]], result: DrainResult) -> list[str]:
        """Record every usable row (a database failure raises); the MESSAGE_IDs of the others."""
        unusable: list[str] = []
        for row in events:
            result.read += 1
            try:
                observation = from_offline(row)
            except Unusable as exc:
                log.error("%s: not recorded", exc)
                unusable.append(str(row.get("MESSAGE_ID") or ""))
                continue
            row_id, forward = await observation.record(self.engine)
            if forward:
                result.recorded += 1
                self.recorded_total += 1
                self.forwarder.kick(row_id)
        return unusable
