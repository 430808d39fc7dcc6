"""How a deal is matched to its 1C objects (pure functions; settings in `[onec]`).

- Direction (R-KP-2): the deal's direction field (`portal.fields.direction`) "contains
  «Россия»" — case-insensitive, ё = е, the marker being `onec.russia_marker`.
- КП number: the deal field `portal.fields.kp` holds what the manager typed. It is
  looked up in 1C first as typed (trimmed), then in the base's canonical form
  `onec.kp_number_prefix` + the digits zero-padded to `onec.kp_number_length`, so
  «КП-000123», «кп 123», «№ 123» and «000123» all find «КП-000123». 1C numbers restart
  every year, so among equal numbers the newest document wins.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"\d+")


def _fold(text: str) -> str:
    return text.casefold().replace("ё", "е")


def is_russian_direction(direction: str | None, marker: str = "Россия") -> bool:
    """True when the direction text contains the marker (case-insensitive)."""
    return bool(direction) and _fold(marker) in _fold(direction or "")


def kp_number_candidates(typed: str, prefix: str = "КП-", length: int = 9) -> list[str]:
    """The 1C numbers to try for what the deal field holds, most literal first."""
    text = " ".join(typed.split())
    candidates = [text] if text else []
    groups = _DIGITS.findall(text)
    if len(groups) == 1:
        width = max(length - len(prefix), len(groups[0].lstrip("0")) or 1)
        canonical = prefix + groups[0].lstrip("0").zfill(width)
        if canonical not in candidates:
            candidates.append(canonical)
    return candidates
