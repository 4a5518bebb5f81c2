"""Error types of YourClaw.

Our exception hierarchy:

* YourClawError
  + PermanentError   -- the runner terms the message: bad input, unknown entity
  + TransientError   -- the runner naks with backoff: timeouts, 5xx, contention
  + HTTPError        -- rendered by gateway-api as {"detail", "code"} with status
    - BadRequest 400 · Unauthorized 401 · PaymentRequired 402 · Forbidden 403
    - NotFound 404 · Conflict 409 · PayloadTooLarge 413 · TooManyRequests 429
    - ServiceUnavailable 503
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "HTTPError",
    "NotFound",
    "PayloadTooLarge",
    "PaymentRequired",
    "PermanentError",
    "ServiceUnavailable",
    "TooManyRequests",
    "TransientError",
    "Unauthorized",
    "YourClawError",
    "error_body",
]


class YourClawError(Exception):
    """Base of every error raised on purpose by YourClaw code."""

    code: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(self, detail: str, *, code: str | None = None, **context: Any):
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code  # type: ignore[misc]
        self.context = context


class PermanentError(YourClawError):
    """Retrying cannot help: the message is terminated, not redelivered."""

    code = "PERMANENT_ERROR"


class TransientError(YourClawError):
    """Retrying later may help: the message is redelivered with backoff."""

    code = "TRANSIENT_ERROR"


class HTTPError(YourClawError):
    """An error with an HTTP status, rendered as `{"detail", "code"}`."""

    status_code: ClassVar[int] = 500

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        **context: Any,
    ):
        super().__init__(detail, code=code, **context)
        self.headers = headers or {}


class BadRequest(HTTPError):
    """400: the request is malformed."""

    status_code = 400
    code = "BAD_REQUEST"


class Unauthorized(HTTPError):
    """401: missing or invalid credentials."""

    status_code = 401
    code = "UNAUTHORIZED"


class PaymentRequired(HTTPError):
    """402: the action needs a subscription or allowance the user does not have."""

    status_code = 402
    code = "PAYMENT_REQUIRED"


class Forbidden(HTTPError):
    """403: credentials or signature present but not acceptable."""

    status_code = 403
    code = "FORBIDDEN"


class NotFound(HTTPError):
    """404: the entity does not exist."""

    status_code = 404
    code = "NOT_FOUND"


class Conflict(HTTPError):
    """409: the request conflicts with the current state."""

    status_code = 409
    code = "CONFLICT"


class PayloadTooLarge(HTTPError):
    """413: the body is over the limit."""

    status_code = 413
    code = "PAYLOAD_TOO_LARGE"


class TooManyRequests(HTTPError):
    """429: rate limited; carries Retry-After."""

    status_code = 429
    code = "RATE_LIMITED"


class ServiceUnavailable(HTTPError):
    """503: a dependency is down; the caller should retry."""

    status_code = 503
    code = "SERVICE_UNAVAILABLE"


def error_body(detail: str, code: str) -> dict[str, str]:
    """The JSON body every API error has."""
    return {"detail": detail, "code": code}
