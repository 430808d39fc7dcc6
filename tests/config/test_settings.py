"""Configuration: the sample file is valid, overrides apply, and every bad key is named."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w
from pydantic import BaseModel

from salesflow.config.settings import ConfigError, Settings, load_settings

SAMPLE = Path(__file__).resolve().parents[2] / "salesflow" / "config" / "salesflow.sample.toml"


def test_sample_file_is_valid_and_equals_the_defaults() -> None:
    assert load_settings(SAMPLE, environ={}) == load_settings(None, environ={})


def test_environment_overrides_file_and_contract_variables() -> None:
    settings = load_settings(
        SAMPLE,
        environ={
            "TEMPORAL_ADDRESS": "temporal:7233",
            "DATABASE_URL": "postgresql://salesflow@db/salesflow",
            "SALESFLOW_RULES__REMINDER_INTERVAL_MINUTES": "15",
        },
    )
    assert settings.temporal.address == "temporal:7233"
    assert settings.database.url == "postgresql+asyncpg://salesflow@db/salesflow"
    assert settings.rules.reminder_interval_minutes == 15


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[bitrix24]\nwebhook_url = "ftp://x"\n', "bitrix24.webhook_url"),
        ('[bitrix24]\napplication_token = " "\n', "bitrix24.application_token"),
        ('[database]\nurl = "mysql://x"\n', "database.url"),
        ("[portal.users]\nmanagers = []\n", "portal.users.managers"),
        ('[rules]\nwork_start = "19:00"\n', "rules"),
        ("[rules]\nreminder_interval_minutes = 0\n", "rules.reminder_interval_minutes"),
        ("[portal]\nunknown_key = 1\n", "portal.unknown_key"),
        ('[templates]\nno_such_template = "x"\n', "templates.no_such_template"),
        ("[smtp]\nport = 99999\n", "smtp.port"),
        ("[temporal\n", "not valid TOML"),
    ],
)
def test_bad_key_is_named(tmp_path: Path, toml: str, named: str) -> None:
    path = tmp_path / "salesflow.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={})
    assert named in str(err.value)


def test_missing_named_file_is_reported() -> None:
    with pytest.raises(ConfigError, match="SALESFLOW_CONFIG"):
        load_settings(environ={"SALESFLOW_CONFIG": "/nonexistent/salesflow.toml"})


def _leaves(model: type[BaseModel], prefix: str = "") -> list[str]:
    found: list[str] = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            found += _leaves(kind, f"{prefix}{name}.")
        elif not (getattr(kind, "__origin__", None) is dict or kind is dict):
            found.append(prefix + name)
    return found


def _nest(dotted: str, value: object) -> dict:
    out: dict = {}
    node = out
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return out


LEAVES = _leaves(Settings)


@pytest.mark.parametrize("dotted", LEAVES)
def test_every_key_with_a_wrong_value_is_named(tmp_path: Path, dotted: str) -> None:
    path = tmp_path / "salesflow.toml"
    path.write_text(tomli_w.dumps(_nest(dotted, {"not": "a value"})), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={})
    assert dotted in str(err.value)
