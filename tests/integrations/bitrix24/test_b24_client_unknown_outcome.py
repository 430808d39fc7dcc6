"""A request whose answer was lost after it left is an UnknownOutcome; one that never left, or
that the portal refused, is not (issue 11, finding 6). Both clients, over a mock transport."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.integrations.bitrix24.errors import QueryLimitExceeded, ServerError, UnknownOutcome
from salesflow.integrations.onec.client import OneCClient
from salesflow.integrations.onec.errors import (
    OneCBusinessError,
    OneCTimeout,
    OneCUnavailable,
    OneCUnknownOutcome,
)

Handler = Callable[[httpx.Request], httpx.Response]


def _raise(exc: type[Exception]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("boom", request=request)  # type: ignore[call-arg]

    return handler


def _answer(status: int, body: str) -> Handler:
    return lambda request: httpx.Response(status, text=body)


LOST = [
    _raise(httpx.ReadTimeout),
    _raise(httpx.ReadError),
    _raise(httpx.RemoteProtocolError),
    _answer(500, '{"error": "INTERNAL_SERVER_ERROR", "error_description": ""}'),
    _answer(502, "<html>Bad Gateway</html>"),
    _answer(504, "<html>Gateway Timeout</html>"),
]
NOT_SENT_OR_REFUSED = [
    (_raise(httpx.ConnectError), ServerError),
    (_raise(httpx.ConnectTimeout), ServerError),
    (_answer(503, '{"error": "QUERY_LIMIT_EXCEEDED"}'), QueryLimitExceeded),
    (_answer(503, "<html><h1>503 Service Temporarily Unavailable</h1></html>"), ServerError),
]


@pytest.mark.parametrize("handler", LOST)
async def test_r_x2_lost_answer_is_an_unknown_outcome(handler: Handler) -> None:
    transport = httpx.MockTransport(handler)
    async with Bitrix24Client(
        "http://portal/rest/1/s3cretpath/", rate_per_second=0, transport=transport
    ) as client:
        with pytest.raises(UnknownOutcome) as caught:
            await client.call("tasks.task.add", {"fields": {"TITLE": "x"}})
    assert caught.value.retryable and "s3cretpath" not in str(caught.value)


@pytest.mark.parametrize(("handler", "kind"), NOT_SENT_OR_REFUSED)
async def test_not_sent_or_refused_is_no_unknown_outcome(handler: Handler, kind: type) -> None:
    transport = httpx.MockTransport(handler)
    async with Bitrix24Client(
        "http://portal/rest/1/x/", rate_per_second=0, transport=transport
    ) as c:
        with pytest.raises(kind) as caught:
            await c.call("tasks.task.add", {"fields": {"TITLE": "x"}})
    assert not isinstance(caught.value, UnknownOutcome)


async def test_r_x2_coalesced_callers_all_hear_the_unknown_outcome() -> None:
    transport = httpx.MockTransport(_raise(httpx.ReadTimeout))
    async with Bitrix24Client(
        "http://portal/rest/1/x/", rate_per_second=0, transport=transport
    ) as c:
        outcomes = await asyncio.gather(
            c.call("tasks.task.add", {"fields": {"TITLE": "a"}}),
            c.call("crm.activity.add", {"fields": {"SUBJECT": "b"}}),
            return_exceptions=True,
        )
        with pytest.raises(UnknownOutcome):
            await c.batch({"a": ("crm.item.add", {"fields": {"title": "a"}})})
    assert all(isinstance(o, UnknownOutcome) for o in outcomes)


def _onec(handler: Handler) -> OneCClient:
    return OneCClient(
        "http://1c/odata/",
        "odata",
        "pw",
        transport=httpx.MockTransport(handler),
        reuse_session=False,
    )


@pytest.mark.parametrize("handler", [_raise(httpx.ReadTimeout), _answer(500, ""), _answer(504, "")])
async def test_r_x2_1c_write_with_a_lost_answer_is_an_unknown_outcome(handler: Handler) -> None:
    async with _onec(handler) as onec:
        with pytest.raises(OneCUnknownOutcome) as caught:
            await onec.create("Task_ЗадачаИсполнителя", {"Description": "x"})
    assert caught.value.retryable


async def test_1c_reads_and_refusals_are_no_unknown_outcome() -> None:
    async with _onec(_raise(httpx.ReadTimeout)) as onec:
        with pytest.raises(OneCTimeout) as read:
            await onec.get("Task_ЗадачаИсполнителя", "00000000-0000-0000-0000-000000000001")
    async with _onec(_raise(httpx.ConnectError)) as onec:
        with pytest.raises(OneCUnavailable) as down:
            await onec.create("Task_ЗадачаИсполнителя", {"Description": "x"})
    body = '{"odata.error": {"code": "-1", "message": {"value": "Проведение отменено"}}}'
    async with _onec(_answer(500, body)) as onec:
        with pytest.raises(OneCBusinessError):
            await onec.create("Task_ЗадачаИсполнителя", {"Description": "x"})
    assert not isinstance(read.value, OneCUnknownOutcome)
    assert not isinstance(down.value, OneCUnknownOutcome)
