"""Errors of the LLM proxy, answered as `{"detail", "code"}` plus the `error`
object OpenAI and Anthropic clients read their message from."""

from __future__ import annotations

from yourclaw_common.errors import (
    BadRequest,
    Forbidden,
    HTTPError,
    NotFound,
    PayloadTooLarge,
    PaymentRequired,
    TooManyRequests,
    Unauthorized,
)

__all__ = [
    "AllowanceExhausted",
    "BadRequest",
    "Forbidden",
    "HTTPError",
    "NotFound",
    "PayloadTooLarge",
    "ProviderNotConfigured",
    "TooManyRequests",
    "Unauthorized",
    "UnknownModel",
    "error_payload",
]


class UnknownModel(BadRequest):
    """The model is not one the proxy serves (or not from this provider)."""

    code = "UNKNOWN_MODEL"


class AllowanceExhausted(PaymentRequired):
    """This month's allowance is spent; no provider is called."""

    code = "ALLOWANCE_EXHAUSTED"


class ProviderNotConfigured(HTTPError):
    """503: neither a platform key nor the user's own key for this provider."""

    status_code = 503
    code = "PROVIDER_NOT_CONFIGURED"


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}


def error_payload(status: int, detail: str, code: str) -> dict[str, object]:
    """Our `{"detail", "code"}`, plus `type`/`error` in the shape both OpenAI's
    and Anthropic's clients show to the model's user."""
    kind = _ERROR_TYPES.get(status, "api_error")
    return {
        "detail": detail,
        "code": code,
        "type": "error",
        "error": {"type": kind, "message": detail, "code": code},
    }
