"""Issue 15: the deal card shows the deal's «why» (the same answer as `salesflow deal why`)."""

from __future__ import annotations

import html

from emulators.bitrix24.placement_rig import open_deal_tab
from salesflow.deal_card.why_section import why_section
from salesflow.workflows.why import WhyView
from tests.deal_card.conftest import MANAGER, Card


def test_issue_15_why_section_escapes_and_lists_the_chain() -> None:
    why = WhyView(
        deal_id=1,
        stage="KP",
        title="Почему",
        story=["02.12.2026 10:14 — стадия «КП»: <b>"],
        chain=["Договор и счёт: сумма 640 000 ₽ > 500 000 ₽"],
        waiting="Сейчас: стадия «КП» с 02.12.2026 10:14; сделка ждёт: действия менеджера.",
    )
    page = "\n".join(why_section(why))
    assert '<p id="why-waiting">Сейчас: стадия «КП»' in page
    assert "&lt;b&gt;" in page and "<b>" not in page
    assert "&gt; 500 000 ₽" in page
    assert why_section(None) == []


async def test_issue_15_the_tab_shows_what_the_deal_waits_for(card: Card) -> None:
    response = await open_deal_tab(card.portal, card.http, card.deal_id, MANAGER)
    assert response.status_code == 200, response.text
    page = html.unescape(response.text)
    assert "Почему сделка здесь и чего она ждёт" in page
    assert 'id="why-waiting">Сейчас: стадия «Новая заявка» с ' in page
