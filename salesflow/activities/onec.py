"""Activities that read 1C and carry what they read into Bitrix24; each idempotent by its key.

Exactly once (DESIGN.md), marker by marker:
- КП → deal product rows (R-KP-2): `crm.deal.productrows.set` replaces all rows; the rows
  are read first and the write is skipped when they already equal the КП's lines, so a
  repeat changes nothing (not even row IDs). Each row's XML_ID is the nomenclature's 1C
  Ref_Key, as in the standard 1C ↔ Bitrix24 exchange.
- Non-Russian direction: the deal's timeline comment is looked up by its exact text.
- The logist's task (R-X6, R-AC-3): Task_ЗадачаИсполнителя.ИдентификаторБитрикс24 = key,
  looked up before creating; the task is also created with a Ref_Key derived from the key,
  so two racing attempts cannot make two tasks (1C answers "key exists", code 15).
- 1C comments in the Bitrix24 task: looked up by exact text in task.commentitem.getlist.
- Starting/completing the Bitrix24 task: only from a status that allows it.

Matching the deal to 1C (which КП, which direction counts as Russian): `config.matching`
and the `[onec]` settings. 1C errors become ApplicationErrors like Bitrix24 ones: outages,
timeouts and lock conflicts are retried by the workflow's policy; the rest are
non-retryable, typed `1C.<ErrorClass>` with 1C's code in the message and details.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlsplit

from temporalio import activity
from temporalio.exceptions import ApplicationError

from salesflow.activities.errors import refuse, remote_errors
from salesflow.config.matching import is_russian_direction, kp_number_candidates
from salesflow.config.settings import Settings
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.integrations.onec import (
    F,
    OneCBadRequest,
    OneCClient,
    OneCError,
    Ref,
    and_,
    or_,
)
from salesflow.integrations.onec.filters import Expr
from salesflow.integrations.onec.parsing import is_guid, normalize_guid
from salesflow.workflows.onec_models import (
    CREATE_ONEC_TASK,
    FETCH_CLOSING_DOCUMENTS,
    FIND_INVOICE_PAYMENTS,
    LOAD_KP_INTO_DEAL,
    READ_ONEC_TASK,
    REFLECT_TASK_PROGRESS,
    ClosingDocsRequest,
    ClosingDocument,
    CreateOneCTaskRequest,
    FindPaymentsRequest,
    KpLine,
    LoadKpRequest,
    LoadKpResult,
    OneCTaskStatus,
    Payment,
    ReflectProgressRequest,
    ReflectProgressResult,
)

KP_SET = "Document_КоммерческоеПредложениеКлиенту"
NOMENCLATURE = "Catalog_Номенклатура"
UNITS = "Catalog_УпаковкиЕдиницыИзмерения"
USERS = "Catalog_Пользователи"
COUNTERPARTIES = "Catalog_Контрагенты"
TASKS = "Task_ЗадачаИсполнителя"
INVOICES = "Document_СчетНаОплатуКлиенту"
PAYMENTS = "Document_ПоступлениеБезналичныхДенежныхСредств"
SALES = "Document_РеализацияТоваровУслуг"

VAT_RATES: dict[str, float | None] = {"НДС20": 20.0, "НДС10": 10.0, "НДС0": 0.0, "БезНДС": None}
EDO_DONE = "ДокументооборотЗавершен"
TASK_AUTHOR = "salesflow (Bitrix24)"
# Bitrix24 task statuses.
TASK_NEW, TASK_PENDING, TASK_AWAITING_CONTROL, TASK_COMPLETED = 1, 2, 4, 5

# User-facing texts (candidates for config/templates.py).
KP_SKIPPED_TEXT = (
    "КП {kp} не загружено из 1С в товары сделки: направление сделки «{direction}»"
    " не содержит «{marker}»."
)
TASK_COMMENT_TEXT = "Из 1С: {line}"
REFS_PER_QUERY = 20
_TASK_REF_NAMESPACE = uuid.UUID("0b7f0a52-3c55-4f0e-9a43-5a1e5f10c0de")


@contextmanager
def onec_errors() -> Iterator[None]:
    """A OneCError as an ApplicationError that is retried only when 1C says it may help."""
    try:
        yield
    except OneCError as err:
        raise ApplicationError(
            str(err),
            err.details(),
            type=f"1C.{type(err).__name__}",
            non_retryable=not err.retryable,
        ) from err


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


def task_comments(result_text: Any) -> list[str]:
    """РезультатВыполнения holds the logist's notes, one per line, newest last."""
    return [line.strip() for line in _text(result_text).splitlines() if line.strip()]


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

    def all(self) -> list[Any]:
        return [
            self.load_kp_into_deal,
            self.create_onec_task,
            self.read_onec_task,
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
            changed = await self._timeline_comment_once(req.deal_id, text)
            return LoadKpResult(loaded=False, changed=changed, kp_number=kp_number, comment=text)
        if not kp_number:
            raise refuse(f"deal {req.deal_id}: the КП number field is empty", "KpNumberMissing")
        with onec_errors():
            kp = await self._find_kp(kp_number)
            lines = await self._kp_lines(kp)
        rows = [product_row(line, bool(kp.get("ЦенаВключаетНДС", True))) for line in lines]
        with remote_errors():
            current = await self.bitrix24.call("crm.deal.productrows.get", {"id": req.deal_id})
            changed = not rows_equal(list(current or []), rows)
            if changed:
                await self.bitrix24.call(
                    "crm.deal.productrows.set", {"id": req.deal_id, "rows": rows}
                )
        total = money(kp.get("СуммаДокумента")) or money(sum(line.amount for line in lines))
        return LoadKpResult(
            loaded=True,
            changed=changed,
            kp_number=str(kp["Number"]),
            kp_ref=str(kp["Ref_Key"]),
            amount=total,
            lines=lines,
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
                KP_SET, (F("Number") == number) & ~F("DeletionMark"), orderby="Date desc"
            )
            if found is not None:
                return found
        raise refuse(f"КП «{typed}» не найдено в 1С", "1C.KpNotFound")

    async def _kp_lines(self, kp: Mapping[str, Any]) -> list[KpLine]:
        goods = sorted(kp.get("Товары") or [], key=lambda row: int(row.get("LineNumber") or 0))
        items = await self._by_refs(
            NOMENCLATURE,
            (row.get("Номенклатура_Key") for row in goods),
            "Ref_Key,Description,НаименованиеПолное,Артикул,ЕдиницаИзмерения_Key",
        )
        units = await self._by_refs(
            UNITS,
            (item.get("ЕдиницаИзмерения_Key") for item in items.values()),
            "Ref_Key,Description,КодОКЕИ",
        )
        lines: list[KpLine] = []
        for row in goods:
            ref = row.get("Номенклатура_Key")
            item = items.get(ref or "")
            if item is None:
                raise refuse(
                    f"КП {kp['Number']}, строка {row.get('LineNumber')}: номенклатура"
                    f" {ref or '(пусто)'} не найдена в 1С",
                    "1C.NomenclatureMissing",
                )
            unit = units.get(item.get("ЕдиницаИзмерения_Key") or "", {})
            lines.append(
                KpLine(
                    line=int(row.get("LineNumber") or len(lines) + 1),
                    nomenclature_ref=str(ref),
                    name=_text(item.get("НаименованиеПолное")) or _text(item.get("Description")),
                    article=_text(item.get("Артикул")),
                    unit=_text(unit.get("Description")),
                    unit_code=_int_or_none(unit.get("КодОКЕИ")),
                    quantity=round(float(row.get("Количество") or 0), 3),
                    price=money(row.get("Цена")),
                    amount=money(row.get("Сумма")),
                    vat_rate=VAT_RATES.get(_text(row.get("СтавкаНДС"))),
                )
            )
        return lines

    async def _by_refs(
        self, entity_set: str, refs: Iterable[str | None], select: str
    ) -> dict[str, dict[str, Any]]:
        """Objects by Ref_Key, a few keys per request (1C has no `in`)."""
        keys = list(dict.fromkeys(ref for ref in refs if ref))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), REFS_PER_QUERY):
            chunk = keys[start : start + REFS_PER_QUERY]
            condition = or_(*(F("Ref_Key") == key for key in chunk))
            for obj in await self.onec.list_all(entity_set, filter=condition, select=select):
                found[obj["Ref_Key"]] = obj
        return found

    async def _timeline_comment_once(self, deal_id: int, text: str) -> bool:
        with remote_errors():
            existing = await self.bitrix24.list_all(
                "crm.timeline.comment.list",
                {"filter": {"ENTITY_ID": deal_id, "ENTITY_TYPE": "deal"}},
            )
            if any(c.get("COMMENT") == text for c in existing):
                return False
            await self.bitrix24.call(
                "crm.timeline.comment.add",
                {"fields": {"ENTITY_ID": deal_id, "ENTITY_TYPE": "deal", "COMMENT": text}},
            )
        return True

    # ---- R-X6 / R-AC-3: the logist's task in 1C ---------------------------------------------

    @activity.defn(name=CREATE_ONEC_TASK)
    async def create_onec_task(self, req: CreateOneCTaskRequest) -> str:
        """The 1C task for the logist; the existing one when the key is already there."""
        with onec_errors():
            found = await self.onec.find_one(
                TASKS, F("ИдентификаторБитрикс24") == req.key, select="Ref_Key"
            )
            if found is not None:
                return str(found["Ref_Key"])
            executor = await self._user_ref(req.executor or self.settings.onec.logist_user)
            ref = task_ref_for(req.key)
            link = self._bitrix_task_url(req.responsible_id, req.bitrix_task_id)
            body: dict[str, Any] = {
                "Ref_Key": ref,
                "Description": req.title,
                "Описание": "\n\n".join(filter(None, [req.description, f"Bitrix24: {link}"])),
                "Исполнитель": Ref(USERS, executor),
                "АвторСтрокой": TASK_AUTHOR,
                "ПредметСтрокой": f"Сделка Bitrix24 №{req.deal_id}",
                "ИдентификаторБитрикс24": req.key,
                "СсылкаБитрикс24": link,
            }
            if req.deadline is not None:
                body["СрокИсполнения"] = req.deadline
            try:
                created = await self.onec.create(TASKS, body)
            except OneCBadRequest as err:
                if err.code == "15":  # a racing attempt created it a moment ago
                    return ref
                raise
        return str(created["Ref_Key"])

    @activity.defn(name=READ_ONEC_TASK)
    async def read_onec_task(self, ref: str) -> OneCTaskStatus:
        with onec_errors():
            task = await self.onec.get(
                TASKS,
                ref,
                select="Ref_Key,Executed,ПринятаКИсполнению,РезультатВыполнения,ДатаИсполнения",
            )
        executed_at = task.get("ДатаИсполнения")
        return OneCTaskStatus(
            ref=str(task.get("Ref_Key") or ref),
            executed=bool(task.get("Executed")),
            accepted=bool(task.get("ПринятаКИсполнению")),
            comments=task_comments(task.get("РезультатВыполнения")),
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
                for line in req.new_comments:
                    message = TASK_COMMENT_TEXT.format(line=line)
                    if message in posted:
                        continue
                    await self.bitrix24.call(
                        "task.commentitem.add",
                        {"TASKID": task_id, "FIELDS": {"POST_MESSAGE": message}},
                    )
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
        found = await self.onec.find_one(USERS, F("Description") == user, select="Ref_Key")
        if found is None:
            raise refuse(f"1C user «{user}» not found (settings onec.logist_user)", "1C.NoUser")
        return str(found["Ref_Key"])

    def _bitrix_task_url(self, user_id: int, task_id: int) -> str:
        parts = urlsplit(self.settings.bitrix24.webhook_url)
        return f"{parts.scheme}://{parts.netloc}/company/personal/user/{user_id}/tasks/task/view/{task_id}/"

    # ---- R-INV-3 / R-PS-1: payments --------------------------------------------------------

    @activity.defn(name=FIND_INVOICE_PAYMENTS)
    async def find_invoice_payments(self, req: FindPaymentsRequest) -> list[Payment]:
        """Posted incoming payments whose РасшифровкаПлатежа names the invoice, oldest first."""
        with onec_errors():
            basis = Ref(INVOICES, await self._invoice_ref(req.invoice_ref, req.invoice_number))
            parts: list[Expr] = [
                F("РасшифровкаПлатежа").any(lambda d: (d / "ОснованиеПлатежа") == basis),
                F("Posted"),
                ~F("DeletionMark"),
            ]
            if req.since is not None:
                parts.append(F("Date") >= req.since)
            docs = await self.onec.list_all(PAYMENTS, filter=and_(*parts), orderby="Date")
        payments = []
        for doc in docs:
            rows = doc.get("РасшифровкаПлатежа") or []
            share = [row.get("Сумма") for row in rows if row.get("ОснованиеПлатежа") == basis]
            payments.append(
                Payment(
                    ref=str(doc["Ref_Key"]),
                    number=_text(doc.get("Number")),
                    paid_on=doc["Date"].date(),
                    amount=money(sum(Decimal(str(s or 0)) for s in share)),
                    incoming_number=_text(doc.get("НомерВходящегоДокумента")),
                )
            )
        return payments

    async def _invoice_ref(self, ref: str | None, number: str | None) -> str:
        if ref:
            return normalize_guid(ref)
        typed = (number or "").strip()
        found = await self.onec.find_one(
            INVOICES, (F("Number") == typed) & ~F("DeletionMark"), orderby="Date desc"
        )
        if found is None:
            raise refuse(f"счёт «{typed}» не найден в 1С", "1C.InvoiceNotFound")
        return str(found["Ref_Key"])

    # ---- R-SH-3: closing documents ---------------------------------------------------------

    @activity.defn(name=FETCH_CLOSING_DOCUMENTS)
    async def fetch_closing_documents(self, req: ClosingDocsRequest) -> list[ClosingDocument]:
        """Posted УПД (and acts, when `onec.act_document` names their set), oldest first."""
        with onec_errors():
            links: list[Expr] = []
            if req.invoice_ref or req.invoice_number:
                try:
                    invoice = await self._invoice_ref(req.invoice_ref, req.invoice_number)
                    links.append(F("ДокументОснование") == Ref(INVOICES, invoice))
                except ApplicationError:
                    if not req.inn:  # an unknown invoice is fatal only with nothing else to go by
                        raise
            if req.inn:
                parties = await self.onec.list_all(
                    COUNTERPARTIES, filter=F("ИНН") == req.inn.strip(), select="Ref_Key"
                )
                links.extend(F("Контрагент_Key") == p["Ref_Key"] for p in parties)
            if not links:
                return []
            parts: list[Expr] = [or_(*links), F("Posted"), ~F("DeletionMark")]
            if req.since is not None:
                parts.append(F("Date") >= req.since)
            sets: list[tuple[str, Literal["upd", "act"]]] = [(SALES, "upd")]
            if self.settings.onec.act_document:
                sets.append((self.settings.onec.act_document, "act"))
            documents = []
            for entity_set, kind in sets:
                for doc in await self.onec.list_all(
                    entity_set, filter=and_(*parts), orderby="Date"
                ):
                    documents.append(
                        ClosingDocument(
                            kind=kind,
                            ref=str(doc["Ref_Key"]),
                            number=_text(doc.get("Number")),
                            date=doc["Date"].date(),
                            signed=doc.get("Подписан") is True
                            or doc.get("СостояниеЭДО") == EDO_DONE,
                            amount=money(doc.get("СуммаДокумента")),
                        )
                    )
        return sorted(documents, key=lambda d: (d.date, d.kind, d.number))
