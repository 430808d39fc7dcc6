"""The PHP-form decoder stays linear on the hostile shapes of issue 11 (line counts, not time)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

from salesflow.integrations.bitrix24 import php_form


def _lines_run(call: Callable[[], Any]) -> int:
    """How many lines of php_form.py run during `call` (exceptions swallowed)."""
    count = 0
    target = php_form.__file__

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if frame.f_code.co_filename != target:
            return None
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        call()
    except ValueError:
        pass
    finally:
        sys.settrace(None)
    return count


@pytest.mark.parametrize("n", [1000, 2000])
def test_append_keys_decode_is_linear(n: int) -> None:
    """`x[]=0&x[]=1…`: work per parameter is bounded (was a rescan of every key: quadratic)."""
    body = "&".join(f"x[]={i}" for i in range(n))
    assert php_form.decode(body)["x"][-1] == str(n - 1)
    assert _lines_run(lambda: php_form.decode(body)) < 100 * n


@pytest.mark.parametrize("repeats", [1000, 333_000])
def test_deep_key_refused_after_max_depth(repeats: int) -> None:
    """`data` + `[a]`×N is refused after MAX_DEPTH segments (or its length), whatever N."""
    body = "data" + "[a]" * repeats + "=1"
    with pytest.raises(ValueError, match=r"deeper|longer"):
        php_form.decode(body)
    assert _lines_run(lambda: php_form.decode(body)) < 40 * php_form.MAX_DEPTH


def test_explicit_and_appended_indices_mix_as_php() -> None:
    assert php_form.decode("a[5]=x&a[]=y") == {"a": {"5": "x", "6": "y"}}
    assert php_form.decode("a[]=x&a[]=y&a[0]=z") == {"a": ["z", "y"]}
    assert php_form.decode("a[b]=1&a=2&a[]=3") == {"a": ["3"]}


def test_the_limits_are_the_callers() -> None:
    """A caller (the relay) can ask for tighter limits than the defaults."""
    assert php_form.decode("a[b][c]=1", max_depth=2) == {"a": {"b": {"c": "1"}}}
    with pytest.raises(ValueError, match="deeper than 1"):
        php_form.decode("a[b][c]=1", max_depth=1)
    with pytest.raises(ValueError, match="more than 3 parameters"):
        php_form.decode("a=1&b=2&c=3&d=4", max_params=3)
    with pytest.raises(ValueError, match="longer than 8"):
        php_form.decode("abcdefghi=1", max_key_length=8)
    with pytest.raises(ValueError, match="longer than 8"):  # refused before it is unquoted
        php_form.decode("%61" * 30 + "=1", max_key_length=8)
    assert php_form.decode("%61%62=1", max_key_length=2) == {"ab": "1"}


@pytest.mark.parametrize("length", [10_000, 1_000_000])
def test_a_long_key_is_refused_before_it_is_read(length: int) -> None:
    body = "k" * length + "=1"
    with pytest.raises(ValueError, match="longer"):
        php_form.decode(body)
    assert _lines_run(lambda: php_form.decode(body)) < 200
