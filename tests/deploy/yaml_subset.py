"""A reader for the YAML the deploy files use, for when PyYAML is not installed.

Block mappings and sequences (`- item`, `- key: value` items), plain / 'single' / "double"
quoted scalars, one-line flow sequences (`["CMD", "x"]`), `{}` / `[]`, comments, and
PyYAML's resolution of true/false/null/ints/floats. Anything else (anchors, tags, block
scalars, multi-line flow, several documents) is refused with the line number, so the deploy
files stay inside what this reader — and any YAML parser — read the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_INT = re.compile(r"^[-+]?(0|[1-9][0-9_]*)$")
_FLOAT = re.compile(r"^[-+]?([0-9][0-9_]*)?\.[0-9_]+([eE][-+]?[0-9]+)?$")
_KEY = re.compile(r"^(?P<key>[^\s'\"#\[\]{}&*!|>%@`][^:#]*?|'[^']*'|\"[^\"]*\"):(\s+|$)")


class YamlSubsetError(ValueError):
    pass


@dataclass
class _Line:
    number: int
    indent: int
    text: str


def loads(source: str) -> Any:
    lines = list(_lines(source))
    if not lines:
        return None
    value, index = _block(lines, 0, lines[0].indent)
    if index != len(lines):
        raise YamlSubsetError(f"line {lines[index].number}: unexpected indentation")
    return value


def _lines(source: str) -> Any:
    for number, raw in enumerate(source.splitlines(), start=1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise YamlSubsetError(f"line {number}: tab in indentation")
        text = _strip_comment(raw).rstrip()
        if not text.strip():
            continue
        if text.strip() in ("---", "..."):
            raise YamlSubsetError(f"line {number}: document markers are not supported")
        yield _Line(number, len(text) - len(text.lstrip(" ")), text.strip())


def _strip_comment(raw: str) -> str:
    quote = ""
    for i, char in enumerate(raw):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"" and (i == 0 or raw[i - 1] in " [,:-"):
            quote = char
        elif char == "#" and (i == 0 or raw[i - 1] == " "):
            return raw[:i]
    return raw


def _block(lines: list[_Line], index: int, indent: int) -> tuple[Any, int]:
    if lines[index].text.startswith("- ") or lines[index].text == "-":
        return _sequence(lines, index, indent)
    return _mapping(lines, index, indent)


def _sequence(lines: list[_Line], index: int, indent: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    while index < len(lines) and lines[index].indent == indent:
        line = lines[index]
        if not (line.text.startswith("- ") or line.text == "-"):
            raise YamlSubsetError(f"line {line.number}: expected a '- ' item")
        rest = line.text[1:].lstrip()
        if not rest:
            if index + 1 < len(lines) and lines[index + 1].indent > indent:
                value, index = _block(lines, index + 1, lines[index + 1].indent)
            else:
                value, index = None, index + 1
            items.append(value)
            continue
        if _KEY.match(rest) and not rest.startswith(("[", "{")):
            # A mapping item: its first key sits after "- ", the others align with it.
            inner = indent + (len(line.text) - len(rest))
            lines[index] = _Line(line.number, inner, rest)
            value, index = _mapping(lines, index, inner)
        else:
            value, index = _scalar(rest, line.number), index + 1
        items.append(value)
    return items, index


def _mapping(lines: list[_Line], index: int, indent: int) -> tuple[dict[str, Any], int]:
    result: dict[str, Any] = {}
    while index < len(lines) and lines[index].indent == indent:
        line = lines[index]
        match = _KEY.match(line.text)
        if match is None:
            raise YamlSubsetError(f"line {line.number}: expected 'key: value'")
        key = _unquote(match.group("key").strip(), line.number)
        if key in result:
            raise YamlSubsetError(f"line {line.number}: duplicate key {key!r}")
        rest = line.text[match.end() :].strip()
        index += 1
        if rest:
            result[key] = _scalar(rest, line.number)
        elif index < len(lines) and lines[index].indent > indent:
            result[key], index = _block(lines, index, lines[index].indent)
        elif (
            index < len(lines)
            and lines[index].indent == indent
            and (lines[index].text.startswith("- "))
        ):
            result[key], index = _sequence(lines, index, indent)
        else:
            result[key] = None
    if index < len(lines) and lines[index].indent > indent:
        raise YamlSubsetError(f"line {lines[index].number}: unexpected indentation")
    return result, index


def _scalar(text: str, number: int) -> Any:
    if text[0] in "&*!|>%@`{" and text != "{}":
        raise YamlSubsetError(f"line {number}: {text[0]!r} is not supported")
    if text == "{}":
        return {}
    if text.startswith("["):
        return _flow_sequence(text, number)
    if text[0] in "'\"":
        return _unquote(text, number)
    return _resolve(text)


def _flow_sequence(text: str, number: int) -> list[Any]:
    if not text.endswith("]"):
        raise YamlSubsetError(f"line {number}: a flow sequence must close on its line")
    body = text[1:-1].strip()
    items: list[Any] = []
    while body:
        if body[0] in "'\"":
            end = _closing_quote(body, number)
            items.append(_unquote(body[: end + 1], number))
            body = body[end + 1 :].strip()
        else:
            part, _, _ = body.partition(",")
            if part.strip()[:1] in ("[", "{"):
                raise YamlSubsetError(f"line {number}: nested flow collections")
            items.append(_resolve(part.strip()))
            body = body[len(part) :]
        if body.startswith(","):
            body = body[1:].strip()
        elif body:
            raise YamlSubsetError(f"line {number}: expected ',' in a flow sequence")
    return items


def _closing_quote(text: str, number: int) -> int:
    quote, i = text[0], 1
    while i < len(text):
        if quote == '"' and text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            if quote == "'" and text[i + 1 : i + 2] == "'":
                i += 2
                continue
            return i
        i += 1
    raise YamlSubsetError(f"line {number}: unclosed quote")


def _unquote(text: str, number: int) -> str:
    if not text or text[0] not in "'\"":
        return text
    if _closing_quote(text, number) != len(text) - 1:
        raise YamlSubsetError(f"line {number}: text after a quoted scalar")
    inner = text[1:-1]
    if text[0] == "'":
        return inner.replace("''", "'")
    escapes = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "/": "/"}
    out, i = [], 0
    while i < len(inner):
        if inner[i] == "\\":
            if inner[i + 1 : i + 2] not in escapes:
                raise YamlSubsetError(f"line {number}: unsupported escape in {text}")
            out.append(escapes[inner[i + 1]])
            i += 2
        else:
            out.append(inner[i])
            i += 1
    return "".join(out)


def _resolve(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "~"):
        return None
    if _INT.match(text):
        return int(text.replace("_", ""))
    if _FLOAT.match(text):
        return float(text.replace("_", ""))
    return text
