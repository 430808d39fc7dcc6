"""PHP-bracket form encoding (`fields[TITLE]=X`, `select[]=ID`) in both directions.

Encoding (via qs_codec) mirrors what PHP's `http_build_query` gives a PHP array built from
the same JSON: `True`/`False` become "1"/"0" (how PHP casts them), `None` and empty
containers become "", dates become ISO-8601 strings. Decoding mirrors `parse_str`: last
duplicate wins, `a[]` appends, values stay strings, keys keep their order (so
`filter[0][logic]=OR&filter[0][0][x]=1` nests as PHP nests it). Hostile input only ever
raises `ValueError`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import unquote_plus

import qs_codec
from qs_codec import EncodeOptions, Format, ListFormat

MAX_PARAMS = 5000
MAX_DEPTH = 20
MAX_KEY_LENGTH = 1000  # characters of a decoded key (PHP has no such limit; no real key nears it)
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


def _segments(name: str, max_depth: int = MAX_DEPTH) -> list[str] | None:
    """`a[b][]` → ["a", "b", ""], as parse_str reads a key (None: PHP drops the pair).

    Linear in the key's length; stops (ValueError) once the key is deeper than `max_depth`.
    """
    bracket = name.find("[")
    if bracket <= 0:
        return [name] if name and bracket != 0 else None
    segments = [name[:bracket]]
    pos = bracket
    while pos < len(name) and name[pos] == "[":
        close = name.find("]", pos)
        if close < 0:  # an unclosed bracket: PHP makes it part of the last name
            segments[-1] += "_" + name[pos + 1 :]
            break
        if len(segments) > max_depth:
            raise ValueError(f"keys nested deeper than {max_depth} levels")
        segments.append(name[pos + 1 : close])
        pos = close + 1
    return segments


def _insert(
    target: dict[str, Any],
    segments: list[str],
    value: str,
    next_index: dict[int, tuple[dict[str, Any], int]],
) -> None:
    """Put `value` at `segments`; `next_index` keeps each dict (alive) with its next `[]` index."""
    node = target
    for depth, segment in enumerate(segments):
        last = depth == len(segments) - 1
        if segment == "":  # `a[]`: append after the largest integer key
            segment = str(next_index.get(id(node), (node, 0))[1])
        if segment.isascii() and segment.isdigit() and len(segment) <= 18:
            following = max(next_index.get(id(node), (node, 0))[1], int(segment) + 1)
            next_index[id(node)] = (node, following)
        if last:
            node[segment] = value
            return
        child = node.get(segment)
        if not isinstance(child, dict):
            child = {}
            node[segment] = child
        node = child


def _php_arrays(value: Any) -> Any:
    """Nested arrays whose keys are 0..n-1 in order become lists (json_encode does the same)."""
    if not isinstance(value, dict):
        return value
    converted = {k: _php_arrays(v) for k, v in value.items()}
    keys = list(converted)
    if keys and keys == [str(i) for i in range(len(keys))] and len(keys) <= MAX_LIST_INDEX:
        return list(converted.values())
    return converted


def decode(
    text: str | bytes,
    *,
    max_params: int = MAX_PARAMS,
    max_depth: int = MAX_DEPTH,
    max_key_length: int = MAX_KEY_LENGTH,
) -> dict[str, Any]:
    """Decode a query string or urlencoded body as PHP's parse_str does.

    Values stay strings; the last duplicate wins; `a[]` appends; keys keep their order.
    More than `max_params` parameters, a key nested deeper than `max_depth` or longer than
    `max_key_length` characters raise ValueError (the only exception this raises). The work is
    linear in the input's length.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise ValueError("form data must be str or bytes")
    text = text.lstrip("?")
    if not text:
        return {}
    pieces = [piece for piece in text.split("&") if piece]
    if len(pieces) > max_params:
        raise ValueError(f"more than {max_params} parameters")
    decoded: dict[str, Any] = {}
    next_index: dict[int, tuple[dict[str, Any], int]] = {}
    for piece in pieces:
        raw_name, _, raw_value = piece.partition("=")
        if len(raw_name) > 3 * max_key_length:  # longer than any %XX-encoding of a legal key
            raise ValueError(f"a key longer than {max_key_length} characters")
        name = unquote_plus(raw_name, errors="replace")
        if len(name) > max_key_length:
            raise ValueError(f"a key longer than {max_key_length} characters")
        segments = _segments(name, max_depth)
        if segments is None:
            continue
        if len(segments) - 1 > max_depth:
            raise ValueError(f"keys nested deeper than {max_depth} levels")
        _insert(decoded, segments, unquote_plus(raw_value, errors="replace"), next_index)
    return {k: _php_arrays(v) for k, v in decoded.items()}
