"""`POST /api/v1/webhooks/stripe`: verify, publish, answer.

The `Stripe-Signature` header is checked on the raw bytes, as
`stripe.Webhook.construct_event` does (`t=<unix>,v1=<hex HMAC-SHA256 of
"<t>.<body>">`, any matching `v1` wins, 300 s tolerance for old timestamps), plus
a bound on timestamps in the future, which stripe-python lets through. A handled
event type is published as `billing.<type with dots as underscores>` with
`Nats-Msg-Id = event id`, so Stripe's retries are dropped by JetStream; other
types are acknowledged and dropped. The PubAck is awaited before the 200: if
publishing fails we answer 503 and Stripe retries.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Request
from pydantic import BaseModel
from yourclaw_common.errors import (
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    ServiceUnavailable,
)
from yourclaw_common.events import (
    STRIPE_EVENT_SUBJECTS,
    StripeEventReceived,
    provider_event_id,
)
from yourclaw_common.logging import get_logger

from yourclaw_gateway_api.dependencies import Publish
from yourclaw_gateway_api.metrics import (
    WEBHOOK_PUBLISH_SECONDS,
    WEBHOOK_REQUESTS,
    WEBHOOK_SIGNATURE_FAILURES,
    WebhookOutcome,
)
from yourclaw_gateway_api.settings import GatewaySettings

__all__ = [
    "MAX_FUTURE_SECONDS",
    "STRIPE_WEBHOOK_PATH",
    "TOLERANCE_SECONDS",
    "InvalidStripeSignature",
    "StripeSignature",
    "StripeWebhookReceipt",
    "stripe_webhook_router",
]

log = get_logger(__name__)

STRIPE_WEBHOOK_PATH = "/api/v1/webhooks/stripe"
# stripe-python's DEFAULT_TOLERANCE: older signatures are replays.
TOLERANCE_SECONDS = 300
# Stripe signs at send time, so a timestamp ahead of our clock is only skew; more
# than this is a forged or pre-computed signature.
MAX_FUTURE_SECONDS = 300
# Stripe events are a few KiB; invoices with many lines can reach tens of KiB.
MAX_BODY_BYTES = 512 * 1024

_PROVIDER = "stripe"


class InvalidStripeSignature(Exception):
    """The header is missing, malformed, stale, from the future or does not match."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class StripeSignature:
    """Verifies `Stripe-Signature` headers for one endpoint secret."""

    secret: str
    tolerance: int = TOLERANCE_SECONDS
    max_future: int = MAX_FUTURE_SECONDS

    def verify(self, payload: bytes, header: str | None, *, now: float) -> None:
        if not header:
            raise InvalidStripeSignature("missing")
        timestamp: int | None = None
        candidates: list[str] = []
        for item in header.split(","):
            key, sep, value = item.strip().partition("=")
            if not sep:
                continue
            if key == "t":
                if timestamp is not None or not value.isdigit():
                    raise InvalidStripeSignature("malformed")
                timestamp = int(value)
            elif key == "v1":
                candidates.append(value)
        if timestamp is None or not candidates:
            raise InvalidStripeSignature("malformed")
        if now - timestamp > self.tolerance:
            raise InvalidStripeSignature("stale")
        if timestamp - now > self.max_future:
            raise InvalidStripeSignature("future")
        expected = hmac.new(
            self.secret.encode(), b"%d.%s" % (timestamp, payload), hashlib.sha256
        ).hexdigest()
        # Every candidate is compared, so timing does not tell which one matched.
        matches = [hmac.compare_digest(expected, c) for c in candidates]
        if not any(matches):
            raise InvalidStripeSignature("mismatch")


class StripeWebhookReceipt(BaseModel):
    """What Stripe gets back: the event was queued (or is a type we ignore)."""

    received: Literal[True] = True
    queued: bool


def _event_from(body: bytes) -> dict[str, Any]:
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("the body is not JSON", code="INVALID_EVENT") from None
    if not (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and event["id"]
        and isinstance(event.get("type"), str)
        and isinstance(event.get("created"), int)
        and isinstance(event.get("data"), dict)
        and isinstance(event["data"].get("object"), dict)
    ):
        raise BadRequest(
            "not a Stripe event (id, type, created, data.object)",
            code="INVALID_EVENT",
        )
    return event


async def _read_body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"the body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _error_responses() -> dict[int | str, dict[str, Any]]:
    error = {
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["detail", "code"],
                    "properties": {
                        "detail": {"type": "string"},
                        "code": {"type": "string"},
                    },
                }
            }
        }
    }
    return {
        400: {"description": "Signed, but not a Stripe event", **error},
        403: {"description": "Missing or invalid Stripe-Signature", **error},
        413: {"description": "Body too large", **error},
        503: {"description": "Could not queue the event; Stripe retries", **error},
    }


def stripe_webhook_router(settings: GatewaySettings) -> APIRouter:
    """The Stripe webhook route, bound to the configured endpoint secret."""
    secret = settings.stripe_webhook_secret.get_secret_value()
    # An empty secret verifies against an empty key, which anyone can forge.
    signature = StripeSignature(secret) if secret.strip() else None
    requests = {o: WEBHOOK_REQUESTS.labels(_PROVIDER, o.value) for o in WebhookOutcome}
    ignored = WEBHOOK_REQUESTS.labels(_PROVIDER, "ignored")
    signature_failures = WEBHOOK_SIGNATURE_FAILURES.labels(_PROVIDER)
    publish_seconds = WEBHOOK_PUBLISH_SECONDS.labels(_PROVIDER)

    router = APIRouter(tags=["webhooks"])

    @router.post(
        STRIPE_WEBHOOK_PATH,
        responses=_error_responses(),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
        summary="Stripe webhook events (signed)",
    )
    async def stripe_webhook(
        request: Request,
        publish: Publish,
        stripe_signature: Annotated[str | None, Header()] = None,
    ) -> StripeWebhookReceipt:
        if signature is None:
            requests[WebhookOutcome.NOT_CONFIGURED].inc()
            log.warning("gateway.stripe.not_configured")
            raise Forbidden(
                "the Stripe webhook is not configured", code="STRIPE_NOT_CONFIGURED"
            )
        try:
            body = await _read_body(request)
        except PayloadTooLarge:
            requests[WebhookOutcome.TOO_LARGE].inc()
            raise
        try:
            signature.verify(body, stripe_signature, now=time.time())
        except InvalidStripeSignature as exc:
            requests[WebhookOutcome.INVALID_SIGNATURE].inc()
            signature_failures.inc()
            client = request.client
            log.warning(
                "gateway.stripe.rejected",
                reason=exc.reason,
                client=client.host if client else None,
            )
            raise Forbidden(
                "invalid Stripe signature", code="INVALID_SIGNATURE"
            ) from None
        try:
            event = _event_from(body)
        except BadRequest:
            requests[WebhookOutcome.BAD_REQUEST].inc()
            raise
        if event["type"] not in STRIPE_EVENT_SUBJECTS:
            ignored.inc()
            log.debug(
                "gateway.stripe.ignored",
                stripe_event_id=event["id"],
                type=event["type"],
            )
            return StripeWebhookReceipt(queued=False)
        received = StripeEventReceived(
            event_id=provider_event_id(event["id"]),
            stripe_event_id=event["id"],
            type=event["type"],
            created=event["created"],
            livemode=bool(event.get("livemode", False)),
            data=event["data"],
        )
        started = time.perf_counter()
        try:
            ack = await publish(
                received, what="event", stripe_event_id=received.stripe_event_id
            )
        except ServiceUnavailable:
            requests[WebhookOutcome.PUBLISH_FAILED].inc()
            raise
        finally:
            publish_seconds.observe(time.perf_counter() - started)
        requests[WebhookOutcome.ACCEPTED].inc()
        log.info(
            "gateway.stripe.accepted",
            stripe_event_id=received.stripe_event_id,
            type=received.type,
            duplicate=ack.duplicate,
        )
        return StripeWebhookReceipt(queued=True)

    return router
