"""Every error leaves the API as `{"detail", "code"}` with its status."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from yourclaw_common.errors import HTTPError, error_body
from yourclaw_common.logging import get_logger

__all__ = [
    "USER_REMOVED",
    "ErrorBody",
    "InvalidPhone",
    "MethodNotAllowed",
    "UnsupportedMediaType",
    "error_responses",
    "install_error_handlers",
    "json_response",
]


log = get_logger(__name__)

# What reaches a route when PostgreSQL is down or restarting: a refused or lost
# connection (OSError, TimeoutError included), the server shutting down or not
# yet accepting (class 57), too many connections. Not a bug: a 503 to retry.
_DATABASE_DOWN: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.TooManyConnectionsError,
)
DATABASE_RETRY_AFTER_SECONDS = 5


class ErrorBody(BaseModel):
    """What every error response carries."""

    detail: str
    code: str


class InvalidPhone(HTTPError):
    """422: a phone number we cannot read; the detail says what to fix."""

    status_code = 422
    code = "INVALID_PHONE"


class MethodNotAllowed(HTTPError):
    """405, from the lean webhooks (FastAPI's routing answers its own)."""

    status_code = 405
    code = "METHOD_NOT_ALLOWED"


class UnsupportedMediaType(HTTPError):
    """415: the body is not of the type the route reads."""

    status_code = 415
    code = "UNSUPPORTED_MEDIA_TYPE"


# The 404 a route about the signed-in user's own row answers once their
# account is deleted: for `error_responses`.
USER_REMOVED = {404: "USER_NOT_FOUND: the account was removed"}


def error_responses(described: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a route's own errors: status → the codes it may carry.

    Errors every route shares (401, 413, 422, 429, 500) are added in `openapi.py`.
    """
    return {
        status: {"model": ErrorBody, "description": text}
        for status, text in described.items()
    }


def json_response(
    status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def _code_for_status(status: int) -> str:
    try:
        return HTTPStatus(status).name
    except ValueError:
        return "HTTP_ERROR"


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    return json_response(
        exc.status_code, error_body(exc.detail, exc.code), headers=exc.headers
    )


async def _on_starlette_http_exception(request: Request, exc: Exception) -> Response:
    # Routing errors (404 unknown path, 405 wrong method) and FastAPI's own raises.
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return json_response(
        exc.status_code,
        error_body(detail, _code_for_status(exc.status_code)),
        headers=exc.headers,
    )


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [f"{_location(e['loc'])}: {e['msg']}" for e in exc.errors()[:10]]
    return json_response(422, error_body("; ".join(problems), "VALIDATION_ERROR"))


async def _on_database_down(request: Request, exc: Exception) -> Response:
    log.warning(
        "gateway.database_unavailable",
        path=request.url.path,
        error=f"{type(exc).__name__}: {exc}"[:300],
    )
    return json_response(
        503,
        error_body(
            "the database is unavailable, retry shortly", "DATABASE_UNAVAILABLE"
        ),
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    # Logged once, with its traceback, by the dispatcher in app.py.
    return json_response(500, error_body("internal error", "INTERNAL_ERROR"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPError, _on_http_error)
    app.add_exception_handler(StarletteHTTPException, _on_starlette_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    for down in _DATABASE_DOWN:
        app.add_exception_handler(down, _on_database_down)
    app.add_exception_handler(Exception, _on_unexpected)
