"""What the systems themselves recorded, by idempotency key (`deal:<id>:<purpose>`): Bitrix24
tasks (XML_ID), client e-mails (the ORIGIN_ID of the e-mail activity that sent them),
notifications (TAG, per recipient), «Согласование» items (xmlId), linked «Инженеры» deals
(ORIGIN_ID), 1C tasks (ИдентификаторБитрикс24) and the accountant's mail (Message-ID)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from salesflow.activities.onec import task_key_in
from tests.faults.deals import Deal
from tests.faults.stack import FaultStack

APPROVAL_ENTITY_TYPE = 1032
KINDS = (
    "tasks",
    "client_emails",
    "notifications",
    "items",
    "onec_tasks",
    "accountant_mails",
    "linked_deals",
)


def _split(key: Any) -> tuple[int, str] | None:
    """(deal id, purpose) of a key `deal:<id>:<purpose>`; None for anything else."""
    parts = str(key or "").split(":", 2)
    if len(parts) != 3 or parts[0] != "deal" or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[2]


def _mail_key(message_id: str) -> str:
    """`<deal.8000001.sh.mail_accountant@salesflow>` → `deal:8000001:sh:mail_accountant`."""
    return message_id.strip().strip("<>").split("@", 1)[0].replace(".", ":")


class Records:
    def __init__(self, stack: FaultStack) -> None:
        portal = stack.portal
        activities = {str(a["ID"]): a for a in portal.activities.values()}
        self.keys: dict[str, list[Any]] = {
            "tasks": [t.get("XML_ID") for t in portal.tasks.values()],
            "client_emails": [
                activities.get(str(e["ACTIVITY_ID"]), {}).get("ORIGIN_ID") for e in portal.emails
            ],
            "notifications": [(n.get("USER_ID"), n.get("TAG")) for n in portal.notifications],
            "items": [i.get("xmlId") for i in portal.items.get(APPROVAL_ENTITY_TYPE, {}).values()],
            "onec_tasks": [
                task_key_in(t.get("Описание"))
                for t in stack.onec_base.all("Task_ЗадачаИсполнителя")
            ],
            "accountant_mails": [
                _mail_key(str(m.get("Message-ID") or "")) for m in stack.mailbox.messages
            ],
            "linked_deals": [d.get("ORIGIN_ID") for d in portal.deals.values()],
        }
        self.sent_notifications = [
            (n.get("USER_ID"), n.get("TAG")) for n in portal.notification_log
        ]

    def found_for(self, deal: Deal) -> dict[str, list[Any]]:
        """Per kind, the purposes recorded for `deal`, once per record (repeats included)."""
        found: dict[str, list[Any]] = {}
        for kind, keys in self.keys.items():
            found[kind] = []
            for key in keys:
                user, tag = key if kind == "notifications" else (None, key)
                split = _split(tag)
                if split is None or split[0] != deal.id:
                    continue
                found[kind].append((user, split[1]) if kind == "notifications" else split[1])
        return found

    def repeated(self, kind: str, deal_ids: set[int]) -> dict[str, int]:
        """Keys of these deals recorded more than once."""
        return _repeats(self.keys[kind], deal_ids)

    def resent_notifications(self, deal_ids: set[int]) -> dict[str, int]:
        """(user, tag) pairs the messenger received more than once (each replaced the last)."""
        return _repeats(self.sent_notifications, deal_ids)


def _repeats(keys: list[Any], deal_ids: set[int]) -> dict[str, int]:
    counted: Counter[str] = Counter()
    for key in keys:
        tag = key[1] if isinstance(key, tuple) else key
        split = _split(tag)
        if split is not None and split[0] in deal_ids:
            counted[str(key)] += 1
    return {key: n for key, n in counted.items() if n > 1}
