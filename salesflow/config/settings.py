"""Settings: one TOML file (see `config/salesflow.sample.toml`) plus environment overrides,
loaded by pydantic-settings.

Resolution order, later wins: built-in defaults (the local dev stack), the TOML file named by
`SALESFLOW_CONFIG` (or `./salesflow.toml` when present), the short variables of the contract
(`TEMPORAL_ADDRESS`, `DATABASE_URL`, ...), `SALESFLOW_<SECTION>__<KEY>` variables. Every variable
`X` may be given as `X_FILE`, the path of a file holding the value (secrets out of `ps`).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

from salesflow.integrations.onec.profiles import OneCNames, names_for


class ConfigError(Exception):
    """The configuration is missing a key or holds a bad value; the message names the key."""


class StartupError(Exception):
    """A dependency named by a setting cannot be used at start; the message (one line) names the
    setting and the fix."""


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


# A value the pipeline cannot work without (a stage ID, a field code, an address).
Required = Annotated[str, AfterValidator(_not_blank)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class TemporalSettings(_Section):
    address: str = "localhost:7233"
    namespace: Required = "default"
    task_queue: Required = "sales-pipeline"
    activity_attempt_seconds: float | None = Field(
        None,
        gt=0,
        description=(
            "Bounds every activity attempt's start-to-close timeout (the workflows' own: 60 s"
            " Bitrix24, 90 s 1C) — how long an attempt of a killed worker waits before Temporal"
            " retries it; keep it above the clients' timeouts. None: the workflows' own"
        ),
    )

    @field_validator("address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        found = _HOST_PORT.match(value.strip())
        if found is None or not 0 < int(found.group(2)) < 65536:
            raise ValueError("must be host:port of the Temporal frontend, e.g. localhost:7233")
        return value.strip()


# The application token of the local stack's Bitrix24 emulator: it is in the repository, so only
# `salesflow dev` may use it (see `event_token_problem`).
LOCAL_STACK_APPLICATION_TOKEN = "dev-app-token"
PUBLIC_APPLICATION_TOKENS = frozenset({LOCAL_STACK_APPLICATION_TOKEN, "change-me"})


class Bitrix24Settings(_Section):
    webhook_url: str = "http://127.0.0.1:8081/rest/1/devsecret/"
    application_token: str = Field(
        "",
        description=(
            "The outgoing webhook's application token; events with another one are refused."
            " Required by the relay; `salesflow dev` uses the emulator's public dev-app-token"
        ),
    )
    rate_per_second: float = Field(2.0, gt=0)
    burst: int = Field(50, ge=1)
    timeout_seconds: float = Field(
        30.0, gt=0, description="The worker's Bitrix24 client gives up on an answer after this"
    )
    settle_seconds: float = Field(
        90.0,
        gt=0,
        description=(
            "A create whose answer was lost is repeated only after its key was not found for"
            " this long (more than the portal's 60 s cut-off and the client's timeout)"
        ),
    )
    shared_bucket: bool = Field(
        False,
        description=(
            "Take every REST request from one bucket per portal kept in the database"
            " (`portal_bucket`), shared by the relay and all workers on that database;"
            " off: each process throttles alone"
        ),
    )

    @field_validator("webhook_url")
    @classmethod
    def _webhook_shape(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or "/rest/" not in value:
            raise ValueError("must look like https://<portal>/rest/<user_id>/<secret>/")
        return value if value.endswith("/") else value + "/"

    @field_validator("application_token")
    @classmethod
    def _token_present(cls, value: str) -> str:
        if value and not value.strip():
            raise ValueError("must not be blank (leave it out to set it elsewhere)")
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
    odata_url: str = Field(
        "http://127.0.0.1:8082/trade/odata/standard.odata/",
        description="The OData root of the 1C publication; empty: 1C not configured",
    )
    user: str = "odata"
    password: str = "odata"
    timezone: Required = "Europe/Moscow"
    settle_seconds: float = Field(
        90.0,
        gt=0,
        description=(
            "A 1C create whose answer was lost is repeated only after its key was not found"
            " for this long (more than the client's 30 s timeout and a cold 1C's answer)"
        ),
    )
    outage_notify_after_minutes: int = Field(30, ge=1)
    # A step refused as a configuration problem is retried this often until the fix (or at once
    # on `salesflow doctor --fix-applied`).
    config_retry_minutes: int = Field(60, ge=1)
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
    password: str = Field(
        "",
        description=(
            "PostgreSQL: the password, when it is not in url (e.g. from DATABASE_PASSWORD_FILE)"
        ),
    )
    connect_timeout_seconds: float = Field(
        3.0,
        gt=0,
        description="PostgreSQL: giving up on a connection (and on a free pooled one) after this",
    )
    statement_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description=(
            "PostgreSQL: statement_timeout; a server that stops answering is given up one"
            " second later"
        ),
    )
    sqlite_busy_timeout_seconds: float = Field(
        10.0, gt=0, description="SQLite: how long a writer waits for the write lock"
    )

    @field_validator("url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if value.startswith(("postgresql://", "postgres://")):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("use sqlite+aiosqlite:///path or postgresql+asyncpg://user@host/db")
        return value

    @model_validator(mode="after")
    def _password_into_url(self) -> DatabaseSettings:
        if not self.password:
            return self
        from sqlalchemy.engine import make_url

        url = make_url(self.url)
        if url.get_backend_name() != "postgresql":
            raise ValueError("database.password applies to PostgreSQL only")
        if url.password is None:
            with_password = url.set(password=self.password).render_as_string(hide_password=False)
            object.__setattr__(self, "url", with_password)  # frozen; set once, while validating
        return self


class SmtpSettings(_Section):
    host: Required = "127.0.0.1"
    port: int = Field(8025, ge=1, le=65535)
    sender: Required = "salesflow@example.ru"
    accountant: Required = "buh@example.ru"
    user: str = ""
    password: str = ""
    starttls: bool = False
    timeout_seconds: float = Field(30.0, gt=0, description="The SMTP client gives up after this")


class RelaySettings(_Section):
    host: Required = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    public_url: str = Field(
        "",
        description=(
            "The relay as the portal and the users' browsers reach it (https://…; http only on"
            " loopback): `salesflow app install` binds the deal card's tab to"
            " <public_url>/bitrix24/deal-card and online events to <public_url>/bitrix24/events,"
            " and `salesflow doctor` checks them; empty: neither is done"
        ),
    )
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
    # What one client may cost the relay (README «Security»: what the relay guarantees).
    max_body_bytes: int = Field(
        65_536, ge=1024, description="A larger POST body gets 413 as soon as it passes this"
    )
    body_timeout_seconds: float = Field(
        10.0, gt=0, description="A request body not complete this long after its head: 408"
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description=(
            "A connection without a complete request head this long after it opened (or after"
            " its last response) is closed"
        ),
    )
    max_header_bytes: int = Field(
        16_384, ge=1024, description="Request line plus headers, at most (larger: 400, closed)"
    )
    max_connections: int = Field(
        200, ge=1, description="Connections plus requests in progress; beyond them: 503"
    )
    keep_alive_seconds: int = Field(5, ge=1, description="An idle keep-alive connection closes")
    refusal_delay_seconds: float = Field(
        0.25,
        ge=0,
        description=(
            "A request refused before its caller is known (401, 413, 408, 415, a form over"
            " the limits) is answered after this: a flood gets at most connections/delay"
            " answers a second"
        ),
    )
    database_timeout_seconds: float = Field(
        5.0, gt=0, description="An event not recorded within this gets 503 (a hanging database)"
    )
    health_cache_seconds: float = Field(
        5.0, ge=0, description="/healthz reuses its probes' results for this long"
    )
    health_timeout_seconds: float = Field(
        2.0, gt=0, description="Each /healthz probe (database, Temporal, portal) is down past this"
    )
    api_docs: bool = Field(
        False, description="Serve /docs, /redoc and /openapi.json on the relay's port"
    )


class PortalStages(_Section):
    """Bitrix24 STATUS_ID of each pipeline stage (PIPELINE.md codes → portal IDs)."""

    NEW: Required = "C1:NEW"
    IN_WORK: Required = "C1:PREPARATION"
    KP: Required = "C1:UC_KP"
    CONTRACT: Required = "C1:UC_CONTRACT"
    INVOICE: Required = "C1:UC_INVOICE"
    LAUNCH: Required = "C1:UC_LAUNCH"
    ACCEPTED: Required = "C1:UC_ACCEPTED"
    TO_SHIP: Required = "C1:UC_TO_SHIP"
    SHIPPED: Required = "C1:UC_SHIPPED"
    WON: Required = "C1:WON"
    LOSE: Required = "C1:LOSE"


class PortalFields(_Section):
    """Deal field codes (user fields or standard fields) the pipeline reads and writes."""

    priority: Required = "UF_CRM_PRIORITY"
    kp: Required = "UF_CRM_KP"
    client: Required = "CONTACT_ID"
    kp_date: Required = "UF_CRM_KP_DATE"
    delivery_term: Required = "UF_CRM_DELIVERY_TERM"
    direction: Required = "UF_CRM_DIRECTION"
    kp_status: Required = "UF_CRM_KP_STATUS"
    invoice: Required = "UF_CRM_INVOICE"
    contract: Required = "UF_CRM_CONTRACT"
    payment_terms: Required = "UF_CRM_PAYMENT_TERMS"
    signed_invoice: Required = "UF_CRM_SIGNED_INVOICE"
    signed_contract: Required = "UF_CRM_SIGNED_CONTRACT"
    payment_date: Required = "UF_CRM_PAYMENT_DATE"
    act: Required = "UF_CRM_ACT"
    upd: Required = "UF_CRM_UPD"
    # R-SH-3: the signed Акт and УПД as `file` user fields, attached to the accountant's e-mail
    signed_act: Required = "UF_CRM_SIGNED_ACT"
    signed_upd: Required = "UF_CRM_SIGNED_UPD"
    loss_reason: Required = "UF_CRM_LOSS_REASON"
    loss_comment: Required = "UF_CRM_LOSS_COMMENT"
    reject_reason: Required = "UF_CRM_REJECT_REASON"
    payment_schedule: Required = "UF_CRM_PAYMENT_SCHEDULE"
    inn: Required = "UF_CRM_INN"
    # R-X6: the six «Требуется поставить задание …» Да/Нет (boolean) fields, one per service
    need_engineers: Required = "UF_CRM_NEED_ENGINEERS"
    need_purchasing: Required = "UF_CRM_NEED_PURCHASING"
    need_logistics: Required = "UF_CRM_NEED_LOGISTICS"
    need_production: Required = "UF_CRM_NEED_PRODUCTION"
    need_lawyer: Required = "UF_CRM_NEED_LAWYER"
    need_metrologist: Required = "UF_CRM_NEED_METROLOGIST"


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
    stage_new: Required = "DT1032_3:NEW"
    stage_approved: Required = "DT1032_3:SUCCESS"
    stage_rejected: Required = "DT1032_3:FAIL"
    poll_minutes: float = Field(
        10, gt=0, description="How often the item's stage is read, in minutes (fractions allowed)"
    )


class PortalSettings(_Section):
    category_id: int = 1
    engineers_category_id: int = 2
    approval: ApprovalSettings = ApprovalSettings()
    stages: PortalStages = PortalStages()
    fields: PortalFields = PortalFields()
    users: PortalUsers = PortalUsers()
    # R-WON-1: the public link of the portal's CRM form for the client's feedback
    # (CRM → Формы CRM → the form → «Ссылка»); empty: the WON message goes without a link
    feedback_form_url: str = ""
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
    name: str = Field("", description="a label of this rule set, shown with its version")
    timezone: Required = "Europe/Moscow"
    work_start: time = time(9, 0)
    work_end: time = time(18, 0)
    take_into_work: DeadlineSettings = DeadlineSettings(minutes=60)
    kp_feedback_task: DeadlineSettings = DeadlineSettings(minutes=60)
    closing_document_task: DeadlineSettings = DeadlineSettings(minutes=24 * 60, working_time=False)
    # R-X4 SLAs; whole days in working time count business days, ending with the working day
    service_task: DeadlineSettings = DeadlineSettings(minutes=2 * 24 * 60)  # R-X6
    process: DeadlineSettings = DeadlineSettings(minutes=5 * 24 * 60)  # R-X7
    approval: DeadlineSettings = DeadlineSettings(minutes=24 * 60)  # R-KP-6 «Согласование»
    kp_agreement_business_days: int = Field(2, ge=1)
    reminder_interval_minutes: int = Field(30, ge=1)
    reminders: ReminderSettings = ReminderSettings()
    payment_round_business_days: int = Field(3, ge=1)
    payment_reminder_days_before: int = Field(2, ge=0)
    payment_overdue_reminder_hours: int = Field(24, ge=1)
    payment_match_days: int = Field(3, ge=0)  # R-PS-1: a person's payment and 1C's are one
    payment_control_after_won: bool = False  # R-PS-1: open tranches chased after WON
    onec_poll_seconds: int = Field(3600, ge=1)
    rework_before_next_round: bool = Field(
        True,
        description="The seed's «Возврат на задачу»: after a «не согласовано» КП answer (or an"
        " unpaid invoice round) the next round's task is created only once the objection task"
        " is completed in Bitrix24 (or the answer/payment comes first); off: both at once."
        " Travels in each deal's rules snapshot: a deal started without it keeps both at once",
    )
    onec_task_poll_seconds: int = Field(60, ge=1)
    contract_threshold: float = Field(500_000, gt=0)
    invoice_contract_threshold: float = Field(150_000, gt=0)
    reopen: Literal["refuse", "new_run"] = Field(
        "refuse",
        description="A deal moved back from «Сделка успешна»/«Сделка провалена» in Bitrix24:"
        " refuse (it is put back to its final stage and the manager and the РОП are told) or"
        " new_run (a new workflow run from the stage it was moved to, under new keys)",
    )
    people_refresh_minutes: int = Field(
        60,
        ge=1,
        description="A running deal reads the people mapping (portal.users, smtp.accountant)"
        " and its people's ACTIVE flag at most this often (on a stage or a deal change), so a"
        " new РОП takes over running deals and a deactivated user's work goes to the РОП",
    )
    currency_rates: dict[str, float] = Field(
        default_factory=dict,
        description="RUB per unit of a deal's CURRENCY_ID (e.g. USD = 92.5), so a deal in"
        " another currency meets the RUB thresholds of R-KP-5; a currency without a rate is"
        " refused with a notice to the manager",
    )
    extra_holidays: tuple[str, ...] = ()
    extra_workdays: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> RulesSettings:
        if self.work_end <= self.work_start:
            raise ValueError("work_end must be after work_start")
        if self.invoice_contract_threshold >= self.contract_threshold:
            raise ValueError("invoice_contract_threshold must be below contract_threshold")
        for code, rate in self.currency_rates.items():
            if not (code.isalpha() and len(code) == 3 and code.isupper()) or not rate > 0:
                raise ValueError(
                    f"currency_rates.{code} = {rate}: a 3-letter upper-case code and a rate > 0"
                )
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


DealCardRole = Literal["manager", "responsible", "rop", "accountant", "logist", "anyone"]


def default_deal_card_permissions() -> dict[str, tuple[DealCardRole, ...]]:
    deal: tuple[DealCardRole, ...] = ("responsible", "rop")
    return {
        "accept_lead": ("manager",),
        "reject_lead": ("manager", "rop"),
        "kp_feedback": deal,
        "approval_decision": ("rop",),  # R-KP-6: the approver (the «Согласование» item's)
        "set_payment_schedule": deal,
        "record_payment": ("accountant",),
        "request_tasks": deal,
        "start_process": deal,
        "documents_signed": deal,
        "lose_deal": deal,
    }


class DealCardSettings(_Section):
    """The deal card's tab in Bitrix24 (`salesflow/deal_card/`), served on the relay's port."""

    enabled: bool = Field(True, description="serve the tab under /bitrix24/deal-card")
    member_id: str = Field(
        "5e1f0c2b9a7d4e6f8a0b1c2d3e4f5a6b",
        description="The portal's member_id: a tab opened from any other portal gets 403",
    )
    accountants: tuple[int, ...] = Field((11,), description="Bitrix24 user IDs of accountants")
    permissions: dict[str, tuple[DealCardRole, ...]] = Field(
        default_factory=default_deal_card_permissions,
        description=(
            "action → roles that may take it: manager (portal.users.managers), responsible"
            " (the deal's manager), rop, accountant, logist, anyone; an action not listed"
            " keeps its default"
        ),
    )
    update_timeout_seconds: float = Field(20.0, gt=0)
    stage_names_ttl_seconds: float = Field(300.0, ge=0)
    templates: dict[str, str] = Field(
        default_factory=dict,
        description="the tab's texts by name — kept for older files; `[templates]` takes every"
        " name (salesflow/config/templates.py) and this table is applied on top of it",
    )

    @field_validator("member_id")
    @classmethod
    def _member_present(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()


class Settings(BaseSettings):
    """The whole configuration. `Settings()` gives the defaults only; `load_settings` reads the
    file and the environment."""

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix="SALESFLOW_",
        env_nested_delimiter="__",
        env_ignore_empty=True,
        case_sensitive=False,
    )

    temporal: TemporalSettings = TemporalSettings()
    bitrix24: Bitrix24Settings = Bitrix24Settings()
    onec: OneCSettings = OneCSettings()
    database: DatabaseSettings = DatabaseSettings()
    smtp: SmtpSettings = SmtpSettings()
    relay: RelaySettings = RelaySettings()
    portal: PortalSettings = PortalSettings()
    rules: RulesSettings = RulesSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    deal_card: DealCardSettings = DealCardSettings()
    templates: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        load = _LOADING.get()
        if load is None:  # Settings(...) outside load_settings: the defaults and the arguments
            return (init_settings,)
        return (
            init_settings,
            _Environment(settings_cls, load.environ),
            _ContractNames(settings_cls, load.environ),
            TomlConfigSettingsSource(settings_cls, toml_file=load.file),
        )


# Contract-level variable names → dotted settings keys.
SHORT_ENV: dict[str, str] = {
    "TEMPORAL_ADDRESS": "temporal.address",
    "TEMPORAL_NAMESPACE": "temporal.namespace",
    "DATABASE_URL": "database.url",
    "DATABASE_PASSWORD": "database.password",
    "BITRIX24_WEBHOOK_URL": "bitrix24.webhook_url",
    "BITRIX24_APPLICATION_TOKEN": "bitrix24.application_token",
    "BITRIX24_APP_CLIENT_ID": "bitrix24.app_client_id",
    "BITRIX24_APP_CLIENT_SECRET": "bitrix24.app_client_secret",
    "BITRIX24_APP_REFRESH_TOKEN": "bitrix24.app_refresh_token",
    "BITRIX24_MEMBER_ID": "deal_card.member_id",
    "ONEC_ODATA_URL": "onec.odata_url",
    "ONEC_USER": "onec.user",
    "ONEC_PASSWORD": "onec.password",
    "SMTP_HOST": "smtp.host",
    "SMTP_PORT": "smtp.port",
    "ACCOUNTANT_EMAIL": "smtp.accountant",
}
ENV_PREFIX = "SALESFLOW_"
FILE_SUFFIX = "_FILE"
DEFAULT_FILE = "salesflow.toml"


@dataclass(frozen=True)
class _Load:
    environ: Mapping[str, str]
    file: Path | None


_LOADING: ContextVar[_Load | None] = ContextVar("salesflow_settings_loading", default=None)


class _Environment(EnvSettingsSource):
    """`SALESFLOW_<SECTION>__<KEY>` from the given mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty)


class _ContractNames(PydanticBaseSettingsSource):
    """The contract's short variable names (SHORT_ENV), aliases of nested keys."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole table at once

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, dotted in SHORT_ENV.items():
            if self._environ.get(name):
                *parents, leaf = dotted.split(".")
                node = data
                for part in parents:
                    node = node.setdefault(part, {})
                node[leaf] = self._environ[name]
        return data


def _read_secret_files(environ: Mapping[str, str]) -> dict[str, str]:
    """`X_FILE=<path>` → `X=<the file's content, stripped>`, for the contract's names and the
    `SALESFLOW_…__…` ones; `X` and `X_FILE` both set is an error, as is an unreadable file."""
    out = dict(environ)
    for name, path in environ.items():
        if not name.endswith(FILE_SUFFIX) or not path:
            continue
        target = name[: -len(FILE_SUFFIX)]
        if target not in SHORT_ENV and not (target.startswith(ENV_PREFIX) and "__" in target):
            continue
        del out[name]
        if environ.get(target):
            raise ConfigError(f"{target} and {name} are both set: keep one")
        try:
            out[target] = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read {path} ({exc.strerror or exc})") from None
    return out


def _origins(environ: Mapping[str, str]) -> dict[str, str]:
    """Dotted key → the variable that set it, for the error messages."""
    found = {SHORT_ENV[n]: n for n in SHORT_ENV if environ.get(n)}
    for name, value in environ.items():
        if value and name.upper().startswith(ENV_PREFIX) and "__" in name:
            found[name[len(ENV_PREFIX) :].lower().replace("__", ".")] = name
    return found


def _unknown_sections(environ: Mapping[str, str]) -> list[str]:
    sections = set(Settings.model_fields)
    return sorted(
        name
        for name, value in environ.items()
        if value
        and name.upper().startswith(ENV_PREFIX)
        and "__" in name
        and name[len(ENV_PREFIX) :].split("__", 1)[0].lower() not in sections
    )


def describe(error: ValidationError, origins: Mapping[str, str] | None = None) -> str:
    """Each bad key and what is wrong with it — never the value (it may be a secret)."""
    origins = origins or {}
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(root)"
        origin = origins.get(key) or origins.get(key.lower())
        lines.append(f"{key}{f' (from {origin})' if origin else ''}: {item['msg']}")
    return "bad configuration — " + "; ".join(lines)


def config_path(environ: Mapping[str, str] | None = None) -> Path | None:
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
    path: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the file and the environment; raise ConfigError naming each bad key."""
    environ = _read_secret_files(os.environ if environ is None else environ)
    file = Path(path) if path is not None else config_path(environ)
    if file is not None and not file.is_file():
        raise ConfigError(f"config file not found: {file}")
    unknown = _unknown_sections(environ)
    if unknown:
        raise ConfigError(f"{unknown[0]}: no such settings section")
    token = _LOADING.set(_Load(environ, file))
    try:
        settings = Settings()
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML ({exc})") from None
    except ValidationError as exc:
        raise ConfigError(describe(exc, _origins(environ))) from None
    finally:
        _LOADING.reset(token)
    _check_templates(settings)
    return settings


def _check_templates(settings: Settings) -> None:
    """Every configured template: a known name, placeholders its default offers."""
    from salesflow.config.templates import template_problems

    problems = template_problems(settings.templates) + template_problems(
        settings.deal_card.templates, "deal_card.templates"
    )
    if problems:
        raise ConfigError("; ".join(problems))


def event_token_problem(settings: Settings) -> str | None:
    """Why the relay must not accept events with the configured application token, if so: it is
    empty, or public (in the repository). Only the local stack (`salesflow dev`) uses one."""
    token = settings.bitrix24.application_token
    name = "bitrix24.application_token (BITRIX24_APPLICATION_TOKEN)"
    fix = (
        "set the application token of the portal's outgoing webhook"
        " (BITRIX24_APPLICATION_TOKEN_FILE keeps it out of the process list)"
    )
    if not token:
        return f"{name} is not set: {fix}"
    if token in PUBLIC_APPLICATION_TOKENS:
        return (
            f"{name} is the public token {token!r} from the repository, accepted only by the"
            f" local stack (salesflow dev): {fix}"
        )
    return None


def require_event_token(settings: Settings) -> None:
    """Raise ConfigError naming the setting when `event_token_problem` finds one."""
    problem = event_token_problem(settings)
    if problem:
        raise ConfigError(problem)
