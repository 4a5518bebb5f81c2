"""A local Stripe: the API calls billing makes, a hosted checkout page, a customer
portal page, and Stripe-signed webhooks.

Billing reaches it through `STRIPE_API_BASE` with stripe-python, so it speaks
Stripe's wire format: form-encoded requests with bracketed keys
(`metadata[user_id]=…`, `line_items[0][price]=…`), `Authorization: Bearer
sk_…`, JSON objects with `id`/`object`/`created`, list objects, errors as
`{"error": {"type", "message", "code", "param"}}`, and `Idempotency-Key`
replays. The objects follow the current API version: a subscription's period is
on its items, an invoice names its subscription under `parent`.

The "Pay" button of the checkout page creates the subscription and its paid
invoice and sends `checkout.session.completed`, `customer.subscription.created`,
`invoice.paid` and `invoice.payment_succeeded`; the portal page cancels
(`customer.subscription.deleted`) and simulates a failed or a successful
renewal. Webhooks go, in order and retried a few times, to one endpoint signed
with `STRIPE_WEBHOOK_SECRET`. Routes that exist only here start with
`/_devsim/stripe/`.

One module a side: `_account` (the objects and events in memory), `_webhooks`
(delivery), `_api` (Stripe's routes, a router a resource), `_dev` (the pages
and controls).
"""

from __future__ import annotations

from fastapi import APIRouter

from yourclaw_devkit.stripe_sim._account import StripeSim, parse_stripe_form
from yourclaw_devkit.stripe_sim._api import api_router
from yourclaw_devkit.stripe_sim._dev import dev_router
from yourclaw_devkit.stripe_sim._webhooks import StripeWebhooks

__all__ = ["StripeSim", "StripeWebhooks", "parse_stripe_form", "stripe_router"]


def stripe_router(*, secret_key: str, sim: StripeSim) -> APIRouter:
    """Stripe's API routes billing uses, and the dev-only pages and controls."""
    router = APIRouter()
    router.include_router(api_router(secret_key=secret_key, sim=sim))
    router.include_router(dev_router(sim))
    return router
