"""URLs of the standard.odata interface: percent-encoded UTF-8, spaces as %20, never `+`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from salesflow.integrations.onec.filters import Guid, literal
from salesflow.integrations.onec.parsing import normalize_guid

# Characters 1C's URL parser needs literally; everything else (space, +, &, #, %, =, ;) is
# escaped. `+` in particular must be %2B: IIS answers 404 to it and a form decoder reads a space.
_PATH_SAFE = "()'=,"
_QUERY_SAFE = "$'(),/:*@!"

Key = str | uuid.UUID | Mapping[str, Any]


def key_segment(key: Key, tz: ZoneInfo) -> str:
    """`(guid'…')` for an object, `(Ref_Key=guid'…',LineNumber=1)` for a composite key."""
    if isinstance(key, Mapping):
        parts = []
        for name, value in key.items():
            is_key = name == "Ref_Key" or name.endswith("_Key")
            if is_key and isinstance(value, str | uuid.UUID):
                value = Guid(str(value))
            parts.append(f"{name}={literal(value, tz)}")
        return "(" + ",".join(parts) + ")"
    return f"(guid'{normalize_guid(key)}')"


def entity_path(
    entity_set: str, key: Key | None = None, tz: ZoneInfo | None = None, action: str | None = None
) -> str:
    """Relative path of a set, an object, or a bound function (`Post`, `$count`)."""
    if not entity_set or "/" in entity_set or "?" in entity_set:
        raise ValueError(f"not an entity set name: {entity_set!r}")
    path = quote(entity_set, safe="")
    if key is not None:
        path += quote(key_segment(key, tz or ZoneInfo("Europe/Moscow")), safe=_PATH_SAFE)
    if action:
        path += "/" + quote(action, safe=_PATH_SAFE)
    return path


def query_string(params: Mapping[str, Any]) -> str:
    """`$format=json&$filter=…`, skipping None values; values escaped with %20 for spaces."""
    pairs = []
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        pairs.append(f"{quote(name, safe='$')}={quote(str(value), safe=_QUERY_SAFE)}")
    return "&".join(pairs)
