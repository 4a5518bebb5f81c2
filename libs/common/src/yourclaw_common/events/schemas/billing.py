"""Stripe events as received, and the subscription facts billing derives."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from yourclaw_common.events.base import Event
from yourclaw_common.events.subjects import Subject

__all__ = [
    "STRIPE_EVENT_SUBJECTS",
    "BillingReply",
    "CreateCheckout",
    "CreatePortal",
    "StripeEventReceived",
    "SubscriptionActivated",
    "SubscriptionCanceled",
    "SubscriptionPastDue",
]

# The Stripe event types billing handles; others are answered 200 and dropped.
STRIPE_EVENT_SUBJECTS: dict[str, Subject] = {
    "checkout.session.completed": Subject.BILLING_CHECKOUT_COMPLETED,
    "customer.subscription.created": Subject.BILLING_CUSTOMER_SUBSCRIPTION_CREATED,
    "customer.subscription.updated": Subject.BILLING_CUSTOMER_SUBSCRIPTION_UPDATED,
    "customer.subscription.deleted": Subject.BILLING_CUSTOMER_SUBSCRIPTION_DELETED,
    "invoice.paid": Subject.BILLING_INVOICE_PAID,
    "invoice.payment_succeeded": Subject.BILLING_INVOICE_PAYMENT_SUCCEEDED,
    "invoice.payment_failed": Subject.BILLING_INVOICE_PAYMENT_FAILED,
}


class StripeEventReceived(Event):
    """A verified Stripe webhook event; published on `billing.<type with _>`.

    One class for every Stripe type: the subject is chosen per instance from
    `STRIPE_EVENT_SUBJECTS`, so this class has no fixed subject of its own.
    """

    subject: ClassVar[Subject] = Subject.BILLING_CHECKOUT_COMPLETED

    stripe_event_id: str
    type: str
    created: int
    livemode: bool = False
    data: dict[str, Any]

    def dedupe_key(self) -> str:
        return self.stripe_event_id

    def publish_subject(self) -> str:
        return STRIPE_EVENT_SUBJECTS[self.type].value


class _SubscriptionChanged(Event):
    user_id: UUID
    stripe_subscription_id: str | None = None
    current_period_end: datetime | None = None


class SubscriptionActivated(_SubscriptionChanged):
    """The user may have an assistant."""

    subject: ClassVar[Subject] = Subject.SUBSCRIPTION_ACTIVATED


class SubscriptionPastDue(_SubscriptionChanged):
    """Payment failed; the assistant stays through the grace period."""

    subject: ClassVar[Subject] = Subject.SUBSCRIPTION_PAST_DUE


class SubscriptionCanceled(_SubscriptionChanged):
    """The subscription ended; the assistant is deprovisioned."""

    subject: ClassVar[Subject] = Subject.SUBSCRIPTION_CANCELED


class _BillingRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 1
    user_id: UUID


class CreateCheckout(_BillingRequest):
    """Request on `billing.checkout.create`: a Checkout Session for $20/month."""

    email: str | None = None


class CreatePortal(_BillingRequest):
    """Request on `billing.portal.create`: a Customer Portal session."""


class BillingReply(BaseModel):
    """billing's answer to both requests.

    `code` when not ok: ALREADY_SUBSCRIBED (gateway → 409), NO_CUSTOMER (→ 404),
    STRIPE_UNAVAILABLE (→ 503), INVALID_REQUEST (→ 400).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    url: str | None = None
    code: str | None = None
    detail: str | None = None
