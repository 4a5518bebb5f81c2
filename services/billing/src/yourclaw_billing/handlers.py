"""Entry points that own a transaction: one per consumed subject, one per request
subject, and the grace-period sweep. Thin: the rules are in `service.py`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
from pydantic import ValidationError
from yourclaw_common.errors import PermanentError, TransientError
from yourclaw_common.events import (
    BillingReply,
    CreateCheckout,
    CreatePortal,
    StripeEventReceived,
)
from yourclaw_common.logging import get_logger
from yourclaw_common.nats import Handler, HandlerContext

from yourclaw_billing import metrics, repository
from yourclaw_billing.service import Billing

__all__ = [
    "RequestHandler",
    "export_subscription_counts",
    "on_checkout_request",
    "on_portal_request",
    "on_stripe_event",
    "sweep_grace_periods",
    "sweep_grace_periods_forever",
]

log = get_logger(__name__)

RequestHandler = Callable[[bytes], Awaitable[BillingReply]]

_UNAVAILABLE = BillingReply(
    ok=False,
    code="STRIPE_UNAVAILABLE",
    detail="the payment provider is unavailable, try again shortly",
)


# What the user is told when Stripe refuses a request for good (no Stripe text:
# it may name our configuration).
_REFUSED = {
    "STRIPE_NOT_FOUND": "your billing account was not found at the payment "
    "provider; contact support",
    "STRIPE_REJECTED": "the payment provider refused the request; contact support",
}


def on_stripe_event(pool: asyncpg.Pool, billing: Billing) -> Handler:
    async def handle(event: StripeEventReceived, ctx: HandlerContext) -> None:
        async with pool.acquire() as conn, conn.transaction():
            outcome = await billing.apply_stripe_event(conn, event)
        metrics.STRIPE_EVENTS.labels(event.type, outcome).inc()
        log.info(
            "billing.stripe_event.handled",
            stripe_event_id=event.stripe_event_id,
            type=event.type,
            outcome=outcome,
        )

    return handle


def _request_handler(
    kind: str,
    model: type[CreateCheckout] | type[CreatePortal],
    pool: asyncpg.Pool,
    act: Callable[..., Awaitable[BillingReply]],
) -> RequestHandler:
    async def handle(data: bytes) -> BillingReply:
        try:
            request = model.model_validate_json(data)
        except ValidationError as exc:
            reply = BillingReply(
                ok=False, code="INVALID_REQUEST", detail=str(exc.errors()[0]["msg"])
            )
        else:
            try:
                async with pool.acquire() as conn, conn.transaction():
                    reply = await act(conn, request)
            except TransientError as exc:
                log.warning(f"billing.{kind}.failed", code=exc.code, error=exc.detail)
                reply = _UNAVAILABLE
            except PermanentError as exc:
                # Stripe refused for good: retrying would get the same answer.
                log.error(f"billing.{kind}.refused", code=exc.code, error=exc.detail)
                reply = BillingReply(
                    ok=False,
                    code=exc.code,
                    detail=_REFUSED.get(exc.code, _REFUSED["STRIPE_REJECTED"]),
                )
        metrics.REQUESTS.labels(kind, "ok" if reply.ok else reply.code).inc()
        return reply

    return handle


def on_checkout_request(pool: asyncpg.Pool, billing: Billing) -> RequestHandler:
    return _request_handler("checkout", CreateCheckout, pool, billing.create_checkout)


def on_portal_request(pool: asyncpg.Pool, billing: Billing) -> RequestHandler:
    return _request_handler("portal", CreatePortal, pool, billing.create_portal)


async def sweep_grace_periods(pool: asyncpg.Pool, billing: Billing) -> int:
    """Cancel every PAST_DUE subscription whose grace has run out; how many."""
    async with pool.acquire() as conn:
        candidates = await billing.expired_grace_candidates(conn)
    ended = 0
    for user_id in candidates:
        async with pool.acquire() as conn, conn.transaction():
            ended += await billing.end_grace_period(conn, user_id)
    if ended:
        log.info("billing.grace.expired", count=ended)
    return ended


async def export_subscription_counts(pool: asyncpg.Pool) -> None:
    """Set the subscriptions-by-status gauge (every status, zeros included)."""
    async with pool.acquire() as conn:
        counts = await repository.subscription_counts(conn)
    for status in ("ACTIVE", "PAST_DUE", "CANCELED"):
        metrics.SUBSCRIPTIONS.labels(status).set(counts.get(status, 0))


async def sweep_grace_periods_forever(
    pool: asyncpg.Pool, billing: Billing, *, stop: asyncio.Event, interval: float
) -> None:
    while not stop.is_set():
        try:
            await sweep_grace_periods(pool, billing)
            await export_subscription_counts(pool)
        except Exception as exc:  # the next sweep retries
            log.warning("billing.grace.sweep_failed", error=str(exc)[:300])
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass
