"""R-X10: who may do what from the deal card — the configured policy, as a table."""

from __future__ import annotations

import pytest

from salesflow.config.settings import ConfigError, Settings
from salesflow.deal_card.policy import ACTIONS, Policy

MANAGER, OTHER_MANAGER, ROP, LOGIST, ACCOUNTANT, ENGINEER = 3, 4, 2, 5, 11, 6
DEFAULT = Policy.from_settings(Settings())


@pytest.mark.parametrize(
    ("action", "user", "responsible", "allowed"),
    [
        ("accept_lead", MANAGER, None, True),
        ("accept_lead", OTHER_MANAGER, None, True),
        ("accept_lead", ROP, None, False),
        ("accept_lead", LOGIST, None, False),
        ("reject_lead", ROP, None, True),
        ("reject_lead", MANAGER, None, True),
        ("reject_lead", ACCOUNTANT, None, False),
        ("kp_feedback", MANAGER, MANAGER, True),
        ("kp_feedback", OTHER_MANAGER, MANAGER, False),  # not this deal's responsible
        ("kp_feedback", ROP, MANAGER, True),
        ("set_payment_schedule", MANAGER, MANAGER, True),
        ("set_payment_schedule", ACCOUNTANT, MANAGER, False),
        ("record_payment", ACCOUNTANT, MANAGER, True),
        ("record_payment", MANAGER, MANAGER, False),
        ("record_payment", ROP, MANAGER, False),
        ("request_tasks", MANAGER, MANAGER, True),
        ("request_tasks", ENGINEER, MANAGER, False),
        ("start_process", ROP, None, True),
        ("documents_signed", MANAGER, MANAGER, True),
        ("documents_signed", LOGIST, MANAGER, False),
        ("lose_deal", MANAGER, MANAGER, True),
        ("lose_deal", MANAGER, None, False),
        ("lose_deal", OTHER_MANAGER, MANAGER, False),
        ("approval_decision", ROP, MANAGER, True),  # R-KP-6: the item's approver
        ("approval_decision", MANAGER, MANAGER, False),
    ],
)
def test_r_x10_default_policy(
    action: str, user: int, responsible: int | None, allowed: bool
) -> None:
    assert DEFAULT.may(action, user, responsible) is allowed


def test_r_x10_policy_is_configuration_and_unlisted_actions_keep_defaults() -> None:
    settings = Settings.model_validate(
        {
            "deal_card": {
                "accountants": [12],
                "permissions": {"record_payment": ["accountant", "rop"], "lose_deal": ["anyone"]},
            }
        }
    )
    policy = Policy.from_settings(settings)
    assert policy.may("record_payment", ROP, MANAGER)
    assert policy.may("record_payment", 12, MANAGER)
    assert not policy.may("record_payment", ACCOUNTANT, MANAGER)
    assert policy.may("lose_deal", ENGINEER, MANAGER)
    assert policy.may("accept_lead", MANAGER, None)  # default kept
    assert set(policy.permissions) == set(ACTIONS)


def test_r_x10_policy_roles() -> None:
    assert DEFAULT.roles_of(ROP, ROP) == {"anyone", "rop", "responsible"}
    assert DEFAULT.roles_of(MANAGER, None) == {"anyone", "manager"}
    assert DEFAULT.roles_of(LOGIST, MANAGER) == {"anyone", "logist"}
    assert DEFAULT.roles_of(ACCOUNTANT, MANAGER) == {"anyone", "accountant"}


def test_r_x10_unknown_action_or_role_fails_at_start() -> None:
    with pytest.raises(ConfigError, match=r"deal_card\.permissions\.approve_all"):
        Policy.from_settings(
            Settings.model_validate({"deal_card": {"permissions": {"approve_all": ["rop"]}}})
        )
    with pytest.raises(ValueError, match="permissions"):
        Settings.model_validate({"deal_card": {"permissions": {"lose_deal": ["boss"]}}})
