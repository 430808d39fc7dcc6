"""PHP-bracket form encoding (`fields[TITLE]=X`, `select[]=ID`) in both directions, via qs_codec.

Encoding mirrors what PHP's `http_build_query` gives a PHP array built from the same JSON:
`True`/`False` become "1"/"0" (how PHP casts them), `None` and empty containers become "",
dates become ISO-8601 strings. Decoding mirrors `parse_str`: last duplicate wins, `a[]`
appends, values stay strings. Hostile input only ever raises `ValueError`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import unquote_plus

import qs_codec
from qs_codec import DecodeOptions, Duplicates, EncodeOptions, Format, ListFormat

MAX_PARAMS = 5000
MAX_DEPTH = 20
MAX_LIST_INDEX = 5000

_ENCODE_OPTIONS = EncodeOptions(list_format=ListFormat.INDICES, format=Format.RFC1738)


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _prepare(value: Any) -> Any:
    """Turn a Python value into nested dicts/lists of strings, as PHP would see it."""
    if isinstance(value, Mapping):
        return {str(k): _prepare(v) for k, v in value.items()} if value else ""
    if isinstance(value, list | tuple):
        return [_prepare(v) for v in value] if value else ""
    return _scalar(value)


def encode(params: Mapping[str, Any]) -> str:
    """Encode nested params as a PHP-bracket query string (`a%5Bb%5D=1&…`)."""
    prepared = _prepare(params)
    if not prepared:
        return ""
    return qs_codec.encode(prepared, _ENCODE_OPTIONS)


def to_pairs(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Flatten nested params into decoded `(key, value)` pairs: `("data[FIELDS][ID]", "42")`."""
    pairs: list[tuple[str, str]] = []
    encoded = encode(params)
    if not encoded:
        return pairs
    for chunk in encoded.split("&"):
        key, _, value = chunk.partition("=")
        pairs.append((unquote_plus(key), unquote_plus(value)))
    return pairs


def _decode_options() -> DecodeOptions:
    return DecodeOptions(
        depth=MAX_DEPTH,
        strict_depth=True,
        parameter_limit=MAX_PARAMS,
        list_limit=MAX_LIST_INDEX,
        raise_on_limit_exceeded=False,
        duplicates=Duplicates.LAST,
        allow_dots=False,
    )


def decode(text: str | bytes) -> dict[str, Any]:
    """Decode a query string or urlencoded body into nested dicts/lists of strings.

    More than MAX_PARAMS parameters or keys nested deeper than MAX_DEPTH raise ValueError (the
    only exception this raises). List indices past MAX_LIST_INDEX turn the list into a dict
    with string keys, as a PHP array would be.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise ValueError("form data must be str or bytes")
    text = text.lstrip("?")
    if not text:
        return {}
    if text.count("&") + 1 > MAX_PARAMS:
        raise ValueError(f"more than {MAX_PARAMS} parameters")
    try:
        decoded = qs_codec.decode(text, _decode_options())
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"malformed form data: {exc}") from exc
    if not isinstance(decoded, dict):
        raise ValueError("malformed form data")
    return decoded
