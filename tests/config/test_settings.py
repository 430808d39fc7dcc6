"""Configuration: the sample file is valid, overrides apply, and every bad key is named."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w
from pydantic import BaseModel

from salesflow.config.settings import (
    ConfigError,
    Settings,
    event_token_problem,
    load_settings,
    require_event_token,
)

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
        # one mechanism for every text (issue 12): names and placeholders checked
        ('[templates]\ntask_send_kp = "КП {deal_nme}"\n', "templates.task_send_kp: unknown"),
        ('[templates]\nrefusal_closed = "закрыто {stage"\n', "templates.refusal_closed: malformed"),
        ('[templates]\nrefusal_closed = "{fields}"\n', "unknown placeholder {fields}"),
        ('[deal_card.templates]\nno_such_text = "x"\n', "deal_card.templates.no_such_text"),
        ('[deal_card.templates]\nstage = "{x}"\n', "deal_card.templates.stage: unknown"),
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


# --- the pydantic-settings loader (issue 10 item 7) and the configuration findings of issue 11


def test_settings_without_the_loader_are_the_defaults_whatever_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "elsewhere:7233")
    monkeypatch.setenv("SALESFLOW_RULES__REMINDER_INTERVAL_MINUTES", "15")
    assert Settings() == load_settings(None, environ={})
    assert load_settings(SAMPLE).temporal.address == "elsewhere:7233"  # os.environ by default


def test_prefixed_variables_nest_and_win_over_the_short_names(tmp_path: Path) -> None:
    settings = load_settings(
        SAMPLE,
        environ={
            "TEMPORAL_ADDRESS": "short:7233",
            "SALESFLOW_TEMPORAL__ADDRESS": "prefixed:7233",
            "SALESFLOW_PORTAL__STAGES__NEW": "C7:NEW",  # upper-case keys, case-insensitively
            "SALESFLOW_PORTAL__USERS__MANAGERS": "[5, 6]",
            "SALESFLOW_RULES__TAKE_INTO_WORK__MINUTES": "30",
            "SMTP_PORT": "",  # empty variables are not set
        },
    )
    assert settings.temporal.address == "prefixed:7233"
    assert settings.portal.stages.NEW == "C7:NEW"
    assert settings.portal.users.managers == (5, 6)
    assert settings.rules.take_into_work.minutes == 30
    assert settings.smtp.port == 8025


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"SMTP_PORT": "many"}, "smtp.port (from SMTP_PORT)"),
        ({"SALESFLOW_RULES__REMINDER_INTERVAL_MINUTES": "0"}, "SALESFLOW_RULES__REMINDER"),
        ({"SALESFLOW_PORTAL__NO_SUCH_KEY": "1"}, "portal.no_such_key"),
        ({"SALESFLOW_NOSECTION__KEY": "1"}, "SALESFLOW_NOSECTION__KEY"),
        ({"TEMPORAL_ADDRESS": "http://temporal:7233"}, "temporal.address (from TEMPORAL_ADDRESS)"),
    ],
)
def test_a_bad_environment_variable_is_named(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(SAMPLE, environ=environ)
    assert named in str(err.value)


@pytest.mark.parametrize(
    "address", ["temporal", "temporal:", "temporal:0", "temporal:99999", "http://t:7233", " "]
)
def test_r_11_malformed_temporal_address_is_named(address: str) -> None:
    with pytest.raises(ConfigError, match=r"temporal\.address.*host:port"):
        load_settings(SAMPLE, environ={"SALESFLOW_TEMPORAL__ADDRESS": address})


@pytest.mark.parametrize("address", ["localhost:7233", "[::1]:7233", "ns.acct.tmprl.cloud:7233"])
def test_temporal_addresses_of_every_shape_load(address: str) -> None:
    assert load_settings(SAMPLE, environ={"TEMPORAL_ADDRESS": address}).temporal.address == address


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[portal.stages]\nNEW = ""\n', "portal.stages.NEW"),
        ('[portal.stages]\nWON = "  "\n', "portal.stages.WON"),
        ('[portal.fields]\nkp = ""\n', "portal.fields.kp"),
        ('[portal.approval]\nstage_new = ""\n', "portal.approval.stage_new"),
        ('[temporal]\ntask_queue = ""\n', "temporal.task_queue"),
        ('[smtp]\naccountant = ""\n', "smtp.accountant"),
        ('[rules]\ntimezone = ""\n', "rules.timezone"),
    ],
)
def test_r_11_empty_required_value_is_named(tmp_path: Path, toml: str, named: str) -> None:
    path = tmp_path / "salesflow.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={})
    assert f"{named}: Value error, must not be empty" in str(err.value)


def test_r_11_secrets_come_from_files(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n", encoding="utf-8")
    webhook = tmp_path / "webhook"
    webhook.write_text("https://portal.example.ru/rest/1/hook-secret/", encoding="utf-8")
    password = tmp_path / "pg"
    password.write_text("pg-pass\n", encoding="utf-8")
    smtp = tmp_path / "smtp"
    smtp.write_text("mail-pass", encoding="utf-8")
    settings = load_settings(
        SAMPLE,
        environ={
            "BITRIX24_APPLICATION_TOKEN_FILE": str(token),
            "BITRIX24_WEBHOOK_URL_FILE": str(webhook),
            "DATABASE_URL": "postgresql://salesflow@db/salesflow",
            "DATABASE_PASSWORD_FILE": str(password),
            "SALESFLOW_SMTP__PASSWORD_FILE": str(smtp),
        },
    )
    assert settings.bitrix24.application_token == "s3cret-token"
    assert settings.bitrix24.webhook_url == "https://portal.example.ru/rest/1/hook-secret/"
    assert settings.database.url == "postgresql+asyncpg://salesflow:pg-pass@db/salesflow"
    assert settings.smtp.password == "mail-pass"


def test_r_11_secret_file_unreadable_or_doubled_is_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "absent")
    with pytest.raises(ConfigError, match="BITRIX24_APPLICATION_TOKEN_FILE: cannot read"):
        load_settings(SAMPLE, environ={"BITRIX24_APPLICATION_TOKEN_FILE": missing})
    (tmp_path / "t").write_text("x", encoding="utf-8")
    both = {
        "BITRIX24_APPLICATION_TOKEN": "a",
        "BITRIX24_APPLICATION_TOKEN_FILE": str(tmp_path / "t"),
    }
    with pytest.raises(ConfigError, match=r"BITRIX24_APPLICATION_TOKEN and .*_FILE are both set"):
        load_settings(SAMPLE, environ=both)


def test_database_password_applies_to_postgresql_only() -> None:
    with pytest.raises(ConfigError, match=r"database: .*PostgreSQL only"):
        load_settings(SAMPLE, environ={"DATABASE_PASSWORD": "x"})


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({}, "is not set"),
        ({"BITRIX24_APPLICATION_TOKEN": ""}, "is not set"),  # an empty one: no fallback
        ({"BITRIX24_APPLICATION_TOKEN": "dev-app-token"}, "public token"),
        ({"BITRIX24_APPLICATION_TOKEN": "change-me"}, "public token"),
    ],
)
def test_r_11_no_public_application_token_outside_the_local_stack(
    environ: dict[str, str], problem: str
) -> None:
    settings = load_settings(SAMPLE, environ=environ)
    assert settings.bitrix24.application_token in ("", "dev-app-token", "change-me")
    with pytest.raises(ConfigError) as err:
        require_event_token(settings)
    assert "bitrix24.application_token (BITRIX24_APPLICATION_TOKEN)" in str(err.value)
    assert problem in str(err.value)


def test_a_portal_token_is_accepted() -> None:
    settings = load_settings(SAMPLE, environ={"BITRIX24_APPLICATION_TOKEN": "k3j4h5g6"})
    assert event_token_problem(settings) is None


def test_every_text_is_one_template_table(tmp_path: Path) -> None:
    """The deal card's texts, the refusals and the workflow's templates are replaced in
    `[templates]`; `[deal_card.templates]` (older files) still applies on top; a card text never
    travels in a deal's rules snapshot."""
    from salesflow.config.snapshot import build_rules
    from salesflow.deal_card.texts import Texts

    path = tmp_path / "salesflow.toml"
    path.write_text(
        '[templates]\nstage = "Этап"\nrefusal_closed = "закрыто: {stage}"\n'
        'task_send_kp = "КП клиенту"\n[deal_card.templates]\nyes = "Ага"\n',
        encoding="utf-8",
    )
    settings = load_settings(path, environ={})
    texts = Texts(settings.deal_card.templates, settings.templates)
    assert (texts("stage"), texts("yes"), texts("refusal_closed", stage="X")) == (
        "Этап",
        "Ага",
        "закрыто: X",
    )
    snapshot = build_rules(settings).templates
    assert snapshot["task_send_kp"] == "КП клиенту"
    assert "stage" not in snapshot and "refusal_closed" not in snapshot
