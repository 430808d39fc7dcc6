"""`salesflow doctor`: the configuration checked against the live Bitrix24 portal and 1C.

Bitrix24 (read-only calls through the webhook): the webhook answers and has the scopes the
product needs; the sales and engineers pipelines and every configured stage exist; each
configured deal field exists with the right type; each enumeration option ID exists and
means what the configuration says; every configured person exists and is active; the
smart process «Согласование» and its stages exist. The local application's token (when one is
configured): the pair the relay would use (the refreshed one kept in the database, else the
configured one) still answers, or has merely expired and will be refreshed; a refresh the OAuth
server refused is shown with what to do. Nothing is refreshed here. 1C (when an OData URL is
configured): the root answers with the credentials; $metadata is read and every object,
attribute, tabular-part column and composite link the configuration profile (`onec.profile`,
`[onec.names]`) uses is there — an object absent from $metadata is not published
(УстановитьСоставСтандартногоИнтерфейсаOData) — and whether the optional extension is
installed; each missing name is shown with the override or publication that fixes it. Then
(R-KP-2) every catalogue product and the open deals' product rows are matched to 1C
nomenclature as the КП load matches them, and those without one are named.
The local application (with relay.public_url set): the deal card's tab is bound to the
configured handler and the relay's events are bound (`app_install.plan`); `--fix` binds what is
missing with the code of `salesflow app install`.
`--fix-applied`: once the 1C checks pass, running deals (and logist task mirrors) waiting on a
1C configuration problem are signalled to retry (`onec_configuration_fixed`).

`main()` prints a table (check, status, detail, fix) and returns the exit code: 0 only when
every check passed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url
from temporalio.client import Client
from temporalio.service import RPCError

from salesflow.activities.onec import OneCActivities
from salesflow.config.settings import Settings
from salesflow.config.temporal_client import connect
from salesflow.integrations.bitrix24 import Bitrix24Client, Bitrix24Error
from salesflow.integrations.bitrix24.oauth import REFRESH_ON, TokenRefreshError
from salesflow.integrations.onec import OneCClient, OneCError
from salesflow.integrations.onec.profiles import (
    EXTENSION_ATTRIBUTES,
    LINE_ATTRIBUTES,
    OBJECT_ATTRIBUTES,
    is_plain_link,
)
from salesflow.relay.app_token import refusal_hint
from salesflow.starter import app_install
from salesflow.store import app_tokens
from salesflow.store.db import database_engine
from salesflow.workflows.names import SIGNAL_ONEC_CONFIG_FIXED, WORKFLOW_TYPE
from salesflow.workflows.onec_models import LOGIST_TASK_MIRROR

REQUIRED_SCOPES = ("crm", "task", "im", "user")
# Deal fields by their settings name: the field types the product can work with.
_ENUM = frozenset({"enumeration"})
_DATE = frozenset({"date", "datetime"})
FIELD_TYPES: dict[str, frozenset[str]] = {
    "priority": _ENUM,
    "kp_status": _ENUM,
    "payment_terms": _ENUM,
    "loss_reason": _ENUM,
    "client": frozenset({"crm_contact"}),
    "kp_date": _DATE,
    "payment_date": _DATE,
    "signed_act": frozenset({"file"}),  # R-SH-3: the signed files attached to the e-mail
    "signed_upd": frozenset({"file"}),
    **{
        f"need_{service}": frozenset({"boolean"})
        for service in (
            "engineers",
            "purchasing",
            "logistics",
            "production",
            "lawyer",
            "metrologist",
        )
    },
}
TEXT_TYPES = frozenset({"string"})

OK, FAIL, SKIP = "ok", "fail", "skip"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status != FAIL


def _ok(name: str, detail: str) -> Check:
    return Check(name, OK, detail)


def _fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, FAIL, detail, fix)


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


# ------------------------------------------------------------------ Bitrix24
async def _stage_ids(b24: Bitrix24Client, entity_id: str) -> set[str]:
    rows = await b24.list_all("crm.status.list", {"filter": {"ENTITY_ID": entity_id}})
    return {str(row["STATUS_ID"]) for row in rows}


def _deal_stage_entity(category_id: int) -> str:
    return "DEAL_STAGE" if category_id == 0 else f"DEAL_STAGE_{category_id}"


async def _pipeline_checks(settings: Settings, b24: Bitrix24Client) -> list[Check]:
    portal = settings.portal
    categories_result, sales_stages = await asyncio.gather(
        b24.call("crm.category.list", {"entityTypeId": 2}),
        _stage_ids(b24, _deal_stage_entity(portal.category_id)),
    )
    categories = {int(c["id"]): c.get("name", "") for c in categories_result.get("categories", [])}
    checks: list[Check] = []
    for label, key, category_id in (
        ("Sales pipeline", "portal.category_id", portal.category_id),
        ("Engineers pipeline", "portal.engineers_category_id", portal.engineers_category_id),
    ):
        if category_id in categories:
            checks.append(_ok(label, f"{category_id} «{categories[category_id]}»"))
        else:
            known = ", ".join(f"{i} «{n}»" for i, n in sorted(categories.items()))
            checks.append(
                _fail(label, f"no pipeline {category_id} (portal has {known})", f"set {key}")
            )
    stages = portal.stages.model_dump()
    missing = {code: stage for code, stage in stages.items() if stage not in sales_stages}
    for code, stage in missing.items():
        checks.append(
            _fail(
                f"Stage {code}",
                f"{stage} is not a stage of pipeline {portal.category_id}",
                f"set portal.stages.{code} to one of: {', '.join(sorted(sales_stages))}",
            )
        )
    if not missing:
        checks.append(_ok("Stages", f"all {len(stages)} stages found in the pipeline"))
    return checks


def _option_means(option: dict[str, Any], meaning: str) -> bool:
    wanted = meaning.strip().casefold()
    return wanted in {
        str(option.get("XML_ID") or "").strip().casefold(),
        str(option.get("VALUE") or "").strip().casefold(),
    }


async def _field_checks(settings: Settings, b24: Bitrix24Client) -> list[Check]:
    deal_fields, userfields = await asyncio.gather(
        b24.call("crm.deal.fields"), b24.list_all("crm.deal.userfield.list")
    )
    by_name = {str(uf["FIELD_NAME"]): uf for uf in userfields}
    checks: list[Check] = []
    configured = settings.portal.fields.model_dump()
    bad = 0
    for key, code in configured.items():
        expected = FIELD_TYPES.get(key, TEXT_TYPES)
        field = deal_fields.get(code)
        if field is None:
            bad += 1
            checks.append(
                _fail(
                    f"Field {key}",
                    f"{code} does not exist on deals",
                    f"create deal field {code} ({'/'.join(sorted(expected))}) "
                    f"or set portal.fields.{key}",
                )
            )
        elif field.get("type") not in expected:
            bad += 1
            checks.append(
                _fail(
                    f"Field {key}",
                    f"{code} is {field.get('type')}, expected {'/'.join(sorted(expected))}",
                    f"point portal.fields.{key} at a {'/'.join(sorted(expected))} field",
                )
            )
    if not bad:
        checks.append(_ok("Deal fields", f"all {len(configured)} fields exist with right types"))
    checks.extend(_enum_checks(settings, configured, by_name))
    return checks


def _enum_checks(
    settings: Settings, configured: dict[str, str], by_name: dict[str, dict[str, Any]]
) -> list[Check]:
    checks: list[Check] = []
    for key, options in settings.portal.enums.items():
        code = configured.get(key, key)
        field = by_name.get(code)
        if field is None:
            checks.append(
                _fail(
                    f"Options {key}",
                    f"{code} is not a deal user field",
                    f"set portal.fields.{key} to the enumeration field",
                )
            )
            continue
        listed = {str(o.get("ID")): o for o in field.get("LIST") or []}
        problems = []
        for meaning, option_id in options.items():
            option = listed.get(str(option_id))
            if option is None:
                problems.append(f"{meaning}={option_id} does not exist")
            elif not _option_means(option, meaning):
                problems.append(
                    f"{meaning}={option_id} is «{option.get('VALUE')}» "
                    f"(XML_ID {option.get('XML_ID')})"
                )
        if problems:
            choices = ", ".join(
                f"{o.get('ID')} «{o.get('VALUE')}»/{o.get('XML_ID')}" for o in listed.values()
            )
            checks.append(
                _fail(
                    f"Options {key}",
                    "; ".join(problems),
                    f"fix portal.enums.{key} (options of {code}: {choices})",
                )
            )
        else:
            checks.append(_ok(f"Options {key}", f"{len(options)} options of {code} match"))
    return checks


def _people(settings: Settings) -> dict[int, list[str]]:
    users = settings.portal.users
    roles: dict[int, list[str]] = {}
    for role, value in users.model_dump().items():
        for user_id in value if isinstance(value, list | tuple) else [value]:
            if int(user_id):  # 0: a role not configured (e.g. the director, R-X4)
                roles.setdefault(int(user_id), []).append(role)
    return roles


async def _user_checks(settings: Settings, b24: Bitrix24Client) -> list[Check]:
    roles = _people(settings)
    found = await asyncio.gather(*(b24.call("user.get", {"ID": uid}) for uid in roles))
    checks: list[Check] = []
    bad = 0
    for (user_id, names), rows in zip(roles.items(), found, strict=True):
        label = f"User {user_id} ({', '.join(names)})"
        key = f"portal.users.{names[0]}"
        user = next((u for u in rows or [] if str(u.get("ID")) == str(user_id)), None)
        if user is None:
            bad += 1
            checks.append(_fail(label, "no such user on the portal", f"set {key}"))
        elif not user.get("ACTIVE"):
            bad += 1
            who = " ".join(p for p in (user.get("NAME"), user.get("LAST_NAME")) if p)
            checks.append(
                _fail(label, f"{who} is dismissed (inactive)", f"put an active user in {key}")
            )
    if not bad:
        checks.append(_ok("Users", f"all {len(roles)} people exist and are active"))
    return checks


async def _approval_checks(settings: Settings, b24: Bitrix24Client) -> list[Check]:
    approval = getattr(settings.portal, "approval", None)
    if approval is None:
        return []
    etid, category = int(approval.entity_type_id), int(approval.category_id)
    types = await b24.call("crm.type.list")
    titles = {int(t["entityTypeId"]): t.get("title", "") for t in types.get("types", [])}
    if etid not in titles:
        return [
            _fail(
                "Smart process",
                f"no smart process with entityTypeId {etid}",
                "create «Согласование» or set portal.approval.entity_type_id",
            )
        ]
    stages = await _stage_ids(b24, f"DYNAMIC_{etid}_STAGE_{category}")
    wanted = {
        "stage_new": approval.stage_new,
        "stage_approved": approval.stage_approved,
        "stage_rejected": approval.stage_rejected,
    }
    missing = [f"{k}={v}" for k, v in wanted.items() if v not in stages]
    if missing:
        return [
            _fail(
                "Smart process",
                f"«{titles[etid]}» pipeline {category} lacks {', '.join(missing)}",
                f"fix portal.approval (stages: {', '.join(sorted(stages)) or 'none'})",
            )
        ]
    return [_ok("Smart process", f"«{titles[etid]}» ({etid}) with its {len(wanted)} stages")]


async def bitrix24_checks(settings: Settings, b24: Bitrix24Client) -> list[Check]:
    try:
        profile, scopes = await asyncio.gather(b24.call("profile"), b24.call("scope"))
    except (Bitrix24Error, ValueError) as error:
        return [
            _fail(
                "Bitrix24 webhook",
                _describe(error),
                "check bitrix24.webhook_url (https://<portal>/rest/<user>/<secret>/)",
            )
        ]
    checks = [_ok("Bitrix24 webhook", f"answers as user {profile.get('ID')}")]
    missing = [s for s in REQUIRED_SCOPES if s not in set(scopes or [])]
    if missing:
        checks.append(
            _fail(
                "Webhook scopes",
                f"missing {', '.join(missing)} (has {', '.join(scopes or [])})",
                "grant the webhook these permissions in Developer resources",
            )
        )
    else:
        checks.append(_ok("Webhook scopes", ", ".join(sorted(scopes))))
    groups = await asyncio.gather(
        _pipeline_checks(settings, b24),
        _field_checks(settings, b24),
        _user_checks(settings, b24),
        _approval_checks(settings, b24),
        return_exceptions=True,
    )
    for name, group in zip(("Pipelines", "Fields", "Users", "Smart process"), groups, strict=True):
        if isinstance(group, BaseException):
            checks.append(_fail(name, f"could not check: {_describe(group)}", "see the detail"))
        else:
            checks.extend(group)
    return checks


# ------------------------------------------------------------------ 1C
@dataclass(frozen=True)
class _Shape:
    """What $metadata says of one entity set: its properties and its tabular parts' columns."""

    props: frozenset[str]
    tables: dict[str, frozenset[str]]


def metadata_shapes(xml: str) -> dict[str, _Shape]:
    """Entity sets of a 1C $metadata (CSDL) with their properties and tabular parts."""
    root = ElementTree.fromstring(xml)

    def local(tag: str) -> str:
        return tag.rsplit("}", 1)[-1]

    def props(element: ElementTree.Element) -> dict[str, str]:
        return {
            str(p.get("Name")): str(p.get("Type") or "")
            for p in element
            if local(p.tag) in ("Property", "NavigationProperty")
        }

    types: dict[str, dict[str, str]] = {}
    sets: dict[str, str] = {}
    for element in root.iter():
        kind = local(element.tag)
        if kind in ("EntityType", "ComplexType"):
            types[str(element.get("Name"))] = props(element)
        elif kind == "EntitySet":
            sets[str(element.get("Name"))] = str(element.get("EntityType") or "").rsplit(".", 1)[-1]
    shapes: dict[str, _Shape] = {}
    for name, type_name in sets.items():
        fields = types.get(type_name, {})
        tables = {}
        for field, kind in fields.items():
            if kind.startswith("Collection("):
                row_type = kind.removeprefix("Collection(").rstrip(")").rsplit(".", 1)[-1]
                tables[field] = frozenset(types.get(row_type, {}))
        shapes[name] = _Shape(frozenset(fields), tables)
    return shapes


# Links the product reads as composite (`X` + `X_Type`) unless named `X_Key`.
LINK_TERMS = frozenset({"sale_link", "invoice_basis", "task_executor", "payment_invoice"})


def _present(columns: frozenset[str], term: str, name: str) -> bool:
    """The attribute is there — with its `_Type` partner when the product reads a composite."""
    if name not in columns:
        return False
    return term not in LINK_TERMS or is_plain_link(name) or name + "_Type" in columns


def _profile_checks(settings: Settings, shapes: dict[str, _Shape]) -> list[Check]:
    conf = settings.onec
    names = conf.one_c_names()
    value = dict(names.items())
    fix_name = (
        'set [onec.names] {term} = "<its name in this base>" (profile {profile})'
        " or choose the right onec.profile"
    )
    checks: list[Check] = []
    used = 0
    for term, attributes in OBJECT_ATTRIBUTES.items():
        entity_set = value[term]
        if not entity_set:
            continue  # the configuration has no such object (e.g. the КП in bp3)
        used += 1
        shape = shapes.get(entity_set)
        if shape is None:
            checks.append(
                _fail(
                    f"1C {entity_set}",
                    f"not published over OData (absent from $metadata; the product's {term})",
                    "add it to the standard OData interface"
                    " (УстановитьСоставСтандартногоИнтерфейсаOData), or "
                    + fix_name.format(term=term, profile=conf.profile),
                )
            )
            continue
        for attribute_term in attributes:
            name = value[attribute_term]
            if not name:
                continue
            if not (_present(shape.props, attribute_term, name) or name in shape.tables):
                checks.append(
                    _fail(
                        f"1C {entity_set}.{name}",
                        f"no such attribute in this base (the product's {attribute_term})",
                        fix_name.format(term=attribute_term, profile=conf.profile),
                    )
                )
    for attribute_term, (object_term, table_term) in LINE_ATTRIBUTES.items():
        entity_set, table, name = value[object_term], value[table_term], value[attribute_term]
        shape = shapes.get(entity_set)
        if not (entity_set and name) or shape is None or table not in shape.tables:
            continue
        if not _present(shape.tables[table], attribute_term, name):
            checks.append(
                _fail(
                    f"1C {entity_set}.{table}.{name}",
                    f"no such column in this base (the product's {attribute_term})",
                    fix_name.format(term=attribute_term, profile=conf.profile),
                )
            )
    task = shapes.get(names.task)
    installed = task is not None and all(value[term] in task.props for term in EXTENSION_ATTRIBUTES)
    ext_names = ", ".join(value[term] for term in EXTENSION_ATTRIBUTES)
    if conf.extension and not installed:
        checks.append(
            _fail(
                "1C extension",
                f"onec.extension is on but {names.task} has no {ext_names}",
                "install the salesflow extension (docs/ONEC.md) or set onec.extension = false",
            )
        )
    elif installed:
        state = "in use" if conf.extension else "installed, not used (onec.extension = false)"
        checks.append(_ok("1C extension", f"{ext_names} on {names.task}: {state}"))
    else:
        checks.append(_ok("1C extension", "not installed (not needed: standard attributes only)"))
    if not any(c.status == FAIL for c in checks):
        checks.insert(
            0,
            _ok(
                "1C entity sets",
                f"profile {conf.profile}: all {used} objects and their attributes are published",
            ),
        )
    return checks


async def onec_checks(settings: Settings, onec: OneCClient) -> list[Check]:
    url = settings.onec.odata_url
    try:
        root = await onec.request_json("GET", "", {})
    except OneCError as error:
        return [
            _fail(
                "1C OData",
                f"{url}: {_describe(error)}",
                "check onec.odata_url, onec.user and onec.password (and the publication)",
            )
        ]
    published = {str(entry.get("name")) for entry in root.get("value", [])}
    checks = [_ok("1C OData", f"{url} answers ({len(published)} sets published)")]
    try:
        shapes = metadata_shapes(await onec.metadata())
    except (OneCError, ElementTree.ParseError) as error:
        fix = "check that $metadata is readable with these credentials"
        return [*checks, _fail("1C $metadata", _describe(error), fix)]
    return checks + _profile_checks(settings, shapes)


# ------------------------------------------------------------------ nomenclature (R-KP-2)
NOMENCLATURE = "1C nomenclature"
DEALS_CHECKED = 50  # open deals whose product rows are checked: the newest, one list page
SHOWN = 10


async def nomenclature_checks(
    settings: Settings, b24: Bitrix24Client, onec: OneCClient
) -> list[Check]:
    """R-KP-2: every catalogue product and every product row of the open deals of the sales
    pipeline has its 1C nomenclature (Ref_Key, article or code in XML_ID, as the activities
    match them); what has none is named."""
    matcher = OneCActivities(onec, b24, settings)
    try:
        catalogue = await b24.list_all("crm.product.list", {"select": ["ID", "NAME", "XML_ID"]})
        products = {int(p["ID"]): p for p in catalogue}
        deals = await b24.call(
            "crm.deal.list",
            {
                "filter": {"CATEGORY_ID": settings.portal.category_id, "CLOSED": "N"},
                "select": ["ID", "TITLE"],
                "order": {"ID": "DESC"},
            },
        )
        rows: list[tuple[str, dict[str, Any]]] = [
            (f"товар {pid} «{p.get('NAME')}»", {"PRODUCT_ID": pid, "PRODUCT_NAME": p.get("NAME")})
            for pid, p in products.items()
        ]
        for deal in list(deals or [])[:DEALS_CHECKED]:
            for row in await b24.call("crm.deal.productrows.get", {"id": deal["ID"]}) or []:
                if int(row.get("PRODUCT_ID") or 0) not in products:  # catalogue ones: above
                    rows.append((f"сделка {deal['ID']}: «{row.get('PRODUCT_NAME')}»", row))
        found = await matcher.items_for([row for _, row in rows], products)
    except (Bitrix24Error, OneCError) as error:
        return [_fail(NOMENCLATURE, _describe(error), "check access to crm.product.* and 1C")]
    missing = [label for index, (label, _) in enumerate(rows) if index not in found]
    if not missing:
        return [_ok(NOMENCLATURE, f"{len(rows)} catalogue products and deal rows match 1C")]
    shown = "; ".join(missing[:SHOWN]) + (
        f"; … {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
    )
    return [
        _fail(
            NOMENCLATURE,
            f"{len(missing)} of {len(rows)} without 1C nomenclature: {shown}",
            "put the 1C Ref_Key, article (Артикул) or code of the item into the product's"
            " XML_ID (external code), or add the item in 1C",
        )
    ]


# ------------------------------------------------------------------ the application's token
APP_TOKEN = "Application token"


def _database_exists(url: str) -> bool:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return True
    database = parsed.database or ""
    return bool(database) and database != ":memory:" and Path(database).expanduser().is_file()


async def _stored_tokens(settings: Settings) -> app_tokens.StoredTokens | None:
    """The pair the relay refreshed and kept, if the database holds one (read only)."""
    b24 = settings.bitrix24
    if not b24.app_refresh_configured() or not _database_exists(settings.database.url):
        return None
    engine = database_engine(settings.database)
    try:
        return await app_tokens.get(engine, b24.app_client_id)
    except Exception:  # no table yet, or no database: the configured pair is what counts
        return None
    finally:
        await engine.dispose()


async def app_token_check(settings: Settings) -> Check:
    b24 = settings.bitrix24
    stored = await _stored_tokens(settings)
    if stored is not None and stored.last_error:
        error = TokenRefreshError(stored.last_error.split(":", 1)[0], stored.last_error)
        return _fail(APP_TOKEN, f"refresh refused: {stored.last_error}", refusal_hint(error))
    token = stored.access_token if stored is not None else b24.app_access_token
    source = (
        f"refreshed {stored.updated_at:%Y-%m-%d %H:%M} UTC (database)" if stored else "configured"
    )
    refreshable = b24.app_refresh_configured()
    if not token:
        return _ok(APP_TOKEN, "none yet: the relay gets one with bitrix24.app_refresh_token")
    async with Bitrix24Client(
        b24.app_rest_base(), access_token=token, rate_per_second=0, coalesce=False, timeout=15.0
    ) as app:
        try:
            scopes = await app.call("scope")
        except Bitrix24Error as exc:
            if exc.code.lower() not in REFRESH_ON:
                return _fail(APP_TOKEN, f"{source}: {_describe(exc)}", "see the detail")
            if refreshable:
                detail = f"{source}: {exc.code}; the relay refreshes it when it drains"
                return _ok(APP_TOKEN, detail)
            hint = refusal_hint(TokenRefreshError("not_configured"))
            return _fail(APP_TOKEN, f"{source}: {exc.code}", hint)
    missing = [scope for scope in ("crm", "task") if scope not in (scopes or [])]
    if missing:
        return _fail(
            APP_TOKEN,
            f"{source}: answers without scope {', '.join(missing)}",
            "give the local application the crm and task scopes and re-install it",
        )
    refresh = "refreshed hourly by the relay" if refreshable else "no refresh configured"
    return _ok(APP_TOKEN, f"{source}: answers ({refresh})")


# ------------------------------------------------------------------ the tab and the events
APP_INSTALL = "Deal card tab, events"


async def app_install_check(settings: Settings, *, fix: bool = False) -> Check:
    """The deal card's tab bound to `<relay.public_url>/bitrix24/deal-card` and the relay's
    events bound (`app_install.plan`); with `fix`, what is missing is bound (`apply`, the code
    of `salesflow app install`). Without `fix` nothing is refreshed or bound."""
    try:
        goal = app_install.target(settings)
    except app_install.InstallError as exc:
        return Check(APP_INSTALL, SKIP, str(exc))
    try:
        if fix:
            async with app_install.application_caller(settings) as caller:
                todo = await app_install.plan(caller, goal)
                done = await app_install.apply(caller, goal, todo)
            if done:
                return _ok(APP_INSTALL, "fixed: " + "; ".join(s.describe() for s in done))
        else:
            stored = await _stored_tokens(settings)
            token = (
                stored.access_token if stored is not None else settings.bitrix24.app_access_token
            )
            if not token:
                return Check(APP_INSTALL, SKIP, "no application token yet (the relay gets one)")
            async with Bitrix24Client(
                settings.bitrix24.app_rest_base(),
                access_token=token,
                rate_per_second=0,
                coalesce=False,
                timeout=15.0,
            ) as app:
                todo = await app_install.plan(app, goal)
    except app_install.InstallError as exc:
        return _fail(APP_INSTALL, str(exc), "see the detail, then salesflow app install")
    except Bitrix24Error as exc:
        return _fail(APP_INSTALL, _describe(exc), "see the detail")
    if todo.done or fix:
        events = {(s.kind, s.name) for s in todo.steps if s.kind != "placement"}
        return _ok(APP_INSTALL, f"tab at {goal.tab_handler}; {len(events)} events bound")
    return _fail(
        APP_INSTALL,
        "; ".join(s.describe() for s in todo.changes),
        "salesflow app install (or salesflow doctor --fix)",
    )


# ------------------------------------------------------------------ running
async def run_checks(
    settings: Settings,
    *,
    bitrix24: Bitrix24Client | None = None,
    onec: OneCClient | None = None,
    fix: bool = False,
) -> list[Check]:
    """Every check; clients are built from the settings unless given (then not closed)."""
    b24 = bitrix24 or Bitrix24Client(
        settings.bitrix24.webhook_url,
        rate_per_second=settings.bitrix24.rate_per_second,
        burst=settings.bitrix24.burst,
        timeout=15.0,
    )
    checks: list[Check] = []
    try:
        checks += await bitrix24_checks(settings, b24)
        if settings.bitrix24.app_access_token or settings.bitrix24.app_refresh_configured():
            checks.append(await app_token_check(settings))
            checks.append(await app_install_check(settings, fix=fix))
        if not settings.onec.odata_url:
            return [*checks, Check("1C OData", SKIP, "onec.odata_url is empty: 1C not configured")]
        one_c = onec or OneCClient(
            settings.onec.odata_url,
            settings.onec.user,
            settings.onec.password,
            timezone=settings.onec.timezone,
            timeout=15.0,
        )
        try:
            onec_found = await onec_checks(settings, one_c)
            checks += onec_found
            if all(c.ok for c in onec_found):
                checks += await nomenclature_checks(settings, b24, one_c)
        finally:
            if onec is None:
                await one_c.aclose()
    finally:
        if bitrix24 is None:
            await b24.aclose()
    return checks


_STYLE = {OK: "[green]✓ ok[/green]", FAIL: "[red]✗ fail[/red]", SKIP: "[yellow]– skip[/yellow]"}


def render(checks: Iterable[Check], console: Console) -> None:
    table = Table(title="salesflow doctor", show_lines=False)
    table.add_column("check", style="bold")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    table.add_column("fix", overflow="fold")
    for check in checks:
        table.add_row(check.name, _STYLE[check.status], check.detail, check.fix)
    console.print(table)


def exit_code(checks: Iterable[Check]) -> int:
    return 0 if all(check.ok for check in checks) else 1


# ------------------------------------------------------------------ --fix-applied
# Deals and the logist's 1C task mirrors: both may wait on a 1C configuration problem.
RUNNING_DEALS = (
    f"(WorkflowType = '{WORKFLOW_TYPE}' OR WorkflowType = '{LOGIST_TASK_MIRROR}')"
    " AND ExecutionStatus = 'Running'"
)


async def signal_onec_fixed(client: Client) -> int:
    """Tell every running deal (and logist task mirror) that the 1C configuration was fixed:
    one whose 1C step waits on a configuration problem retries it now; the others ignore it.
    Returns how many were told."""
    told = 0
    async for wf in client.list_workflows(RUNNING_DEALS):
        with contextlib.suppress(RPCError):  # a deal that closed meanwhile
            await client.get_workflow_handle(wf.id, run_id=wf.run_id).signal(
                SIGNAL_ONEC_CONFIG_FIXED
            )
            told += 1
    return told


def _onec_all_right(checks: Iterable[Check]) -> bool:
    """The base accepts what the profile asks (rows without nomenclature are no such problem)."""
    return all(c.ok for c in checks if c.name.startswith("1C") and c.name != NOMENCLATURE)


def main(
    settings: Settings,
    console: Console | None = None,
    fix_applied: bool = False,
    fix: bool = False,
) -> int:
    """Run the checks, print the table, return the exit code (0 only when all is right).

    `fix_applied`: once the 1C checks pass, running deals waiting on a 1C configuration
    problem are told to retry their step (signal `onec_configuration_fixed`). `fix`: the deal
    card's tab and the events missing on the portal are bound (`salesflow app install`)."""
    console = console or Console()
    checks = asyncio.run(run_checks(settings, fix=fix))
    render(checks, console)
    failed = [c for c in checks if not c.ok]
    if failed:
        console.print(f"[red]{len(failed)} check(s) failed[/red]")
    else:
        console.print("[green]configuration matches Bitrix24 and 1C[/green]")
    if fix_applied:
        if not _onec_all_right(checks):
            console.print("[red]1C checks still fail: deals are not told to retry[/red]")
            return 1
        told = asyncio.run(_tell_deals(settings))
        console.print(f"1C configuration fixed: {told} running deal(s) told to retry")
    return exit_code(checks)


async def _tell_deals(settings: Settings) -> int:
    return await signal_onec_fixed(await connect(settings))
