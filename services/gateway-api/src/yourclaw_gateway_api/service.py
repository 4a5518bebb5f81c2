"""The rules of /api/v1. Functions take a connection and never commit: the
endpoint owns the transaction.

Assistants belong to the provisioner: gateway-api checks a request, then asks
for the change with `assistant.provision_requested` /
`assistant.deprovision_requested` and answers 202.

Idempotency of those requests: a client that sends `Idempotency-Key` gets the
same event id for every retry of that key, so JetStream (within its duplicate
window) and the provisioner's inbox drop the repeats. Without the header, create
and delete requests get an id from the user, the action and the assistant state
they saw, within a 60-second window: a double click or a retried request makes
one event, while a request after the provisioner has moved the assistant on is a
new one. Model changes without the header are never merged (setting a model is
idempotent anyway, and merging A→B→A would lose the last choice).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Literal
from uuid import UUID

import asyncpg
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from pydantic import ValidationError
from yourclaw_common import outbox
from yourclaw_common.crypto import SecretBox
from yourclaw_common.db import Connection
from yourclaw_common.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PaymentRequired,
    ServiceUnavailable,
)
from yourclaw_common.events import (
    AssistantDeprovisionRequested,
    AssistantProvisionRequested,
    BillingReply,
    CreateCheckout,
    CreatePortal,
    Event,
    Subject,
)
from yourclaw_common.logging import get_correlation_id, get_logger
from yourclaw_common.models import DEFAULT_MODEL, LlmProvider
from yourclaw_common.nats import CORRELATION_HEADER

from yourclaw_gateway_api import repository, verification
from yourclaw_gateway_api.auth import TokenUser
from yourclaw_gateway_api.errors import InvalidPhone
from yourclaw_gateway_api.phones import InvalidPhoneNumber, to_e164
from yourclaw_gateway_api.publishing import Publisher
from yourclaw_gateway_api.schemas import (
    ApiKeyOut,
    AssistantOut,
    DeliveryStatus,
    LlmSpend,
    LlmSpendDay,
    MessageOut,
    MessagePage,
    PhoneOut,
    SubscriptionOut,
    UsageDay,
    UsageOut,
    UsageTotals,
    UserOut,
)

__all__ = [
    "USAGE_DAYS",
    "api_keys",
    "assistant",
    "billing_url",
    "change_model",
    "delivery_status",
    "deprovision",
    "ensure_user",
    "me",
    "messages",
    "provision",
    "remove_api_key",
    "request_event_id",
    "set_phone",
    "store_api_key",
    "subscription",
    "usage",
]

log = get_logger(__name__)

USAGE_DAYS = 30
_ENTITLED = frozenset({"ACTIVE", "PAST_DUE"})
_REQUEST_NAMESPACE = uuid.UUID("b7a4e0f2-6f0c-4b8e-a1d3-2c5e9f7b1a44")
_COALESCE_SECONDS = 60
_BILLING_ERRORS: dict[str, tuple[int, str]] = {
    "ALREADY_SUBSCRIBED": (409, "you already have an active subscription"),
    "NO_CUSTOMER": (404, "there is no billing account for you yet"),
    "STRIPE_UNAVAILABLE": (503, "payments are unavailable right now, retry later"),
    "INVALID_REQUEST": (400, "billing refused the request"),
    # Stripe refused for good: a retry gets the same answer.
    "STRIPE_NOT_FOUND": (
        404,
        "your billing account was not found at the payment provider; contact support",
    ),
    "STRIPE_REJECTED": (
        409,
        "the payment provider refused the request; contact support",
    ),
}


def request_event_id(
    user_id: UUID,
    action: str,
    *,
    idempotency_key: str | None,
    state: str | None,
    now: float | None = None,
) -> UUID:
    """The event id of an assistant request (see the module docstring); `state`
    None means: never merge requests without a key."""
    if idempotency_key:
        return uuid.uuid5(
            _REQUEST_NAMESPACE, f"{user_id}:{action}:key:{idempotency_key}"
        )
    if state is None:
        return uuid.uuid4()
    window = int((time.time() if now is None else now) // _COALESCE_SECONDS)
    return uuid.uuid5(_REQUEST_NAMESPACE, f"{user_id}:{action}:{state}:{window}")


async def ensure_user(conn: Connection, user: TokenUser) -> None:
    """First sight of a token's user creates their row (and keeps the email current)."""
    await repository.upsert_user(conn, user.id, user.email)


async def me(conn: Connection, user_id: UUID) -> UserOut:
    row = await repository.user_overview(
        conn, user_id, max_claim_attempts=verification.MAX_ATTEMPTS
    )
    if row is None:
        raise NotFound("your account does not exist", code="USER_NOT_FOUND")
    return UserOut(**dict(row))


async def set_phone(
    conn: Connection, user_id: UUID, typed: str, *, whatsapp_number: str
) -> PhoneOut:
    """A claim on the number and the code that proves it (see `verification`);
    the same answer whoever holds the number."""
    try:
        phone = to_e164(typed)
    except InvalidPhoneNumber as exc:
        raise InvalidPhone(str(exc)) from None
    code = await verification.claim(conn, user_id, phone)
    if code is None:
        return PhoneOut(phone=phone, verified=True, code=None, link=None)
    return PhoneOut(
        phone=phone,
        verified=False,
        code=code,
        link=verification.wa_me_link(whatsapp_number, code),
    )


async def subscription(conn: Connection, user_id: UUID) -> SubscriptionOut:
    row = await repository.subscription(conn, user_id)
    if row is None:
        return SubscriptionOut(status="NONE", current_period_end=None)
    return SubscriptionOut(
        status=row["status"], current_period_end=row["current_period_end"]
    )


async def assistant(conn: Connection, user_id: UUID) -> AssistantOut:
    row = await repository.assistant(conn, user_id)
    if row is None:
        return AssistantOut(
            status="NONE",
            model=DEFAULT_MODEL,
            created_at=None,
            updated_at=None,
            last_message_at=None,
            last_error=None,
        )
    shown = dict(row)
    if row["status"] != "ERROR":
        shown["last_error"] = None  # the reason of a failure since recovered from
    return AssistantOut(**shown)


async def _require_subscription(conn: Connection, user_id: UUID) -> None:
    # PAST_DUE is the grace period: billing moves it to CANCELED when it ends.
    row = await repository.subscription(conn, user_id)
    if row is None or row["status"] not in _ENTITLED:
        raise PaymentRequired(
            "an active subscription is needed for an assistant",
            code="SUBSCRIPTION_REQUIRED",
        )


def _state(row: asyncpg.Record | None) -> str:
    if row is None:
        return "none"
    return f"{row['status']}@{row['updated_at'].isoformat()}"


async def _request(publish: Publisher, event: Event) -> None:
    ack = await publish(event, what="request")
    log.info(
        "gateway.requested",
        subject=event.publish_subject(),
        event_id=str(event.event_id),
        duplicate=ack.duplicate,
    )


async def provision(
    conn: Connection,
    publish: Publisher,
    user_id: UUID,
    *,
    idempotency_key: str | None,
) -> None:
    """Create the assistant, or re-create the one there is (the seed's POST)."""
    await _require_subscription(conn, user_id)
    row = await repository.assistant(conn, user_id)
    reason: Literal["created", "recreated"] = (
        "recreated" if row is not None and row["status"] != "NONE" else "created"
    )
    event_id = request_event_id(
        user_id, "provision", idempotency_key=idempotency_key, state=_state(row)
    )
    event = AssistantProvisionRequested(
        event_id=event_id, user_id=user_id, reason=reason
    )
    await _request(publish, event)


async def _existing_assistant(conn: Connection, user_id: UUID) -> asyncpg.Record:
    row = await repository.assistant(conn, user_id)
    if row is None or row["status"] == "NONE":
        raise NotFound("you have no assistant", code="ASSISTANT_NOT_FOUND")
    return row


async def change_model(
    conn: Connection,
    publish: Publisher,
    user_id: UUID,
    model: str,
    *,
    idempotency_key: str | None,
) -> None:
    await _require_subscription(conn, user_id)
    await _existing_assistant(conn, user_id)
    event_id = request_event_id(
        user_id, f"model:{model}", idempotency_key=idempotency_key, state=None
    )
    event = AssistantProvisionRequested(
        event_id=event_id, user_id=user_id, reason="model_changed", model=model
    )
    await _request(publish, event)


async def deprovision(
    conn: Connection,
    publish: Publisher,
    user_id: UUID,
    *,
    idempotency_key: str | None,
) -> None:
    row = await _existing_assistant(conn, user_id)
    event_id = request_event_id(
        user_id, "deprovision", idempotency_key=idempotency_key, state=_state(row)
    )
    event = AssistantDeprovisionRequested(event_id=event_id, user_id=user_id)
    await _request(publish, event)


async def _reprovision_if_ready(
    conn: Connection, user_id: UUID, *, service: str
) -> None:
    # Through the outbox: the provisioner must read the keys this transaction
    # writes, so the event may only leave once it has committed.
    row = await repository.assistant(conn, user_id)
    if row is not None and row["status"] in ("READY", "SUSPENDED"):
        event = AssistantProvisionRequested(user_id=user_id, reason="api_keys_changed")
        await outbox.add(conn, event, service=service)


async def api_keys(conn: Connection, user_id: UUID) -> list[ApiKeyOut]:
    rows = await repository.list_api_keys(conn, user_id)
    return [ApiKeyOut(**dict(row)) for row in rows]


async def store_api_key(
    conn: Connection,
    box: SecretBox,
    user_id: UUID,
    provider: LlmProvider,
    key: str,
    *,
    service: str,
) -> ApiKeyOut:
    # The owner inside the ciphertext: a row copied to another user will not open.
    encrypted = box.encrypt(key, owner=str(user_id))
    row = await repository.upsert_api_key(
        conn, user_id, provider.value, encrypted, key[-4:]
    )
    await _reprovision_if_ready(conn, user_id, service=service)
    return ApiKeyOut(**dict(row))


async def remove_api_key(
    conn: Connection, user_id: UUID, provider: LlmProvider, *, service: str
) -> None:
    if not await repository.delete_api_key(conn, user_id, provider.value):
        raise NotFound(f"you have no {provider.value} key", code="API_KEY_NOT_FOUND")
    await _reprovision_if_ready(conn, user_id, service=service)


def _utc_today() -> dt.date:
    # messaging counts usage by UTC day.
    return dt.datetime.now(dt.UTC).date()


def _month_bounds(today: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime(today.year, today.month, 1, tzinfo=dt.UTC)
    if today.month == 12:
        return start, dt.datetime(today.year + 1, 1, 1, tzinfo=dt.UTC)
    return start, dt.datetime(today.year, today.month + 1, 1, tzinfo=dt.UTC)


async def llm_spend(
    conn: Connection, user_id: UUID, *, allowance_usd: float, today: dt.date
) -> LlmSpend:
    """This month's metered model calls (llm-proxy's `llm_calls`)."""
    start, resets = _month_bounds(today)
    rows = await repository.llm_days_since(conn, user_id, start)
    days = [LlmSpendDay(**dict(r), cost_usd=r["cost_microusd"] / 1e6) for r in rows]
    spent = sum(r["platform_cost_microusd"] or 0 for r in rows) / 1e6
    return LlmSpend(
        cap_usd=await repository.llm_cap(conn, user_id),
        month=start.date(),
        resets_at=resets,
        allowance_usd=allowance_usd,
        spent_usd=spent,
        remaining_usd=max(0.0, allowance_usd - spent),
        total_cost_usd=sum(d.cost_usd for d in days),
        calls=sum(d.calls for d in days),
        input_tokens=sum(d.input_tokens for d in days),
        output_tokens=sum(d.output_tokens for d in days),
        cache_read_tokens=sum(d.cache_read_tokens for d in days),
        cache_write_tokens=sum(d.cache_write_tokens for d in days),
        days=days,
    )


async def set_llm_cap(
    conn: Connection,
    user_id: UUID,
    cap_usd: float | None,
    *,
    allowance_usd: float,
    today: dt.date | None = None,
) -> LlmSpend:
    """Set (or with None remove) the user's own monthly cap on model spend."""
    if cap_usd is not None and cap_usd > allowance_usd:
        raise BadRequest(
            f"the cap can be at most the plan's allowance of ${allowance_usd:.2f}",
            code="CAP_ABOVE_ALLOWANCE",
        )
    today = today or _utc_today()
    await repository.set_llm_cap(
        conn,
        user_id,
        None if cap_usd is None else round(cap_usd, 2),
        month=today.replace(day=1),
    )
    return await llm_spend(conn, user_id, allowance_usd=allowance_usd, today=today)


async def usage(
    conn: Connection,
    user_id: UUID,
    *,
    llm_allowance_usd: float,
    today: dt.date | None = None,
) -> UsageOut:
    today = today or _utc_today()
    since = today - dt.timedelta(days=USAGE_DAYS - 1)
    days = [
        UsageDay(**dict(row))
        for row in await repository.usage_since(conn, user_id, since)
        if row["date"] <= today
    ]
    current = next(
        (d for d in days if d.date == today),
        UsageDay(date=today, inbound=0, outbound=0, tokens_in=0, tokens_out=0),
    )
    total = UsageTotals(
        inbound=sum(d.inbound for d in days),
        outbound=sum(d.outbound for d in days),
        tokens_in=sum(d.tokens_in for d in days),
        tokens_out=sum(d.tokens_out for d in days),
    )
    llm = await llm_spend(conn, user_id, allowance_usd=llm_allowance_usd, today=today)
    return UsageOut(today=current, last_30_days=total, days=days, llm=llm)


# Twilio's statuses before "sent": accepted, not yet handed to WhatsApp. We show
# them as sent (one tick) once Twilio took the message: without status
# callbacks (TWILIO_STATUS_CALLBACK_URL empty) nothing more ever arrives.
_TWILIO_DELIVERY: dict[str, DeliveryStatus] = {
    "read": "read",
    "delivered": "delivered",
    "failed": "failed",
    "undelivered": "failed",
    "canceled": "failed",
}


def delivery_status(
    direction: str, status: str, twilio_status: str | None
) -> DeliveryStatus | None:
    """What WhatsApp's ticks would show for a message: from the Twilio status
    messaging stored (which only moves forward), else from our own send state."""
    if direction != "OUTBOUND" or status == "SKIPPED":
        return None
    if twilio_status in _TWILIO_DELIVERY:
        return _TWILIO_DELIVERY[twilio_status]
    if status == "FAILED":
        return "failed"
    if status == "SENT":
        return "sent"
    return "pending"


async def messages(
    conn: Connection, user_id: UUID, *, limit: int, before: UUID | None
) -> MessagePage:
    rows = await repository.messages_before(
        conn, user_id, limit=limit + 1, before=before
    )
    page = [
        MessageOut(
            **{k: v for k, v in row.items() if k != "delivery_status"},
            delivery_status=delivery_status(
                row["direction"], row["status"], row["delivery_status"]
            ),
        )
        for row in rows[:limit]
    ]
    return MessagePage(
        messages=page, next_before=page[-1].id if len(rows) > limit else None
    )


async def billing_url(
    nc: NATS,
    subject: Literal[Subject.BILLING_CHECKOUT_CREATE, Subject.BILLING_PORTAL_CREATE],
    request: CreateCheckout | CreatePortal,
    *,
    timeout: float,
) -> str:
    """Ask billing (request/reply) for a Stripe Checkout or Portal URL."""
    headers = {CORRELATION_HEADER: get_correlation_id() or uuid.uuid4().hex}
    try:
        msg = await nc.request(
            subject.value,
            request.model_dump_json().encode(),
            timeout=timeout,
            headers=headers,
        )
    except (NatsError, TimeoutError) as exc:
        log.warning(
            "gateway.billing.no_answer", subject=subject.value, error=type(exc).__name__
        )
        raise ServiceUnavailable(
            "billing did not answer, retry later",
            code="BILLING_UNAVAILABLE",
            headers={"Retry-After": "5"},
        ) from exc
    try:
        reply = BillingReply.model_validate_json(msg.data)
    except ValidationError as exc:
        log.error(
            "gateway.billing.bad_reply", subject=subject.value, error=str(exc)[:300]
        )
        raise ServiceUnavailable(
            "billing gave an answer we cannot read", code="BILLING_UNAVAILABLE"
        ) from exc
    if reply.ok and reply.url:
        return reply.url
    status, detail = _BILLING_ERRORS.get(
        reply.code or "", (503, "billing could not do that now, retry later")
    )
    code = reply.code or "BILLING_ERROR"
    if status == 409:
        raise Conflict(detail, code=code)
    if status == 404:
        raise NotFound(detail, code=code)
    if status == 400:
        raise BadRequest(detail, code=code)
    raise ServiceUnavailable(
        detail,
        code=code if reply.code in _BILLING_ERRORS else "BILLING_ERROR",
        headers={"Retry-After": "5"},
    )
