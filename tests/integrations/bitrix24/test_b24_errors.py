"""error_from_response: the `error` string decides first, the HTTP status second."""

from __future__ import annotations

import pickle

import pytest

from salesflow.integrations.bitrix24.errors import (
    AccessDenied,
    AuthError,
    BadRequest,
    Bitrix24Error,
    MethodNotFound,
    NotFound,
    OperationTimeLimit,
    QueryLimitExceeded,
    ServerError,
    error_from_response,
)


def _body(code: object, description: str = "") -> dict[str, object]:
    return {"error": code, "error_description": description}


@pytest.mark.parametrize(
    ("status", "body", "kind", "retryable"),
    [
        (503, _body("QUERY_LIMIT_EXCEEDED", "Too many requests"), QueryLimitExceeded, True),
        (
            503,
            _body("OVERLOAD_LIMIT", "REST API is blocked due to overload."),
            QueryLimitExceeded,
            True,
        ),
        (429, _body("OPERATION_TIME_LIMIT", "Method is blocked"), OperationTimeLimit, True),
        (500, _body("INTERNAL_SERVER_ERROR", "Internal server error"), ServerError, True),
        (500, _body("ERROR_CORE", "SQL query error!"), ServerError, True),
        (404, _body("ERROR_METHOD_NOT_FOUND", "Method not found!"), MethodNotFound, False),
        (401, _body("INVALID_CREDENTIALS", "Invalid request credentials"), AuthError, False),
        (403, _body("INVALID_CREDENTIALS", "Invalid request credentials"), AuthError, False),
        (401, _body("NO_AUTH_FOUND", "Wrong authorization data"), AuthError, False),
        (401, _body("expired_token", "The access token provided has expired"), AuthError, False),
        (401, _body("invalid_token", "Unable to get application by token"), AuthError, False),
        (403, _body("insufficient_scope", "higher privileges"), AuthError, False),
        (403, _body("ACCESS_DENIED", "Access denied!"), AccessDenied, False),
        (400, _body("", "Not found"), NotFound, False),
        (400, _body("", "ID is not defined or invalid."), BadRequest, False),
        (400, _body("", "Access denied."), AccessDenied, False),
        (400, _body("0", "Action on the task is not allowed"), NotFound, False),
        (400, _body("0", "wrong task id"), BadRequest, False),
        (400, _body(100, "Could not find value for parameter {fields}"), BadRequest, False),
        (400, _body("ERROR_CORE", "Task title not specified<br>"), BadRequest, False),
        (400, _body("NOT_FOUND", "Element not found"), NotFound, False),
        (400, _body("OWNER_NOT_FOUND", "Owner element not found"), NotFound, False),
        (400, _body("USER_ID_EMPTY", "User ID can't be empty"), BadRequest, False),
        (400, _body("ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded"), BadRequest, False),
        (418, _body("SOMETHING_NEW", "?"), BadRequest, False),
        (502, _body("SOMETHING_NEW", "?"), ServerError, True),
    ],
)
def test_error_codes_map_to_types(
    status: int, body: dict[str, object], kind: type[Bitrix24Error], retryable: bool
) -> None:
    error = error_from_response(status, body)
    assert type(error) is kind
    assert error.retryable is retryable
    assert error.status == status
    assert error.code == str(body["error"])


def test_error_core_br_tail_is_stripped() -> None:
    error = error_from_response(400, b'{"error":"ERROR_CORE","error_description":"No title<br>"}')
    assert error.description == "No title"
    assert "No title" in str(error)


@pytest.mark.parametrize("status", [500, 502, 503, 200])
def test_html_bodies_are_retryable_server_errors(status: int) -> None:
    error = error_from_response(status, "<html><body>503 Service Unavailable</body></html>")
    assert isinstance(error, ServerError)
    assert error.retryable
    assert "503 Service Unavailable" in error.description


def test_non_json_on_4xx_falls_back_to_status() -> None:
    assert isinstance(error_from_response(403, "<html>Forbidden</html>"), AccessDenied)
    assert isinstance(error_from_response(401, "nope"), AuthError)


def test_operation_time_limit_keeps_reset_at() -> None:
    body = {
        "error": "OPERATION_TIME_LIMIT",
        "error_description": "",
        "time": {"operating_reset_at": 1757425271},
    }
    error = error_from_response(429, body)
    assert isinstance(error, OperationTimeLimit)
    assert error.reset_at == 1757425271


def test_errors_pickle_round_trip() -> None:
    error = error_from_response(400, _body("", "Not found"))
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is NotFound and again.description == "Not found"
