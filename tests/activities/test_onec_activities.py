"""The 1C activities against both emulators over real HTTP (R-KP-2, R-X6, R-AC-3, R-INV-3,
R-PS-1, R-SH-3): each side effect happens once, however often it is called."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.exceptions import ApplicationError

from emulators.onec.seed import KP_NUMBER, KP_TOTAL, ROMASHKA_INN
from salesflow.activities.onec import INVOICES, KP_SET, TASKS, OneCActivities, task_ref_for
from salesflow.integrations.onec import F, Ref
from salesflow.workflows.onec_models import (
    CancelOneCTaskRequest,
    ClosingDocsRequest,
    CreateOneCTaskRequest,
    FindPaymentsRequest,
    LoadKpRequest,
    OneCTaskDeadlineRequest,
    ReflectProgressRequest,
)
from tests.activities.systems import Systems

MSK = ZoneInfo("Europe/Moscow")


async def _rows(s: Systems, deal_id: int) -> list[dict[str, Any]]:
    return await s.bitrix24.call("crm.deal.productrows.get", {"id": deal_id})


async def _timeline(s: Systems, deal_id: int) -> list[str]:
    rows = await s.bitrix24.list_all(
        "crm.timeline.comment.list", {"filter": {"ENTITY_ID": deal_id, "ENTITY_TYPE": "deal"}}
    )
    return [r["COMMENT"] for r in rows]


async def _invoice(s: Systems, amount: float = KP_TOTAL) -> dict[str, Any]:
    kp = await s.onec.find_one(KP_SET, F("Number") == KP_NUMBER)
    assert kp is not None
    return await s.onec.create(
        INVOICES,
        {
            "Контрагент_Key": kp["Контрагент_Key"],
            "Организация_Key": kp["Организация_Key"],
            "СуммаДокумента": amount,
            "ДокументОснование": Ref(KP_SET, kp["Ref_Key"]),
        },
    )


async def test_r_kp_2_kp_lines_become_product_rows_for_russia_once(systems: Systems) -> None:
    s = systems
    deal_id = await s.new_deal(UF_CRM_KP=KP_NUMBER, UF_CRM_DIRECTION="Россия, Московская обл.")
    req = LoadKpRequest(key=f"deal:{deal_id}:kp_rows", deal_id=deal_id)

    first = await s.activities.load_kp_into_deal(req)
    rows = await _rows(s, deal_id)
    again = await s.activities.load_kp_into_deal(req)

    assert first.loaded and first.changed and first.kp_number == KP_NUMBER
    assert first.amount == KP_TOTAL
    assert [(r["PRODUCT_NAME"], r["QUANTITY"], r["PRICE"], r["MEASURE_NAME"]) for r in rows] == [
        ("Насос центробежный ЦН-100", 2.0, 250000.0, "шт"),
        ("Шкаф управления насосами ШУ-15", 1.0, 120000.0, "шт"),
        ("Пусконаладочные работы", 8.0, 2500.0, "ч"),
    ]
    assert [r["MEASURE_CODE"] for r in rows] == [796, 796, 356]
    assert all(r["TAX_RATE"] == 20.0 and r["TAX_INCLUDED"] == "Y" for r in rows)
    assert [line.article for line in first.lines] == ["ЦН-100", "ШУ-15", "ПНР-Ч"]
    deal = await s.bitrix24.call("crm.deal.get", {"id": deal_id})
    assert float(deal["OPPORTUNITY"]) == KP_TOTAL
    # A repeat (a retry, a replay) changes nothing — not even the row IDs.
    assert again.loaded and not again.changed
    assert await _rows(s, deal_id) == rows
    assert await _timeline(s, deal_id) == []


async def test_r_kp_2_loosely_typed_number_and_direction_from_the_request(
    systems: Systems,
) -> None:
    s = systems
    deal_id = await s.new_deal()
    result = await s.activities.load_kp_into_deal(
        LoadKpRequest(key="k", deal_id=deal_id, kp_number=" кп 123 ", direction="РОССИЯ")
    )
    assert result.loaded and result.kp_number == KP_NUMBER
    assert len(await _rows(s, deal_id)) == 3


async def test_r_kp_2_other_direction_leaves_rows_and_comments_once(systems: Systems) -> None:
    s = systems
    deal_id = await s.new_deal(UF_CRM_KP=KP_NUMBER, UF_CRM_DIRECTION="Казахстан")
    req = LoadKpRequest(key=f"deal:{deal_id}:kp_rows", deal_id=deal_id)

    first = await s.activities.load_kp_into_deal(req)
    second = await s.activities.load_kp_into_deal(req)

    assert not first.loaded and first.changed
    assert not second.loaded and not second.changed
    assert await _rows(s, deal_id) == []
    comments = await _timeline(s, deal_id)
    assert comments == [first.comment]
    assert "Казахстан" in comments[0] and KP_NUMBER in comments[0]


async def test_unknown_kp_is_a_non_retryable_error(systems: Systems) -> None:
    s = systems
    deal_id = await s.new_deal()
    with pytest.raises(ApplicationError) as caught:
        await s.activities.load_kp_into_deal(
            LoadKpRequest(key="k", deal_id=deal_id, kp_number="КП-999999", direction="Россия")
        )
    assert caught.value.non_retryable and caught.value.type == "1C.KpNotFound"


async def test_1c_outage_is_a_retryable_error(systems: Systems) -> None:
    s = systems
    await s.admin("/faults", {"down": "503"})
    with pytest.raises(ApplicationError) as caught:
        await s.activities.read_onec_task("00000000-0000-0000-0000-000000000001")
    assert not caught.value.non_retryable and caught.value.type == "1C.OneCUnavailable"


async def test_r_x6_logist_task_created_in_1c_once(systems: Systems) -> None:
    s = systems
    deal_id = await s.new_deal()
    task_id = await s.new_task(deal_id)
    req = CreateOneCTaskRequest(
        key=f"deal:{deal_id}:accepted:ship",
        deal_id=deal_id,
        bitrix_task_id=task_id,
        title="Отгрузить товар клиенту",
        description=f"По КП {KP_NUMBER}",
        deadline=datetime(2025, 3, 20, 18, 0, tzinfo=MSK),
        responsible_id=5,
    )
    ref = await s.activities.create_onec_task(req)
    same = await s.activities.create_onec_task(req)

    # Found again by its Ref_Key, derived from the key, after a restart (a new worker):
    # standard attributes only, no extension on this base.
    restarted = OneCActivities(s.onec, s.bitrix24, s.settings)
    after_restart = await restarted.create_onec_task(req)

    assert same == ref == after_restart == task_ref_for(req.key)
    tasks = s.base.all(TASKS)
    assert [t["Ref_Key"] for t in tasks] == [ref]
    task = tasks[0]
    assert "ИдентификаторБитрикс24" not in task and "СсылкаБитрикс24" not in task
    assert task["Description"] == "Отгрузить товар клиенту"
    assert f"/tasks/task/view/{task_id}/" in task["Описание"] and req.key in task["Описание"]
    assert task["Исполнитель_Type"].endswith("Catalog_Пользователи")
    assert task["СрокИсполнения"] == datetime(2025, 3, 20, 18, 0)
    status = await s.activities.read_onec_task(ref)
    assert (status.executed, status.accepted, status.comments) == (False, False, [])


async def test_r_ac_3_logist_progress_in_1c_shows_on_the_bitrix24_task(systems: Systems) -> None:
    s = systems
    deal_id = await s.new_deal()
    task_id = await s.new_task(deal_id)
    key = f"deal:{deal_id}:accepted:ship"
    ref = await s.activities.create_onec_task(
        CreateOneCTaskRequest(key=key, deal_id=deal_id, bitrix_task_id=task_id, title="Отгрузить")
    )
    await s.admin(f"/tasks/{ref}/accept")
    accepted = await s.activities.read_onec_task(ref)
    started = await s.activities.reflect_task_progress(
        ReflectProgressRequest(key=key, bitrix_task_id=task_id, status=accepted)
    )
    await s.admin(f"/tasks/{ref}/comment", {"text": "Машина заказана на завтра"})
    await s.admin(f"/tasks/{ref}/complete", {"comment": "Отгружено, ТТН 123"})
    done = await s.activities.read_onec_task(ref)
    req = ReflectProgressRequest(
        key=key, bitrix_task_id=task_id, status=done, new_comments=done.comments
    )
    first = await s.activities.reflect_task_progress(req)
    repeat = await s.activities.reflect_task_progress(req)

    assert started.started and not started.completed
    assert done.executed and len(done.comments) == 2
    assert done.comments[1].endswith("Отгружено, ТТН 123")
    assert (first.comments_added, first.completed) == (2, True)
    assert (repeat.comments_added, repeat.started, repeat.completed) == (0, False, True)
    comments = s.portal.task_comments[task_id]
    assert [c["POST_MESSAGE"] for c in comments] == [f"Из 1С: {c}" for c in done.comments]
    assert s.portal.tasks[task_id]["STATUS"] == "5"


async def test_r_inv_3_payment_posted_in_1c_is_found_for_its_invoice(systems: Systems) -> None:
    s = systems
    invoice = await _invoice(s)
    other = await _invoice(s, 100_000)
    await s.admin(
        "/payments", {"invoice": invoice["Number"], "amount": 320000, "date": "2025-03-12"}
    )
    await s.admin("/payments", {"invoice": other["Ref_Key"], "date": "2025-03-13"})
    await s.admin(
        "/payments", {"invoice": invoice["Ref_Key"], "amount": 320000, "date": "2025-04-02"}
    )

    by_number = await s.activities.find_invoice_payments(
        FindPaymentsRequest(invoice_number=invoice["Number"])
    )
    since_april = await s.activities.find_invoice_payments(
        FindPaymentsRequest(
            invoice_ref=invoice["Ref_Key"].upper(), since=datetime(2025, 4, 1, tzinfo=MSK)
        )
    )

    assert [(p.amount, p.paid_on.isoformat()) for p in by_number] == [
        (320000.0, "2025-03-12"),
        (320000.0, "2025-04-02"),
    ]
    assert all(p.number and p.ref for p in by_number)
    assert [p.paid_on.isoformat() for p in since_april] == ["2025-04-02"]
    with pytest.raises(ApplicationError) as caught:
        await s.activities.find_invoice_payments(FindPaymentsRequest(invoice_number="СЧ-404"))
    assert caught.value.non_retryable and caught.value.type == "1C.InvoiceNotFound"


async def _ordered_invoice(s: Systems) -> dict[str, Any]:
    """КП → Заказ клиента → Счёт на оплату, as УТ makes them."""
    kp = await s.onec.find_one(KP_SET, F("Number") == KP_NUMBER)
    assert kp is not None
    order = await s.onec.create(
        "Document_ЗаказКлиента",
        {
            "Контрагент_Key": kp["Контрагент_Key"],
            "Организация_Key": kp["Организация_Key"],
            "ДокументОснование": Ref(KP_SET, kp["Ref_Key"]),
            "Товары": [
                {k: row[k] for k in ("Номенклатура_Key", "Количество", "Цена", "Сумма")}
                for row in kp["Товары"]
            ],
        },
    )
    return await s.onec.create(
        INVOICES,
        {
            "Контрагент_Key": kp["Контрагент_Key"],
            "Организация_Key": kp["Организация_Key"],
            "СуммаДокумента": KP_TOTAL,
            "ДокументОснование": Ref("Document_ЗаказКлиента", order["Ref_Key"]),
        },
    )


async def test_r_sh_3_closing_documents_by_invoice_and_by_inn(systems: Systems) -> None:
    s = systems
    invoice = await _ordered_invoice(s)
    assert (
        await s.activities.fetch_closing_documents(
            ClosingDocsRequest(invoice_ref=invoice["Ref_Key"])
        )
        == []
    )
    upd = await s.admin("/upd", {"basis": invoice["Ref_Key"]})

    unsigned = await s.activities.fetch_closing_documents(
        ClosingDocsRequest(invoice_number=invoice["Number"])
    )
    await s.admin(f"/upd/{upd['Ref_Key']}/sign")
    both = await s.activities.fetch_closing_documents(
        ClosingDocsRequest(inn=ROMASHKA_INN, invoice_ref=invoice["Ref_Key"])
    )
    unknown_invoice = await s.activities.fetch_closing_documents(
        ClosingDocsRequest(inn=ROMASHKA_INN, invoice_number="СЧ-404")
    )
    nobody = await s.activities.fetch_closing_documents(ClosingDocsRequest(inn="0000000000"))

    assert [(d.kind, d.number, d.signed, d.amount) for d in unsigned] == [
        ("upd", upd["Number"], False, KP_TOTAL)
    ]
    # «signed» is not on a standard sale document: it comes from Bitrix24 (docs/ONEC.md).
    assert [(d.ref, d.signed) for d in both] == [(upd["Ref_Key"], False)]
    assert [d.ref for d in unknown_invoice] == [upd["Ref_Key"]]
    assert nobody == []


async def test_r_ps_1_unposted_and_deleted_payments_read_flagged_for_reversal(
    systems: Systems,
) -> None:
    s = systems
    invoice = await _invoice(s)
    for day in ("2025-03-12", "2025-03-13", "2025-03-14"):
        await s.admin("/payments", {"invoice": invoice["Number"], "amount": 1000, "date": day})
    first, second, third = await s.activities.find_invoice_payments(
        FindPaymentsRequest(invoice_number=invoice["Number"])
    )
    documents = s.activities.names.payment
    await s.onec.unpost_document(documents, first.ref)  # the accountant takes them back
    await s.onec.update(documents, second.ref, {"DeletionMark": True})

    posted = await s.activities.find_invoice_payments(
        FindPaymentsRequest(invoice_number=invoice["Number"])
    )
    every = await s.activities.find_invoice_payments(
        FindPaymentsRequest(invoice_number=invoice["Number"], include_void=True)
    )

    assert [p.ref for p in posted] == [third.ref]
    # (whether 1C also unposts a document marked for deletion is not asserted: either way
    # the ledger reverses it)
    assert [(p.ref, p.deleted) for p in every] == [
        (first.ref, False),
        (second.ref, True),
        (third.ref, False),
    ]
    assert [p.posted for p in every][::2] == [False, True]


async def test_r_lose_1_logist_task_withdrawn_in_1c_once_executed_one_kept(
    systems: Systems,
) -> None:
    s = systems
    deal_id = await s.new_deal()
    task_id = await s.new_task(deal_id)
    open_req, done_req = (
        CreateOneCTaskRequest(
            key=f"deal:{deal_id}:{name}:1c",
            deal_id=deal_id,
            bitrix_task_id=task_id,
            title="Отгрузить товар клиенту",
            responsible_id=5,
        )
        for name in ("open", "done")
    )
    open_ref = await s.activities.create_onec_task(open_req)
    done_ref = await s.activities.create_onec_task(done_req)
    await s.onec.execute_task(done_ref)
    reason = "Задача отменена: сделка провалена."

    first = await s.activities.cancel_onec_task(
        CancelOneCTaskRequest(key=open_req.key, reason=reason)
    )
    again = await s.activities.cancel_onec_task(
        CancelOneCTaskRequest(key=open_req.key, reason=reason)
    )
    executed = await s.activities.cancel_onec_task(
        CancelOneCTaskRequest(key=done_req.key, reason=reason)
    )
    never = await s.activities.cancel_onec_task(
        CancelOneCTaskRequest(key=f"deal:{deal_id}:never:1c", reason=reason)
    )

    assert (first, again, executed, never) == (True, False, False, False)
    tasks = {t["Ref_Key"]: t for t in s.base.all(TASKS)}
    assert tasks[open_ref]["DeletionMark"] and reason in tasks[open_ref]["РезультатВыполнения"]
    assert not tasks[done_ref]["DeletionMark"]


async def test_r_x4_r_x6_logist_task_srok_follows_the_bitrix24_deadline(systems: Systems) -> None:
    s = systems
    deal_id = await s.new_deal()
    task_id = await s.new_task(deal_id)
    tz = ZoneInfo("Europe/Moscow")
    first_due = datetime(2026, 12, 7, 18, 0, tzinfo=tz)
    open_req, done_req = (
        CreateOneCTaskRequest(
            key=f"deal:{deal_id}:{name}:1c",
            deal_id=deal_id,
            bitrix_task_id=task_id,
            title="Отгрузить товар клиенту",
            responsible_id=5,
            deadline=first_due,
        )
        for name in ("open", "done")
    )
    open_ref = await s.activities.create_onec_task(open_req)
    done_ref = await s.activities.create_onec_task(done_req)
    await s.onec.execute_task(done_ref)
    moved = datetime(2026, 12, 9, 18, 0, tzinfo=tz)

    def req(key: str, due: datetime) -> OneCTaskDeadlineRequest:
        return OneCTaskDeadlineRequest(key=key, deadline=due)

    first = await s.activities.set_onec_task_deadline(req(open_req.key, moved))
    again = await s.activities.set_onec_task_deadline(req(open_req.key, moved))
    executed = await s.activities.set_onec_task_deadline(req(done_req.key, moved))
    never = await s.activities.set_onec_task_deadline(req(f"deal:{deal_id}:never:1c", moved))

    assert (first, again, executed, never) == (True, False, False, False)
    tasks = {t["Ref_Key"]: t for t in s.base.all(TASKS)}
    assert str(tasks[open_ref]["СрокИсполнения"]).startswith("2026-12-09 18:00")
    assert str(tasks[done_ref]["СрокИсполнения"]).startswith("2026-12-07 18:00")
