"""How the КП activity matches a deal to 1C (config.matching), table-driven (R-KP-2)."""

from __future__ import annotations

import pytest

from salesflow.config.matching import is_russian_direction, kp_number_candidates


@pytest.mark.parametrize(
    ("direction", "russian"),
    [
        ("Россия", True),
        ("россия, Москва", True),
        ("РОССИЯ / экспорт", True),
        ("Центральная Россия", True),
        ("Казахстан", False),
        ("", False),
        (None, False),
        ("Russia", False),
    ],
)
def test_direction_contains_russia(direction: str | None, russian: bool) -> None:
    assert is_russian_direction(direction) is russian


@pytest.mark.parametrize(
    ("typed", "candidates"),
    [
        ("КП-000123", ["КП-000123"]),
        ("  КП-000123 ", ["КП-000123"]),
        ("кп 123", ["кп 123", "КП-000123"]),
        ("№ 000123", ["№ 000123", "КП-000123"]),
        ("123", ["123", "КП-000123"]),
        ("КП-1234567", ["КП-1234567"]),
        ("КП-000123 от 03.03.2025", ["КП-000123 от 03.03.2025"]),
        ("", []),
    ],
)
def test_kp_number_candidates(typed: str, candidates: list[str]) -> None:
    assert kp_number_candidates(typed) == candidates
