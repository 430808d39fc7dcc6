"""The workflows call activities through stubs (salesflow/workflows/activity_stubs.py); the
worker registers the real ones. Both must agree on every Temporal name and signature."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

import pytest
from temporalio import activity

from salesflow.activities.bitrix24 import Bitrix24Activities
from salesflow.activities.board import BoardActivities
from salesflow.activities.mail import MailActivities
from salesflow.activities.onec import OneCActivities
from salesflow.workflows import activity_stubs, stage_batch

ACTIVITY_CLASSES = (Bitrix24Activities, BoardActivities, MailActivities, OneCActivities)


def _name(fn: Callable[..., Any]) -> str | None:
    definition = activity._Definition.from_callable(fn)
    return definition.name if definition else None


def _real() -> dict[str, Callable[..., Any]]:
    found: dict[str, Callable[..., Any]] = {}
    for cls in ACTIVITY_CLASSES:
        for _, member in inspect.getmembers(cls, inspect.isfunction):
            name = _name(member)
            if name is not None:
                assert name not in found, f"activity {name} defined twice"
                found[name] = member
    return found


def _signature(fn: Callable[..., Any], method: bool) -> tuple[list[tuple[str, Any]], Any]:
    hints = typing.get_type_hints(fn)
    params = list(inspect.signature(fn).parameters)[1 if method else 0 :]
    return [(p, hints.get(p)) for p in params], hints.get("return")


ALL_STUBS = (*activity_stubs.STUBS, stage_batch.leave_stage)  # issue 16: its own module
STUBS = {_name(stub): stub for stub in ALL_STUBS}


def test_every_real_activity_has_a_stub_and_every_stub_a_real_activity() -> None:
    assert set(STUBS) == set(_real())
    assert len(STUBS) == len(ALL_STUBS)


@pytest.mark.parametrize("name", sorted(_real()))
def test_stub_signature_is_the_real_activity_signature(name: str) -> None:
    stub, real = STUBS[name], _real()[name]
    assert stub.__name__ == name  # the summary of a call is the stub's Python name
    stub_params, stub_result = _signature(stub, method=False)
    real_params, real_result = _signature(real, method=True)
    assert [t for _, t in stub_params] == [t for _, t in real_params], name
    assert stub_result == real_result, name


def test_every_module_level_stub_is_listed() -> None:
    defined = {
        n
        for n, member in vars(activity_stubs).items()
        if inspect.isfunction(member) and _name(member) is not None
    }
    assert defined == {stub.__name__ for stub in activity_stubs.STUBS}


@pytest.mark.parametrize("cls", ACTIVITY_CLASSES, ids=[c.__name__ for c in ACTIVITY_CLASSES])
def test_every_real_activity_is_registered_by_its_class(cls: type) -> None:
    """The worker registers `cls(...).all()`: an activity left out of it is never run."""
    instance = object.__new__(cls)  # all() only lists bound methods
    registered = {_name(fn) for fn in instance.all()}
    defined = {
        _name(member)
        for _, member in inspect.getmembers(cls, inspect.isfunction)
        if _name(member) is not None
    }
    assert registered == defined
