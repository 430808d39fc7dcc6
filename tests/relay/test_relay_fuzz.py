"""Bad input at the relay (property-based): any body, any content type, huge and deeply nested
keys → a 4xx or 200, never a 5xx or a crash, and never a signal without the valid token."""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from salesflow.integrations.bitrix24.php_form import decode
from salesflow.store import inbox
from tests.relay.conftest import TOKEN, Relay

key_part = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
nested_key = st.builds(
    lambda head, tail: head + "".join(f"[{p}]" for p in tail),
    key_part,
    st.lists(key_part, max_size=40),
)
form_pairs = st.lists(st.tuples(nested_key, st.text(max_size=30)), max_size=12)
content_types = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=windows-1251",
        "application/json",
        "multipart/form-data; boundary=x",
        "text/plain",
        "",
    ]
)


def _form(pairs: list[tuple[str, str]]) -> bytes:
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs).encode()


def examples(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    drawn: list[Any] = []

    @settings(max_examples=count, database=None, derandomize=True, deadline=None)
    @given(strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn


BODIES = examples(
    st.one_of(
        st.binary(max_size=300),
        form_pairs.map(_form),
        form_pairs.map(lambda p: _form([*p, ("auth[application_token]", TOKEN)])),
        st.just(b"a" + b"[x]" * 5000 + b"=1&auth[application_token]=" + TOKEN.encode()),
        st.just(b"&".join(b"k%d=v" % i for i in range(20000))),
    ),
    120,
)


def test_the_form_parser_raises_nothing_but_value_error() -> None:
    for body in BODIES:
        with contextlib.suppress(ValueError):
            decode(body)


async def test_any_body_gets_4xx_or_200_and_no_row_without_the_token(relay: Relay) -> None:
    kinds = examples(content_types, 120)
    for number, body in enumerate(BODIES):
        kind = kinds[number % len(kinds)]
        answer = await relay.http.post(
            "/bitrix24/events", content=body, headers={"Content-Type": kind} if kind else {}
        )
        assert answer.status_code < 500, (body[:80], kind, answer.text)
        if answer.status_code == 200:
            assert TOKEN.encode() in body
    rows = await inbox.recent(relay.engine, 1000)
    assert all(TOKEN not in row.payload for row in rows)  # tokens are never stored
    assert (await relay.http.get("/healthz")).status_code == 200
