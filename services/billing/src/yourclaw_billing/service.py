"""Billing's rules. Every method takes a connection inside the caller's
transaction and never commits.

Stripe events arrive late, twice and out of order, so an event is never applied
as a delta. The state of a user's subscription is derived from the Stripe
Subscription object: the one in the event when the event is newer than what we
hold, otherwise (older or equally old event, a subscription we hold nothing
for, or an event that carries no subscription object) the one Stripe returns
now. `stripe_updated_at` is the Stripe time of the newest state applied: an
event's `created`, or the `Date` of the response a fetch came from. So any
permutation or duplication of the same events ends in the same row, and a
domain event is emitted only when the derived status changes.

Status mapping (Stripe → ours):

    active, trialing            → ACTIVE
    past_due, unpaid            → PAST_DUE for BILLING_GRACE_PERIOD_DAYS from when
                                  we first saw it, then CANCELED (the user loses
                                  the assistant; Stripe may still collect, and a
                                  later payment makes it ACTIVE again)
    canceled, incomplete_expired, paused → CANCELED
    incomplete                  → no row yet (the first payment is pending)

A user who has had several subscriptions keeps one row: it follows the live
one, else the newest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import orjson
from yourclaw_common import outbox
from yourclaw_common.db import Connection
from yourclaw_common.events import (
    BillingReply,
    CreateCheckout,
    CreatePortal,
    StripeEventReceived,
    SubscriptionActivated,
    SubscriptionCanceled,
    SubscriptionPastDue,
)
from yourclaw_common.logging import get_logger

from yourclaw_billing import metrics, repository
from yourclaw_billing.repository import SubscriptionRow
from yourclaw_billing.stripe_api import (
    SubscriptionSnapshot,
    from_timestamp,
    object_id,
)

__all__ = [
    "ACTIVE",
    "CANCELED",
    "PAST_DUE",
    "Billing",
    "EventOutcome",
    "StripePort",
    "derive_status",
    "subscription_id_of",
]

log = get_logger(__name__)

ACTIVE, PAST_DUE, CANCELED = "ACTIVE", "PAST_DUE", "CANCELED"

_ACTIVE_STATUSES = frozenset({"active", "trialing"})
_PAST_DUE_STATUSES = frozenset({"past_due", "unpaid"})
_ENDED_STATUSES = frozenset({"canceled", "incomplete_expired", "paused"})
# Stripe still bills these: a user's row prefers them over ended ones.
_LIVE_STATUSES = _ACTIVE_STATUSES | _PAST_DUE_STATUSES

_DOMAIN_EVENTS: dict[
    str, type[SubscriptionActivated | SubscriptionPastDue | SubscriptionCanceled]
] = {
    ACTIVE: SubscriptionActivated,
    PAST_DUE: SubscriptionPastDue,
    CANCELED: SubscriptionCanceled,
}


class EventOutcome:
    """What applying one Stripe event did (a metrics label)."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    UNKNOWN_USER = "unknown_user"
    OTHER_SUBSCRIPTION = "other_subscription"
    NOT_STARTED = "not_started"


class StripePort(Protocol):
    """The Stripe operations the rules need (`StripeApi` in production)."""

    async def create_customer(
        self, *, email: str | None, metadata: Mapping[str, str], idempotency_key: str
    ) -> str: ...

    async def create_checkout_session(
        self, params: Mapping[str, Any], *, idempotency_key: str
    ) -> str: ...

    async def create_portal_session(self, *, customer: str, return_url: str) -> str: ...

    async def retrieve_subscription(
        self, subscription_id: str
    ) -> tuple[SubscriptionSnapshot, datetime]: ...


def derive_status(
    stripe_status: str,
    past_due_since: datetime | None,
    *,
    now: datetime,
    grace: timedelta,
) -> str | None:
    """Our status for a Stripe status; None while the first payment is pending."""
    if stripe_status in _ACTIVE_STATUSES:
        return ACTIVE
    if stripe_status in _PAST_DUE_STATUSES:
        if past_due_since is not None and now >= past_due_since + grace:
            return CANCELED
        return PAST_DUE
    if stripe_status in _ENDED_STATUSES:
        return CANCELED
    return None


def _effective(status: str | None) -> str:
    # No row and a CANCELED row both mean "no assistant": nothing to announce.
    return status or CANCELED


def subscription_id_of(event: StripeEventReceived) -> str | None:
    """The subscription a handled Stripe event is about, if any."""
    obj = event.data.get("object") or {}
    if event.type.startswith("customer.subscription."):
        return object_id(obj.get("id"))
    if event.type == "checkout.session.completed":
        if obj.get("mode") != "subscription":
            return None
        return object_id(obj.get("subscription"))
    if event.type.startswith("invoice."):
        # Before API version 2025-03-31 `invoice.subscription`; since, under parent.
        details = (obj.get("parent") or {}).get("subscription_details") or {}
        return object_id(obj.get("subscription")) or object_id(
            details.get("subscription")
        )
    return None


def _user_id_hints(event: StripeEventReceived) -> list[str]:
    """User ids an event carries: our metadata, and Checkout's reference."""
    obj = event.data.get("object") or {}
    details = (obj.get("parent") or {}).get("subscription_details") or {}
    hints = [
        (obj.get("metadata") or {}).get("user_id"),
        (details.get("metadata") or {}).get("user_id"),
        obj.get("client_reference_id")
        if event.type == "checkout.session.completed"
        else None,
    ]
    return [h for h in hints if isinstance(h, str) and h]


def _as_uuid(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None


def _replaces(row: SubscriptionRow, snapshot: SubscriptionSnapshot) -> bool:
    """Whether another subscription of the user should take over the row."""
    row_live = row.stripe_status in _LIVE_STATUSES
    new_live = snapshot.status in _LIVE_STATUSES
    if row_live != new_live:
        return new_live
    held_created = row.stripe_subscription_created_at
    return held_created is None or snapshot.created > held_created


def _key_digest(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(
        orjson.dumps(params, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()[:16]


@dataclass
class Billing:
    stripe: StripePort
    price_id: str
    app_url: str
    grace: timedelta
    service: str = "billing"

    # Requests (core NATS request/reply)

    async def create_checkout(
        self, conn: Connection, request: CreateCheckout
    ) -> BillingReply:
        user_id = request.user_id
        await repository.lock_user(conn, user_id)
        row = await repository.get_subscription(conn, user_id)
        if row is not None and row.status in (ACTIVE, PAST_DUE):
            detail = (
                "you already have an active subscription"
                if row.status == ACTIVE
                else "your subscription is past due: update your payment method "
                "in the billing portal"
            )
            return BillingReply(ok=False, code="ALREADY_SUBSCRIBED", detail=detail)
        if not await repository.user_exists(conn, user_id):
            return BillingReply(ok=False, code="INVALID_REQUEST", detail="unknown user")
        customer = await repository.customer_for_user(conn, user_id)
        new_customer = customer is None
        if customer is None:
            customer = await self.stripe.create_customer(
                email=request.email,
                metadata={"user_id": str(user_id)},
                idempotency_key=f"yourclaw-customer-{user_id}",
            )
        params: dict[str, Any] = {
            "mode": "subscription",
            "customer": customer,
            "client_reference_id": str(user_id),
            "line_items": [{"price": self.price_id, "quantity": 1}],
            "metadata": {"user_id": str(user_id)},
            "subscription_data": {"metadata": {"user_id": str(user_id)}},
            "success_url": f"{self.app_url}/dashboard?session_id={{CHECKOUT_SESSION_ID}}",
            "cancel_url": f"{self.app_url}/dashboard",
        }
        # One session per user and per previous subscription: repeated clicks get
        # the same session (so at most one subscription), a re-subscription after
        # a cancellation gets a new one.
        previous = row.stripe_subscription_id if row is not None else "first"
        url = await self.stripe.create_checkout_session(
            params,
            idempotency_key=(
                f"yourclaw-checkout-{user_id}-{previous}-{_key_digest(params)}"
            ),
        )
        if new_customer:
            # Both keys derive from our ids: if we die before this commits, the
            # retry gets the same customer and the same session back from Stripe.
            await repository.insert_customer(conn, user_id, customer)
        log.info("billing.checkout.created", user_id=str(user_id))
        return BillingReply(ok=True, url=url)

    async def create_portal(
        self, conn: Connection, request: CreatePortal
    ) -> BillingReply:
        customer = await repository.customer_for_user(conn, request.user_id)
        if customer is None:
            return BillingReply(
                ok=False,
                code="NO_CUSTOMER",
                detail="no billing account yet: subscribe first",
            )
        url = await self.stripe.create_portal_session(
            customer=customer, return_url=f"{self.app_url}/dashboard"
        )
        return BillingReply(ok=True, url=url)

    # Stripe events

    async def apply_stripe_event(
        self,
        conn: Connection,
        event: StripeEventReceived,
        *,
        now: datetime | None = None,
    ) -> str:
        """Apply one Stripe event exactly once; returns an `EventOutcome`."""
        now = now or datetime.now(UTC)
        created = from_timestamp(event.created)
        if not await repository.record_event(
            conn, event_id=event.stripe_event_id, type_=event.type, created=created
        ):
            return EventOutcome.DUPLICATE
        sub_id = subscription_id_of(event)
        if sub_id is None:
            return EventOutcome.IGNORED
        in_event: SubscriptionSnapshot | None = None
        if event.type.startswith("customer.subscription."):
            in_event = SubscriptionSnapshot.parse(event.data["object"])
        fetched: tuple[SubscriptionSnapshot, datetime] | None = None

        user_id = await self._user_for(conn, event)
        if user_id is None:
            fetched = await self.stripe.retrieve_subscription(sub_id)
            user_id = await self._user_from_metadata(conn, fetched[0].metadata)
        if user_id is None:
            log.warning(
                "billing.stripe_event.unknown_user",
                stripe_event_id=event.stripe_event_id,
                subscription_id=sub_id,
            )
            return EventOutcome.UNKNOWN_USER

        await repository.lock_user(conn, user_id)
        row = await repository.get_subscription(conn, user_id)
        held = (
            row.stripe_updated_at
            if row is not None and row.stripe_subscription_id == sub_id
            else None
        )
        if in_event is not None and held is not None and created > held:
            snapshot, as_of = in_event, created
        else:
            snapshot, as_of = fetched or await self.stripe.retrieve_subscription(sub_id)
        return await self._apply(conn, user_id, row, snapshot, as_of=as_of, now=now)

    async def _user_for(
        self, conn: Connection, event: StripeEventReceived
    ) -> UUID | None:
        # Our own customer mapping first: metadata can be edited in the dashboard.
        customer = object_id((event.data.get("object") or {}).get("customer"))
        if customer is not None:
            found = await repository.user_for_customer(conn, customer)
            if found is not None:
                return found
        for hint in _user_id_hints(event):
            user_id = _as_uuid(hint)
            if user_id is not None and await repository.user_exists(conn, user_id):
                return user_id
        return None

    async def _user_from_metadata(
        self, conn: Connection, metadata: Mapping[str, str]
    ) -> UUID | None:
        user_id = _as_uuid(metadata.get("user_id", ""))
        if user_id is not None and await repository.user_exists(conn, user_id):
            return user_id
        return None

    async def _apply(
        self,
        conn: Connection,
        user_id: UUID,
        row: SubscriptionRow | None,
        snapshot: SubscriptionSnapshot,
        *,
        as_of: datetime,
        now: datetime,
    ) -> str:
        same = row is not None and row.stripe_subscription_id == snapshot.id
        if row is not None and not same and not _replaces(row, snapshot):
            return EventOutcome.OTHER_SUBSCRIPTION
        past_due_since = None
        if snapshot.status in _PAST_DUE_STATUSES:
            kept = row.past_due_since if row is not None and same else None
            past_due_since = kept or as_of
        status = derive_status(
            snapshot.status, past_due_since, now=now, grace=self.grace
        )
        if status is None:
            return EventOutcome.NOT_STARTED
        held = row.stripe_updated_at if row is not None and same else None
        await repository.upsert_subscription(
            conn,
            SubscriptionRow(
                user_id=user_id,
                stripe_customer_id=snapshot.customer,
                stripe_subscription_id=snapshot.id,
                status=status,
                stripe_status=snapshot.status,
                current_period_end=snapshot.current_period_end,
                stripe_updated_at=max(held, as_of) if held is not None else as_of,
                past_due_since=past_due_since,
                stripe_subscription_created_at=snapshot.created,
            ),
        )
        await self._announce(
            conn,
            user_id,
            row.status if row is not None else None,
            status,
            subscription_id=snapshot.id,
            current_period_end=snapshot.current_period_end,
        )
        return EventOutcome.APPLIED

    async def _announce(
        self,
        conn: Connection,
        user_id: UUID,
        old: str | None,
        new: str,
        *,
        subscription_id: str,
        current_period_end: datetime | None,
    ) -> None:
        if _effective(old) == new:
            return
        await outbox.add(
            conn,
            _DOMAIN_EVENTS[new](
                user_id=user_id,
                stripe_subscription_id=subscription_id,
                current_period_end=current_period_end,
            ),
            service=self.service,
        )
        metrics.TRANSITIONS.labels(new).inc()
        log.info(
            "billing.subscription.changed",
            user_id=str(user_id),
            subscription_id=subscription_id,
            old=old,
            new=new,
        )

    # The grace period

    async def expired_grace_candidates(
        self, conn: Connection, *, now: datetime | None = None
    ) -> list[UUID]:
        return await repository.past_due_since_before(
            conn, (now or datetime.now(UTC)) - self.grace
        )

    async def end_grace_period(
        self, conn: Connection, user_id: UUID, *, now: datetime | None = None
    ) -> bool:
        """CANCELED (and subscription.canceled) if the user's grace has run out."""
        await repository.lock_user(conn, user_id)
        row = await repository.get_subscription(conn, user_id)
        if row is None or row.status != PAST_DUE:
            return False
        status = derive_status(
            row.stripe_status,
            row.past_due_since,
            now=now or datetime.now(UTC),
            grace=self.grace,
        )
        if status != CANCELED:
            return False
        await repository.set_status(conn, user_id, CANCELED)
        await self._announce(
            conn,
            user_id,
            row.status,
            CANCELED,
            subscription_id=row.stripe_subscription_id,
            current_period_end=row.current_period_end,
        )
        metrics.GRACE_EXPIRED.inc()
        return True
