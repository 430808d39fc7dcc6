"""PHP-bracket form encoding: round trips, PHP casting of scalars, hostile input."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salesflow.integrations.bitrix24 import php_form


def test_roundtrip_nested_operators_lists_and_cyrillic() -> None:
    params = {
        "data": {"FIELDS": {"ID": "42"}},
        "filter": {">OPPORTUNITY": "1000", "@STAGE_ID": ["C1:NEW", "C1:UC_KP"], "%TITLE": "Ром"},
        "select": ["ID", "TITLE", "UF_*"],
        "fields": {"TITLE": "Сделка «Ромашка» & Co = 100%", "PHONE": [{"VALUE": "+7 495"}]},
    }
    encoded = php_form.encode(params)
    assert "&" in encoded and " " not in encoded
    assert php_form.decode(encoded) == params


def test_pairs_use_php_bracket_keys() -> None:
    pairs = php_form.to_pairs(
        {"data": {"FIELDS": {"ID": 42}}, "filter": {">OPPORTUNITY": 1000}, "select": ["ID"]}
    )
    assert pairs == [
        ("data[FIELDS][ID]", "42"),
        ("filter[>OPPORTUNITY]", "1000"),
        ("select[0]", "ID"),
    ]


def test_scalars_are_cast_as_php_would() -> None:
    encoded = php_form.encode(
        {
            "yes": True,
            "no": False,
            "none": None,
            "empty": [],
            "date": dt.date(2025, 3, 1),
            "moment": dt.datetime(2025, 3, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=3))),
            "money": Decimal("1500.50"),
        }
    )
    assert php_form.decode(encoded) == {
        "yes": "1",
        "no": "0",
        "none": "",
        "empty": "",
        "date": "2025-03-01",
        "moment": "2025-03-01T09:30:00+03:00",
        "money": "1500.50",
    }


def test_decode_follows_parse_str() -> None:
    assert php_form.decode("a=1&a=2") == {"a": "2"}
    assert php_form.decode("select[]=ID&select[]=TITLE") == {"select": ["ID", "TITLE"]}
    assert php_form.decode("0=12&1[POST_MESSAGE]=hi+there") == {
        "0": "12",
        "1": {"POST_MESSAGE": "hi there"},
    }
    assert php_form.decode(b"filter%5B%3E%3DID%5D=5") == {"filter": {">=ID": "5"}}
    assert php_form.decode("a[99999]=x") == {"a": {"99999": "x"}}
    assert php_form.decode("") == {}


@pytest.mark.parametrize(
    "hostile",
    [
        "a" + "[x]" * 40 + "=1",
        "&".join(f"k{i}=v" for i in range(php_form.MAX_PARAMS + 1)),
    ],
)
def test_decode_limits_raise_value_error(hostile: str) -> None:
    with pytest.raises(ValueError):
        php_form.decode(hostile)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_decode_never_raises_anything_but_value_error(data: str | bytes) -> None:
    try:
        result = php_form.decode(data)
    except ValueError:
        return
    assert isinstance(result, dict)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text(
            alphabet=st.characters(blacklist_characters="[]", blacklist_categories=["Cs"]),
            min_size=1,
            max_size=8,
        ),
        st.one_of(
            st.text(max_size=12),
            st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=4),
        ),
        max_size=6,
    )
)
def test_roundtrip_property(params: dict[str, object]) -> None:
    decoded = php_form.decode(php_form.encode(params))
    assert decoded == {k: v for k, v in params.items()}
