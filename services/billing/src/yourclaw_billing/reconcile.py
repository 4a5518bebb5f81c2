"""Catch up on Stripe events we never applied (the gateway or NATS was down when
Stripe gave up retrying, or a message was lost): list recent events from the
Stripe API and publish those missing from `stripe_events` exactly as the
webhook intake does, so the running consumers apply them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from nats.js import JetStreamContext
from yourclaw_common.events import (
    STRIPE_EVENT_SUBJECTS,
    StripeEventReceived,
    provider_event_id,
)
from yourclaw_common.logging import get_logger
from yourclaw_common.nats import publish

from yourclaw_billing import metrics, repository
from yourclaw_billing.stripe_api import StripeApi

__all__ = ["ReconcileResult", "received_from", "reconcile"]

log = get_logger(__name__)


@dataclass(frozen=True)
class ReconcileResult:
    listed: int
    fed: list[str]


def received_from(event: dict[str, Any]) -> StripeEventReceived:
    """The message the webhook intake would have published for this event."""
    return StripeEventReceived(
        event_id=provider_event_id(event["id"]),
        stripe_event_id=event["id"],
        type=event["type"],
        created=int(event["created"]),
        livemode=bool(event.get("livemode", False)),
        data=event["data"],
    )


async def reconcile(
    pool: asyncpg.Pool, js: JetStreamContext, stripe: StripeApi, *, since: datetime
) -> ReconcileResult:
    events = await stripe.list_events(since=since, types=list(STRIPE_EVENT_SUBJECTS))
    async with pool.acquire() as conn:
        known = await repository.known_events(conn, [e["id"] for e in events])
    fed = []
    for event in events:  # oldest first
        if event["id"] in known or event.get("type") not in STRIPE_EVENT_SUBJECTS:
            continue
        # Nats-Msg-Id = event id: harmless if the webhook's copy is still queued.
        await publish(js, received_from(event))
        fed.append(event["id"])
        metrics.RECONCILED.inc()
    log.info("billing.reconcile.done", listed=len(events), fed=len(fed))
    return ReconcileResult(listed=len(events), fed=fed)
