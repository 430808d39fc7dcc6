"""placement.bind / placement.get / placement.unbind — widgets of the local application.

Application context only, by an administrator (b24restdocs `api-reference/widgets/
placement-bind.md`, `placement-get.md`, `placement-unbind.md`). The handler is what the
portal POSTs to when a user opens the widget (`placement_rig.py` plays that part).
"""

from __future__ import annotations

from typing import Any

from emulators.bitrix24.registry import CallContext, RestError, argument_error, method, param
from emulators.bitrix24.state import Placement
from emulators.bitrix24.values import to_int

# The CRM deal placements (`api-reference/widgets/crm/detail-tab.md`, `detail-toolbar.md`,
# `list-menu.md`, `detail-activity-area.md`); the only ones the product binds or tests use.
KNOWN_PLACEMENTS = frozenset(
    {
        "CRM_DEAL_DETAIL_TAB",
        "CRM_DEAL_DETAIL_ACTIVITY",
        "CRM_DEAL_DETAIL_TOOLBAR",
        "CRM_DEAL_LIST_MENU",
        "CRM_DEAL_LIST_TOOLBAR",
    }
)
# Only PAGE_BACKGROUND_WORKER accepts USER_ID (placement-bind.md), and it is not emulated.
_USER_MODE_PLACEMENTS: frozenset[str] = frozenset()


def _text(params: dict[str, Any], name: str) -> str:
    value = param(params, name)
    return value.strip() if isinstance(value, str) else ""


def _required(params: dict[str, Any], name: str) -> str:
    value = param(params, name)
    if value is not None and not isinstance(value, str):
        raise argument_error(f"The value of an argument '{name}' must be of type string", name)
    if not value or not value.strip():
        raise argument_error(f"Argument '{name}' is null or empty", name)
    return value.strip()


def _own(ctx: CallContext) -> list[Placement]:
    return [p for p in ctx.portal.placements if p.client_id == ctx.app_id]


@method("placement.bind", scope="placement", app_only=True, admin_only=True)
def placement_bind(ctx: CallContext, params: dict[str, Any]) -> bool:
    code = _required(params, "PLACEMENT").upper()
    handler = _required(params, "HANDLER")
    if code not in KNOWN_PLACEMENTS:
        raise RestError("ERROR_PLACEMENT_NOT_FOUND", "Placement not found")
    user_id = to_int(param(params, "USER_ID")) or 0
    if user_id and code not in _USER_MODE_PLACEMENTS:
        raise RestError("ERROR_PLACEMENT_USER_MODE", "User mode is not available")
    if any(p.placement == code and p.handler == handler for p in _own(ctx)):
        # The portal's wording (`api-reference/widgets/user-field/userfieldtype-add.md`).
        raise RestError("ERROR_CORE", "Unable to set placement handler: Handler already binded")
    lang_all = param(params, "LANG_ALL")
    options = param(params, "OPTIONS")
    ctx.portal.placements.append(
        Placement(
            client_id=str(ctx.app_id),
            placement=code,
            handler=handler,
            title=_text(params, "TITLE"),
            description=_text(params, "DESCRIPTION"),
            group_name=_text(params, "GROUP_NAME"),
            lang_all=dict(lang_all) if isinstance(lang_all, dict) else {},
            options=dict(options) if isinstance(options, dict) else {},
            user_id=user_id,
        )
    )
    return True


@method("placement.get", scope="placement", app_only=True, admin_only=True)
def placement_get(ctx: CallContext, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [p.as_dict() for p in _own(ctx)]


@method("placement.unbind", scope="placement", app_only=True, admin_only=True)
def placement_unbind(ctx: CallContext, params: dict[str, Any]) -> dict[str, int]:
    code = _required(params, "PLACEMENT").upper()
    handler = _text(params, "HANDLER")
    user_id = to_int(param(params, "USER_ID"))
    doomed = [
        p
        for p in _own(ctx)
        if p.placement == code
        and (not handler or p.handler == handler)
        and (user_id is None or p.user_id == user_id)
    ]
    for placement in doomed:
        ctx.portal.placements.remove(placement)
    # placement-unbind.md: +1 per handler found, +1 more per handler removed.
    return {"count": 2 * len(doomed)}
