"""Each failure of 1C becomes a typed error with 1C's code, Russian message and `retryable`."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import httpx
import pytest

from emulators.asgi_server import free_port, serve
from emulators.onec.app import create_app
from emulators.onec.state import OneCBase
from salesflow.integrations.onec.client import OneCClient
from salesflow.integrations.onec.errors import (
    OneCAuthError,
    OneCBadRequest,
    OneCBusinessError,
    OneCNotFound,
    OneCProtocolError,
    OneCTimeout,
    OneCUnavailable,
)
from salesflow.integrations.onec.filters import F, Raw

if TYPE_CHECKING:
    from conftest import Emulator

ITEMS = "Catalog_Номенклатура"
ZERO = "00000000-0000-0000-0000-000000000000"


async def test_wrong_password_is_401(emulator: Emulator) -> None:
    async with emulator.client(password="wrong") as onec:
        with pytest.raises(OneCAuthError) as caught:
            await onec.count(ITEMS)
    assert caught.value.status == 401 and not caught.value.retryable


async def test_cyrillic_credentials_are_utf8(emulator: Emulator) -> None:
    app = create_app("trade", "Интеграция", "пароль№1", state=OneCBase())
    async with serve(app) as server:
        root = f"{server.url}/trade/odata/standard.odata/"
        async with OneCClient(root, "Интеграция", "пароль№1", timeout=5) as onec:
            assert await onec.count(ITEMS) == 10
        cp1251 = base64.b64encode("Интеграция:пароль№1".encode("cp1251")).decode()
        async with httpx.AsyncClient() as http:
            headers = {"Authorization": f"Basic {cp1251}"}
            response = await http.get(root + "$metadata", headers=headers)
        assert response.status_code == 401


async def test_unknown_set_is_404_with_the_name_echoed(onec: OneCClient) -> None:
    with pytest.raises(OneCNotFound) as caught:
        await onec.list_page("Catalog_Несуществующий")
    assert "Catalog_Несуществующий" in caught.value.message
    assert caught.value.status == 404 and not caught.value.retryable


async def test_unpublished_set_looks_unknown(onec: OneCClient, emulator: Emulator) -> None:
    assert "Catalog_Партнеры" in emulator.base.types
    with pytest.raises(OneCNotFound, match="Catalog_Партнеры"):
        await onec.list_page("Catalog_Партнеры")
    assert "Catalog_Партнеры" not in await onec.metadata()


async def test_missing_key_is_404_code_9(onec: OneCClient) -> None:
    with pytest.raises(OneCNotFound) as caught:
        await onec.get(ITEMS, "11111111-2222-3333-4444-555555555555")
    assert caught.value.code == "9"
    assert "не найден" in caught.value.message


async def test_bad_requests_are_400_and_not_retryable(onec: OneCClient) -> None:
    with pytest.raises(OneCBadRequest) as unsupported:
        await onec.list_page(ITEMS, filter=Raw("tolower(Description) eq 'насос'"))
    assert (unsupported.value.status, unsupported.value.code) == (400, "14")
    assert not unsupported.value.retryable
    with pytest.raises(OneCBadRequest, match="НетТакогоПоля"):
        await onec.list_page(ITEMS, select="Description,НетТакогоПоля")
    with pytest.raises(OneCBadRequest, match="НетТакогоПоля"):
        await onec.list_page(ITEMS, orderby="НетТакогоПоля desc")
    with pytest.raises(OneCBadRequest) as number:
        await onec.list_page("Catalog_Контрагенты", filter=F("ИНН") == 7701234567)
    assert "7701234567" in number.value.message  # 1C repeats unquoted numbers
    with pytest.raises(OneCBadRequest) as bad_guid:
        await onec.request("GET", "Catalog_Контрагенты(guid'нет')", {})
    assert bad_guid.value.code == "1"


async def test_business_error_is_500_minus_1(onec: OneCClient) -> None:
    await onec.create(ITEMS, {"Description": "Насос дренажный НД-5"})
    with pytest.raises(OneCBusinessError) as caught:
        await onec.create(ITEMS, {"Description": "Насос дренажный НД-5"})
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (500, "-1", False)
    assert "уже существует" in caught.value.message


async def test_down_with_503_is_retryable(onec: OneCClient, emulator: Emulator) -> None:
    emulator.base.faults.down = "503"
    with pytest.raises(OneCUnavailable) as caught:
        await onec.count(ITEMS)
    assert caught.value.status == 503 and caught.value.retryable
    emulator.base.faults.down = None
    assert await onec.count(ITEMS) == 10


async def test_dropped_connection_is_retryable(onec: OneCClient, emulator: Emulator) -> None:
    emulator.base.faults.down = "reset"
    with pytest.raises(OneCUnavailable) as caught:
        await onec.count(ITEMS)
    assert caught.value.status is None and caught.value.retryable


async def test_connection_refused_is_retryable() -> None:
    root = f"http://127.0.0.1:{free_port()}/trade/odata/standard.odata/"
    async with OneCClient(root, "odata", "odata", timeout=2) as onec:
        with pytest.raises(OneCUnavailable) as caught:
            await onec.count(ITEMS)
    assert caught.value.retryable and caught.value.status is None


async def test_cold_start_timeout_then_recovery(emulator: Emulator) -> None:
    emulator.base.faults.slow_first_call = 0.6
    async with emulator.client(timeout=0.2) as onec:
        with pytest.raises(OneCTimeout) as caught:
            await onec.count(ITEMS)
        assert caught.value.retryable
        assert await onec.count(ITEMS) == 10


async def test_5xx_burst_then_recovery(onec: OneCClient, emulator: Emulator) -> None:
    emulator.base.faults.update({"error_burst": 2, "error_status": 500})
    for _ in range(2):
        with pytest.raises(OneCUnavailable) as caught:
            await onec.count(ITEMS)
        assert caught.value.code == "-1" and "блокировок" in caught.value.message
    assert await onec.count(ITEMS) == 10
    emulator.base.faults.update({"error_burst": 1, "error_status": 502})
    with pytest.raises(OneCUnavailable):
        await onec.count(ITEMS)


async def test_no_free_licence_is_retryable(emulator: Emulator) -> None:
    emulator.base.faults.license_limit = 1
    async with emulator.client() as first, emulator.client() as second:
        await first.count(ITEMS)
        with pytest.raises(OneCUnavailable, match="лицензии"):
            await second.count(ITEMS)


async def test_html_page_with_200_is_a_protocol_error() -> None:
    def login_page(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, html="<!DOCTYPE html><html>Вход</html>")

    transport = httpx.MockTransport(login_page)
    async with OneCClient(
        "http://1c/trade/odata/standard.odata/", "u", "p", transport=transport
    ) as onec:
        with pytest.raises(OneCProtocolError):
            await onec.list_page(ITEMS)


async def test_plus_in_a_form_encoded_query_breaks_the_filter(emulator: Emulator) -> None:
    """Why the client never uses `+`: 1C does not read it as a space."""
    async with emulator.raw() as http:
        plus = await http.get(ITEMS, params={"$format": "json", "$filter": "Code eq 'x'"})
        encoded = await http.get(f"{ITEMS}?$format=json&$filter=Code%20eq%20'x'")
    assert plus.status_code == 400 and plus.json()["odata.error"]["code"] == "14"
    assert encoded.status_code == 200
    assert ZERO not in encoded.text


async def test_requests_wrong_for_the_base_are_configuration_problems(onec: OneCClient) -> None:
    from salesflow.integrations.onec.errors import configuration_problem

    with pytest.raises(OneCBadRequest) as unknown_property:
        await onec.list_page(ITEMS, select="КодОКЕИ")
    with pytest.raises(OneCBadRequest) as unparsable:
        await onec.list_page(ITEMS, filter="Code in ('1')")
    with pytest.raises(OneCNotFound) as unknown_set:
        await onec.list_page("Catalog_НетТакого")
    with pytest.raises(OneCNotFound) as no_object:
        await onec.get(ITEMS, "00000000-0000-0000-0000-0000000000aa")
    assert configuration_problem(unknown_property.value) == "КодОКЕИ"
    assert configuration_problem(unparsable.value) == ""
    assert configuration_problem(unknown_set.value) == "Catalog_НетТакого"
    assert configuration_problem(no_object.value) is None  # a miss is data, not configuration
