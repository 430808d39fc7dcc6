"""Reading a Bitrix24 outbound event POST: PHP-bracket form, token, required fields."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest

from salesflow.relay.intake import BadEvent, Unauthorized, check_token, decode_form, parse_event

TOKEN = "app-token-intake"


def _form(pairs: dict[str, str]) -> bytes:
    return urlencode(pairs).encode()


def test_a_deal_event_as_the_portal_sends_it() -> None:
    form = decode_form(
        _form(
            {
                "event": "ONCRMDEALUPDATE",
                "event_handler_id": "201",
                "data[FIELDS][ID]": "759",
                "ts": "1736405807",
                "auth[domain]": "x.bitrix24.ru",
                "auth[member_id]": "m1",
                "auth[application_token]": TOKEN,
            }
        )
    )
    check_token(form, TOKEN)
    event = parse_event(form)

    assert (event.event, event.entity_id, event.ts) == ("ONCRMDEALUPDATE", 759, 1736405807)
    assert "auth" not in event.payload  # tokens are never stored
    assert event.payload["data"] == {"FIELDS": {"ID": "759"}}


def test_a_task_event_carries_its_id_in_fields_after() -> None:
    form = decode_form(
        _form(
            {
                "event": "ontaskupdate",
                "data[FIELDS_BEFORE][ID]": "31",
                "data[FIELDS_AFTER][ID]": "31",
                "data[IS_ACCESSIBLE_AFTER]": "Y",
                "ts": "1736405900",
            }
        )
    )
    event = parse_event(form)
    assert (event.event, event.entity_id) == ("ONTASKUPDATE", 31)


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({}, "missing"),
        ({"auth[application_token]": ""}, "missing"),
        ({"auth[application_token]": "forged"}, "wrong"),
        ({"auth[application_token]": TOKEN + "x"}, "wrong"),
        ({"auth": TOKEN}, "missing"),
    ],
)
def test_a_wrong_or_missing_token_is_refused(auth: dict[str, str], message: str) -> None:
    form = decode_form(_form({"event": "ONCRMDEALADD", "data[FIELDS][ID]": "1", **auth}))
    with pytest.raises(Unauthorized, match=message):
        check_token(form, TOKEN)


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ({}, "missing event, data[FIELDS][ID], ts"),
        ({"event": "ONCRMDEALADD", "ts": "1"}, "missing data[FIELDS][ID]"),
        ({"event": "ONTASKADD", "ts": "1"}, "missing data[FIELDS_AFTER][ID]"),
        ({"event": "ONCRMDEALADD", "data[FIELDS][ID]": "5"}, "missing ts"),
        ({"data[FIELDS][ID]": "5", "ts": "1"}, "missing event"),
        (
            {"event": "ONCRMDEALADD", "data[FIELDS][ID]": "abc", "ts": "1"},
            "data[FIELDS][ID] must be a positive integer",
        ),
        ({"event": "ONCRMDEALADD", "data[FIELDS][ID]": "0", "ts": "1"}, "positive integer"),
        ({"event": "ONCRMDEALADD", "data[FIELDS][ID]": "5", "ts": "soon"}, "ts must be"),
        ({"event": "ONCRMDEALADD", "data": "5", "ts": "1"}, "missing data[FIELDS][ID]"),
    ],
)
def test_missing_or_bad_fields_are_named(pairs: dict[str, str], message: str) -> None:
    with pytest.raises(BadEvent, match=re.escape(message)):
        parse_event(decode_form(_form(pairs)))


def test_a_body_that_is_not_text_is_a_bad_event() -> None:
    with pytest.raises(BadEvent, match="UTF-8"):
        decode_form(b"event=\xff\xfe")
