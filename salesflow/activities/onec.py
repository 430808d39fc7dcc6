"""Activities that read 1C and carry what they read into Bitrix24; each idempotent by its key.

Exactly once (DESIGN.md), marker by marker:
- КП → deal product rows (R-KP-2): `crm.deal.productrows.set` replaces all rows; the rows
  are read first and the write is skipped when they already equal the КП's lines, so a
  repeat changes nothing (not even row IDs). Each row's XML_ID is the nomenclature's 1C
  Ref_Key, as in the standard 1C ↔ Bitrix24 exchange.
- Non-Russian direction: the КП is not loaded, but the nomenclature still comes from 1C
  (R-KP-2): each deal row is matched to a 1C item (Ref_Key, article or code in the row's or
  catalogue product's XML_ID), takes its name and unit from 1C, and the product gets the
  Ref_Key; rows and products are written only when they differ. The deal's timeline comments
  (why no КП; rows 1C lacks) are looked up by their exact text.
- A create whose answer was lost (in 1C or Bitrix24) is repeated only after its marker was
  not found for the settle window (`once.py`; `onec.settle_seconds`, `bitrix24.settle_seconds`).
- The logist's task (R-X6, R-AC-3): created with a Ref_Key derived from the key and read
  back by it before creating — standard attributes only, no extension needed; two racing
  attempts cannot make two tasks (1C answers "key exists", code 15). The key is also
  written into Описание for people; with the optional extension (`onec.extension`) the task
  also carries ИдентификаторБитрикс24 / СсылкаБитрикс24.
- 1C comments in the Bitrix24 task: looked up by exact text in task.commentitem.getlist.
- Starting/completing the Bitrix24 task: only from a status that allows it.

Every 1C name comes from the configuration profile (`onec.profile`, `[onec.names]`;
`integrations/onec/profiles.py`, docs/ONEC.md). Matching the deal to 1C (which КП, which
direction counts as Russian): `config.matching` and the `[onec]` settings. A request the
base refuses as naming something it lacks (400 with code 6 or 14, an unknown set) is a
configuration problem: `1C.ConfigurationProblem`, naming the object/attribute and the fix.
1C errors become ApplicationErrors like Bitrix24 ones: outages,
timeouts and lock conflicts are retried by the workflow's policy; the rest are
non-retryable, typed `1C.<ErrorClass>` with 1C's code in the message and details.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from temporalio import activity
from temporalio.exceptions import ApplicationError

from salesflow.activities.bitrix24 import timeline_comment_once
from salesflow.activities.errors import refuse, remote_errors
from salesflow.activities.once import Settle, once
from salesflow.config.matching import is_russian_direction, kp_number_candidates
from salesflow.config.settings import Settings
from salesflow.config.templates import merged
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.integrations.onec import (
    F,
    OneCBadRequest,
    OneCClient,
    OneCError,
    OneCNotFound,
    Ref,
    and_,
    configuration_problem,
    or_,
)
from salesflow.integrations.onec.filters import Expr
from salesflow.integrations.onec.parsing import is_guid, normalize_guid
from salesflow.integrations.onec.profiles import OneCNames, is_plain_link
from salesflow.workflows.onec_models import (
    CANCEL_ONEC_TASK,
    CREATE_ONEC_TASK,
    FETCH_CLOSING_DOCUMENTS,
    FIND_INVOICE_PAYMENTS,
    LOAD_KP_INTO_DEAL,
    READ_ONEC_TASK,
    REFLECT_TASK_PROGRESS,
    SET_ONEC_TASK_DEADLINE,
    CancelOneCTaskRequest,
    ClosingDocsRequest,
    ClosingDocument,
    CreateOneCTaskRequest,
    FindPaymentsRequest,
    KpLine,
    LoadKpRequest,
    LoadKpResult,
    OneCTaskDeadlineRequest,
    OneCTaskStatus,
    Payment,
    ReflectProgressRequest,
    ReflectProgressResult,
)

log = logging.getLogger(__name__)

# The default profile's (ut11) names, for callers that name 1C sets directly (tests, tools).
_UT11 = OneCNames()
KP_SET = _UT11.kp
NOMENCLATURE = _UT11.nomenclature
UNITS = _UT11.units
USERS = _UT11.users
COUNTERPARTIES = _UT11.counterparties
TASKS = _UT11.task
INVOICES = _UT11.invoice
PAYMENTS = _UT11.payment
SALES = _UT11.sale

# Enum СтавкиНДС values → percent (None: no VAT).
VAT_RATES: dict[str, float | None] = {
    "НДС22": 22.0,
    "НДС20": 20.0,
    "НДС18": 18.0,
    "НДС10": 10.0,
    "НДС7": 7.0,
    "НДС5": 5.0,
    "НДС0": 0.0,
    "БезНДС": None,
}
TASK_AUTHOR = "salesflow (Bitrix24)"
# Bitrix24 task statuses.
TASK_NEW, TASK_PENDING, TASK_AWAITING_CONTROL, TASK_COMPLETED = 1, 2, 4, 5

# User-facing texts (candidates for config/templates.py).
KP_SKIPPED_TEXT = (
    "КП {kp} не загружено из 1С в товары сделки: направление сделки «{direction}»"
    " не содержит «{marker}»."
)
TASK_COMMENT_TEXT = "Из 1С: {line}"
TASK_KEY_TEXT = "Ключ salesflow: {key}"
CONFIG_PROBLEM_TEXT = (
    "1С не принимает запрос: в базе нет «{name}» ({where}; профиль {profile})."
    ' Исправьте onec.profile или [onec.names] {term} = "…" под эту базу, либо опубликуйте'
    " объект в OData (УстановитьСоставСтандартногоИнтерфейсаOData); `salesflow doctor`"
    " покажет все расхождения."
)
CONFIG_REFUSED_TEXT = (
    "1С не принимает запрос к {where} (код {code}: {message}; профиль {profile}): запрос не"
    " подходит этой базе. Проверьте onec.profile и [onec.names]; `salesflow doctor` покажет"
    " расхождения."
)
_TASK_REF_NAMESPACE = uuid.UUID("0b7f0a52-3c55-4f0e-9a43-5a1e5f10c0de")


_told: set[tuple[str, str]] = set()


def _term_of(names: OneCNames | None, name: str) -> str:
    if names is None:
        return "<name>"
    name = name.rsplit("/", 1)[-1]  # a tabular column is echoed as `Товары/Колонка`
    for term, value in names.items():
        if value and (value == name or value.removesuffix("_Key") == name.removesuffix("_Key")):
            return term
    return "<name>"


@contextmanager
def onec_errors(names: OneCNames | None = None, profile: str = "") -> Iterator[None]:
    """A OneCError as an ApplicationError that is retried only when 1C says it may help.

    A request wrong for this base (codes 6 and 14, an unknown set) is a configuration
    problem: non-retryable `1C.ConfigurationProblem` naming the object/attribute and the fix
    (the workflow tells the РОП once); the integrator reads it once in the worker's log.
    """
    try:
        yield
    except OneCError as err:
        missing = configuration_problem(err)
        if missing is not None:
            where = (err.url or "").split("standard.odata/", 1)[-1].split("?", 1)[0]
            template = CONFIG_PROBLEM_TEXT if missing else CONFIG_REFUSED_TEXT
            text = template.format(
                name=missing,
                where=unquote(where) or "запрос",
                profile=profile or "ut11",
                term=_term_of(names, missing),
                code=err.code,
                message=err.message,
            )
            if (where, missing) not in _told:
                _told.add((where, missing))
                log.warning("1C configuration problem: %s (%s)", text, err.message)
            raise ApplicationError(
                text, err.details(), type="1C.ConfigurationProblem", non_retryable=True
            ) from err
        raise ApplicationError(
            str(err),
            err.details(),
            type=f"1C.{type(err).__name__}",
            non_retryable=not err.retryable,
        ) from err


def task_key_in(description: Any) -> str | None:
    """The idempotency key a mirrored task's Описание carries (`TASK_KEY_TEXT`), if any."""
    prefix = TASK_KEY_TEXT.format(key="")
    for line in _text(description).splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    return None


def task_ref_for(key: str) -> str:
    """The Ref_Key a mirrored task is created with: the same key always gives the same ref."""
    return str(uuid.uuid5(_TASK_REF_NAMESPACE, key))


def money(value: Any) -> float:
    return round(float(value or 0), 2)


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value if v not in (None, ""))
    return "" if value is None else str(value).strip()


def _comparable(value: Any) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return round(float(value), 4)
    try:
        return round(float(value), 4)
    except (TypeError, ValueError):
        return str(value)


def rows_equal(current: Sequence[Mapping[str, Any]], wanted: Sequence[Mapping[str, Any]]) -> bool:
    """The deal already holds exactly these rows (compared on the fields we write)."""
    if len(current) != len(wanted):
        return False
    for have, want in zip(current, wanted, strict=True):
        for name, value in want.items():
            if _comparable(have.get(name)) != _comparable(value):
                return False
    return True


def product_row(line: KpLine, tax_included: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "PRODUCT_ID": 0,
        "PRODUCT_NAME": line.name,
        "PRICE": line.price,
        "QUANTITY": line.quantity,
        "MEASURE_NAME": line.unit or "шт",
        "TAX_INCLUDED": "Y" if tax_included else "N",
        "XML_ID": line.nomenclature_ref,
        "SORT": line.line * 10,
    }
    if line.unit_code is not None:
        row["MEASURE_CODE"] = line.unit_code
    if line.vat_rate is not None:
        row["TAX_RATE"] = line.vat_rate
    return row


def vat_rate(value: Any, rates: Mapping[str, float | None]) -> float | None:
    """СтавкаНДС as 1C holds it: a Catalog_СтавкиНДС item (its rate in `rates`), an enum
    value inside the composite (`Ref` keyed by the value's name) or a plain enum string."""
    if isinstance(value, Ref):
        return rates[value.key] if value.key in rates else VAT_RATES.get(value.key)
    return VAT_RATES.get(_text(value))


# Row fields carried over when the rows are rewritten (research/bitrix24.md, product rows).
ROW_FIELDS = (
    "PRODUCT_ID",
    "PRODUCT_NAME",
    "PRICE",
    "QUANTITY",
    "DISCOUNT_TYPE_ID",
    "DISCOUNT_RATE",
    "DISCOUNT_SUM",
    "TAX_RATE",
    "TAX_INCLUDED",
    "MEASURE_CODE",
    "MEASURE_NAME",
    "SORT",
    "XML_ID",
)


@dataclass(frozen=True)
class NomenclatureMatch:
    changed: bool
    lines: list[KpLine]
    unmatched: list[str]


def task_comments(result_text: Any) -> list[str]:
    """РезультатВыполнения holds the logist's notes, one per line, newest last."""
    return [line.strip() for line in _text(result_text).splitlines() if line.strip()]


async def _absent() -> None:
    """For `once` after a lookup already made in this attempt (the key was not found)."""
    return None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


class OneCActivities:
    """Holds the worker's one 1C client (one 1C session) and its one Bitrix24 client."""

    def __init__(self, onec: OneCClient, bitrix24: Bitrix24Client, settings: Settings) -> None:
        self.onec = onec
        self.bitrix24 = bitrix24
        self.settings = settings
        self.names = settings.onec.one_c_names()
        self.profile = settings.onec.profile
        self.settle = Settle(settings.onec.settle_seconds)
        self.settle_bitrix24 = Settle(settings.bitrix24.settle_seconds)

    def all(self) -> list[Any]:
        return [
            self.load_kp_into_deal,
            self.create_onec_task,
            self.read_onec_task,
            self.cancel_onec_task,
            self.set_onec_task_deadline,
            self.reflect_task_progress,
            self.find_invoice_payments,
            self.fetch_closing_documents,
        ]

    # ---- R-KP-2: КП → product rows -------------------------------------------------------

    @activity.defn(name=LOAD_KP_INTO_DEAL)
    async def load_kp_into_deal(self, req: LoadKpRequest) -> LoadKpResult:
        kp_number, direction = await self._deal_kp_and_direction(req)
        marker = self.settings.onec.russia_marker
        if not is_russian_direction(direction, marker):
            text = KP_SKIPPED_TEXT.format(
                kp=kp_number or "—", direction=direction or "не указано", marker=marker
            )
            # The nomenclature always comes from 1C (R-KP-2), whatever the direction.
            nomenclature = await self.match_deal_nomenclature(req.deal_id)
            changed = await timeline_comment_once(
                self.bitrix24, self.settle_bitrix24, req.deal_id, text
            )
            if nomenclature.unmatched:
                listed = ", ".join(f"«{name}»" for name in nomenclature.unmatched)
                notice = self._template("onec_rows_unmatched").format(rows=listed)
                changed = (
                    await timeline_comment_once(
                        self.bitrix24, self.settle_bitrix24, req.deal_id, notice
                    )
                    or changed
                )
                text = f"{text} {notice}"
            return LoadKpResult(
                loaded=False,
                changed=changed or nomenclature.changed,
                kp_number=kp_number,
                comment=text,
                lines=nomenclature.lines,
                unmatched=nomenclature.unmatched,
            )
        if not kp_number:
            raise refuse(f"deal {req.deal_id}: the КП number field is empty", "KpNumberMissing")
        with onec_errors(self.names, self.profile):
            kp = await self._find_kp(kp_number)
            lines = await self._kp_lines(kp)
        n = self.names
        rows = [product_row(line, bool(kp.get(n.kp_prices_include_vat, True))) for line in lines]
        with remote_errors():
            catalogue = await self._catalogue_by_ref(line.nomenclature_ref for line in lines)
        for row in rows:
            row["PRODUCT_ID"] = catalogue.get(row["XML_ID"], 0)
        written = False

        async def in_place() -> bool | None:
            current = await self.bitrix24.call("crm.deal.productrows.get", {"id": req.deal_id})
            return True if rows_equal(list(current or []), rows) else None

        async def write() -> bool:
            nonlocal written
            await self.bitrix24.call("crm.deal.productrows.set", {"id": req.deal_id, "rows": rows})
            written = True
            return True

        with remote_errors():
            await once(self.settle_bitrix24, f"{req.key}:rows", in_place, write)
        changed = written
        total = money(kp.get(n.kp_amount)) or money(sum(line.amount for line in lines))
        return LoadKpResult(
            loaded=True,
            changed=changed,
            kp_number=str(kp["Number"]),
            kp_ref=str(kp["Ref_Key"]),
            amount=total,
            lines=lines,
        )

    def _template(self, name: str) -> str:
        return merged(self.settings.templates)[name]

    # ---- R-KP-2: the nomenclature always from 1C --------------------------------------------

    async def match_deal_nomenclature(self, deal_id: int) -> NomenclatureMatch:
        """Match each deal product row to 1C nomenclature and take the nomenclature from 1C.

        A row's 1C item: the Ref_Key in the row's or its catalogue product's XML_ID (the
        standard 1C exchange's external code), else that XML_ID as the item's article
        (`nomenclature_article`) or code. A matched row gets its name and unit from 1C and
        the Ref_Key as XML_ID; its catalogue product gets the Ref_Key as XML_ID
        (`crm.product.update`, DOCS api-reference/crm/outdated/products/). Prices and
        quantities stay. Written only when something differs (a repeat changes nothing)."""
        with remote_errors():
            current = list(
                await self.bitrix24.call("crm.deal.productrows.get", {"id": deal_id}) or []
            )
            products = await self._catalogue_products(current)
        with onec_errors(self.names, self.profile):
            items = await self.items_for(current, products)
            units = await self._by_refs(
                self.names.units,
                (item.get(self.names.nomenclature_unit) for item in items.values() if item),
                f"Ref_Key,Description,{self.names.unit_code}",
            )
        rows: list[dict[str, Any]] = []
        lines: list[KpLine] = []
        unmatched: list[str] = []
        product_refs: dict[int, str] = {}
        for index, row in enumerate(current):
            item = items.get(index)
            wanted = {name: row.get(name) for name in ROW_FIELDS if name in row}
            if item is None:
                unmatched.append(_text(row.get("PRODUCT_NAME")) or f"строка {index + 1}")
                rows.append(wanted)
                continue
            line = self._nomenclature_line(index, item, units)
            lines.append(line)
            wanted.update(PRODUCT_NAME=line.name, MEASURE_NAME=line.unit or row.get("MEASURE_NAME"))
            wanted["XML_ID"] = line.nomenclature_ref
            if line.unit_code is not None:
                wanted["MEASURE_CODE"] = line.unit_code
            rows.append(wanted)
            product_id = int(row.get("PRODUCT_ID") or 0)
            if product_id and _text(products.get(product_id, {}).get("XML_ID")) != str(
                item["Ref_Key"]
            ):
                product_refs[product_id] = str(item["Ref_Key"])
        changed = False
        with remote_errors():
            for product_id, ref in sorted(product_refs.items()):
                await self.bitrix24.call(
                    "crm.product.update", {"id": product_id, "fields": {"XML_ID": ref}}
                )
                changed = True
            if not rows_equal(current, rows):
                await self.bitrix24.call("crm.deal.productrows.set", {"id": deal_id, "rows": rows})
                changed = True
        return NomenclatureMatch(changed=changed, lines=lines, unmatched=unmatched)

    async def _catalogue_by_ref(self, refs: Iterable[str]) -> dict[str, int]:
        """Catalogue products that carry these 1C references in XML_ID → their IDs (a row
        then names its product; crm.product.list, DOCS
        api-reference/crm/outdated/products/crm-product-list.md)."""
        wanted = sorted(set(refs))
        if not wanted:
            return {}
        found = await self.bitrix24.list_all(
            "crm.product.list", {"filter": {"XML_ID": wanted}, "select": ["ID", "XML_ID"]}
        )
        by_ref: dict[str, int] = {}
        for product in sorted(found, key=lambda p: int(p["ID"])):
            by_ref.setdefault(_text(product.get("XML_ID")), int(product["ID"]))
        return by_ref

    async def _catalogue_products(
        self, rows: Sequence[Mapping[str, Any]]
    ) -> dict[int, dict[str, Any]]:
        ids = sorted({int(r.get("PRODUCT_ID") or 0) for r in rows} - {0})
        found: dict[int, dict[str, Any]] = {}
        for product_id in ids:
            found[product_id] = await self.bitrix24.call("crm.product.get", {"id": product_id})
        return found

    async def items_for(
        self, rows: Sequence[Mapping[str, Any]], products: Mapping[int, Mapping[str, Any]]
    ) -> dict[int, dict[str, Any]]:
        """The 1C item of each row (by row index) that has one; `products` are the rows'
        catalogue products by ID (also used by `salesflow doctor`)."""
        n = self.names
        select = ",".join(
            [
                "Ref_Key",
                "Code",
                "Description",
                n.nomenclature_full_name,
                n.nomenclature_article,
                n.nomenclature_unit,
            ]
        )
        refs: dict[int, str] = {}
        codes: dict[int, str] = {}
        for index, row in enumerate(rows):
            product = products.get(int(row.get("PRODUCT_ID") or 0), {})
            for candidate in (_text(row.get("XML_ID")), _text(product.get("XML_ID"))):
                if is_guid(candidate):
                    refs.setdefault(index, normalize_guid(candidate))
                elif candidate and index not in codes:
                    codes[index] = candidate
        by_ref = await self._by_refs(n.nomenclature, refs.values(), select)
        items = {i: by_ref[ref] for i, ref in refs.items() if ref in by_ref}
        for index, code in codes.items():
            if index in items:
                continue
            for attribute in (n.nomenclature_article, "Code"):
                found = await self.onec.find_one(
                    n.nomenclature,
                    (F(attribute) == code) & F("DeletionMark").is_false(),
                    select=select,
                )
                if found is not None:
                    items[index] = found
                    break
        return items

    def _nomenclature_line(
        self, index: int, item: Mapping[str, Any], units: Mapping[str, Mapping[str, Any]]
    ) -> KpLine:
        n = self.names
        unit = units.get(item.get(n.nomenclature_unit) or "", {})
        return KpLine(
            line=index + 1,
            nomenclature_ref=str(item["Ref_Key"]),
            name=_text(item.get(n.nomenclature_full_name)) or _text(item.get("Description")),
            article=_text(item.get(n.nomenclature_article)),
            unit=_text(unit.get("Description")),
            unit_code=_int_or_none(unit.get(n.unit_code)),
            quantity=0.0,
            price=0.0,
            amount=0.0,
        )

    async def _deal_kp_and_direction(self, req: LoadKpRequest) -> tuple[str, str]:
        kp_number, direction = req.kp_number, req.direction
        if kp_number is None or direction is None:
            fields = self.settings.portal.fields
            with remote_errors():
                deal = await self.bitrix24.call("crm.deal.get", {"id": req.deal_id})
            kp_number = _text(deal.get(fields.kp)) if kp_number is None else kp_number
            direction = _text(deal.get(fields.direction)) if direction is None else direction
        return kp_number.strip(), direction.strip()

    async def _find_kp(self, typed: str) -> dict[str, Any]:
        conf = self.settings.onec
        for number in kp_number_candidates(typed, conf.kp_number_prefix, conf.kp_number_length):
            found = await self.onec.find_one(
                self.names.kp,
                (F("Number") == number) & F("DeletionMark").is_false(),
                orderby="Date desc",
            )
            if found is not None:
                return found
        raise refuse(f"КП «{typed}» не найдено в 1С", "1C.KpNotFound")

    async def _kp_lines(self, kp: Mapping[str, Any]) -> list[KpLine]:
        n = self.names
        goods = sorted(kp.get(n.kp_lines) or [], key=lambda row: int(row.get("LineNumber") or 0))
        items = await self._by_refs(
            n.nomenclature,
            (row.get(n.line_nomenclature) for row in goods),
            ",".join(
                [
                    "Ref_Key",
                    "Description",
                    n.nomenclature_full_name,
                    n.nomenclature_article,
                    n.nomenclature_unit,
                ]
            ),
        )
        units = await self._by_refs(
            n.units,
            (item.get(n.nomenclature_unit) for item in items.values()),
            f"Ref_Key,Description,{n.unit_code}",
        )
        rates = await self._vat_rates(row.get(n.line_vat) for row in goods)
        lines: list[KpLine] = []
        for row in goods:
            ref = row.get(n.line_nomenclature)
            item = items.get(ref or "")
            if item is None:
                raise refuse(
                    f"КП {kp['Number']}, строка {row.get('LineNumber')}: номенклатура"
                    f" {ref or '(пусто)'} не найдена в 1С",
                    "1C.NomenclatureMissing",
                )
            unit = units.get(item.get(n.nomenclature_unit) or "", {})
            name = _text(item.get(n.nomenclature_full_name)) or _text(item.get("Description"))
            lines.append(
                KpLine(
                    line=int(row.get("LineNumber") or len(lines) + 1),
                    nomenclature_ref=str(ref),
                    name=name,
                    article=_text(item.get(n.nomenclature_article)),
                    unit=_text(unit.get("Description")),
                    unit_code=_int_or_none(unit.get(n.unit_code)),
                    quantity=round(float(row.get(n.line_quantity) or 0), 3),
                    price=money(row.get(n.line_price)),
                    amount=money(row.get(n.line_amount)),
                    vat_rate=vat_rate(row.get(n.line_vat), rates),
                )
            )
        return lines

    async def _vat_rates(self, values: Iterable[Any]) -> dict[str, float | None]:
        """Rates of the Catalog_СтавкиНДС items the rows name (composite СтавкаНДС)."""
        n = self.names
        refs = [v.key for v in values if isinstance(v, Ref) and v.type == n.vat_rates]
        if not refs or not n.vat_rates:
            return {}
        found = await self._by_refs(
            n.vat_rates, refs, f"Ref_Key,{n.vat_rate_percent},{n.vat_rate_enum}"
        )
        rates: dict[str, float | None] = {}
        for key, item in found.items():
            enum = _text(item.get(n.vat_rate_enum))
            if enum in VAT_RATES:
                rates[key] = VAT_RATES[enum]
            else:
                rates[key] = round(float(item.get(n.vat_rate_percent) or 0), 2)
        return rates

    async def _by_refs(
        self, entity_set: str, refs: Iterable[str | None], select: str
    ) -> dict[str, dict[str, Any]]:
        """Objects by Ref_Key; 1C has no `in`, so `or`-ed keys, split under 2 048 bytes."""
        found = await self.onec.list_by_keys(entity_set, refs, select=select)
        return {obj["Ref_Key"]: obj for obj in found}

    # ---- R-X6 / R-AC-3: the logist's task in 1C ---------------------------------------------

    @activity.defn(name=CREATE_ONEC_TASK)
    async def create_onec_task(self, req: CreateOneCTaskRequest) -> str:
        """The 1C task for the logist; the existing one when the key is already there.

        Found again by its Ref_Key, derived from the key (standard attributes only)."""
        n = self.names
        ref = task_ref_for(req.key)
        with onec_errors(self.names, self.profile):
            try:
                found = await self.onec.get(n.task, ref, select="Ref_Key")
                return str(found["Ref_Key"])
            except OneCNotFound as err:
                if not err.instance_missing:
                    raise
            executor = await self._user_ref(req.executor or self.settings.onec.logist_user)
            link = self._bitrix_task_url(req.responsible_id, req.bitrix_task_id)
            description = [req.description, f"Bitrix24: {link}", TASK_KEY_TEXT.format(key=req.key)]
            body: dict[str, Any] = {
                "Ref_Key": ref,
                "Description": req.title,
                n.task_description: "\n\n".join(filter(None, description)),
                n.task_executor: Ref(n.users, executor),
                n.task_author_text: TASK_AUTHOR,
                n.task_subject_text: f"Сделка Bitrix24 №{req.deal_id}",
            }
            if self.settings.onec.extension:
                body[n.ext_task_key] = req.key
                body[n.ext_task_link] = link
            if req.deadline is not None:
                body[n.task_deadline] = req.deadline
            try:  # `once`: not while an earlier attempt's create may still land (looked up above)
                created = await once(
                    self.settle, req.key, _absent, lambda: self.onec.create(n.task, body)
                )
            except OneCBadRequest as err:
                if err.code == "15":  # a racing attempt created it a moment ago
                    return ref
                raise
        return str(created["Ref_Key"])

    async def _open_task(self, ref: str, field: str) -> dict[str, Any] | None:
        """The logist's 1C task with `field`, or None when it was never created, is executed
        or is marked for deletion (nothing to change on it any more)."""
        n = self.names
        try:
            task = await self.onec.get(
                n.task, ref, select=["Ref_Key", "Executed", "DeletionMark", field]
            )
        except OneCNotFound as err:
            if not err.instance_missing:
                raise
            return None
        if task.get("Executed") or task.get("DeletionMark"):
            return None
        return task

    @activity.defn(name=CANCEL_ONEC_TASK)
    async def cancel_onec_task(self, req: CancelOneCTaskRequest) -> bool:
        """The lost deal's logist task withdrawn in 1C (compensation): marked for deletion
        (PATCH DeletionMark, onec.md) with the reason in РезультатВыполнения. An executed task
        stays as it is, one never created or already marked is no error. True: withdrawn now."""
        n = self.names
        ref = task_ref_for(req.key)
        with onec_errors(self.names, self.profile):
            task = await self._open_task(ref, n.task_result)
            if task is None:
                return False
            result = "\n".join(filter(None, [_text(task.get(n.task_result)), req.reason]))
            await self.onec.update(n.task, ref, {"DeletionMark": True, n.task_result: result})
        return True

    @activity.defn(name=SET_ONEC_TASK_DEADLINE)
    async def set_onec_task_deadline(self, req: OneCTaskDeadlineRequest) -> bool:
        """The logist's 1C task follows its Bitrix24 task's DEADLINE moved by a person (fin14):
        PATCH СрокИсполнения (Task_ЗадачаИсполнителя, БСП; onec-real.md), read first — a task
        executed, marked for deletion, never created or already at that moment (to the
        minute) is left as it is. True: rewritten now."""
        n = self.names
        ref = task_ref_for(req.key)
        with onec_errors(self.names, self.profile):
            task = await self._open_task(ref, n.task_deadline)
            if task is None:
                return False
            current = task.get(n.task_deadline)
            moment = current if isinstance(current, datetime) and current.tzinfo else None
            if moment is not None and abs(moment - req.deadline) < timedelta(minutes=1):
                return False
            await self.onec.update(n.task, ref, {n.task_deadline: req.deadline})
        return True

    @activity.defn(name=READ_ONEC_TASK)
    async def read_onec_task(self, ref: str) -> OneCTaskStatus:
        n = self.names
        with onec_errors(self.names, self.profile):
            task = await self.onec.get(
                n.task,
                ref,
                select=["Ref_Key", "Executed", n.task_accepted, n.task_result, n.task_executed_at],
            )
        executed_at = task.get(n.task_executed_at)
        return OneCTaskStatus(
            ref=str(task.get("Ref_Key") or ref),
            executed=bool(task.get("Executed")),
            accepted=bool(task.get(n.task_accepted)),
            comments=task_comments(task.get(n.task_result)),
            executed_at=executed_at if isinstance(executed_at, datetime) else None,
        )

    @activity.defn(name=REFLECT_TASK_PROGRESS)
    async def reflect_task_progress(self, req: ReflectProgressRequest) -> ReflectProgressResult:
        """1C's comments into the Bitrix24 task (once each), then its status."""
        task_id = req.bitrix_task_id
        result = ReflectProgressResult()
        with remote_errors():
            got = await self.bitrix24.call(
                "tasks.task.get", {"taskId": task_id, "select": ["ID", "STATUS"]}
            )
            if not got:
                raise refuse(f"Bitrix24 task {task_id} ({req.key}) is gone", "BitrixTaskMissing")
            status = int(got["task"]["status"])
            if req.new_comments:
                existing = await self.bitrix24.call("task.commentitem.getlist", {"TASKID": task_id})
                posted = {str(c.get("POST_MESSAGE") or "") for c in existing or []}
                for index, line in enumerate(req.new_comments):
                    message = TASK_COMMENT_TEXT.format(line=line)
                    if message in posted:
                        continue

                    async def add(text: str = message) -> bool:
                        await self.bitrix24.call(
                            "task.commentitem.add",
                            {"TASKID": task_id, "FIELDS": {"POST_MESSAGE": text}},
                        )
                        return True

                    await once(self.settle_bitrix24, f"{req.key}:comment:{index}", _absent, add)
                    posted.add(message)
                    result.comments_added += 1
            closed = status in (TASK_AWAITING_CONTROL, TASK_COMPLETED)
            if req.status.executed and not closed:
                await self.bitrix24.call("tasks.task.complete", {"taskId": task_id})
                closed = True
            elif req.status.accepted and status in (TASK_NEW, TASK_PENDING):
                await self.bitrix24.call("tasks.task.start", {"taskId": task_id})
                result.started = True
        result.completed = closed
        return result

    async def _user_ref(self, user: str) -> str:
        if is_guid(user):
            return normalize_guid(user)
        found = await self.onec.find_one(
            self.names.users, F("Description") == user, select="Ref_Key"
        )
        if found is None:
            raise refuse(f"1C user «{user}» not found (settings onec.logist_user)", "1C.NoUser")
        return str(found["Ref_Key"])

    def _bitrix_task_url(self, user_id: int, task_id: int) -> str:
        parts = urlsplit(self.settings.bitrix24.webhook_url)
        return f"{parts.scheme}://{parts.netloc}/company/personal/user/{user_id}/tasks/task/view/{task_id}/"

    # ---- R-INV-3 / R-PS-1: payments --------------------------------------------------------

    @activity.defn(name=FIND_INVOICE_PAYMENTS)
    async def find_invoice_payments(self, req: FindPaymentsRequest) -> list[Payment]:
        """Posted incoming payments whose payment rows name the invoice, oldest first; with
        `include_void` also those unposted or marked for deletion (flagged as such)."""
        n = self.names
        with onec_errors(self.names, self.profile):
            invoice = await self._invoice_ref(req.invoice_ref, req.invoice_number)
            basis = self._link_value(n.payment_invoice, n.invoice, invoice)
            parts: list[Expr] = [F(n.payment_rows).any(lambda d: (d / n.payment_invoice) == basis)]
            if not req.include_void:
                parts += [F("Posted").is_true(), F("DeletionMark").is_false()]
            if n.payment_kind and n.payment_kind_value:
                parts.append(F(n.payment_kind) == n.payment_kind_value)
            if req.since is not None:
                parts.append(F("Date") >= req.since)
            docs = await self.onec.list_all(n.payment, filter=and_(*parts), orderby="Date")
        payments = []
        for doc in docs:
            rows = doc.get(n.payment_rows) or []
            share = [
                row.get(n.payment_row_amount) for row in rows if row.get(n.payment_invoice) == basis
            ]
            payments.append(
                Payment(
                    ref=str(doc["Ref_Key"]),
                    number=_text(doc.get("Number")),
                    paid_on=doc["Date"].date(),
                    amount=money(sum(Decimal(str(s or 0)) for s in share)),
                    incoming_number=_text(doc.get(n.payment_incoming_number)),
                    posted=bool(doc.get("Posted", True)),
                    deleted=bool(doc.get("DeletionMark", False)),
                )
            )
        return payments

    @staticmethod
    def _link_value(field: str, entity_set: str, key: str) -> Any:
        """What a link field holds for that object: the key (`X_Key`) or a `Ref` (composite)."""
        return key if is_plain_link(field) else Ref(entity_set, key)

    async def _invoice(self, ref: str | None, number: str | None) -> dict[str, Any]:
        n = self.names
        select = ["Ref_Key", "Number"]
        if n.invoice_basis:
            select.append(n.invoice_basis)  # a composite comes with its _Type
        if ref:
            try:
                return await self.onec.get(n.invoice, normalize_guid(ref), select=select)
            except OneCNotFound as err:
                if not err.instance_missing:
                    raise
                raise refuse(f"счёт {ref} не найден в 1С", "1C.InvoiceNotFound") from None
        typed = (number or "").strip()
        found = await self.onec.find_one(
            n.invoice,
            (F("Number") == typed) & F("DeletionMark").is_false(),
            select=select,
            orderby="Date desc",
        )
        if found is None:
            raise refuse(f"счёт «{typed}» не найден в 1С", "1C.InvoiceNotFound")
        return found

    async def _invoice_ref(self, ref: str | None, number: str | None) -> str:
        if ref:
            return normalize_guid(ref)
        return str((await self._invoice(None, number))["Ref_Key"])

    # ---- R-SH-3: closing documents ---------------------------------------------------------

    @activity.defn(name=FETCH_CLOSING_DOCUMENTS)
    async def fetch_closing_documents(self, req: ClosingDocsRequest) -> list[ClosingDocument]:
        """Posted sale documents (УПД, and acts when the profile names their set) linked to
        the invoice through the profile's standard link (УТ: ЗаказКлиента → the order the
        invoice was made from; БП: СчетНаОплатуПокупателю_Key) or issued to the INN, oldest
        first. `signed` is not read from 1C: a standard base keeps the ЭДО state outside its
        documents, so «signed» comes from Bitrix24 (docs/ONEC.md)."""
        n = self.names
        with onec_errors(self.names, self.profile):
            links: list[Expr] = []
            if req.invoice_ref or req.invoice_number:
                try:
                    invoice = await self._invoice(req.invoice_ref, req.invoice_number)
                    target = self._sale_target(invoice)
                    if target is not None:
                        links.append(F(n.sale_link) == target)
                except ApplicationError:
                    if not req.inn:  # an unknown invoice is fatal only with nothing else to go by
                        raise
            if req.inn:
                parties = await self.onec.list_all(
                    n.counterparties,
                    filter=F(n.counterparty_inn) == req.inn.strip(),
                    select="Ref_Key",
                )
                links.extend(F(n.counterparty) == p["Ref_Key"] for p in parties)
            if not links:
                return []
            parts: list[Expr] = [
                or_(*links),
                F("Posted").is_true(),
                F("DeletionMark").is_false(),
            ]
            if req.since is not None:
                parts.append(F("Date") >= req.since)
            sets: list[tuple[str, Literal["upd", "act"]]] = [(n.sale, "upd")]
            if n.act:
                sets.append((n.act, "act"))
            documents = []
            for entity_set, kind in sets:
                for doc in await self.onec.list_all(
                    entity_set,
                    filter=and_(*parts),
                    select="Ref_Key,Number,Date,СуммаДокумента",
                    orderby="Date",
                ):
                    documents.append(
                        ClosingDocument(
                            kind=kind,
                            ref=str(doc["Ref_Key"]),
                            number=_text(doc.get("Number")),
                            date=doc["Date"].date(),
                            signed=False,
                            amount=money(doc.get("СуммаДокумента")),
                        )
                    )
        return sorted(documents, key=lambda d: (d.date, d.kind, d.number))

    def _sale_target(self, invoice: Mapping[str, Any]) -> Any:
        """The value the sale document's link holds for this invoice, None when it has none."""
        n = self.names
        if n.sale_link_to == "invoice":
            return self._link_value(n.sale_link, n.invoice, str(invoice["Ref_Key"]))
        basis = invoice.get(n.invoice_basis) if n.invoice_basis else None
        if isinstance(basis, Ref) and basis.type == n.order:
            return basis if not is_plain_link(n.sale_link) else basis.key
        if isinstance(basis, str) and is_plain_link(n.invoice_basis):
            return self._link_value(n.sale_link, n.order, basis)
        return None
