"""Every metric of billing, named `yourclaw_billing_<what>_<unit>`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "GRACE_EXPIRED",
    "RECONCILED",
    "REQUESTS",
    "STRIPE_API_SECONDS",
    "STRIPE_EVENTS",
    "SUBSCRIPTIONS",
    "TRANSITIONS",
]

STRIPE_EVENTS = Counter(
    "yourclaw_billing_stripe_events_total",
    "Stripe events handled, by type and outcome (applied, duplicate, ignored, "
    "unknown_user, other_subscription, not_started).",
    ["type", "outcome"],
)
TRANSITIONS = Counter(
    "yourclaw_billing_subscription_transitions_total",
    "Subscription status changes, by new status (each emits one domain event).",
    ["status"],
)
REQUESTS = Counter(
    "yourclaw_billing_requests_total",
    "Checkout and portal requests, by kind and outcome (ok or the reply code).",
    ["kind", "outcome"],
)
STRIPE_API_SECONDS = Histogram(
    "yourclaw_billing_stripe_api_seconds",
    "Stripe API calls, by operation and outcome.",
    ["operation", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
GRACE_EXPIRED = Counter(
    "yourclaw_billing_grace_expired_total",
    "PAST_DUE subscriptions canceled by us when the grace period ran out.",
)
RECONCILED = Counter(
    "yourclaw_billing_reconciled_events_total",
    "Stripe events the reconcile command found missing and fed again.",
)
SUBSCRIPTIONS = Gauge(
    "yourclaw_billing_subscriptions",
    "Subscriptions by status (ACTIVE, PAST_DUE, CANCELED), as of the last sweep.",
    ["status"],
)
