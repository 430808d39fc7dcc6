"""One definition of the Bitrix24 events the pipeline uses and of the pipeline check, shared by
the relay (which forwards) and the workflow (which reads)."""

from __future__ import annotations

from salesflow.relay import app, forwarder, observations
from salesflow.workflows import names


def test_the_relay_uses_the_workflows_event_names() -> None:
    assert observations.DEAL_EVENTS is names.DEAL_EVENTS
    assert observations.TASK_EVENTS is names.TASK_EVENTS
    assert forwarder.DEAL_EVENTS is names.DEAL_EVENTS
    assert app.UPDATE_EVENTS is names.UPDATE_EVENTS
    assert names.UPDATE_EVENTS <= names.DEAL_EVENTS | names.TASK_EVENTS


def test_a_deal_is_in_the_pipeline_only_in_the_configured_category() -> None:
    assert forwarder.in_pipeline is names.in_pipeline
    assert names.in_pipeline(1, 1)
    assert not names.in_pipeline(2, 1)
    assert not names.in_pipeline(None, 0)  # CATEGORY_ID unreadable: not ours
