"""The deal card's «why» section (issue 15): the same story, chain and waiting line as
`salesflow deal why`, from the deal's `why` query."""

from __future__ import annotations

import logging
from html import escape

from temporalio.client import Client

from salesflow.workflows.names import deal_workflow_id
from salesflow.workflows.why import WhyRequest, WhyView

log = logging.getLogger(__name__)


async def read_why(temporal: Client, deal_id: int) -> WhyView | None:
    """The deal's `why` answer; None when it gives none (a worker older than the query, or
    Temporal away) — the rest of the card is shown without the section."""
    handle = temporal.get_workflow_handle(deal_workflow_id(deal_id))
    try:
        return await handle.query("why", WhyRequest(what="stage"), result_type=WhyView)
    except Exception as exc:  # the section is optional; the card must still show
        log.warning("why of deal %s not read: %s", deal_id, type(exc).__name__)
        return None


def why_section(why: WhyView | None) -> list[str]:
    if why is None or not (why.story or why.waiting):
        return []
    out = [f'<h2>{escape(why.title)}</h2><div id="why">']
    if why.waiting:
        out.append(f'<p id="why-waiting">{escape(why.waiting)}</p>')
    if why.chain:
        out.append('<ul id="why-chain">')
        out += [f"<li>{escape(line)}</li>" for line in why.chain]
        out.append("</ul>")
    out.append('<details><summary>…</summary><ol id="why-story">')
    out += [f"<li>{escape(line)}</li>" for line in why.story]
    out.append("</ol></details></div>")
    return out
