"""`/api/v1/checkout`, `/billing/portal`, `/subscription`: payments, through
billing (NATS request/reply) for anything Stripe; subscriptions are read."""

from __future__ import annotations

from fastapi import APIRouter
from yourclaw_common.events import CreateCheckout, CreatePortal, Subject

from yourclaw_gateway_api import service
from yourclaw_gateway_api.dependencies import (
    CurrentUser,
    Nats,
    Pool,
    SensitiveUser,
    Settings,
)
from yourclaw_gateway_api.errors import error_responses
from yourclaw_gateway_api.schemas import CheckoutOut, PortalOut, SubscriptionOut

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["billing"])

_BILLING_DOWN = {
    503: "BILLING_UNAVAILABLE: billing did not answer in time; "
    "STRIPE_UNAVAILABLE / BILLING_ERROR: Stripe could not do it now. Retry.",
    400: "INVALID_REQUEST: billing refused the request",
}
_STRIPE_REFUSED = (
    "STRIPE_REJECTED: Stripe refused the request for good (a retry gets the "
    "same answer)"
)
_STRIPE_NOT_FOUND = "STRIPE_NOT_FOUND: the user's customer no longer exists at Stripe"


@router.post(
    "/checkout",
    summary="A Stripe Checkout session for the monthly subscription",
    responses=error_responses(
        _BILLING_DOWN
        | {
            409: f"ALREADY_SUBSCRIBED: the user already pays; {_STRIPE_REFUSED}",
            404: _STRIPE_NOT_FOUND,
        }
    ),
)
async def create_checkout(
    user: SensitiveUser, nc: Nats, settings: Settings
) -> CheckoutOut:
    url = await service.billing_url(
        nc,
        Subject.BILLING_CHECKOUT_CREATE,
        CreateCheckout(user_id=user.id, email=user.email),
        timeout=settings.billing_request_timeout_seconds,
    )
    return CheckoutOut(checkout_url=url)


@router.post(
    "/billing/portal",
    summary="A Stripe Customer Portal session (invoices, card, cancel)",
    responses=error_responses(
        _BILLING_DOWN
        | {
            404: "NO_CUSTOMER: the user never went through checkout; "
            + _STRIPE_NOT_FOUND,
            409: _STRIPE_REFUSED,
        }
    ),
)
async def create_portal(user: SensitiveUser, nc: Nats, settings: Settings) -> PortalOut:
    url = await service.billing_url(
        nc,
        Subject.BILLING_PORTAL_CREATE,
        CreatePortal(user_id=user.id),
        timeout=settings.billing_request_timeout_seconds,
    )
    return PortalOut(portal_url=url)


@router.get("/subscription", summary="The user's subscription (status NONE if none)")
async def get_subscription(user: CurrentUser, pool: Pool) -> SubscriptionOut:
    async with pool.acquire() as conn:
        return await service.subscription(conn, user.id)
