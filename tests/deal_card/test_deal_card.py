"""R-X10: the deal card's tab over real HTTP — the portal's POST, the user learnt from the
portal, the workflow's updates carrying who acted, refusals that change nothing."""

from __future__ import annotations

import asyncio
import html
import json
import re
from datetime import date, timedelta

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from emulators.bitrix24 import deals as emulator_deals
from emulators.bitrix24.placement_rig import open_deal_tab
from emulators.bitrix24.registry import CallContext
from tests.deal_card.conftest import (
    ACCOUNTANT,
    LOGIST,
    MANAGER,
    ROP,
    Card,
    Forms,
    card_stack,
)
from tests.workflows.pipeline import drive_to, until

# At NEW nobody is the deal's responsible yet: a manager takes the lead or rejects it, the
# РОП rejects it or acts on the deal.
DEAL_ACTIONS = {"request_tasks", "start_process", "lose_deal"}


def _no_framing_denial(response: httpx.Response) -> None:
    assert "x-frame-options" not in response.headers
    assert "frame-ancestors" not in response.headers.get("content-security-policy", "")


async def test_r_x10_tab_at_new_shows_stage_name_and_the_valid_actions(card: Card) -> None:
    response = await open_deal_tab(card.portal, card.http, card.deal_id, MANAGER)
    assert response.status_code == 200, response.text
    _no_framing_denial(response)
    assert response.headers["cache-control"] == "no-store"
    page = response.text
    assert 'data-stage="NEW">Новая заявка<' in page  # the stage's name in Bitrix24
    assert "менеджер принимает заявку" in page
    assert 'data-user-id="3">Иван Петров<' in page  # learnt with user.current
    forms = Forms(page)
    assert set(forms.forms) == {"accept_lead", "reject_lead"}
    assert forms.not_for_you == DEAL_ACTIONS
    assert "record_payment" not in page and "set_payment_schedule" not in page
    rop = Forms((await open_deal_tab(card.portal, card.http, card.deal_id, ROP)).text)
    assert set(rop.forms) == {"reject_lead", *DEAL_ACTIONS}
    assert rop.not_for_you == {"accept_lead"}


async def test_r_x10_accept_from_the_tab_moves_the_deal_and_the_update_carries_the_actor(
    card: Card,
) -> None:
    page = await open_deal_tab(card.portal, card.http, card.deal_id, MANAGER)
    done = await card.act(page, "accept_lead")
    assert done.status_code == 200, done.text
    assert "Готово: Принять заявку." in done.text
    assert 'data-stage="IN_WORK">Взят в работу<' in done.text
    assert "<td>Новая заявка</td>" in done.text  # the history's stages by their names too
    view = await card.view()
    assert (view.stage, view.manager_id) == ("IN_WORK", MANAGER)
    (name, payload), *_ = await card.updates()
    assert name == "accept_lead"
    assert payload["manager_id"] == MANAGER
    assert payload["actor"] == {"user_id": MANAGER, "name": "Иван Петров", "source": "bitrix24"}
    # At IN_WORK the lead's actions are gone; a second click on the old page changes nothing.
    assert not {"accept_lead", "reject_lead"} & set(Forms(done.text).forms)
    again = await card.act(page, "accept_lead")
    assert again.status_code == 409
    assert "Не выполнено: на стадии «Взят в работу» это действие недоступно" in again.text
    assert len(await card.updates()) == 1


async def test_r_x10_double_submit_of_one_form_is_one_update(card: Card) -> None:
    page = await open_deal_tab(card.portal, card.http, card.deal_id, MANAGER)
    page = await card.act(page, "accept_lead")  # now the deal's responsible
    first, second = await asyncio.gather(
        card.act(page, "request_tasks", engineers="yes"),
        card.act(page, "request_tasks", engineers="yes"),
    )
    assert {first.status_code, second.status_code} == {200}
    await until(card.handle, lambda v: bool(v.open_tasks))
    assert [n for n, _ in await card.updates()] == ["accept_lead", "request_tasks"]
    assert len([t for t in card.fake.tasks.values() if "инженерам" in t.title]) == 1


async def test_r_x10_refusals_are_shown_beside_the_form_and_change_nothing(
    dev_env: WorkflowEnvironment,
) -> None:
    # The РОП may press «Принять заявку» here, but the workflow takes only sales managers.
    permissions = {"accept_lead": ["manager", "rop"]}
    async with card_stack(dev_env, permissions=permissions) as card:
        page = await open_deal_tab(card.portal, card.http, card.deal_id, ROP)
        empty = await card.act(page, "reject_lead", reason="  ")
        assert empty.status_code == 422
        assert 'data-notice="reject_lead" role="alert">Не выполнено: укажите причину отказа' in (
            empty.text
        )
        refused = await card.act(page, "accept_lead")
        assert refused.status_code == 409
        assert "Не выполнено: вы не в списке менеджеров по продажам" in refused.text
        other = await card.act(page, "lose_deal", reason="OTHER", comment="")
        assert other.status_code == 422
        assert "для причины «Другое» нужен комментарий" in other.text
        assert '<option value="OTHER" selected>' in other.text  # the choice kept (issue 12)
        view = await card.view()
        assert (view.stage, view.manager_id) == ("NEW", None)
        assert await card.updates() == []


@pytest.mark.parametrize(
    ("forgery", "reason"),
    [
        ({"APPLICATION_TOKEN": "forged-token"}, "вызов пришёл не с портала компании"),
        ({"member_id": "0" * 32}, "вызов пришёл не с портала компании"),
        ({"AUTH_ID": "not-a-token"}, "авторизация пользователя недействительна"),
        ({"PLACEMENT_OPTIONS": json.dumps({"ID": "x"})}, "не из карточки сделки"),
    ],
    ids=["forged-application-token", "foreign-member-id", "forged-auth-id", "no-deal-id"],
)
async def test_r_x10_a_forged_tab_call_gets_403(
    card: Card, forgery: dict[str, str], reason: str
) -> None:
    response = await card.open_tab(MANAGER, **forgery)
    assert response.status_code == 403
    assert reason in response.text
    assert "<form" not in response.text
    assert await card.updates() == []


async def test_r_x10_expired_user_token_gets_403_and_no_update(card: Card) -> None:
    page = await open_deal_tab(card.portal, card.http, card.deal_id, MANAGER)
    for token in card.portal.user_tokens.values():
        token.expires_at = card.portal.now() - 1
    late = await card.act(page, "accept_lead")
    assert late.status_code == 403
    assert "истекла" in late.text
    url, form = card.tab_request(MANAGER)
    card.portal.user_tokens[form["AUTH_ID"]].expires_at = card.portal.now() - 1
    assert (await card.http.post(url, data=form)).status_code == 403
    assert (await card.view()).stage == "NEW"
    assert await card.updates() == []


async def test_r_x10_a_forged_action_form_gets_403(card: Card) -> None:
    page = await open_deal_tab(card.portal, card.http, card.deal_id, MANAGER)
    forged = await card.act(page, "accept_lead", sig="0" * 64)
    other_deal = await card.act(page, "accept_lead", deal_id=str(card.deal_id + 1))
    assert (forged.status_code, other_deal.status_code) == (403, 403)
    assert await card.updates() == []


async def test_r_x10_domain_of_the_query_string_is_never_called(card: Card) -> None:
    """user.current goes to the configured portal, whatever DOMAIN the POST names."""
    url, form = card.tab_request(MANAGER)
    url = url.replace("DOMAIN=127.0.0.1", "DOMAIN=attacker.example%3A1")
    calls = card.portal.calls["user.current"]
    response = await card.http.post(url, data=form)
    assert response.status_code == 200
    assert card.portal.calls["user.current"] == calls + 1


async def test_r_x10_a_user_the_policy_refuses_sees_why_and_nothing_changes(card: Card) -> None:
    page = await open_deal_tab(card.portal, card.http, card.deal_id, LOGIST)
    assert page.status_code == 200
    forms = Forms(page.text)
    assert forms.forms == {}
    assert {"accept_lead", "lose_deal"} <= forms.not_for_you
    assert "«Принять заявку» недоступно: это могут сделать только: менеджер по продажам" in (
        page.text
    )
    # The accountant crafts an accept from their own page's fields: refused with the reason.
    own = await open_deal_tab(card.portal, card.http, card.deal_id, ACCOUNTANT)
    hidden = {"action": "accept_lead", **_any_hidden(own.text, card)}
    refused = await card.http.post(f"{card.server.url}/bitrix24/deal-card/action", data=hidden)
    assert refused.status_code == 403
    assert "Не выполнено: это могут сделать только: менеджер по продажам" in refused.text
    assert await card.updates() == []


def _any_hidden(page: str, card: Card) -> dict[str, str]:
    """The accountant sees no form at NEW; the hidden fields are rebuilt the way the page
    would carry them (the user's own token and the signature of it)."""
    from salesflow.deal_card.identity import form_signature

    auth = next(t.access_token for t in card.portal.user_tokens.values() if t.user_id == ACCOUNTANT)
    key = "deal-card-form:" + card.portal.application_token
    return {
        "deal_id": str(card.deal_id),
        "AUTH_ID": auth,
        "sig": form_signature(key, card.deal_id, auth),
    }


async def test_r_x10_payment_schedule_and_payment_from_the_tab(card: Card) -> None:
    """At LAUNCH the responsible sets the schedule (refused as the workflow checks it, then
    taken) and the accountant records a payment; the tab shows each tranche's state."""
    await drive_to(card.handle, card.fake, "LAUNCH")
    page = await open_deal_tab(card.portal, card.http, card.deal_id, MANAGER)
    assert "set_payment_schedule" in Forms(page.text).forms
    assert "record_payment" in Forms(page.text).not_for_you  # the accountant's
    start = date.today()
    bad = await card.act(
        page,
        "set_payment_schedule",
        percent_1="50",
        due_1=str(start + timedelta(days=10)),
        percent_2="40",
        due_2=str(start + timedelta(days=20)),
    )
    assert bad.status_code == 409
    assert "график платежей неверен: сумма процентов 90, а не 100" in bad.text
    assert (await card.view()).payment_schedule == []
    good = await card.act(
        page,
        "set_payment_schedule",
        percent_1="50",
        due_1=str(start + timedelta(days=10)),
        percent_2="50",
        due_2=str(start + timedelta(days=20)),
    )
    assert good.status_code == 200, good.text
    # The invoice's payment (320 000 of 640 000) already covers the first tranche.
    assert 'data-tranche="1" data-state="paid"' in good.text
    assert 'data-tranche="2" data-state="planned"' in good.text
    assert "set_payment_schedule" not in Forms(good.text).forms  # set once
    accountant = await open_deal_tab(card.portal, card.http, card.deal_id, ACCOUNTANT)
    assert set(Forms(accountant.text).forms) == {"record_payment"}
    paid = await card.act(accountant, "record_payment", amount="320000")
    assert paid.status_code == 200, paid.text
    view = await until(card.handle, lambda v: v.payment_schedule[1].state == "paid")
    assert view.payments[-1].amount == 320000
    (name, payload) = (await card.updates())[-1]
    assert name == "record_payment"
    assert payload["actor"]["user_id"] == ACCOUNTANT


async def test_r_x10_kp_answer_and_losing_the_deal_from_the_tab(card: Card) -> None:
    await drive_to(card.handle, card.fake, "KP")
    await until(card.handle, lambda v: v.kp_round > 0)
    page = await open_deal_tab(card.portal, card.http, card.deal_id, MANAGER)
    assert "kp_feedback" in Forms(page.text).forms
    answer = await card.act(page, "kp_feedback", agreed="no", comment="Дорого")
    assert answer.status_code == 200, answer.text
    await until(card.handle, lambda v: v.kp_round == 2)
    lost = await card.act(answer, "lose_deal", reason="OTHER", comment="Клиент закрылся")
    assert lost.status_code == 200, lost.text
    assert "Сделка закрыта (Сделка провалена)" in lost.text
    assert Forms(lost.text).forms == {}
    assert (await card.view()).stage == "LOSE"
    names = [(n, (p["actor"] or {}).get("user_id")) for n, p in await card.updates()]
    assert names[-2:] == [("kp_feedback", MANAGER), ("lose_deal", MANAGER)]


async def test_r_x10_the_emulators_deal_card_frames_the_tab(card: Card) -> None:
    """The emulator's deal card page posts the tab's form into a frame, as the portal does;
    submitting that form (the browser's part) opens the tab for that user."""
    emulator_deals.create_deal(
        CallContext(card.portal, 1), {"CATEGORY_ID": 1, "TITLE": "Поставка"}, card.deal_id
    )
    shown = await card.http.get(
        f"{card.emulator.url}/_emulator/deal-card/{card.deal_id}", params={"user_id": MANAGER}
    )
    assert shown.status_code == 200
    assert 'target="tab-frame"' in shown.text and '<iframe name="tab-frame"' in shown.text
    action = shown.text.split('<form id="tab" method="post" action="')[1].split('"')[0]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', shown.text))
    framed = await card.http.post(
        html.unescape(action), data={k: html.unescape(v) for k, v in fields.items()}
    )
    assert framed.status_code == 200
    assert 'data-user-id="3">Иван Петров<' in framed.text
