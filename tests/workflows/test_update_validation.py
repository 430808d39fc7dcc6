"""Every update's validator against malformed input (issue: bad input): a clear refusal, and the
deal's state is unchanged. Property-based (hypothesis) on one deal parked at LAUNCH."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from salesflow.workflows.deal import DealWorkflow
from tests.workflows.conftest import new_deal
from tests.workflows.doubles import FakePortal
from tests.workflows.pipeline import drive_to, until

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
bad_dates = st.sampled_from(["0000-00-00", "2026-13-40", "вчера", "", "1900-01-01", "9999-12-31"])
bad_amounts = st.sampled_from([-1, 0, -0.01, 1e15, float("inf"), "много", None])

BAD_INPUTS: dict[str, st.SearchStrategy[Any]] = {
    "accept_lead": st.fixed_dictionaries({"manager_id": junk}),
    "reject_lead": st.fixed_dictionaries({"reason": st.sampled_from(["", "   ", None, 5])}),
    "kp_feedback": st.fixed_dictionaries({"agreed": junk}),
    "approval_decision": st.fixed_dictionaries(
        {"approved": st.just(False), "comment": st.just("")}
    ),
    "record_payment": st.fixed_dictionaries(
        {"amount": bad_amounts, "paid_on": bad_dates, "source": st.sampled_from(["bank", "1c"])}
    ),
    "set_payment_schedule": st.fixed_dictionaries(
        {
            "tranches": st.lists(
                st.fixed_dictionaries({"percent": bad_amounts, "due": bad_dates}), max_size=4
            )
        }
    ),
    "request_tasks": st.fixed_dictionaries({"engineers": st.just(False), "unknown": junk}),
    "start_process": st.fixed_dictionaries({"kind": st.text(max_size=10)}),
    "documents_signed": st.fixed_dictionaries({"kind": st.sampled_from(["act", "upd", "чек"])}),
    "move_stage": st.fixed_dictionaries({"to": st.sampled_from(["LAUNCH", "LOSE", "MOON", ""])}),
    "lose_deal": st.fixed_dictionaries(
        {"reason": st.sampled_from(["OTHER", "BORED", ""]), "comment": st.sampled_from(["", None])}
    ),
}


@pytest.fixture
async def parked(run_deal):
    portal = FakePortal(new_deal(3001))
    async with run_deal(portal) as handle:
        await drive_to(handle, portal, "LAUNCH")
        await until(handle, lambda v: bool(v.open_tasks))  # the stage's entry actions are done
        yield handle


def examples(strategy: st.SearchStrategy[Any], count: int = 12) -> list[Any]:
    """Inputs drawn by hypothesis (derandomized, so a failure reproduces)."""
    drawn: list[Any] = []

    @settings(max_examples=count, database=None, derandomize=True, deadline=None)
    @given(strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn


@pytest.mark.parametrize("update", sorted(BAD_INPUTS))
async def test_malformed_update_is_refused_and_changes_nothing(parked, update: str) -> None:
    before = await parked.query(DealWorkflow.state)
    for payload in examples(BAD_INPUTS[update]):
        with pytest.raises((WorkflowUpdateFailedError, RPCError)) as err:
            await parked.execute_update(update, payload)
        cause = err.value.__cause__ or err.value
        assert str(getattr(cause, "message", cause)).strip(), payload
        assert await parked.query(DealWorkflow.state) == before, payload


async def test_the_same_deal_accepts_a_well_formed_update(parked) -> None:
    """The control: the refusals above are about the input, not a deal that refuses all."""
    view = await parked.execute_update(
        "record_payment", {"amount": 1000, "paid_on": date.today().isoformat(), "source": "manual"}
    )
    assert view["accepted"] is True  # the reply is an UpdateAck (issue 16)
    state = await parked.query("state")
    assert state["payments"][-1]["amount"] == 1000
