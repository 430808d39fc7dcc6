"""Bitrix24 REST: the async client, its typed errors, and (in `emulator`) a local portal."""

from salesflow.integrations.bitrix24.client import BatchResult, Bitrix24Client, Bitrix24Response
from salesflow.integrations.bitrix24.errors import (
    AccessDenied,
    AuthError,
    BadRequest,
    Bitrix24Error,
    MethodNotFound,
    NotFound,
    OperationTimeLimit,
    PortalMoved,
    QueryLimitExceeded,
    ServerError,
    error_from_response,
)

__all__ = [
    "AccessDenied",
    "AuthError",
    "BadRequest",
    "BatchResult",
    "Bitrix24Client",
    "Bitrix24Error",
    "Bitrix24Response",
    "MethodNotFound",
    "NotFound",
    "OperationTimeLimit",
    "PortalMoved",
    "QueryLimitExceeded",
    "ServerError",
    "error_from_response",
]
