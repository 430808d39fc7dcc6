"""Structured logs: one JSON object a line, with the deal ID on every line that concerns a deal.

Temporal's workflow and activity loggers attach the workflow ID (`deal-<id>`, or a child's
`deal-<id>-…`) to their records; the relay and activities may pass `deal_id` in `extra`.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any, TextIO

from salesflow.config.redact import RedactingFilter, install

_DEAL = re.compile(r"^deal-(\d+)")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def deal_id_of(record: logging.LogRecord) -> int | None:
    deal_id = getattr(record, "deal_id", None)
    if isinstance(deal_id, int):
        return deal_id
    for key in ("temporal_workflow", "temporal_activity"):
        info = getattr(record, key, None)
        if isinstance(info, dict):
            match = _DEAL.match(str(info.get("workflow_id", "")))
            if match:
                return int(match.group(1))
    return None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        deal_id = deal_id_of(record)
        if deal_id is not None:
            entry["deal_id"] = deal_id
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry and not key.startswith("_"):
                entry[key] = value
        if record.exc_text:  # the traceback as the redacting filter left it
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class OneLineRetries(logging.Filter):
    """An activity attempt that failed (and will be retried) as one line: the exception's type
    and message instead of its traceback. Errors that are not retries keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.exc_info
            and record.levelno <= logging.WARNING
            and record.name.startswith("temporalio")
        ):
            error = record.exc_info[1]
            if error is not None:
                record.msg = f"{record.getMessage()}: {type(error).__name__}: {error}"
                record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def configure_logging(
    level: str = "INFO",
    structured: bool = True,
    one_line_retries: bool = False,
    stream: TextIO | None = None,
) -> None:
    """The root handler of every entry point (worker, relay, `salesflow dev`): JSON lines (or
    plain), secrets masked on every record whichever logger made it (`config.redact`)."""
    handler = logging.StreamHandler(stream)
    if one_line_retries:
        handler.addFilter(OneLineRetries())
    handler.addFilter(RedactingFilter())  # last: it sees the text the other filters made
    handler.setFormatter(
        JsonFormatter()
        if structured
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    install()
