"""Every metric of gateway-api, named `yourclaw_gateway_api_<what>_<unit>`."""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import Counter, Histogram
from yourclaw_common.metrics import metric_prefix

__all__ = [
    "API_RATE_LIMITED",
    "API_REQUESTS",
    "API_REQUEST_SECONDS",
    "AUTH_FAILURES",
    "RATE_LIMITED",
    "WEBHOOK_PUBLISH_SECONDS",
    "WEBHOOK_REQUESTS",
    "WEBHOOK_SIGNATURE_FAILURES",
    "WebhookOutcome",
    "webhook_requests",
]

_P = metric_prefix("gateway-api")


class WebhookOutcome(StrEnum):
    ACCEPTED = "accepted"
    INVALID_SIGNATURE = "invalid_signature"
    NOT_CONFIGURED = "not_configured"
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    BAD_REQUEST = "bad_request"
    PUBLISH_FAILED = "publish_failed"
    ERROR = "error"


WEBHOOK_REQUESTS = Counter(
    f"{_P}_webhook_requests_total",
    "Webhook requests by provider and outcome.",
    ["provider", "outcome"],
)
WEBHOOK_SIGNATURE_FAILURES = Counter(
    f"{_P}_webhook_signature_failures_total",
    "Webhook requests rejected for a missing or wrong signature.",
    ["provider"],
)
WEBHOOK_PUBLISH_SECONDS = Histogram(
    f"{_P}_webhook_publish_seconds",
    "Time from publish to JetStream's PubAck (or failure) for a webhook event.",
    ["provider"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


API_REQUESTS = Counter(
    f"{_P}_api_requests_total",
    "Requests served by the FastAPI app, by route template, method and status.",
    ["route", "method", "status"],
)
API_REQUEST_SECONDS = Histogram(
    f"{_P}_api_request_seconds",
    "Time to answer a request of the FastAPI app, by route template.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
AUTH_FAILURES = Counter(
    f"{_P}_auth_failures_total",
    "Requests refused for a missing or unacceptable bearer token, by code.",
    ["code"],
)
RATE_LIMITED = Counter(
    f"{_P}_rate_limited_total",
    "Webhook requests refused with 429 by the per-IP rate limit.",
    ["webhook"],
)
API_RATE_LIMITED = Counter(
    f"{_P}_api_rate_limited_total",
    "/api/v1 requests refused with 429, by the budget that ran out "
    "(ip, user, sensitive_ip, sensitive_user).",
    ["limit"],
)


def webhook_requests(provider: str) -> dict[WebhookOutcome, Counter]:
    """The request counter of one provider, bound per outcome once (hot path)."""
    return {o: WEBHOOK_REQUESTS.labels(provider, o.value) for o in WebhookOutcome}
