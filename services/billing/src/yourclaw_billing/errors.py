"""Errors of the billing service."""

from __future__ import annotations

from yourclaw_common.errors import PermanentError, TransientError

__all__ = ["StripeRejected", "StripeUnavailable", "UnknownSubscription"]


class StripeUnavailable(TransientError):
    """Stripe did not answer usably (network, 5xx, rate limit, auth); retry later."""

    code = "STRIPE_UNAVAILABLE"


class StripeRejected(PermanentError):
    """Stripe refused the request itself (invalid parameters, idempotency conflict)."""

    code = "STRIPE_REJECTED"


class UnknownSubscription(PermanentError):
    """Stripe has no such subscription, or sent an object we cannot read."""

    code = "UNKNOWN_SUBSCRIPTION"
