"""The deal card's tab (`CRM_DEAL_DETAIL_TAB`): the portal's framed POST shows the deal's
process state and the actions valid now; each action is the workflow's update, sent with the
acting user. Served on the relay's port (`deal_card_router`), or alone (`create_app`).

- `POST /bitrix24/deal-card` — the placement handler: the form the portal has the user's
  browser post (`APPLICATION_TOKEN`, `member_id`, `AUTH_ID`, `PLACEMENT_OPTIONS`, …).
- `POST /bitrix24/deal-card/action` — a form of that page: the action, the user's `AUTH_ID`
  and a signature binding both to the deal; the user is asked of the portal again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from html import escape
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from salesflow.config.settings import PortalStages, Settings
from salesflow.deal_card import actions as A
from salesflow.deal_card.identity import (
    Forbidden,
    PortalUnavailable,
    check_portal,
    check_signature,
    current_user,
    deal_id_of,
    form_signature,
)
from salesflow.deal_card.page import Notice, PageContext, action_label, render
from salesflow.deal_card.policy import Policy
from salesflow.deal_card.texts import Texts
from salesflow.deal_card.why_section import read_why
from salesflow.integrations.bitrix24.client import Bitrix24Client, list_items
from salesflow.integrations.bitrix24.errors import Bitrix24Error
from salesflow.workflows.models import Actor, DealView, UpdateAck
from salesflow.workflows.names import deal_workflow_id

log = logging.getLogger("salesflow.deal_card")

TAB_PATH = "/bitrix24/deal-card"
ACTION_PATH = TAB_PATH + "/action"
MAX_FORM_BYTES = 64_000
# The page carries the user's token: never cached, never sent on as a referrer. Nothing that
# denies framing (X-Frame-Options, CSP frame-ancestors): the portal shows it in an iframe.
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


class StageNames:
    """Bitrix24's names of the pipeline's stages (`crm.status.list`), re-read every `ttl` s."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None) -> None:
        self.settings = settings
        self.transport = transport
        self.ttl = settings.deal_card.stage_names_ttl_seconds
        self.names: dict[str, str] = {}
        self.read_at = float("-inf")

    async def name(self, code: str) -> str:
        if time.monotonic() - self.read_at >= self.ttl:
            await self._read()
        status_id = getattr(self.settings.portal.stages, code, "")
        return self.names.get(status_id, code)

    async def all(self) -> dict[str, str]:
        """Every stage code with its name (the code itself where none is known)."""
        return {code: await self.name(code) for code in PortalStages.model_fields}

    async def _read(self) -> None:
        b24 = self.settings.bitrix24
        entity = f"DEAL_STAGE_{self.settings.portal.category_id}"
        client = Bitrix24Client(
            b24.webhook_url,
            coalesce=False,
            timeout=10.0,
            transport=self.transport,
            rate_per_second=b24.rate_per_second,
            burst=b24.burst,
        )
        try:
            async with client:
                rows = list_items(
                    await client.call("crm.status.list", {"filter": {"ENTITY_ID": entity}})
                )
        except Bitrix24Error as exc:
            log.warning("stage names not read: %s", exc.code)
            return
        self.names = {str(r["STATUS_ID"]): str(r["NAME"]) for r in rows if isinstance(r, dict)}
        self.read_at = time.monotonic()


class DealCard:
    def __init__(
        self,
        settings: Settings,
        temporal_client: Client | Callable[[], Client],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self._temporal = temporal_client
        self.transport = transport
        self.clock = clock
        self.texts = Texts(settings.deal_card.templates, settings.templates)
        self.policy = Policy.from_settings(settings)
        self.stage_names = StageNames(settings, transport)
        self.rest_base = settings.bitrix24.app_rest_base()
        self.form_key = "deal-card-form:" + settings.bitrix24.application_token

    @property
    def temporal(self) -> Client:
        return self._temporal() if callable(self._temporal) else self._temporal

    # ---- the two routes -------------------------------------------------------------------

    async def tab(self, request: Request) -> HTMLResponse:
        form = await _form(request)
        try:
            check_portal(
                form, self.settings.bitrix24.application_token, self.settings.deal_card.member_id
            )
            deal_id = deal_id_of(form)
            actor = await self._user(form["AUTH_ID"])
        except Forbidden as exc:
            return self._forbidden(exc)
        except PortalUnavailable:
            return self._plain(self.texts("portal_down"), 503)
        return await self._page(request, deal_id, actor, form["AUTH_ID"])

    async def action(self, request: Request) -> HTMLResponse:
        form = await _form(request)
        auth_id = form.get("AUTH_ID", "")
        try:
            deal_id = int(form.get("deal_id", ""))
        except ValueError:
            return self._forbidden(Forbidden("forbidden_form"))
        try:
            check_signature(self.form_key, deal_id, auth_id, form.get("sig", ""))
            actor = await self._user(auth_id)
        except Forbidden as exc:
            return self._forbidden(exc)
        except PortalUnavailable:
            return self._plain(self.texts("portal_down"), 503)
        name = form.get("action", "")
        label = action_label(name, self.texts)
        try:
            view = await self._state(deal_id)
        except _NoDeal as exc:
            return await self._page(
                request, deal_id, actor, auth_id, message=exc.message, status=exc.status
            )
        if view is None:
            return await self._page(request, deal_id, actor, auth_id)
        if name not in A.offered(view):
            stage = await self.stage_names.name(view.stage)
            reason = self.texts("refusal_wrong_stage", stage=stage)
            return await self._refused(
                request, deal_id, actor, auth_id, name, reason, 409, view, entered=form
            )
        if not self.policy.may(name, actor.user_id, view.manager_id):
            roles = ", ".join(self.texts(f"role_{r}") for r in self.policy.allowed_roles(name))
            reason = self.texts("policy_refused", roles=roles or "—")
            return await self._refused(
                request, deal_id, actor, auth_id, name, reason, 403, view, entered=form
            )
        today = self.clock().astimezone(ZoneInfo(self.settings.rules.timezone)).date()
        try:
            command = A.build(name, form, actor, self.texts, today)
        except A.BadInput as exc:
            return await self._refused(
                request, deal_id, actor, auth_id, name, str(exc), 422, view, entered=form
            )
        update_id = f"deal-card-{form.get('form_id') or secrets.token_hex(8)}-{name}"
        handle = self.temporal.get_workflow_handle(deal_workflow_id(deal_id))
        timeout = self.settings.deal_card.update_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                # the reply is a small UpdateAck; the page reads the deal with `state`
                await handle.execute_update(
                    command.update, command.payload, id=update_id, result_type=UpdateAck
                )
        except WorkflowUpdateFailedError as exc:
            reason = A.refusal(exc.cause or exc, self.texts, await self.stage_names.all())
            return await self._refused(
                request, deal_id, actor, auth_id, name, reason, 409, entered=form
            )
        except TimeoutError:
            reason = self.texts("unknown_outcome", seconds=f"{timeout:g}")
            return await self._refused(
                request, deal_id, actor, auth_id, name, reason, 504, entered=form
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                reason = self.texts("deal_gone")
                return await self._refused(
                    request, deal_id, actor, auth_id, name, reason, 409, entered=form
                )
            log.warning("update %s of deal %s failed: %s", name, deal_id, exc.status)
            reason = self.texts("temporal_down")
            return await self._refused(
                request, deal_id, actor, auth_id, name, reason, 503, entered=form
            )
        log.info(
            "deal card: %s by user %s on deal %s",
            name,
            actor.user_id,
            deal_id,
            extra={"deal_id": deal_id},
        )
        notice = Notice(name, True, self.texts("done", action=label))
        return await self._page(request, deal_id, actor, auth_id, notice=notice)

    # ---- helpers ---------------------------------------------------------------------------

    async def _user(self, auth_id: str) -> Actor:
        b24 = self.settings.bitrix24
        return await current_user(
            self.rest_base,
            auth_id,
            rate_per_second=b24.rate_per_second,
            burst=b24.burst,
            transport=self.transport,
        )

    async def _state(self, deal_id: int) -> DealView | None:
        handle = self.temporal.get_workflow_handle(deal_workflow_id(deal_id))
        try:
            return await handle.query("state", result_type=DealView)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise _NoDeal(self.texts("no_process"), 404) from None
            log.warning("state of deal %s not read: %s", deal_id, exc.status)
            raise _NoDeal(self.texts("temporal_down"), 503) from None
        except RuntimeError:  # the lazy client cannot reach Temporal
            raise _NoDeal(self.texts("temporal_down"), 503) from None

    async def _refused(
        self,
        request: Request,
        deal_id: int,
        actor: Actor,
        auth_id: str,
        action: str,
        reason: str,
        status: int,
        view: DealView | None = None,
        entered: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        # the form shows again what the person entered (issue 12: nothing to type twice)
        notice = Notice(action, False, self.texts("refused", reason=reason), dict(entered or {}))
        return await self._page(
            request, deal_id, actor, auth_id, notice=notice, status=status, view=view
        )

    async def _page(
        self,
        request: Request,
        deal_id: int,
        actor: Actor,
        auth_id: str,
        *,
        notice: Notice | None = None,
        message: str = "",
        status: int = 200,
        view: DealView | None = None,
    ) -> HTMLResponse:
        stage_name, names = "", {}
        if view is None and not message:
            try:
                view = await self._state(deal_id)
            except _NoDeal as exc:
                message, status = exc.message, exc.status
        if view is not None:
            stage_name = await self.stage_names.name(view.stage)
            for code in {entry.stage for entry in view.history}:
                names[code] = await self.stage_names.name(code)
            if view.stage in ("WON", "LOSE") and not message:
                message = self.texts("closed", stage=stage_name)
        context = PageContext(
            texts=self.texts,
            deal_id=deal_id,
            actor=actor,
            timezone=self.settings.rules.timezone,
            now=self.clock(),
            action_url=request.scope.get("root_path", "") + ACTION_PATH,
            auth_id=auth_id,
            signature=form_signature(self.form_key, deal_id, auth_id),
            policy=self.policy,
            view=view,
            stage_name=stage_name,
            stage_names=names,
            notice=notice,
            message=message,
            extra_hidden={"form_id": secrets.token_hex(8)},
            why=await read_why(self.temporal, deal_id) if view is not None else None,
        )
        return HTMLResponse(render(context), status_code=status, headers=HEADERS)

    def _forbidden(self, exc: Forbidden) -> HTMLResponse:
        return self._plain(self.texts("forbidden", reason=self.texts(exc.reason)), 403)

    def _plain(self, message: str, status: int) -> HTMLResponse:
        body = (
            '<!doctype html><html lang="ru"><head><meta charset="utf-8"></head><body>'
            f'<p id="message" role="alert">{escape(message)}</p></body></html>'
        )
        return HTMLResponse(body, status_code=status, headers=HEADERS)


class _NoDeal(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


async def _form(request: Request) -> Mapping[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        return {}


def deal_card_router(
    settings: Settings,
    temporal_client: Client | Callable[[], Client],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> APIRouter:
    """The tab's routes for the relay's app (`app.include_router(...)`)."""
    card = DealCard(settings, temporal_client, transport=transport)
    router = APIRouter()
    router.add_api_route(TAB_PATH, card.tab, methods=["POST"], include_in_schema=False)
    router.add_api_route(ACTION_PATH, card.action, methods=["POST"], include_in_schema=False)
    return router


def create_app(
    settings: Settings,
    temporal_client: Client | Callable[[], Client],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The tab as an app of its own (tests; a separate process if one is wanted)."""
    app = FastAPI(title="salesflow deal card", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(deal_card_router(settings, temporal_client, transport=transport))
    return app
