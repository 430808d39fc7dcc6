"""Secrets never leave the process in text (issue 11, finding 3): `config.redact` masks known
values and secrets recognised by their place; the log filter applies it to every record."""

from __future__ import annotations

import io
import json
import logging

import pytest

from salesflow.config import redact
from salesflow.config.log import configure_logging
from salesflow.integrations.bitrix24.errors import PortalMoved, error_from_response
from salesflow.integrations.onec.errors import OneCUnavailable

WEBHOOK_SECRET = "k3bq9z1x8w7v6u5t"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"POST http://p.example/rest/1/{WEBHOOK_SECRET}/crm.deal.get", WEBHOOK_SECRET),
        ("GET /rest/event.offline.get?auth=a1b2c3d4e5&clear=0", "a1b2c3d4e5"),
        (
            "GET /oauth/token/?grant_type=refresh_token&client_id=local.1&client_secret=cs42cs42"
            "&refresh_token=rt99rt99",
            "cs42cs42",
        ),
        ("GET /oauth/token/?client_secret=cs42cs42&refresh_token=rt99rt99", "rt99rt99"),
        ("event=ONCRMDEALADD&auth%5Bapplication_token%5D=apptok777", "apptok777"),
        ("event=ONCRMDEALADD&auth[application_token]=apptok777&data[FIELDS][ID]=1", "apptok777"),
        ('{"access_token": "at-5544", "expires_in": 3600}', "at-5544"),
        ("{'refresh_token': 'rt-7788', 'x': 1}", "rt-7788"),
        ("postgresql+asyncpg://salesflow:pgpw12@db:5432/salesflow", "pgpw12"),
        ("headers {'Authorization': 'Basic b2RhdGE6b2RhdGE='}", "b2RhdGE6b2RhdGE="),
    ],
)
def test_secrets_recognised_by_their_place_are_masked(text: str, secret: str) -> None:
    masked = redact.redact(text)
    assert secret not in masked and redact.MASK in masked


def test_ordinary_text_stays() -> None:
    text = "grant_type=refresh_token&client_id=local.1 /trade/odata/standard.odata/ TASKID=5"
    assert redact.redact(text) == text


def test_registered_values_are_masked_anywhere_also_url_encoded() -> None:
    redact.register("s3cr3t/with+chars", "tiny")
    masked = redact.redact("value s3cr3t/with+chars and s3cr3t%2Fwith%2Bchars, tiny")
    assert "s3cr3t" not in masked and "tiny" in masked  # too short to be registered


def test_client_errors_carry_no_secret() -> None:
    location = f"https://new.example/rest/1/{WEBHOOK_SECRET}/crm.deal.get?auth=zz99zz99"
    moved = PortalMoved("PORTAL_MOVED", f"answers from {location}", 302, location)
    assert WEBHOOK_SECRET not in str(moved) and "zz99zz99" not in str(moved)
    assert moved.location is not None and WEBHOOK_SECRET not in moved.location
    html = f"<a href='/rest/1/{WEBHOOK_SECRET}/x'>moved</a>".encode()
    assert WEBHOOK_SECRET not in str(error_from_response(500, html))
    onec = OneCUnavailable("1C is unreachable", url="http://u:onecpass1@1c/odata/")
    assert "onecpass1" not in str(onec.details())


def test_every_logger_through_the_root_handler_is_redacted() -> None:
    stream = io.StringIO()
    redact.register("known-secret-value")
    configure_logging("DEBUG", structured=True, stream=stream)
    try:
        logging.getLogger("httpx").info(
            'HTTP Request: POST %s "HTTP/1.1 200 OK"',
            f"http://127.0.0.1/rest/1/{WEBHOOK_SECRET}/batch",
        )
        logging.getLogger("some.library").warning(
            "token %s", "known-secret-value", extra={"url": "x?auth=extra-secret1"}
        )
        try:
            raise RuntimeError(f"failed at /rest/7/{WEBHOOK_SECRET}/x")
        except RuntimeError:
            logging.getLogger("temporalio.activity").exception("activity failed")
    finally:
        configure_logging("WARNING", structured=True)
    text = stream.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 3 and "Traceback" in lines[2]["exception"]
    for secret in (WEBHOOK_SECRET, "known-secret-value", "extra-secret1"):
        assert secret not in text


def test_one_line_retries_are_redacted_too() -> None:
    """`salesflow dev` folds retried activity failures into one line: masked after folding."""
    stream = io.StringIO()
    configure_logging("INFO", structured=True, one_line_retries=True, stream=stream)
    try:
        try:
            raise RuntimeError(f"portal moved to https://x/rest/1/{WEBHOOK_SECRET}/")
        except RuntimeError:
            logging.getLogger("temporalio.activity").warning("attempt failed", exc_info=True)
    finally:
        configure_logging("WARNING", structured=True)
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert "RuntimeError: portal moved" in line["message"] and "exception" not in line
    assert WEBHOOK_SECRET not in stream.getvalue()


def test_rotating_tokens_are_kept_among_the_latest_only() -> None:
    """An hourly refresh registers a new pair: the set of known values stays bounded."""
    redact.register("pinned-client-secret")
    for hour in range(100):
        redact.register(f"access-token-{hour:04d}", f"refresh-token-{hour:04d}", rotating=True)
    assert len(redact._rotating) <= redact.ROTATING_KEPT
    assert "access-token-0000" not in redact._known
    assert redact.MASK in redact.redact("x access-token-0099 y")
    assert "pinned-client-secret" not in redact.redact("pinned-client-secret")
