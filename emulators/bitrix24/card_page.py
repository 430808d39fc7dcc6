"""The deal card as the portal shows it, with each bound `CRM_DEAL_DETAIL_TAB` framed: the
portal posts the tab's form into an iframe from the signed-in user's browser.

`GET /_emulator/deal-card/{deal_id}?user_id=3` — the emulator has no sign-in, so the user is
named in the query (a rig stand-in for the portal's session). Each tab's form is the one
`placement_rig.deal_tab_request` builds (a fresh token of that user) and is submitted into
its frame when the page loads, as the portal's own script does.
"""

from __future__ import annotations

from html import escape

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from emulators.bitrix24.placement_rig import DEAL_TAB, deal_tab_request
from emulators.bitrix24.state import Portal


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def card_page_routes(app: FastAPI, portal: Portal) -> None:
    @app.get("/_emulator/deal-card/{deal_id}", response_class=HTMLResponse)
    async def deal_card(deal_id: int, user_id: int = 1) -> HTMLResponse:
        deal = portal.deals.get(deal_id)
        if deal is None:
            return HTMLResponse("<p>Сделка не найдена</p>", status_code=404)
        stage = portal.stage_index.get(str(deal.get("STAGE_ID")), {}).get("NAME", "")
        parts = [
            '<!doctype html><html lang="ru"><head><meta charset="utf-8">',
            f"<title>{_e(deal.get('TITLE', ''))}</title></head><body>",
            f"<h1>{_e(deal.get('TITLE', ''))}</h1>",
            f"<p>Стадия: <b>{_e(stage)}</b> · пользователь {_e(portal.user_name(user_id))}</p>",
        ]
        tabs = [p for p in portal.placements if p.placement == DEAL_TAB]
        if not tabs:
            parts.append("<p>Приложения не добавили вкладок в карточку сделки.</p>")
        try:
            request = deal_tab_request(portal, deal_id, user_id) if tabs else None
        except ValueError as exc:
            return HTMLResponse(f"<p>{_e(exc)}</p>", status_code=403)
        if request is not None:
            title = tabs[0].title or tabs[0].client_id
            fields = "".join(
                f'<input type="hidden" name="{_e(k)}" value="{_e(v)}">'
                for k, v in request.form.items()
            )
            parts += [
                f"<h2>{_e(title)}</h2>",
                f'<form id="tab" method="post" action="{_e(request.url)}" target="tab-frame">',
                f'{fields}<noscript><button type="submit">Открыть</button></noscript></form>',
                '<iframe name="tab-frame" id="tab-frame" style="width:100%;height:80vh;'
                'border:1px solid #ccc"></iframe>',
                '<script>document.getElementById("tab").submit();</script>',
            ]
        parts.append("</body></html>")
        return HTMLResponse("\n".join(parts))
