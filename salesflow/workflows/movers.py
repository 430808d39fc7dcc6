"""Who moved a deal (issue 12): a stage move in Bitrix24 carries no actor of its own, so the
deal's MOVED_BY_ID (else MODIFY_BY_ID — crm.deal fields, research/bitrix24.md) read with the
deal names the person; a CLI move names the operator."""

from __future__ import annotations

from salesflow.workflows.causes import cause
from salesflow.workflows.models import Actor, DealSnapshot

PERSON_MOVE = cause("moved_in_bitrix24")
CLI_MOVE = cause("moved_with_cli")


def bitrix24_mover(deal: DealSnapshot | None) -> Actor | None:
    if deal is None:
        return None
    for name in ("MOVED_BY_ID", "MODIFY_BY_ID"):
        raw = deal.fields.get(name)
        if isinstance(raw, str) and raw.isdigit() and int(raw):
            return Actor(user_id=int(raw), name=deal.moved_by_name, source="bitrix24")
    return None


def move_cause(actor: Actor | None) -> str:
    return CLI_MOVE if actor is not None and actor.source == "cli" else PERSON_MOVE
