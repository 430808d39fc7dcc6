"""The one place that takes secrets out of text: log records, exception messages, stored reasons
and HTTP answers all go through `redact`.

Two kinds of secret are masked (as `***`):
- values the process holds, registered by whoever holds them (`register`): the webhook secret
  and the application's tokens (the Bitrix24 client, the token holder on every refresh), the
  OAuth client secret, the 1C password and its Basic header, the SMTP password;
- secrets recognised by their place, known or not: the webhook path segment
  `/rest/<user>/<secret>/`, values of `auth`, `*token*`, `*secret*`, `*password*` keys in query
  strings, forms, JSON and reprs (`auth=…`, `auth[application_token]=…`, `"refresh_token": "…"`),
  the password of a URL's userinfo (`postgresql://user:pw@host`) and Authorization values.

Why not a library: the detectors on PyPI (detect-secrets, scrubadub and the like) look for
high-entropy strings or personal data; neither finds a webhook secret by its path position nor
a short password held in the settings, and a pattern set this small is shorter than their
configuration. Known values shorter than 6 characters are not registered (they would mask
ordinary words, e.g. the dev 1C password `odata` in every OData URL); the patterns still
cover them where they appear in a recognisable place.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_KNOWN = 6

ROTATING_KEPT = 24  # a few token pairs, each in its plain and URL-encoded forms

_lock = threading.Lock()
_pinned: set[str] = set()
_rotating: OrderedDict[str, None] = OrderedDict()
_known: frozenset[str] = frozenset()
_known_sorted: tuple[str, ...] = ()

_KEY = r"[\w\[\].%-]*(?:auth|token|secret|passw(?:or)?d)[\w\[\].%-]*"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Bitrix24 incoming webhook: /rest/<user id>/<secret>/
    (re.compile(r"(/rest/\d+/)[^/\s?#\"'<>]+"), rf"\1{MASK}"),
    # key=value in query strings and forms (also percent-encoded brackets)
    (re.compile(rf"(?i)((?<![\w\[\].%-]){_KEY}=)[^&\s\"'#,;)<>]+"), rf"\1{MASK}"),
    # "key": "value" in JSON and 'key': 'value' in reprs
    (re.compile(rf"(?i)([\"']{_KEY}[\"']\s*:\s*[\"'])[^\"']*"), rf"\1{MASK}"),
    # scheme://user:password@host
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+(@)"), rf"\1{MASK}\2"),
    # Authorization: Basic …/Bearer …
    (re.compile(r"(?i)(\b(?:basic|bearer)\s+)[A-Za-z0-9+/=._~-]{8,}"), rf"\1{MASK}"),
)


def register(*secrets: str | None, rotating: bool = False) -> None:
    """Mask these values wherever they appear from now on (with their URL-encoded forms).

    For the process's own secrets only (settings, the application's token pair), never for
    per-request values (a user's token: the patterns mask it). `rotating` secrets (tokens that
    are replaced every hour) are kept among the last `ROTATING_KEPT` only."""
    global _known, _known_sorted
    fresh: set[str] = set()
    for secret in secrets:
        if secret and len(secret) >= MIN_KNOWN:
            fresh.update({secret, quote(secret, safe=""), quote_plus(secret)})
    with _lock:
        if rotating:
            for value in fresh:
                _rotating.pop(value, None)
                _rotating[value] = None
            while len(_rotating) > ROTATING_KEPT:
                _rotating.popitem(last=False)
        elif fresh <= _pinned:
            return
        else:
            _pinned.update(fresh)
        _known = frozenset(_pinned | _rotating.keys())
        _known_sorted = tuple(sorted(_known, key=len, reverse=True))


def register_basic(user: str, password: str) -> None:
    """An HTTP Basic credential: the password and the header's base64 value."""
    register(password, base64.b64encode(f"{user}:{password}".encode()).decode("ascii"))


def webhook_secret(url: str) -> str | None:
    """The secret segment of a Bitrix24 webhook URL `…/rest/<user>/<secret>/`."""
    match = re.search(r"/rest/\d+/([^/?#]+)", url)
    return match.group(1) if match else None


def forget_all() -> None:
    """Tests only: start from no known secrets."""
    global _known, _known_sorted
    with _lock:
        _pinned.clear()
        _rotating.clear()
        _known, _known_sorted = frozenset(), ()


def redact(text: str) -> str:
    """`text` with every known and every recognisable secret masked."""
    if not text:
        return text
    for secret in _known_sorted:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any) -> Any:
    """Strings redacted, containers walked; anything else as it is."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(redact_value(item) for item in value)
    return value


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_FORMATTER = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message, its exception text and its `extra` values.

    On a handler it sees every record the handler writes, whichever logger made it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and not key.startswith("_"):
                setattr(record, key, redact_value(value))
        return True


def install(loggers: Iterable[str] = ("", "httpx", "httpcore")) -> None:
    """The filter on these loggers and on every handler of the root logger."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
