"""The portal's side of opening a widget: what a user's browser POSTs, framed in the deal card.

When a user opens the deal card's tab of an application (`CRM_DEAL_DETAIL_TAB`), the portal
issues that user an OAuth token for the application and has the browser POST to the
registered handler: `DOMAIN`, `PROTOCOL`, `LANG`, `APP_SID` in the query string, the rest as a
form (b24restdocs `api-reference/widgets/crm/detail-tab.md`,
`api-reference/widgets/_includes/widget_data.md`). Tests use `deal_tab_request` to get that
request (and tamper with it) and `open_deal_tab` to send it. Binding the tab is the product's
own `salesflow app install` (`salesflow/starter/app_install.py`), which `salesflow dev` uses.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx

from emulators.bitrix24.state import Placement, Portal

DEAL_TAB = "CRM_DEAL_DETAIL_TAB"
SERVER_ENDPOINT = "https://oauth.bitrix.info/rest/"


@dataclass(frozen=True)
class TabRequest:
    url: str  # the handler with the query string
    form: dict[str, str]


def bound_handler(portal: Portal, placement: str = DEAL_TAB) -> Placement:
    """The registration the portal shows; LookupError when no app bound the placement."""
    for bound in portal.placements:
        if bound.placement == placement:
            return bound
    raise LookupError(f"no application has bound {placement}: the card shows no tab")


def deal_tab_request(
    portal: Portal,
    deal_id: int,
    user_id: int,
    *,
    placement: str = DEAL_TAB,
    domain: str | None = None,
    https: bool = False,
    lang: str = "ru",
) -> TabRequest:
    """The POST the portal has `user_id`'s browser send when they open the deal's tab."""
    user = portal.users.get(user_id)
    if user is None or not user.get("ACTIVE", True):
        raise ValueError(f"user {user_id} cannot sign in to the portal")
    bound = bound_handler(portal, placement)
    app = portal.apps[bound.client_id]
    token = portal.issue_user_token(user_id, app.client_id)
    query = {
        "DOMAIN": domain or portal.domain or "127.0.0.1",
        "PROTOCOL": "1" if https else "0",
        "LANG": lang,
        "APP_SID": secrets.token_hex(16),
    }
    options = {
        "ID": str(deal_id),
        "URI": f"/crm/deal/details/{deal_id}/?IFRAME=Y&IFRAME_TYPE=SIDE_SLIDER",
    }
    ttl = portal.token_ttl
    form = {
        "AUTH_ID": token.access_token,
        "AUTH_EXPIRES": str(int(ttl)) if ttl is not None else "3600",
        "REFRESH_ID": token.refresh_token,
        "SERVER_ENDPOINT": SERVER_ENDPOINT,
        "APPLICATION_TOKEN": app.application_token,
        "APPLICATION_SCOPE": ",".join(sorted(app.scopes)),
        "member_id": portal.member_id,
        "status": "L",
        "PLACEMENT": placement,
        "PLACEMENT_OPTIONS": json.dumps(options, separators=(",", ":")),
    }
    separator = "&" if "?" in bound.handler else "?"
    return TabRequest(bound.handler + separator + urlencode(query), form)


async def open_deal_tab(
    portal: Portal, http: httpx.AsyncClient, deal_id: int, user_id: int, **options: object
) -> httpx.Response:
    """Open the deal's tab as `user_id` would: the handler's answer (the framed page)."""
    request = deal_tab_request(portal, deal_id, user_id, **options)  # type: ignore[arg-type]
    return await http.post(request.url, data=request.form)
