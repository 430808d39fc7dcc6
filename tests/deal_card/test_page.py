"""R-X10: the tab offers exactly the actions valid at each stage, the state in Russian, and
the form's input or the workflow's refusals in Russian (pure: no servers)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from temporalio.exceptions import ApplicationError

from salesflow.config.settings import Settings
from salesflow.config.templates import REFUSAL_TEMPLATES
from salesflow.deal_card.actions import BadInput, build, offered, refusal
from salesflow.deal_card.page import PageContext, render
from salesflow.deal_card.policy import Policy
from salesflow.deal_card.texts import Texts
from salesflow.workflows.models import (
    Actor,
    Deadline,
    DealView,
    HistoryEntry,
    OpenTask,
    ProcessState,
    TrancheState,
)
from salesflow.workflows.refusals import MESSAGES, refuse
from tests.deal_card.conftest import Forms

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
TEXTS = Texts()
ROP = Actor(user_id=2, name="Ольга Смирнова")
ACCOUNTANT = Actor(user_id=11, name="Татьяна Козлова")
EVERYTHING_BUT_LEAD = {"request_tasks", "start_process", "lose_deal"}


def view(stage: str, **changes: object) -> DealView:
    base = DealView(
        deal_id=7,
        stage=stage,
        manager_id=3,
        amount=640000.0,
        document_set="invoice_contract",
        open_tasks=[],
        deadlines=[],
        payment_schedule=[],
        history=[HistoryEntry(at=NOW, stage="NEW", cause="deal created")],
    )
    return base.model_copy(update=changes)


@pytest.mark.parametrize(
    ("stage", "changes", "expected"),
    [
        ("NEW", {}, {"accept_lead", "reject_lead"}),
        ("IN_WORK", {}, set()),
        ("KP", {}, set()),  # the КП is not loaded yet: no feedback awaited
        ("KP", {"kp_round": 1}, {"kp_feedback"}),
        ("CONTRACT", {}, {"documents_signed"}),
        ("INVOICE", {}, {"documents_signed", "record_payment"}),
        ("LAUNCH", {}, {"set_payment_schedule", "record_payment"}),
        (
            "ACCEPTED",
            {
                "payment_schedule": [
                    TrancheState(number=1, percent=100, due=date(2026, 12, 20), amount=640000.0)
                ]
            },
            {"record_payment"},
        ),
        ("TO_SHIP", {}, {"set_payment_schedule", "record_payment"}),
        ("SHIPPED", {}, {"documents_signed", "record_payment"}),
    ],
)
def test_r_x10_actions_valid_per_stage(stage: str, changes: dict, expected: set[str]) -> None:
    v = view(stage, **changes)
    assert set(offered(v)) == expected | EVERYTHING_BUT_LEAD
    # By default the РОП may take all but accepting a lead and recording a payment (the
    # accountant's); the page has exactly those forms, and the accountant only the payment.
    page = render(_context(v, ROP))
    assert set(Forms(page).forms) == (expected | EVERYTHING_BUT_LEAD) - {
        "accept_lead",
        "record_payment",
    }
    accountant = Forms(render(_context(v, ACCOUNTANT))).forms
    assert set(accountant) == expected & {"record_payment"}


@pytest.mark.parametrize("stage", ["WON", "LOSE"])
def test_r_x10_closed_deal_offers_nothing(stage: str) -> None:
    v = view(stage)
    assert offered(v) == []
    assert Forms(render(_context(v, ROP))).forms == {}


def test_r_x10_signed_buttons_follow_the_stage() -> None:
    contract = render(_context(view("CONTRACT"), ROP))
    shipped = render(_context(view("SHIPPED"), ROP))
    assert "Счет подписан" in contract and "Договор подписан" in contract
    assert "Акт подписан" not in contract
    assert "Акт подписан" in shipped and "УПД подписан" in shipped


def test_r_x10_state_shown_in_russian_with_overdue_marked() -> None:
    v = view(
        "ACCEPTED",
        open_tasks=[
            OpenTask(
                key="a",
                task_id=11,
                title="Проконтролировать выполнение работ",
                responsible_id=3,
                deadline=NOW - timedelta(hours=1),
            ),
            OpenTask(
                key="b",
                task_id=12,
                title="Проконтролировать упаковку",
                responsible_id=3,
                deadline=NOW + timedelta(hours=5),
            ),
        ],
        payment_schedule=[
            TrancheState(
                number=1,
                percent=50,
                due=date(2026, 11, 20),
                amount=320000.0,
                paid=320000.0,
                state="paid",
            ),
            TrancheState(
                number=2, percent=50, due=date(2026, 11, 30), amount=320000.0, state="overdue"
            ),
        ],
        processes=[ProcessState(kind="1c_logist_task", workflow_id="x", state="running")],
    )
    page = render(_context(v, ROP))
    task_rows = page.split('data-task-id="11"')[1].split("</tr>")[0]
    assert "просрочено" in task_rows
    assert "просрочено" not in page.split('data-task-id="12"')[1].split("</tr>")[0]
    assert 'data-state="paid"' in page and "оплачен" in page
    assert "Платёж 2: 50% — 320\u00a0000.00 ₽ до 30.11.2026" in page
    assert "просрочен<" in page
    assert 'data-logist-state="running">Задание логисту в 1С: в работе' in page
    assert "выполнение работ" in page  # what the deal waits for at ACCEPTED
    deadlines = render(
        _context(
            view(
                "KP",
                deadlines=[
                    Deadline(name="kp_feedback_2", due=NOW, overdue=True),
                    Deadline(name="take_into_work", due=NOW),
                    Deadline(name="something_new", due=NOW),
                ],
            ),
            ROP,
        )
    )
    assert "Обратная связь по КП, раунд 2" in deadlines
    assert "Взять заявку в работу" in deadlines and "something_new" in deadlines


def test_r_x10_configured_texts_replace_the_defaults() -> None:
    texts = Texts({"action_accept": "Взять в работу"})
    manager = Actor(user_id=3, name="Иван Петров")
    page = render(_context(view("NEW", manager_id=None), manager, texts))
    assert "Взять в работу" in page and "Принять заявку" not in page


def test_r_x10_form_input_is_checked_in_russian() -> None:
    actor = Actor(user_id=3, name="Иван Петров")
    today = date(2026, 12, 2)
    cases = [
        ("reject_lead", {"reason": " "}, "укажите причину отказа"),
        ("lose_deal", {"reason": "OTHER"}, "для причины «Другое» нужен комментарий"),
        ("lose_deal", {"reason": "BORED"}, "неизвестный вариант «BORED»"),
        ("set_payment_schedule", {}, "заполните хотя бы один платёж"),
        ("set_payment_schedule", {"percent_1": "50"}, "платёж 1: укажите и процент, и дату"),
        ("set_payment_schedule", {"percent_1": "пятьдесят", "due_1": "2026-12-10"}, "не число"),
        ("record_payment", {"amount": "0"}, "сумма должна быть больше нуля"),
        ("record_payment", {"amount": "100", "paid_on": "вчера"}, "не дата"),
        ("request_tasks", {"engineers": "no"}, "выберите «Да» хотя бы для одного"),
        ("kp_feedback", {"comment": "?"}, "неизвестный вариант «»"),
    ]
    for action, form, message in cases:
        with pytest.raises(BadInput, match=message):
            build(action, form, actor, TEXTS, today)


def test_r_x10_forms_become_the_workflows_updates_with_the_actor() -> None:
    actor = Actor(user_id=3, name="Иван Петров")
    today = date(2026, 12, 2)
    accept = build("accept_lead", {}, actor, TEXTS, today)
    assert accept.update == "accept_lead"
    assert accept.payload.model_dump() == {"manager_id": 3, "actor": actor.model_dump()}
    schedule = build(
        "set_payment_schedule",
        {"percent_1": "50", "due_1": "2026-12-10", "percent_2": "50,0", "due_2": "2026-12-20"},
        actor,
        TEXTS,
        today,
    )
    assert schedule.payload.model_dump(mode="json")["tranches"] == [
        {"percent": 50.0, "due": "2026-12-10"},
        {"percent": 50.0, "due": "2026-12-20"},
    ]
    payment = build("record_payment", {"amount": "320 000"}, actor, TEXTS, today)
    assert payment.payload.model_dump()["paid_on"] == today
    tasks = build("request_tasks", {"lawyer": "yes", "logistics": "yes"}, actor, TEXTS, today)
    assert {k for k, v in tasks.payload.model_dump().items() if v is True} == {
        "lawyer",
        "logistics",
    }
    kp = build("kp_feedback", {"agreed": "no", "comment": "дорого"}, actor, TEXTS, today)
    assert kp.payload.model_dump()["agreed"] is False


@pytest.mark.parametrize(
    ("code", "params", "russian"),
    [
        ("already_decided", {}, "заявка уже принята в работу или отклонена"),
        ("not_a_manager", {"manager_id": 2, "known": [3, 4]}, "не в списке менеджеров"),
        (
            "wrong_stage",
            {"update": "kp_feedback", "allowed": "KP", "stage": "CONTRACT"},
            "на стадии «Договор»",
        ),
        (
            "schedule_invalid",
            {
                "problems": [
                    {"code": "schedule_percent_sum", "params": {"total": "90"}},
                    {
                        "code": "tranche_before_start",
                        "params": {"number": 1, "due": "2020-01-01", "start": "2026-12-01"},
                    },
                ]
            },
            "сумма процентов 90, а не 100; платёж 1: дата 2020-01-01 раньше начала сделки",
        ),
        ("schedule_set", {}, "график платежей уже задан"),
        ("paid_in_future", {"paid_on": "2030-01-01"}, "дата оплаты 2030-01-01 в будущем"),
        ("closed", {"stage": "WON"}, "сделка уже закрыта («Сделка успешна»)"),
        ("required_fields", {"fields": "UF_CRM_KP"}, "не заполнены обязательные поля: UF_CRM_KP"),
    ],
)
def test_r_x10_workflow_refusals_in_russian_by_code(
    code: str, params: dict[str, object], russian: str
) -> None:
    assert russian in refusal(refuse(code, **params), TEXTS)


def test_r_x10_every_refusal_code_has_a_russian_template() -> None:
    assert {f"refusal_{code}" for code in MESSAGES} <= set(REFUSAL_TEMPLATES)


def test_r_x10_a_failure_without_a_code_is_shown_as_it_is() -> None:
    assert "процесс сделки отклонил действие (something new)" in refusal(
        ApplicationError("something new"), TEXTS
    )


def test_r_x10_refusal_names_the_stage_as_bitrix24_does() -> None:
    cause = refuse("wrong_stage", update="kp_feedback", allowed="KP", stage="CONTRACT")
    assert "на стадии «Договор (портал)»" in refusal(cause, TEXTS, {"CONTRACT": "Договор (портал)"})


def test_r_x10_refusal_texts_are_templates_a_configuration_replaces() -> None:
    texts = Texts(templates={"refusal_schedule_set": "график уже есть"})
    assert refusal(refuse("schedule_set"), texts) == "график уже есть"


def _context(v: DealView, actor: Actor, texts: Texts = TEXTS) -> PageContext:
    return PageContext(
        texts=texts,
        deal_id=v.deal_id,
        actor=actor,
        timezone="Europe/Moscow",
        now=NOW,
        action_url="/bitrix24/deal-card/action",
        auth_id="token",
        signature="sig",
        policy=Policy.from_settings(Settings()),
        view=v,
    )


def test_r_x10_history_causes_in_russian_by_code_and_the_english_kept_for_the_integrator() -> None:
    """Issue 12: the tab renders a coded cause through its template; the state keeps the
    English text and the code; an uncoded (older) entry shows as recorded."""
    from salesflow.deal_card.page import cause_text
    from salesflow.workflows.causes import cause

    def entry(text: str) -> HistoryEntry:
        made = HistoryEntry(at=NOW, stage="KP", cause=text)
        if hasattr(text, "code"):
            made.code, made.params = text.code, dict(text.params)  # as DealEffects.record does
        return made

    v = view("KP")
    ctx = _context(v, ROP)
    feedback = cause("kp_feedback", round=2, answer="not agreed")
    assert str(feedback) == "КП feedback round 2: not agreed"
    assert cause_text(entry(feedback), ctx) == "обратная связь по КП, раунд 2: не согласовано"
    refused = entry(cause("move_refused", target="INVOICE", fields="UF_CRM_INVOICE"))
    assert cause_text(refused, ctx) == "переход на «Счет» отклонён: не заполнены UF_CRM_INVOICE"
    assert cause_text(entry("deal created"), ctx) == "deal created"
    html = render(_context(v.model_copy(update={"history": [entry(cause("found"))]}), ROP))
    assert "сделка найдена в Bitrix24" in html and "deal found in Bitrix24" not in html


def test_r_kp_6_the_approval_decision_is_offered_to_the_approver_while_it_runs() -> None:
    """Issue 12: «Согласование» decided on the card too — at CONTRACT while the child runs, to
    the РОП by default (the item's approver); a rejection needs a comment."""
    running = [ProcessState(kind="approval", workflow_id="deal-7-approval-1")]
    v = view("CONTRACT", processes=running)
    assert "approval_decision" in offered(v)
    assert "approval_decision" not in offered(view("CONTRACT"))
    done = [running[0].model_copy(update={"state": "done"})]
    assert "approval_decision" not in offered(view("CONTRACT", processes=done))
    policy = Policy.from_settings(Settings())
    assert policy.may("approval_decision", ROP.user_id, 3)
    assert not policy.may("approval_decision", 3, 3)
    html = render(_context(v, ROP))
    assert 'data-action="approval_decision"' in html and "Согласовать" in html
    command = build("approval_decision", {"approved": "yes"}, ROP, TEXTS, NOW.date())
    assert command.payload.model_dump()["approved"] is True
    assert command.payload.model_dump()["actor"]["user_id"] == ROP.user_id
    with pytest.raises(BadInput, match="комментарий"):
        build("approval_decision", {"approved": "no"}, ROP, TEXTS, NOW.date())


def test_r_x10_the_responsible_by_name_and_who_acted_or_automatically() -> None:
    """Issue 12: «Ответственный» is the responsible's name (the id when Bitrix24 gave none);
    «Кто» names the person, or says «автоматически» for the workflow's own entries."""
    from salesflow.workflows.causes import cause

    found = cause("found")
    automatic = HistoryEntry(at=NOW, stage="NEW", cause=found, code=found.code)
    person = HistoryEntry(at=NOW, stage="IN_WORK", cause="accepted", actor=ROP)
    v = view("KP", manager_name="Иван Петров", history=[automatic, person])
    html = render(_context(v, ROP))
    assert '<dd id="responsible" data-user-id="3">Иван Петров</dd>' in html
    assert "<td>автоматически</td>" in html and "<td>Ольга Смирнова</td>" in html
    assert '<dd id="responsible" data-user-id="3">3</dd>' in render(_context(view("KP"), ROP))


def test_r_x10_a_refused_form_keeps_what_was_entered() -> None:
    """Issue 12: after a refusal the form shows the reason chosen, the comment and the
    schedule rows again — nothing to type twice; other forms stay empty."""
    from salesflow.deal_card.page import Notice

    entered = {
        "reason": "OTHER",
        "comment": "клиент <ушёл>",
        "percent_1": "60",
        "due_1": "2026-12-20",
    }
    for action in ("lose_deal", "set_payment_schedule"):
        ctx = _context(view("LAUNCH"), ROP)
        ctx.notice = Notice(action, False, "отказ", entered)
        forms = _form_html(render(ctx))
        if action == "lose_deal":
            assert '<option value="OTHER" selected>' in forms["lose_deal"]
            assert 'value="клиент &lt;ушёл&gt;"' in forms["lose_deal"]
            assert 'value="60"' not in forms["set_payment_schedule"]
        else:
            assert 'name="percent_1" size="5" inputmode="decimal" value="60"' in forms[action]
            assert 'name="due_1" type="date" value="2026-12-20"' in forms[action]
            assert " selected" not in forms["lose_deal"]
    ctx = _context(view("LAUNCH"), ROP)
    ctx.notice = Notice("lose_deal", True, "готово", entered)  # done: the form starts empty
    assert " selected" not in _form_html(render(ctx))["lose_deal"]


def _form_html(page: str) -> dict[str, str]:
    import re

    return dict(re.findall(r'<form [^>]*data-action="([a-z_]+)">(.*?)</form>', page, re.S))


def test_r_x10_every_history_cause_code_has_a_russian_template() -> None:
    """Issue 12: each coded cause (payments, schedule, postpayment, КП from 1C …) is shown in
    Russian on the tab; its English text for the integrator is unchanged."""
    from string import Formatter

    from salesflow.deal_card.page import cause_text
    from salesflow.workflows.causes import CAUSES, cause

    assert [code for code in CAUSES if f"cause_{code}" not in TEXTS.table] == []
    for code, english in CAUSES.items():  # a template uses only its cause's parameters
        names = {f for _, f, _, _ in Formatter().parse(english) if f}
        TEXTS(f"cause_{code}", **dict.fromkeys(names, "x"))
    paid = cause("payment", amount="320000.00", paid_on=date(2026, 12, 3), source="manual")
    assert str(paid) == "payment 320000.00 on 2026-12-03 (manual)"
    entry = HistoryEntry(at=NOW, stage="INVOICE", cause=paid, code=paid.code, params=paid.params)
    assert cause_text(entry, _context(view("INVOICE"), ROP)) == (
        "оплата 320000.00 от 03.12.2026 (вручную)"
    )
