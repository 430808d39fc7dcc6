"""Structured logs carry the deal ID on every line about a deal."""

from __future__ import annotations

import json
import logging

from salesflow.config.log import JsonFormatter


def _line(**extra: object) -> dict:
    record = logging.LogRecord("salesflow.test", logging.INFO, __file__, 1, "сделка %s", (7,), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return json.loads(JsonFormatter().format(record))


def test_deal_id_from_the_workflow_of_an_activity_or_workflow_record() -> None:
    assert (
        _line(temporal_activity={"workflow_id": "deal-42", "activity_type": "x"})["deal_id"] == 42
    )
    assert _line(temporal_workflow={"workflow_id": "deal-42-approval-1"})["deal_id"] == 42
    assert _line(deal_id=9)["deal_id"] == 9
    line = _line()
    assert "deal_id" not in line and line["message"] == "сделка 7" and line["level"] == "INFO"
