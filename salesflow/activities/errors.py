"""Turn integration errors into Temporal's terms: retryable ones are retried by the policy,
"your request is wrong" ones become non-retryable ApplicationErrors carrying the remote code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from temporalio.exceptions import ApplicationError

from salesflow.integrations.bitrix24.errors import Bitrix24Error


@contextmanager
def remote_errors() -> Iterator[None]:
    """A Bitrix24Error as an ApplicationError typed `Bitrix24.<code>`."""
    try:
        yield
    except Bitrix24Error as err:
        retry_after = getattr(err, "retry_after", None)
        delay = timedelta(seconds=retry_after) if retry_after and err.retryable else None
        raise ApplicationError(
            f"Bitrix24 {err.code or 'error'}: {err.description}",
            type=f"Bitrix24.{err.code or 'error'}",
            non_retryable=not err.retryable,
            next_retry_delay=delay,
        ) from err


def refuse(message: str, kind: str) -> ApplicationError:
    """A permanent problem in the data (not in the transport): a person must fix it."""
    return ApplicationError(message, type=kind, non_retryable=True)
