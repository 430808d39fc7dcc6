"""Who opened the tab: the placement POST checked against the configured portal, and the user
learnt with `user.current` on that portal with the user's own token (`AUTH_ID`).

The POST's `DOMAIN` (query string) is never used: it is whatever the sender wrote. The
portal's REST base comes from configuration (`bitrix24.app_rest_url`, else the webhook's).
Facts: b24restdocs `api-reference/widgets/_includes/widget_data.md`,
`api-reference/widgets/crm/detail-tab.md`, `api-reference/user/user-current.md`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

import httpx

from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.integrations.bitrix24.errors import AuthError, Bitrix24Error
from salesflow.workflows.models import Actor

DEAL_TAB = "CRM_DEAL_DETAIL_TAB"


class Forbidden(Exception):
    """403: `reason` names a text of `texts.py` (never the token or the compared values)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PortalUnavailable(Exception):
    """The portal did not answer `user.current`: nobody is known, nothing is done."""


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def check_portal(form: Mapping[str, str], application_token: str, member_id: str) -> None:
    """The call came from the configured portal's installation of the application."""
    token_ok = _same(form.get("APPLICATION_TOKEN", ""), application_token)
    member_ok = _same(form.get("member_id", ""), member_id)
    if not (token_ok and member_ok):
        raise Forbidden("forbidden_portal")
    if not form.get("AUTH_ID"):
        raise Forbidden("forbidden_token")


def deal_id_of(form: Mapping[str, str]) -> int:
    """The deal's ID from `PLACEMENT_OPTIONS` (a JSON string: `{"ID":"8061","URI":…}`)."""
    if form.get("PLACEMENT") != DEAL_TAB:
        raise Forbidden("bad_placement")
    try:
        options = json.loads(form.get("PLACEMENT_OPTIONS") or "")
        deal_id = int(options["ID"])
    except (ValueError, TypeError, KeyError):
        raise Forbidden("bad_placement") from None
    if deal_id <= 0:
        raise Forbidden("bad_placement")
    return deal_id


async def current_user(
    rest_base: str,
    auth_id: str,
    *,
    rate_per_second: float = 2.0,
    burst: int = 50,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Actor:
    """`user.current` as the user; a refused token (401 expired/invalid) is Forbidden. The
    call takes its slot of the portal's bucket like every other call of this process."""
    client = Bitrix24Client(
        rest_base,
        access_token=auth_id,
        coalesce=False,
        timeout=10.0,
        transport=transport,
        rate_per_second=rate_per_second,
        burst=burst,
    )
    try:
        async with client:
            user = await client.call("user.current")
    except AuthError:
        raise Forbidden("forbidden_token") from None
    except Bitrix24Error as exc:
        if exc.status in (401, 403):
            raise Forbidden("forbidden_token") from None
        raise PortalUnavailable(exc.code) from None
    try:
        user_id = int(user["ID"])
    except (TypeError, KeyError, ValueError):
        raise PortalUnavailable("user.current answered without ID") from None
    name = " ".join(str(user.get(k) or "") for k in ("NAME", "LAST_NAME")).strip()
    return Actor(user_id=user_id, name=name, source="bitrix24")


def form_signature(key: str, deal_id: int, auth_id: str) -> str:
    """Binds an action form to the tab we rendered after the portal check (no sessions)."""
    message = f"deal-card:{deal_id}:{auth_id}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def check_signature(key: str, deal_id: int, auth_id: str, signature: str) -> None:
    if not auth_id or not _same(signature, form_signature(key, deal_id, auth_id)):
        raise Forbidden("forbidden_form")
