"""`salesflow dev`'s console: one line per retried activity, whole lines when not a TTY."""

from __future__ import annotations

import io
import logging
import sys

from rich.console import Console

from salesflow.config.log import JsonFormatter, OneLineRetries


def _record(name: str, level: int) -> logging.LogRecord:
    try:
        raise RuntimeError("Bitrix24 error: Not found")
    except RuntimeError:
        return logging.LogRecord(
            name, level, __file__, 1, "Completing %s", ("activity",), sys.exc_info()
        )


def test_a_retried_activity_is_one_line() -> None:
    record = _record("temporalio.activity", logging.WARNING)
    assert OneLineRetries().filter(record)
    line = logging.Formatter("%(message)s").format(record)
    assert line == "Completing activity: RuntimeError: Bitrix24 error: Not found"
    assert "\n" not in JsonFormatter().format(record)


def test_other_errors_keep_their_traceback() -> None:
    record = _record("salesflow.relay", logging.ERROR)
    OneLineRetries().filter(record)
    assert "Traceback" in logging.Formatter("%(message)s").format(record)


def test_the_stack_console_does_not_wrap_urls_in_a_file() -> None:
    from emulators import local_stack

    out = io.StringIO()
    url = "http://127.0.0.1:8081/rest/1/devsecret/" + "x" * 120
    Console(file=out, soft_wrap=local_stack.console.soft_wrap).print(f"Bitrix24 webhook:  {url}")
    assert url in out.getvalue()
