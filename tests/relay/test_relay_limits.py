"""What one client may cost the relay (issue 11, findings 2, 4, 8): bodies refused while they
stream in, request heads bounded in size and time, bad values named with 400, metric labels
from a closed set, the API docs off on the public port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
from temporalio.testing import WorkflowEnvironment

from salesflow.relay.app import EVENTS_PATH, KNOWN_EVENTS
from salesflow.relay.metrics import RelayMetrics
from salesflow.store import inbox
from tests.relay.conftest import TOKEN, Emulator, Relay, relay_settings, running_relay
from tests.store.databases import database

BASE = 7_400_000
LIMIT = 4096  # relay.max_body_bytes of these tests
QUICK = {
    "max_body_bytes": LIMIT,
    "body_timeout_seconds": 0.5,
    "header_timeout_seconds": 0.5,
    "max_header_bytes": 4096,
}


@pytest.fixture
async def guarded(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> AsyncIterator[Relay]:
    settings = relay_settings(emulator.webhook_url, **QUICK)
    async with (
        database("sqlite", tmp_path) as engine,
        running_relay(settings, engine, dev_env.client) as relay,
    ):
        yield relay


# ---- raw connections -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def connection(
    relay: Relay,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.server.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def closed_or_answered(reader: asyncio.StreamReader, within: float) -> bytes | None:
    """What the relay sent before it closed the connection; None if it is still open."""
    received = b""
    try:
        async with asyncio.timeout(within):
            while chunk := await reader.read(65536):
                received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return received


def head(content_length: int | None = None, extra: str = "") -> bytes:
    lines = [
        f"POST {EVENTS_PATH} HTTP/1.1",
        "Host: relay",
        "Content-Type: application/x-www-form-urlencoded",
    ]
    lines.append(
        "Transfer-Encoding: chunked"
        if content_length is None
        else f"Content-Length: {content_length}"
    )
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


# ---- bodies ---------------------------------------------------------------------------------


async def test_a_streamed_body_over_the_limit_gets_413_before_it_is_read(guarded: Relay) -> None:
    """R-X-relay-413: chunked, no Content-Length: refused once the limit is passed, the rest of
    the body (256 chunks of 4 KB, 1 MB) never read."""
    chunk = b"a=" + b"x" * 4094
    sent = 0
    answer = None
    async with connection(guarded) as (reader, writer):
        writer.write(head())
        for _ in range(256):
            try:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
            except (ConnectionResetError, BrokenPipeError):
                break
            sent += len(chunk)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.02):
                    answer = await reader.read(65536)
            if answer is not None:
                break
    assert answer is not None and answer.startswith(b"HTTP/1.1 413"), answer
    assert sent < 64 * LIMIT  # answered long before the end (the whole body was read before)
    assert sum((await inbox.counts(guarded.engine)).values()) == 0


async def test_a_declared_length_over_the_limit_gets_413_at_once(guarded: Relay) -> None:
    async with connection(guarded) as (reader, writer):
        writer.write(head(300_000_000))  # and no body at all
        await writer.drain()
        answer = await closed_or_answered(reader, 5)
    assert answer is not None and answer.startswith(b"HTTP/1.1 413")


async def test_a_trickling_body_gets_408(guarded: Relay) -> None:
    async with connection(guarded) as (reader, writer):
        writer.write(head(100) + b"a=1")
        await writer.drain()
        answer = await closed_or_answered(reader, 5)  # body_timeout_seconds is 0.5
    assert answer is not None and answer.startswith(b"HTTP/1.1 408"), answer


# ---- heads ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sent", [b"", b"POST /bitrix24/events HTTP/1.1\r\nHost: relay\r\n"])
async def test_a_connection_without_a_whole_request_head_is_closed(
    guarded: Relay, sent: bytes
) -> None:
    """Half-open (nothing sent) or a head that never ends: closed after header_timeout."""
    async with connection(guarded) as (reader, writer):
        writer.write(sent)
        await writer.drain()
        assert await closed_or_answered(reader, 5) == b""


async def test_an_idle_connection_after_a_response_is_closed(guarded: Relay) -> None:
    async with connection(guarded) as (reader, writer):
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: relay\r\n\r\n")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"GET /metr")  # the next request's head never ends
        await writer.drain()
        assert await closed_or_answered(reader, 5) is not None


@pytest.mark.parametrize(
    "extra",
    [
        "X-Big: " + "a" * 8_000_000 + "\r\n",  # one 8 MB header
        "".join(f"X-{n}: a\r\n" for n in range(20_000)),  # 20 000 headers
    ],
    ids=["one-8MB-header", "20000-headers"],
)
async def test_oversized_heads_are_refused_without_being_read(guarded: Relay, extra: str) -> None:
    data = head(3, extra) + b"a=1"
    sent = 0
    async with connection(guarded) as (reader, writer):
        try:
            for start in range(0, len(data), 65536):
                writer.write(data[start : start + 65536])
                await writer.drain()
                sent += 65536
        except (ConnectionResetError, BrokenPipeError):
            pass
        answer = await closed_or_answered(reader, 5)
    assert answer is not None and (answer == b"" or answer.startswith(b"HTTP/1.1 4"))
    assert sent < len(data) or answer.startswith(b"HTTP/1.1 4")


# ---- bad values with a valid token ----------------------------------------------------------

LONG_NAME = "ON" + "X" * 148


def form(event: str, deal_id: str, ts: str, token: str = TOKEN) -> bytes:
    pairs = {
        "event": event,
        "data[FIELDS][ID]": deal_id,
        "ts": ts,
        "auth[application_token]": token,
    }
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs.items()).encode()


@pytest.mark.parametrize(
    ("event", "deal_id", "ts", "field"),
    [
        ("ONCRMDEALUPDATE", "١٢٣", "1700000000", "data[FIELDS][ID]"),  # Arabic-Indic digits
        ("ONCRMDEALUPDATE", "１２３", "1700000000", "data[FIELDS][ID]"),  # full-width digits
        ("ONCRMDEALUPDATE", "123", "١٧٠٠٠٠٠٠٠٠", "ts"),
        ("ONCRMDEALUPDATE", str(2**63), "1700000000", "data[FIELDS][ID]"),  # past int64
        ("ONCRMDEALUPDATE", "9" * 400, "1700000000", "data[FIELDS][ID]"),
        ("ONCRMDEALUPDATE", "123", str(2**63), "ts"),
        ("ONCRMDEALUPDATE", "-5", "1700000000", "data[FIELDS][ID]"),
        ("ONCRMDEALUPDATE", "0x1f", "1700000000", "data[FIELDS][ID]"),
        ("ONCRMDEALUPDATE", "1_000", "1700000000", "data[FIELDS][ID]"),
        (LONG_NAME, "123", "1700000000", "event"),  # 150 characters: was 503
        ("ONCRM DEAL", "123", "1700000000", "event"),
        ("ONCRMDEALUPDATE\u0000", "123", "1700000000", "event"),
    ],
)
async def test_bad_values_get_400_naming_the_field(
    guarded: Relay, event: str, deal_id: str, ts: str, field: str
) -> None:
    answer = await guarded.post(form(event, deal_id, ts))
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"].startswith(field), answer.json()
    assert sum((await inbox.counts(guarded.engine)).values()) == 0


async def test_the_largest_int64_id_is_accepted(guarded: Relay, emulator: Emulator) -> None:
    answer = await guarded.post(form("ONCRMDEALUPDATE", str(2**63 - 1), "1700000000"))
    assert answer.status_code == 200, answer.text
    row = await guarded.row(answer.json()["id"])
    assert row.entity_id == 2**63 - 1


async def test_too_many_parameters_or_deep_keys_get_400_with_the_limit(guarded: Relay) -> None:
    many = form("ONCRMDEALUPDATE", "1", "1") + b"&x=1" * 300
    deep = form("ONCRMDEALUPDATE", "1", "1") + b"&a" + b"[b]" * 30 + b"=1"
    assert (await guarded.post(many)).json()["detail"] == "more than 200 form parameters"
    answer = await guarded.post(deep)
    assert answer.status_code == 400 and "deeper than 8" in answer.json()["detail"]


# ---- metrics --------------------------------------------------------------------------------


def _series(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("salesflow_relay_events")]


def test_metric_labels_come_from_a_closed_set() -> None:
    """20 000 forged event names (and made-up results) add no series beyond the closed set."""
    metrics = RelayMetrics(KNOWN_EVENTS)
    metrics.received_event("ONCRMDEALADD", "recorded")
    for n in range(20_000):
        metrics.received_event(f"ONFORGED{n}", "rejected")
        metrics.received_event(f"x{n}", f"result{n}")
    lines = _series(metrics.render().decode())
    labels = {line.split("{", 1)[1].split("}", 1)[0] for line in lines if "{" in line}
    assert labels == {
        'event="ONCRMDEALADD",result="recorded"',
        'event="other",result="rejected"',
        'event="other",result="other"',
    }


async def test_forged_posts_do_not_grow_metrics(guarded: Relay) -> None:
    before = len((await guarded.http.get("/metrics")).text)
    forged = [form(f"ONFORGED{n}", "1", "1", token="forged") for n in range(300)]
    for start in range(0, len(forged), 30):
        answers = await asyncio.gather(*(guarded.post(b) for b in forged[start : start + 30]))
        assert {a.status_code for a in answers} == {401}
    text = (await guarded.http.get("/metrics")).text
    assert 'event="other",result="rejected"} 300.0' in text
    assert len(text) < before + 400  # one series, not 300


# ---- docs -----------------------------------------------------------------------------------


async def test_api_docs_are_off_on_the_public_port(guarded: Relay) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert (await guarded.http.get(path)).status_code == 404, path


async def test_the_schema_when_asked_for_documents_the_refusals(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    settings = relay_settings(emulator.webhook_url, api_docs=True)
    async with (
        database("sqlite", tmp_path) as engine,
        running_relay(settings, engine, dev_env.client) as relay,
    ):
        schema = (await relay.http.get("/openapi.json")).json()
        docs = await relay.http.get("/docs")
    post = schema["paths"][EVENTS_PATH]["post"]
    assert {"200", "400", "401", "413", "415", "503"} <= set(post["responses"])
    assert "application/x-www-form-urlencoded" in post["requestBody"]["content"]
    assert docs.status_code == 200


async def test_connections_past_max_connections_get_503(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    """relay.max_connections is uvicorn's limit_concurrency: held connections count too."""
    settings = relay_settings(emulator.webhook_url, max_connections=3)
    async with (
        database("sqlite", tmp_path) as engine,
        running_relay(settings, engine, dev_env.client) as relay,
    ):
        held = [await asyncio.open_connection("127.0.0.1", relay.server.port) for _ in range(3)]
        try:
            async with connection(relay) as (reader, writer):
                writer.write(b"GET /metrics HTTP/1.1\r\nHost: relay\r\n\r\n")
                await writer.drain()
                answer = await reader.readuntil(b"\r\n\r\n")
        finally:
            for _, idle in held:
                idle.close()
    assert answer.startswith(b"HTTP/1.1 503"), answer


async def test_a_refusal_is_held_while_a_genuine_event_is_answered(
    tmp_path: Path, emulator: Emulator, dev_env: WorkflowEnvironment
) -> None:
    """relay.refusal_delay_seconds: forged POSTs (and over-limit bodies) wait for their answer,
    genuine ones do not — a flood over N connections gets at most N/delay answers a second."""
    settings = relay_settings(emulator.webhook_url, refusal_delay_seconds=2, **QUICK)
    async with (
        database("sqlite", tmp_path) as engine,
        running_relay(settings, engine, dev_env.client) as relay,
    ):
        emulator.add_deal(BASE + 50)
        forged = asyncio.create_task(relay.post(form("ONCRMDEALADD", "1", "1", token="forged")))
        too_big = asyncio.create_task(relay.post(b"a=" + b"x" * LIMIT))
        await asyncio.sleep(0.2)
        genuine = await relay.post(emulator.body("ONCRMDEALADD", BASE + 50))
        held = not forged.done() and not too_big.done()
        for task in (forged, too_big):
            task.cancel()
        await asyncio.gather(forged, too_big, return_exceptions=True)
    assert genuine.status_code == 200
    assert held
