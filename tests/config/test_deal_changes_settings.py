"""Settings of issue 14 items 6/7: currency rates, reopen, people refresh, the CRM form link —
carried into the deal's rules; a bad rate is refused naming it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from salesflow.config.settings import Settings
from salesflow.config.snapshot import build_rules


def test_the_settings_reach_the_rules() -> None:
    rules = build_rules(
        Settings.model_validate(
            {
                "rules": {"currency_rates": {"USD": 92.5}, "reopen": "new_run"},
                "portal": {"feedback_form_url": "https://b24.example.ru/pub/form/7/x/"},
            }
        )
    )
    assert rules.currency_rates == {"USD": 92.5} and rules.reopen == "new_run"
    assert rules.feedback_form_url == "https://b24.example.ru/pub/form/7/x/"
    assert rules.people_refresh_minutes == 60


@pytest.mark.parametrize("rates", [{"usd": 90.0}, {"USD": 0}, {"DOLLAR": 1.0}])
def test_a_bad_currency_rate_is_refused_naming_it(rates: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match="currency_rates"):
        Settings.model_validate({"rules": {"currency_rates": rates}})
