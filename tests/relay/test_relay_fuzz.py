"""Bad input at the relay (property-based): any body, any content type, huge and deeply nested
keys → a 4xx or 200, never a 5xx or a crash, and never a signal without the valid token; the
hostile shapes of issue 11 cost bounded work (Python lines run) and memory per request
(their time is measured by bench/relay_flood.py)."""

from __future__ import annotations

import contextlib
import sys
import tracemalloc
from collections.abc import Callable
from types import FrameType
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salesflow.integrations.bitrix24 import php_form
from salesflow.integrations.bitrix24.php_form import decode
from salesflow.relay import intake
from salesflow.relay.intake import (
    MAX_FORM_PARAMS,
    TOKEN_KEY,
    BadEvent,
    Unauthorized,
    check_token_raw,
    count_params,
    scan_fields,
)
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


# ---- bounded work before the caller is known (issue 11, finding 1) -------------------------

HOSTILE = {
    "appends-x4999": b"&".join(b"x[]=%d" % i for i in range(4999)),
    "deep-key-333000": b"data" + b"[a]" * 333_000 + b"=1",
    "params-20000": b"&".join(b"k%d=v" % i for i in range(20_000)),
    "deep-keys": b"&".join(b"a" + b"[b]" * 60 + b"=%d" % i for i in range(150)),
    "long-keys": b"&".join(b"k" * 50_000 + b"%d=1" % i for i in range(20)),
    "long-value": b"event=" + b"A" * 1_000_000,
    "empty-pairs": b"&" * 1_000_000,
    "encoded-token-key": b"%61uth%5Bapplication_token%5D=x&" * 150,
}


def _lines_run(call: Callable[[], Any], files: tuple[str, ...]) -> tuple[int, int]:
    """Lines of `files` run during `call` and its peak of new memory (exceptions swallowed)."""
    count = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if frame.f_code.co_filename not in files:
            return None
        if event == "line":
            count += 1
        return tracer

    tracemalloc.start()
    sys.settrace(tracer)
    try:
        call()
    except (BadEvent, Unauthorized):
        pass
    finally:
        sys.settrace(None)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return count, peak


def _before_the_token(body: bytes) -> None:
    """What the relay runs on a body before it knows the caller."""
    count_params(body)
    fields = scan_fields(body)
    check_token_raw(fields.get(TOKEN_KEY), TOKEN)


@pytest.mark.parametrize("shape", sorted(HOSTILE))
def test_hostile_shapes_cost_bounded_work_before_the_token(shape: str) -> None:
    """Whatever the body, the pre-token work is at most MAX_FORM_PARAMS short pairs: a bounded
    number of Python lines, and memory of the order of the body (its split) — not its square."""
    body = HOSTILE[shape]
    lines, peak = _lines_run(lambda: _before_the_token(body), (intake.__file__,))
    assert lines < 20 * MAX_FORM_PARAMS, lines
    assert peak < 4 * len(body) + 200_000, peak


@pytest.mark.parametrize("shape", sorted(HOSTILE))
def test_hostile_shapes_with_the_token_cost_bounded_work_to_decode(shape: str) -> None:
    """With the right token the form is decoded within the relay's limits (parameters, depth,
    key length): refused or decoded after a bounded number of lines."""
    body = HOSTILE[shape] + b"&auth[application_token]=" + TOKEN.encode()
    lines, peak = _lines_run(lambda: intake.decode_form(body), (intake.__file__, php_form.__file__))
    assert lines < 200 * MAX_FORM_PARAMS, lines
    assert peak < 6 * len(body) + 500_000, peak


form_keys = st.one_of(
    st.sampled_from(
        [
            "auth[application_token]",
            "%61uth[application_token]",
            "auth%5Bapplication_token%5D",
            "auth[application_token][]",
            "auth[application_token",
            "auth",
            "event",
        ]
    ),
    nested_key.map(quote),
)
raw_forms = st.lists(st.tuples(form_keys, st.text(max_size=20).map(quote)), max_size=15).map(
    lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode()
)


@settings(max_examples=300, database=None, derandomize=True, deadline=None)
@given(raw_forms)
def test_the_token_scan_agrees_with_the_decoded_form(body: bytes) -> None:
    """When the scan finds a token, the decoded form carries that same token (when the body
    decodes at all): authentication never sees a different form than the one recorded."""
    found = scan_fields(body).get(TOKEN_KEY)
    try:
        form = intake.decode_form(body)
    except BadEvent:
        return
    auth = form.get("auth")
    decoded = auth.get("application_token") if isinstance(auth, dict) else None
    if isinstance(decoded, str):
        assert found == decoded.encode()
    elif found:
        assert decoded is None or not isinstance(decoded, str)


async def test_hostile_shapes_over_http_get_4xx(relay: Relay) -> None:
    for shape, body in HOSTILE.items():
        for tail in (b"", b"&auth[application_token]=" + TOKEN.encode()):
            answer = await relay.post(body + tail)
            assert 400 <= answer.status_code < 500, (shape, answer.status_code, answer.text)
    assert (await relay.http.get("/healthz")).status_code == 200
    assert sum((await inbox.counts(relay.engine)).values()) == 0
