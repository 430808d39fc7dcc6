"""Settings: one TOML file (see `config/salesflow.sample.toml`) plus environment overrides.

Resolution order, later wins: built-in defaults (the local dev stack), the TOML file named by
`SALESFLOW_CONFIG` (or `./salesflow.toml` when present), `SALESFLOW_<SECTION>__<KEY>` variables,
and the short variables of the contract (`TEMPORAL_ADDRESS`, `DATABASE_URL`, ...).
"""

from __future__ import annotations

import os
import tomllib
from datetime import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from salesflow.integrations.onec.profiles import OneCNames, names_for


class ConfigError(Exception):
    """The configuration is missing a key or holds a bad value; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TemporalSettings(_Section):
    address: str = "localhost:7233"
    namespace: str = "default"
    task_queue: str = "sales-pipeline"


class Bitrix24Settings(_Section):
    webhook_url: str = "http://127.0.0.1:8081/rest/1/devsecret/"
    application_token: str = "dev-app-token"
    rate_per_second: float = Field(2.0, gt=0)
    burst: int = Field(50, ge=1)

    @field_validator("webhook_url")
    @classmethod
    def _webhook_shape(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or "/rest/" not in value:
            raise ValueError("must look like https://<portal>/rest/<user_id>/<secret>/")
        return value if value.endswith("/") else value + "/"

    @field_validator("application_token")
    @classmethod
    def _token_present(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    app_access_token: str = Field(
        "",
        description=(
            "OAuth access token of the portal's local application (admin, scope crm and task):"
            " the relay drains the offline-event queue (event.offline.*) with it; empty turns"
            " offline draining off"
        ),
    )
    app_rest_url: str = Field(
        "",
        description=(
            "The portal's REST base for the application's calls, https://<portal>/rest/;"
            " empty: the portal of webhook_url"
        ),
    )

    @field_validator("app_rest_url")
    @classmethod
    def _rest_base_shape(cls, value: str) -> str:
        if not value:
            return value
        shaped = value.startswith(("http://", "https://")) and value.rstrip("/").endswith("/rest")
        if not shaped:
            raise ValueError("must look like https://<portal>/rest/")
        return value if value.endswith("/") else value + "/"

    def app_rest_base(self) -> str:
        """`app_rest_url`, or the `/rest/` of the webhook's portal."""
        return self.app_rest_url or self.webhook_url.split("/rest/", 1)[0] + "/rest/"

    app_client_id: str = Field(
        "",
        description=(
            "The local application's client_id (its «Код приложения», local.….…): with"
            " app_client_secret and app_refresh_token the relay refreshes app_access_token when it"
            " expires (hourly); all three empty: no refresh, the drain stops at the expiry"
        ),
    )
    app_client_secret: str = Field(
        "", description="The local application's client_secret («Ключ приложения»)"
    )
    app_refresh_token: str = Field(
        "",
        description=(
            "The refresh token issued with app_access_token (valid ~28 days, spent by its first"
            " use); the relay keeps each new pair in the database and uses that after a restart"
        ),
    )
    oauth_url: str = Field(
        "https://oauth.bitrix.info/oauth/token/",
        description="The OAuth server's token endpoint the refresh goes to",
    )

    @field_validator("oauth_url")
    @classmethod
    def _oauth_url_shape(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must look like https://oauth.bitrix.info/oauth/token/")
        return value

    @model_validator(mode="after")
    def _refresh_complete(self) -> Bitrix24Settings:
        refresh = {
            "app_client_id": self.app_client_id,
            "app_client_secret": self.app_client_secret,
            "app_refresh_token": self.app_refresh_token,
        }
        missing = [f"bitrix24.{key}" for key, value in refresh.items() if not value.strip()]
        if missing and len(missing) < len(refresh):
            raise ValueError(
                f"set {', '.join(missing)} too: refreshing the application's token needs"
                " app_client_id, app_client_secret and app_refresh_token (or leave all three empty)"
            )
        return self

    def app_refresh_configured(self) -> bool:
        return bool(self.app_client_id and self.app_client_secret and self.app_refresh_token)


class OneCSettings(_Section):
    odata_url: str = "http://127.0.0.1:8082/trade/odata/standard.odata/"
    user: str = "odata"
    password: str = "odata"
    timezone: str = "Europe/Moscow"
    outage_notify_after_minutes: int = Field(30, ge=1)
    russia_marker: str = Field(
        "Россия",
        min_length=1,
        description=(
            "R-KP-2: the КП's lines are written into the deal's product rows only when the"
            " deal's direction (portal.fields.direction) contains this text, case-insensitive;"
            " otherwise the rows stay and a timeline comment says why"
        ),
    )
    kp_number_prefix: str = Field(
        "КП-",
        description=(
            "The КП is found in 1C by the number in the deal field portal.fields.kp (default"
            " UF_CRM_KP): first as typed, then as this prefix + the digits zero-padded to"
            " kp_number_length («кп 123» → «КП-000123»); the newest of equal numbers wins"
        ),
    )
    kp_number_length: int = Field(
        9, ge=1, le=50, description="Length of a КП number in 1C, prefix included"
    )
    logist_user: str = Field(
        "Логистов Пётр Сергеевич",
        min_length=1,
        description=(
            "The 1C user (Catalog_Пользователи: Description or Ref_Key) who gets the"
            " mirrored logistics task (R-X6, R-AC-3)"
        ),
    )
    act_document: str = Field(
        "",
        description=(
            "Entity set of the acts of completed works (e.g. Document_АктВыполненныхРабот);"
            " empty: the base has none published and closing documents are УПД"
            " (Document_РеализацияТоваровУслуг) only"
        ),
    )
    profile: Literal["ut11", "erp2", "bp3"] = Field(
        "ut11",
        description=(
            "The standard configuration of the base: ut11 (УТ 11.5), erp2 (ERP 2) or bp3"
            " (БП 3.0); it names every 1C object and attribute the product uses (docs/ONEC.md)"
        ),
    )
    names: dict[str, str] = Field(
        default_factory=dict,
        description=(
            'Per-name overrides of the profile for a customised base, e.g. {kp = "Document_КП"}'
            " (the terms are listed in docs/ONEC.md)"
        ),
    )
    extension: bool = Field(
        False,
        description=(
            "The optional salesflow configuration extension is installed (docs/ONEC.md): the"
            " 1C task also carries ИдентификаторБитрикс24 and СсылкаБитрикс24"
        ),
    )

    def one_c_names(self) -> OneCNames:
        """The profile's names with `names` and `act_document` applied."""
        overrides = dict(self.names)
        if self.act_document and "act" not in overrides:
            overrides["act"] = self.act_document
        return names_for(self.profile, overrides)

    @model_validator(mode="after")
    def _names_known(self) -> OneCSettings:
        try:
            self.one_c_names()
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return self


class DatabaseSettings(_Section):
    url: str = "sqlite+aiosqlite:///.salesflow/salesflow.db"

    @field_validator("url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if value.startswith(("postgresql://", "postgres://")):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("use sqlite+aiosqlite:///path or postgresql+asyncpg://user@host/db")
        return value


class SmtpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8025, ge=1, le=65535)
    sender: str = "salesflow@example.ru"
    accountant: str = "buh@example.ru"
    user: str = ""
    password: str = ""
    starttls: bool = False


class RelaySettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    offline_interval_seconds: float = Field(
        30.0,
        ge=0,
        description=(
            "How often the offline-event queue is drained (needs bitrix24.app_access_token);"
            " 0 turns draining off"
        ),
    )
    offline_batch: int = Field(
        50, ge=1, le=1000, description="Queue rows taken per event.offline.get call"
    )
    offline_events: tuple[str, ...] = Field(
        ("ONCRMDEALADD", "ONCRMDEALUPDATE", "ONTASKADD", "ONTASKUPDATE"),
        description=(
            "Events the relay binds as offline (event.bind event_type=offline) when they are"
            " not bound yet; empty: bind nothing, drain whatever is bound"
        ),
    )
    scan_interval_seconds: float = Field(
        300.0,
        ge=0,
        description=(
            "How often deals of the «Продажа» category modified since the cursor are signalled"
            " (the reconciliation scan); 0 turns the scan off"
        ),
    )
    scan_lookback_minutes: int = Field(
        60,
        ge=0,
        description="The very first scan (no cursor stored yet) starts this long before now",
    )
    scan_overlap_seconds: int = Field(
        60,
        ge=0,
        description=(
            "Each scan starts this far before the cursor (clock skew between the portal's servers,"
            " changes committed late, equal timestamps); re-seen modifications are duplicates"
        ),
    )


class PortalStages(_Section):
    """Bitrix24 STATUS_ID of each pipeline stage (PIPELINE.md codes → portal IDs)."""

    NEW: str = "C1:NEW"
    IN_WORK: str = "C1:PREPARATION"
    KP: str = "C1:UC_KP"
    CONTRACT: str = "C1:UC_CONTRACT"
    INVOICE: str = "C1:UC_INVOICE"
    LAUNCH: str = "C1:UC_LAUNCH"
    ACCEPTED: str = "C1:UC_ACCEPTED"
    TO_SHIP: str = "C1:UC_TO_SHIP"
    SHIPPED: str = "C1:UC_SHIPPED"
    WON: str = "C1:WON"
    LOSE: str = "C1:LOSE"


class PortalFields(_Section):
    """Deal field codes (user fields or standard fields) the pipeline reads and writes."""

    priority: str = "UF_CRM_PRIORITY"
    kp: str = "UF_CRM_KP"
    client: str = "CONTACT_ID"
    kp_date: str = "UF_CRM_KP_DATE"
    delivery_term: str = "UF_CRM_DELIVERY_TERM"
    direction: str = "UF_CRM_DIRECTION"
    kp_status: str = "UF_CRM_KP_STATUS"
    invoice: str = "UF_CRM_INVOICE"
    contract: str = "UF_CRM_CONTRACT"
    payment_terms: str = "UF_CRM_PAYMENT_TERMS"
    signed_invoice: str = "UF_CRM_SIGNED_INVOICE"
    signed_contract: str = "UF_CRM_SIGNED_CONTRACT"
    payment_date: str = "UF_CRM_PAYMENT_DATE"
    act: str = "UF_CRM_ACT"
    upd: str = "UF_CRM_UPD"
    loss_reason: str = "UF_CRM_LOSS_REASON"
    loss_comment: str = "UF_CRM_LOSS_COMMENT"
    reject_reason: str = "UF_CRM_REJECT_REASON"
    payment_schedule: str = "UF_CRM_PAYMENT_SCHEDULE"
    inn: str = "UF_CRM_INN"


class PortalUsers(_Section):
    rop: int = 2
    managers: tuple[int, ...] = (3, 4)
    logist: int = 5
    engineers: int = 6
    purchasing: int = 7
    production: int = 8
    lawyer: int = 9
    metrologist: int = 10
    director: int = 0  # the reminder ladder's last rung (R-X4); 0: none

    @field_validator("managers")
    @classmethod
    def _some_managers(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("list at least one sales manager")
        return value


class ApprovalSettings(_Section):
    """The smart process «Согласование» (R-KP-6): its entityTypeId, pipeline and stages."""

    entity_type_id: int = 1032
    category_id: int = 3
    stage_new: str = "DT1032_3:NEW"
    stage_approved: str = "DT1032_3:SUCCESS"
    stage_rejected: str = "DT1032_3:FAIL"
    poll_minutes: int = Field(10, ge=1)


class PortalSettings(_Section):
    category_id: int = 1
    engineers_category_id: int = 2
    approval: ApprovalSettings = ApprovalSettings()
    stages: PortalStages = PortalStages()
    fields: PortalFields = PortalFields()
    users: PortalUsers = PortalUsers()
    enums: dict[str, dict[str, int]] = Field(
        default_factory=lambda: {
            "priority": {"A": 11, "B": 12, "C": 13},
            "kp_status": {"agreed": 21, "not_agreed": 22},
            "payment_terms": {"prepayment": 31, "postpayment": 32},
            "loss_reason": {
                "NO_MONEY": 41,
                "COMPETITOR": 42,
                "NOT_TARGET": 43,
                "NO_DECISION": 44,
                "TOO_LONG": 45,
                "OTHER": 46,
            },
        }
    )


class DeadlineSettings(_Section):
    """A deadline's length and whether it counts working time (R-X9) or calendar time."""

    minutes: int = Field(ge=1)
    working_time: bool = True


class ReminderSettings(_Section):
    """R-X4 reminders after a missed deadline (see `ReminderRules`)."""

    interval_minutes: dict[str, int] = {}
    working_hours_only: bool = True
    daily_cap: int = Field(4, ge=0)
    ladder: tuple[Literal["manager", "rop", "director"], ...] = ("manager", "rop", "director")
    ladder_step: int = Field(2, ge=1)


class RulesSettings(_Section):
    timezone: str = "Europe/Moscow"
    work_start: time = time(9, 0)
    work_end: time = time(18, 0)
    take_into_work: DeadlineSettings = DeadlineSettings(minutes=60)
    kp_feedback_task: DeadlineSettings = DeadlineSettings(minutes=60)
    closing_document_task: DeadlineSettings = DeadlineSettings(minutes=24 * 60, working_time=False)
    # R-X4 SLAs; whole days in working time count business days, ending with the working day
    service_task: DeadlineSettings = DeadlineSettings(minutes=2 * 24 * 60)  # R-X6
    process: DeadlineSettings = DeadlineSettings(minutes=5 * 24 * 60)  # R-X7
    kp_agreement_business_days: int = Field(2, ge=1)
    reminder_interval_minutes: int = Field(30, ge=1)
    reminders: ReminderSettings = ReminderSettings()
    payment_round_business_days: int = Field(3, ge=1)
    payment_reminder_days_before: int = Field(2, ge=0)
    payment_overdue_reminder_hours: int = Field(24, ge=1)
    payment_match_days: int = Field(3, ge=0)  # R-PS-1: a person's payment and 1C's are one
    payment_control_after_won: bool = False  # R-PS-1: open tranches chased after WON
    onec_poll_seconds: int = Field(3600, ge=1)
    onec_task_poll_seconds: int = Field(60, ge=1)
    contract_threshold: float = Field(500_000, gt=0)
    invoice_contract_threshold: float = Field(150_000, gt=0)
    extra_holidays: tuple[str, ...] = ()
    extra_workdays: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> RulesSettings:
        if self.work_end <= self.work_start:
            raise ValueError("work_end must be after work_start")
        if self.invoice_contract_threshold >= self.contract_threshold:
            raise ValueError("invoice_contract_threshold must be below contract_threshold")
        return self


class ObservabilitySettings(_Section):
    log_level: str = "INFO"
    structured_logs: bool = Field(True, description="one JSON object a line, with deal_id")
    worker_metrics_bind: str = Field(
        "",
        description=(
            "host:port where the worker serves the Temporal SDK's Prometheus metrics"
            " (e.g. 0.0.0.0:9464); empty: off. The relay serves its own at /metrics."
        ),
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("one of DEBUG, INFO, WARNING, ERROR")
        return value.upper()


class Settings(_Section):
    temporal: TemporalSettings = TemporalSettings()
    bitrix24: Bitrix24Settings = Bitrix24Settings()
    onec: OneCSettings = OneCSettings()
    database: DatabaseSettings = DatabaseSettings()
    smtp: SmtpSettings = SmtpSettings()
    relay: RelaySettings = RelaySettings()
    portal: PortalSettings = PortalSettings()
    rules: RulesSettings = RulesSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    templates: dict[str, str] = Field(default_factory=dict)


# Contract-level variable names → dotted settings keys.
SHORT_ENV: dict[str, str] = {
    "TEMPORAL_ADDRESS": "temporal.address",
    "TEMPORAL_NAMESPACE": "temporal.namespace",
    "DATABASE_URL": "database.url",
    "BITRIX24_WEBHOOK_URL": "bitrix24.webhook_url",
    "BITRIX24_APPLICATION_TOKEN": "bitrix24.application_token",
    "BITRIX24_APP_CLIENT_ID": "bitrix24.app_client_id",
    "BITRIX24_APP_CLIENT_SECRET": "bitrix24.app_client_secret",
    "BITRIX24_APP_REFRESH_TOKEN": "bitrix24.app_refresh_token",
    "ONEC_ODATA_URL": "onec.odata_url",
    "ONEC_USER": "onec.user",
    "ONEC_PASSWORD": "onec.password",
    "SMTP_HOST": "smtp.host",
    "SMTP_PORT": "smtp.port",
    "ACCOUNTANT_EMAIL": "smtp.accountant",
}
ENV_PREFIX = "SALESFLOW_"
DEFAULT_FILE = "salesflow.toml"


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = target
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {part} is not a section")
    node[leaf] = value


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name, dotted in SHORT_ENV.items():
        if environ.get(name):
            _set_dotted(data, dotted, environ[name])
    for name, value in environ.items():
        if name.startswith(ENV_PREFIX) and "__" in name:
            dotted = name[len(ENV_PREFIX) :].lower().replace("__", ".")
            _set_dotted(data, dotted, value)
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(root)"
        lines.append(f"{key}: {item['msg']}")
    return "bad configuration — " + "; ".join(lines)


def config_path(environ: dict[str, str] | None = None) -> Path | None:
    environ = dict(os.environ if environ is None else environ)
    named = environ.get("SALESFLOW_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"SALESFLOW_CONFIG: no such file {path}")
        return path
    local = Path(DEFAULT_FILE)
    return local if local.is_file() else None


def load_settings(
    path: Path | str | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Read the file and the environment; raise ConfigError naming each bad key."""
    environ = dict(os.environ if environ is None else environ)
    file = Path(path) if path is not None else config_path(environ)
    data: dict[str, Any] = {}
    if file is not None:
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {file}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML ({exc})") from exc
    data = _merge(data, _env_overrides(environ))
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    _check_templates(settings)
    return settings


def _check_templates(settings: Settings) -> None:
    from salesflow.config.templates import DEFAULT_TEMPLATES

    unknown = sorted(set(settings.templates) - set(DEFAULT_TEMPLATES))
    if unknown:
        raise ConfigError(f"templates.{unknown[0]}: unknown template name")
