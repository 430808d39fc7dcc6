"""The in-memory portal behind the Bitrix24 emulator: data, settings, counters and logs."""

from __future__ import annotations

import random
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emulators.bitrix24.limits import (
    DEFAULT_OPERATING_LIMIT,
    BucketSet,
    OperatingLimits,
)
from emulators.bitrix24.seed import DEFAULT_WEBHOOK_SCOPES, Seed, builtin_seed
from emulators.bitrix24.subscriptions import Binding, OfflineQueue
from emulators.bitrix24.values import as_str, iso

DEFAULT_EVENTS = (
    "ONCRMDEALADD",
    "ONCRMDEALUPDATE",
    "ONCRMDEALDELETE",
    "ONTASKADD",
    "ONTASKUPDATE",
    "ONTASKDELETE",
    "ONTASKCOMMENTADD",
    "ONCRMDYNAMICITEMADD",
    "ONCRMDYNAMICITEMUPDATE",
)

# The local application's OAuth tokens: an access token lives an hour, a refresh token ~28 days.
ACCESS_TOKEN_TTL = 3600.0
REFRESH_TOKEN_TTL = 28 * 24 * 3600.0

_SEMANTIC_EXTRA = {None: "process", "S": "success", "F": "failure"}
_STAGE_COLORS = {None: "#39A8EF", "S": "#7BD500", "F": "#FF5752"}
_SYSTEM_CODES = {"NEW", "WON", "LOSE", "SUCCESS", "FAIL"}

DEAL_TYPES = [
    ("SALE", "Продажа"),
    ("COMPLEX", "Комплексная продажа"),
    ("GOODS", "Продажа товара"),
    ("SERVICES", "Продажа услуги"),
    ("SERVICE", "Сервисное обслуживание"),
]
SOURCES = [
    ("CALL", "Звонок"),
    ("EMAIL", "Электронная почта"),
    ("WEB", "Веб-сайт"),
    ("ADVERTISING", "Реклама"),
    ("PARTNER", "Существующий клиент"),
    ("OTHER", "Другое"),
]


@dataclass
class Fault:
    """An injected failure answered instead of the next `remaining` matching REST calls.

    `delay` seconds pass before the answer; with `passthrough` the call then runs normally
    (a slow response). A 302 carries `location` (the portal's new domain).
    """

    status: int = 503
    body: str = "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
    content_type: str = "text/html; charset=utf-8"
    method: str | None = None
    remaining: int = 1
    delay: float = 0.0
    passthrough: bool = False
    location: str | None = None


@dataclass
class LocalApp:
    """A local application installed on the portal, with one OAuth access token and the refresh
    token that replaces both (`oauth.py`); `expires_at` None: the token never expires."""

    client_id: str
    client_secret: str
    access_token: str
    refresh_token: str
    application_token: str
    user_id: int = 1
    scopes: frozenset[str] = frozenset(DEFAULT_WEBHOOK_SCOPES)
    expires_at: float | None = None
    refresh_expires_at: float | None = None


@dataclass
class UserToken:
    """A user's OAuth token for a local application: the portal issues one when the user opens
    one of the application's widgets and posts it as `AUTH_ID` (`REFRESH_ID` with it); calls
    with it act as that user with the application's scopes.
    (b24restdocs `api-reference/widgets/_includes/widget_data.md`)"""

    access_token: str
    refresh_token: str
    client_id: str
    user_id: int
    expires_at: float | None = None


@dataclass
class Placement:
    """A widget handler registered by `placement.bind` (`api-reference/widgets/
    placement-get.md`)."""

    client_id: str
    placement: str
    handler: str
    title: str = ""
    description: str = ""
    group_name: str = ""
    lang_all: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    user_id: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "placement": self.placement,
            "userId": self.user_id,
            "handler": self.handler,
            "options": self.options or [],  # PHP renders an empty array as []
            "title": self.title,
            "description": self.description,
            "langAll": self.lang_all or [],
        }


@dataclass
class Delivery:
    """One attempt to POST an outbound event to the handler URL."""

    event: str
    entity_id: int | None
    url: str
    body: str
    ts: int
    status: int | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "entity_id": self.entity_id,
            "url": self.url,
            "status": self.status,
            "error": self.error,
            "ts": self.ts,
            "body": self.body,
        }


@dataclass
class Portal:
    """Everything the emulated portal knows. Handlers mutate it; tests inspect it."""

    seed: Seed = field(default_factory=builtin_seed)
    secret: str = "devsecret"
    handler_url: str | None = None
    application_token: str = "dev-app-token"
    rate_per_second: float | None = 2.0
    burst: int = 50
    clock: Callable[[], float] = time.time
    operating_limit: float | None = DEFAULT_OPERATING_LIMIT
    # Lifetime of the local app's access tokens in seconds of `clock`; None: they never expire.
    token_ttl: float | None = ACCESS_TOKEN_TTL

    def __post_init__(self) -> None:
        portal_cfg = self.seed.get("portal", {})
        self.domain: str | None = portal_cfg.get("domain")
        self.member_id: str = portal_cfg.get("member_id") or "0" * 32
        self.webhook_user_id: int = int(portal_cfg.get("webhook_user_id") or 1)
        self.webhooks: dict[str, int] = {self.secret: self.webhook_user_id}
        self.webhook_scopes: dict[str, frozenset[str]] = {
            self.secret: frozenset(portal_cfg.get("webhook_scopes") or DEFAULT_WEBHOOK_SCOPES)
        }
        self.admins: set[int] = {int(u) for u in portal_cfg.get("admins") or [1]}
        self.features: dict[str, bool] = {"rest_offline_extended": True}
        self.subscribed_events: set[str] = set(DEFAULT_EVENTS)
        self.event_handler_ids: dict[str, int] = {
            name: index + 1 for index, name in enumerate(DEFAULT_EVENTS)
        }
        # Outbound delivery: a fixed delay, a random extra delay (reorders), a drop rate.
        self.event_delay: float = 0.0
        self.event_jitter: float = 0.0
        self.event_drop_rate: float = 0.0
        self.event_rng = random.Random(0)
        self.bucket = BucketSet(self.rate_per_second, self.burst)
        self.operating = OperatingLimits(self.operating_limit, self.clock)
        # A portal-wide refusal (OVERLOAD_LIMIT, PORTAL_DELETED, a plan gate): error body.
        self.block: dict[str, Any] | None = None
        self.require_https = False
        self.insufficient_scope_status = 401
        self.requests = 0
        self.calls: Counter[str] = Counter()
        self.batch_calls: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.deliveries: list[Delivery] = []
        self.event_log: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.apps: dict[str, LocalApp] = {}
        self.oauth_log: list[dict[str, Any]] = []  # every /oauth/token/ request and its outcome
        self.bindings: list[Binding] = []
        self.offline = OfflineQueue(self.clock)
        self.load(self.seed)

    # ------------------------------------------------------------------ data
    def load(self, seed: Seed) -> None:
        """(Re)initialise all portal data from a seed."""
        self.seed = seed
        self.populated = False  # seed records are created by emulator.populate()
        self._ids: Counter[str] = Counter()
        self.apps = {
            app["client_id"]: LocalApp(
                client_id=app["client_id"],
                client_secret=app.get("client_secret", ""),
                access_token=app["access_token"],
                refresh_token=app.get("refresh_token", ""),
                application_token=app.get("application_token") or self.application_token,
                user_id=int(app.get("user_id", 1)),
                scopes=frozenset(app.get("scopes") or DEFAULT_WEBHOOK_SCOPES),
                expires_at=self.access_expiry(),
                refresh_expires_at=self.now() + REFRESH_TOKEN_TTL,
            )
            for app in seed.get("apps", [])
        }
        self.bindings = []
        self.user_tokens: dict[str, UserToken] = {}
        self.placements: list[Placement] = []
        self.offline.reset()
        self.departments = {int(d["ID"]): dict(d) for d in seed.get("departments", [])}
        self.users = {int(u["ID"]): dict(u) for u in seed.get("users", [])}
        self.deal_categories: dict[int, dict[str, Any]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.stage_index: dict[str, dict[str, Any]] = {}
        for category in seed.get("deal_categories", []):
            cat_id = int(category["id"])
            self.deal_categories[cat_id] = {
                "id": cat_id,
                "name": category["name"],
                "sort": int(category.get("sort", 100 * (cat_id + 1))),
                "isDefault": "Y" if category.get("isDefault") else "N",
            }
            entity = "DEAL_STAGE" if cat_id == 0 else f"DEAL_STAGE_{cat_id}"
            self._add_stages(entity, cat_id, category.get("stages", []))
        for code, name in DEAL_TYPES:
            self._add_status("DEAL_TYPE", code, name, len(self.statuses) * 10, None, None)
        for code, name in SOURCES:
            self._add_status("SOURCE", code, name, len(self.statuses) * 10, None, None)
        self.deal_userfields = self._build_userfields(seed.get("deal_userfields", []))
        self._uf_types = {uf["FIELD_NAME"]: uf["USER_TYPE_ID"] for uf in self.deal_userfields}
        self.smart_types: dict[int, dict[str, Any]] = {}
        self.item_categories: dict[int, dict[str, Any]] = {}
        self.item_userfields: dict[int, list[dict[str, Any]]] = {}
        for spa in seed.get("smart_processes", []):
            etid = int(spa["entityTypeId"])
            self.smart_types[etid] = {
                "id": int(spa.get("id", etid)),
                "entityTypeId": etid,
                "title": spa["title"],
                "code": spa.get("code", ""),
                "parents": [int(p) for p in spa.get("parents", [2])],
            }
            self.item_userfields[etid] = [dict(uf) for uf in spa.get("userfields", [])]
            for category in spa.get("categories", []):
                cat_id = int(category["id"])
                self.item_categories[cat_id] = {
                    "id": cat_id,
                    "name": category["name"],
                    "sort": int(category.get("sort", 100)),
                    "entityTypeId": etid,
                    "isDefault": "Y" if category.get("isDefault") else "N",
                }
                self._add_stages(f"DYNAMIC_{etid}_STAGE_{cat_id}", cat_id, category["stages"])
        self.companies: dict[int, dict[str, Any]] = {}
        self.contacts: dict[int, dict[str, Any]] = {}
        self.deals: dict[int, dict[str, Any]] = {}
        # the files of `file` user fields: id → (name, content) (emulators/bitrix24/files.py)
        self.files: dict[int, tuple[str, bytes]] = {}
        self.deal_contacts: dict[int, list[int]] = {}
        self.product_rows: dict[int, list[dict[str, Any]]] = {}
        self.products: dict[int, dict[str, Any]] = {}  # crm.product.* (products.py)
        self.tasks: dict[int, dict[str, Any]] = {}
        self.task_comments: dict[int, list[dict[str, Any]]] = {}
        self.items: dict[int, dict[int, dict[str, Any]]] = {etid: {} for etid in self.smart_types}
        self.notifications: list[dict[str, Any]] = []
        self.notification_log: list[dict[str, Any]] = []
        self.timeline_comments: dict[int, dict[str, Any]] = {}
        self.activities: dict[int, dict[str, Any]] = {}
        self.emails: list[dict[str, Any]] = []
        self.seeded_records = {
            "companies": list(seed.get("companies", [])),
            "contacts": list(seed.get("contacts", [])),
            "deals": list(seed.get("deals", [])),
            "tasks": list(seed.get("tasks", [])),
        }

    def _add_status(
        self,
        entity_id: str,
        status_id: str,
        name: str,
        sort: int,
        category_id: int | None,
        semantics: str | None,
    ) -> dict[str, Any]:
        code = status_id.split(":", 1)[-1]
        row: dict[str, Any] = {
            "ID": str(self.next_id("status")),
            "ENTITY_ID": entity_id,
            "STATUS_ID": status_id,
            "NAME": name,
            "NAME_INIT": name if code in _SYSTEM_CODES else "",
            "SORT": str(sort),
            "SYSTEM": "Y" if code in _SYSTEM_CODES else "N",
            "CATEGORY_ID": as_str(category_id),
            "COLOR": _STAGE_COLORS.get(semantics) if category_id is not None else None,
            "SEMANTICS": semantics,
            "EXTRA": None,
        }
        if category_id is not None:
            row["EXTRA"] = {
                "SEMANTICS": _SEMANTIC_EXTRA.get(semantics, "process"),
                "COLOR": row["COLOR"],
            }
        self.statuses.append(row)
        return row

    def _add_stages(self, entity_id: str, category_id: int, stages: list[dict[str, Any]]) -> None:
        for stage in stages:
            semantics = stage.get("SEMANTICS") or None
            row = self._add_status(
                entity_id,
                stage["STATUS_ID"],
                stage["NAME"],
                int(stage.get("SORT", 10)),
                category_id,
                semantics,
            )
            self.stage_index[row["STATUS_ID"]] = row

    def _build_userfields(self, fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
        built = []
        for index, uf in enumerate(fields):
            title = uf.get("TITLE") or uf["FIELD_NAME"]
            record: dict[str, Any] = {
                "ID": str(100 + index + 1),
                "ENTITY_ID": "CRM_DEAL",
                "FIELD_NAME": uf["FIELD_NAME"],
                "USER_TYPE_ID": uf["USER_TYPE_ID"],
                "XML_ID": uf.get("XML_ID"),
                "SORT": str(uf.get("SORT", 100 + index * 10)),
                "MULTIPLE": "Y" if uf.get("MULTIPLE") else "N",
                "MANDATORY": "Y" if uf.get("MANDATORY") else "N",
                "SHOW_FILTER": "E",
                "SHOW_IN_LIST": "Y",
                "EDIT_IN_LIST": "Y",
                "IS_SEARCHABLE": "N",
                "SETTINGS": {"DEFAULT_VALUE": 0} if uf["USER_TYPE_ID"] == "boolean" else {},
                "EDIT_FORM_LABEL": title,
                "LIST_COLUMN_LABEL": title,
                "LIST_FILTER_LABEL": title,
                "ERROR_MESSAGE": None,
                "HELP_MESSAGE": None,
            }
            if "LIST" in uf:
                record["LIST"] = [
                    {
                        "ID": str(option["ID"]),
                        "SORT": str(option.get("SORT", 10)),
                        "VALUE": option["VALUE"],
                        "DEF": "Y" if option.get("DEF") else "N",
                        "XML_ID": option.get("XML_ID") or str(option["ID"]),
                    }
                    for option in uf["LIST"]
                ]
            built.append(record)
        return built

    # --------------------------------------------------------------- helpers
    def next_id(self, sequence: str, at_least: int = 0) -> int:
        self._ids[sequence] = max(self._ids[sequence], at_least) + 1
        return self._ids[sequence]

    def bump_id(self, sequence: str, used: int) -> None:
        """Make sure the sequence continues after an explicitly given id."""
        self._ids[sequence] = max(self._ids[sequence], used)

    def now(self) -> float:
        return self.clock()

    def access_expiry(self) -> float | None:
        """When an access token issued now expires (None: never)."""
        return None if self.token_ttl is None else self.now() + self.token_ttl

    def now_iso(self) -> str:
        return iso(self.clock())

    def deal_stage_entity(self, category_id: int) -> str:
        return "DEAL_STAGE" if category_id == 0 else f"DEAL_STAGE_{category_id}"

    def category_stages(self, entity_id: str) -> list[dict[str, Any]]:
        rows = [row for row in self.statuses if row["ENTITY_ID"] == entity_id]
        return sorted(rows, key=lambda row: int(row["SORT"]))

    def userfield_types(self) -> dict[str, str]:
        return self._uf_types

    def user_name(self, user_id: int | None) -> str:
        user = self.users.get(user_id or 0)
        if not user:
            return ""
        return " ".join(p for p in (user.get("NAME"), user.get("LAST_NAME")) if p)

    def inject_fault(
        self,
        count: int = 1,
        *,
        status: int = 503,
        body: str | None = None,
        content_type: str = "text/html; charset=utf-8",
        method: str | None = None,
        delay: float = 0.0,
        passthrough: bool = False,
        location: str | None = None,
    ) -> Fault:
        fault = Fault(
            status=status,
            content_type=content_type,
            method=method.lower() if method else None,
            remaining=count,
            delay=delay,
            passthrough=passthrough,
            location=location,
        )
        if body is not None:
            fault.body = body
        self.faults.append(fault)
        return fault

    def app_by_token(self, token: str) -> LocalApp | None:
        return next((app for app in self.apps.values() if app.access_token == token), None)

    def issue_user_token(self, user_id: int, client_id: str | None = None) -> UserToken:
        """A fresh token of `user_id` for the app (default: the first installed), as the portal
        issues one each time the user opens a widget; it lives `token_ttl` like the app's."""
        app = self.apps[client_id] if client_id else next(iter(self.apps.values()))
        expiry = self.access_expiry()
        token = UserToken(
            access_token=secrets.token_hex(32),
            refresh_token=secrets.token_hex(32),
            client_id=app.client_id,
            user_id=user_id,
            expires_at=None if expiry is None else float(int(expiry)),
        )
        self.user_tokens[token.access_token] = token
        return token

    def user_token(self, token: str) -> UserToken | None:
        return self.user_tokens.get(token)

    def next_binding_id(self) -> int:
        return self.next_id("event_binding")

    def take_fault(self, method: str) -> Fault | None:
        for fault in self.faults:
            if fault.remaining > 0 and fault.method in (None, method):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def summary(self) -> dict[str, Any]:
        """What the admin endpoint shows: counts, key records and every log."""
        return {
            "handler_url": self.handler_url,
            "subscribed_events": sorted(self.subscribed_events),
            "rate_limit": {
                "rate_per_second": self.bucket.rate,
                "burst": self.bucket.capacity,
                "level": round(self.bucket.level, 3),
            },
            "deals": [
                {
                    "ID": d["ID"],
                    "TITLE": d["TITLE"],
                    "STAGE_ID": d["STAGE_ID"],
                    "CATEGORY_ID": d["CATEGORY_ID"],
                    "ASSIGNED_BY_ID": d["ASSIGNED_BY_ID"],
                    "OPPORTUNITY": d["OPPORTUNITY"],
                }
                for d in self.deals.values()
            ],
            "tasks": [
                {
                    "ID": t["ID"],
                    "TITLE": t["TITLE"],
                    "STATUS": t["STATUS"],
                    "RESPONSIBLE_ID": t["RESPONSIBLE_ID"],
                    "CREATED_BY": t["CREATED_BY"],
                    "DEADLINE": t["DEADLINE"],
                    "UF_CRM_TASK": t["UF_CRM_TASK"],
                    "XML_ID": t["XML_ID"],
                }
                for t in self.tasks.values()
            ],
            "items": {str(etid): list(items.values()) for etid, items in self.items.items()},
            "notifications": self.notifications,
            "notification_log": self.notification_log,
            "emails": self.emails,
            "timeline_comments": list(self.timeline_comments.values()),
            "task_comments": {str(k): v for k, v in self.task_comments.items()},
            "event_log": self.event_log,
            "deliveries": [d.as_dict() for d in self.deliveries],
            "calls": dict(self.calls),
            "batch_calls": dict(self.batch_calls),
            "rejected": dict(self.rejected),
            "requests": self.requests,
            "bindings": [b.as_dict() for b in self.bindings],
            "placements": [{"app": p.client_id, **p.as_dict()} for p in self.placements],
            "offline_events": [r.view(full=True) for r in self.offline.rows.values()],
        }
