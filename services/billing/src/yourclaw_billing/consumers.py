"""billing's durable consumer; its replicas share it."""

from __future__ import annotations

from yourclaw_common.events import ConsumerSpec, Subject


class CONSUMERS:
    # One durable for every Stripe type billing handles: their effects are derived
    # from the subscription object, so they are applied under one per-user lock.
    BILLING_STRIPE_EVENTS = ConsumerSpec(
        "billing-stripe-events",
        Subject.BILLING_CHECKOUT_COMPLETED,
        extra_subjects=(
            Subject.BILLING_CUSTOMER_SUBSCRIPTION_CREATED,
            Subject.BILLING_CUSTOMER_SUBSCRIPTION_UPDATED,
            Subject.BILLING_CUSTOMER_SUBSCRIPTION_DELETED,
            Subject.BILLING_INVOICE_PAID,
            Subject.BILLING_INVOICE_PAYMENT_SUCCEEDED,
            Subject.BILLING_INVOICE_PAYMENT_FAILED,
        ),
    )
