"""Who may do what from the deal card: a pure function of the configuration (`[deal_card]`
permissions, `portal.users`, the accountants) and the deal's responsible."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from salesflow.config.settings import ConfigError, Settings, default_deal_card_permissions

# The workflow's updates a person can send from the card (CONTRACT.md).
ACTIONS = (
    "accept_lead",
    "reject_lead",
    "kp_feedback",
    "approval_decision",
    "set_payment_schedule",
    "record_payment",
    "request_tasks",
    "start_process",
    "documents_signed",
    "lose_deal",
)
ROLE_ORDER = ("manager", "responsible", "rop", "accountant", "logist", "anyone")


@dataclass(frozen=True)
class Policy:
    permissions: Mapping[str, tuple[str, ...]]
    managers: frozenset[int]
    rop: int
    logist: int
    accountants: frozenset[int]

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        card, users = settings.deal_card, settings.portal.users
        unknown = sorted(set(card.permissions) - set(ACTIONS))
        if unknown:
            raise ConfigError(f"deal_card.permissions.{unknown[0]}: unknown action")
        # An action the configuration does not list keeps its default roles.
        permissions = {**default_deal_card_permissions(), **card.permissions}
        return cls(
            permissions={a: tuple(permissions.get(a, ())) for a in ACTIONS},
            managers=frozenset(users.managers),
            rop=users.rop,
            logist=users.logist,
            accountants=frozenset(card.accountants),
        )

    def roles_of(self, user_id: int, responsible: int | None) -> frozenset[str]:
        roles = {"anyone"}
        if user_id in self.managers:
            roles.add("manager")
        if responsible is not None and user_id == responsible:
            roles.add("responsible")
        if user_id == self.rop:
            roles.add("rop")
        if user_id in self.accountants:
            roles.add("accountant")
        if user_id == self.logist:
            roles.add("logist")
        return frozenset(roles)

    def allowed_roles(self, action: str) -> tuple[str, ...]:
        return self.permissions.get(action, ())

    def may(self, action: str, user_id: int, responsible: int | None) -> bool:
        return bool(set(self.allowed_roles(action)) & self.roles_of(user_id, responsible))
