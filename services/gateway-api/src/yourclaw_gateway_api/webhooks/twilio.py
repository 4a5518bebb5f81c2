"""Twilio's webhooks, the hot paths, as bare ASGI handlers: inbound WhatsApp
messages (`POST /api/v1/webhooks/twilio/whatsapp`), inbound SMS
(`POST /api/v1/webhooks/twilio/sms`, while `TWILIO_SMS_NUMBER` is set) and the
status callbacks of the messages we send (`POST /api/v1/webhooks/twilio/status`),
which come two or three per message.

Verify, publish, answer. FastAPI/Starlette would add ~50 µs and python-multipart
another ~50 µs per request (profiled; docs/benchmarks.md), so the dispatcher
in `app.py` sends these paths here before FastAPI sees them: raw body, one
lean form parse (`form.py`), a precomputed HMAC, orjson, and the PubAck awaited before answering.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
from starlette.types import Receive, Scope, Send
from yourclaw_common.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    ServiceUnavailable,
)
from yourclaw_common.events import (
    InboundMedia,
    InboundSms,
    InboundWhatsApp,
    InboundWhatsAppStatus,
    provider_event_id,
)
from yourclaw_common.logging import get_logger

from yourclaw_gateway_api import verification
from yourclaw_gateway_api.asgi import fixed_response
from yourclaw_gateway_api.errors import UnsupportedMediaType
from yourclaw_gateway_api.metrics import WebhookOutcome
from yourclaw_gateway_api.settings import GatewaySettings
from yourclaw_gateway_api.verification import codes_in
from yourclaw_gateway_api.webhooks.form import parse_form
from yourclaw_gateway_api.webhooks.lean import LeanWebhook, Rejected
from yourclaw_gateway_api.webhooks.twilio_signature import TwilioSignature

__all__ = [
    "TWILIO_SMS_PATH",
    "TWILIO_STATUS_PATH",
    "TWILIO_WHATSAPP_PATH",
    "TwilioWebhook",
    "twilio_webhooks",
]

log = get_logger(__name__)

TWILIO_WHATSAPP_PATH = "/api/v1/webhooks/twilio/whatsapp"
TWILIO_STATUS_PATH = "/api/v1/webhooks/twilio/status"
TWILIO_SMS_PATH = "/api/v1/webhooks/twilio/sms"

_FORM = b"application/x-www-form-urlencoded"
_TWIML = fixed_response(200, b"<Response></Response>", b"text/xml")


def _invalid_signature(reason: str) -> Rejected:
    return Rejected(
        WebhookOutcome.INVALID_SIGNATURE,
        Forbidden("invalid Twilio signature", code="INVALID_SIGNATURE", reason=reason),
    )


def _bad_request(
    detail: str, *, code: str = "BAD_REQUEST", **log_fields: Any
) -> Rejected:
    return Rejected(
        WebhookOutcome.BAD_REQUEST, BadRequest(detail, code=code, **log_fields)
    )


# What PostgreSQL cannot store, or stores only by failing a whole batched insert
# with it: text with NUL, a sid too long for its unique index. Twilio's sids are
# 34 characters, a WhatsApp message at most 4,096, an attachment list at most 10.
_MAX_SID_CHARS = 64
_MAX_FIELD_CHARS = 4096
_MAX_NUM_MEDIA = 10
_SID_FIELDS = frozenset({"MessageSid", "SmsSid", "SmsMessageSid", "AccountSid"})


def _check_storable(pairs: list[tuple[str, str]]) -> None:
    """Refuse, with a clear code, a signed form that could never be stored."""
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise _bad_request(
                f"the field {name[:40]!r} contains a NUL character",
                code="INVALID_CHARACTER",
                field=name[:40],
            )
        limit = _MAX_SID_CHARS if name in _SID_FIELDS else _MAX_FIELD_CHARS
        if len(value) > limit or len(name) > _MAX_SID_CHARS:
            raise _bad_request(
                f"the field {name[:40]!r} is longer than {limit} characters",
                code="FIELD_TOO_LONG",
                field=name[:40],
                length=len(value),
            )


# An event from a verified form and the URL's query string, or _bad_request.
EventOf = Callable[[dict[str, str], str], InboundWhatsApp | InboundWhatsAppStatus]

# An inbound message: WhatsApp, or SMS (the same fields, numbers unprefixed).
_Inbound = TypeVar("_Inbound", bound=InboundWhatsApp)


def _inbound_of(params: dict[str, str], kind: type[_Inbound]) -> _Inbound:
    message_sid = params.get("MessageSid")
    from_number = params.get("From")
    if not message_sid or not from_number:
        raise _bad_request("MessageSid and From are required", message_sid=message_sid)
    raw = (params.get("NumMedia") or "0").strip()
    # isdigit() first: int() would take "1_0", and a 10,000-digit count is slow.
    num_media = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 2 else -1
    if not 0 <= num_media <= _MAX_NUM_MEDIA:
        raise _bad_request(
            f"NumMedia must be a count from 0 to {_MAX_NUM_MEDIA}",
            code="INVALID_NUM_MEDIA",
            message_sid=message_sid,
            num_media=raw[:20],
        )
    media = tuple(
        InboundMedia(url=url, content_type=params.get(f"MediaContentType{n}"))
        for n in range(num_media)
        if (url := params.get(f"MediaUrl{n}"))
    )
    return kind(
        event_id=provider_event_id(message_sid),
        message_sid=message_sid,
        account_sid=params.get("AccountSid", ""),
        from_number=from_number,
        to_number=params.get("To", ""),
        body=params.get("Body", ""),
        profile_name=params.get("ProfileName"),
        num_media=num_media,
        media=media,
        params=params,
    )


def _inbound_event(params: dict[str, str], query: str) -> InboundWhatsApp:
    return _inbound_of(params, InboundWhatsApp)


def _sms_event(params: dict[str, str], query: str) -> InboundSms:
    return _inbound_of(params, InboundSms)


def _status_event(params: dict[str, str], query: str) -> InboundWhatsAppStatus:
    sid = params.get("MessageSid") or params.get("SmsSid")
    status = params.get("MessageStatus") or params.get("SmsStatus")
    if not sid or not status:
        raise _bad_request("MessageSid and MessageStatus are required", message_sid=sid)
    return InboundWhatsAppStatus(
        # Twilio retries a callback with the same sid and status: one event.
        event_id=provider_event_id(f"{sid}:{status}"),
        message_sid=sid,
        message_status=status,
        error_code=params.get("ErrorCode") or None,
        params=params,
        message_id=_message_id(query),
    )


def _message_id(query: str) -> UUID | None:
    """The `message_id` messaging put on the callback URL. A signed callback is
    never refused over it (the URL is ours to have got wrong, not Twilio's)."""
    if "message_id=" not in query:
        return None
    for name, value in parse_form(query):
        if name == "message_id":
            try:
                return UUID(value)
            except ValueError:
                return None
    return None


def twilio_webhooks(settings: GatewaySettings) -> list[TwilioWebhook]:
    """Inbound messages and the status callbacks of the messages we send."""
    # Without an SMS number the SMS path answers that SMS is off, and publishes
    # nothing, rather than not existing: Twilio's debugger then says why.
    sms_off = (
        None
        if settings.twilio_sms_number
        else (
            "SMS_NOT_CONFIGURED",
            "SMS is not configured here (TWILIO_SMS_NUMBER is empty)",
        )
    )
    return [
        TwilioWebhook(
            settings,
            path=path,
            provider=provider,
            event_of=event,
            what=what,
            disabled=disabled,
        )
        for path, provider, event, what, disabled in (
            # provider: the metrics label and log name; what: named in a 503
            (TWILIO_WHATSAPP_PATH, "twilio", _inbound_event, "message", None),
            (TWILIO_SMS_PATH, "twilio_sms", _sms_event, "message", sms_off),
            (TWILIO_STATUS_PATH, "twilio_status", _status_event, "callback", None),
        )
    ]


class TwilioWebhook(LeanWebhook):
    """The ASGI handler of one Twilio webhook path."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        path: str,
        provider: str,
        event_of: EventOf,
        what: str,
        disabled: tuple[str, str] | None = None,
    ):
        super().__init__(
            path=path,
            provider=provider,
            rate_label="twilio",
            max_body=settings.webhook_max_body_bytes,
        )
        token = settings.twilio_auth_token.get_secret_value()
        # (code, detail) of why this path is off (its channel is not configured).
        self._disabled = disabled
        # No token means no check is possible: every request is refused.
        self._signature = (
            TwilioSignature(token, settings.public_base_url + path) if token else None
        )
        self._event_of = event_of
        self._what = what

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._check_post(scope)
        if self._disabled is not None:
            code, detail = self._disabled
            raise Rejected(WebhookOutcome.NOT_CONFIGURED, NotFound(detail, code=code))
        if self._signature is None:
            raise Rejected(
                WebhookOutcome.NOT_CONFIGURED,
                Forbidden(
                    "the Twilio webhook is not configured",
                    code="TWILIO_NOT_CONFIGURED",
                ),
            )
        content_type = signature = None
        content_length = b""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"x-twilio-signature":
                signature = value
            elif name == b"content-length":
                content_length = value
        if (
            content_type is None
            or content_type.partition(b";")[0].strip().lower() != _FORM
        ):
            raise Rejected(
                WebhookOutcome.UNSUPPORTED_MEDIA_TYPE,
                UnsupportedMediaType("expected application/x-www-form-urlencoded"),
            )
        if not signature:
            raise _invalid_signature("missing")
        declared = int(content_length) if content_length.isdigit() else None
        body = await self._body(receive, declared=declared)
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise _bad_request("the body is not UTF-8") from None
        pairs = parse_form(text)
        query = scope["query_string"].decode("latin-1")
        if not self._signature.is_valid(signature, pairs, query=query, body=body):
            raise _invalid_signature("mismatch")
        _check_storable(pairs)
        event = self._event_of(dict(pairs), query)
        if isinstance(event, InboundWhatsApp) and (codes := codes_in(event.body)):
            event = await self._prove_phone(scope, event, codes)
        # A failed publish is a 503: Twilio retries a 5xx (with connection
        # overrides).
        ack = await self._publish(
            scope, event, what=self._what, message_sid=event.message_sid
        )
        log.debug(
            f"{self._log}.accepted",
            message_sid=event.message_sid,
            duplicate=ack.duplicate,
            seq=ack.seq,
        )
        await send(_TWIML[0])
        await send(_TWIML[1])

    async def _prove_phone(
        self, scope: Scope, event: InboundWhatsApp, codes: list[str]
    ) -> InboundWhatsApp:
        """The message with `verifies_phone` set if it proved its sender's number;
        only a message with a 6-digit run in it gets here."""
        pool: asyncpg.Pool = scope["state"]["pool"]
        phone = event.from_number.removeprefix("whatsapp:").strip()
        try:
            # One statement for the usual case (no claim on the number, or it is
            # proven already); the transaction only when a claim may be settled.
            if not await verification.may_prove(pool, phone, event.message_sid):
                return event
            async with pool.acquire() as conn, conn.transaction():
                proved = await verification.prove(conn, phone, codes, event.message_sid)
        except Exception as exc:
            # Twilio retries a 5xx; the proof is keyed by the MessageSid.
            raise Rejected(
                WebhookOutcome.PUBLISH_FAILED,
                ServiceUnavailable(
                    f"could not check the {self._what}, retry later",
                    code="PHONE_CHECK_FAILED",
                    message_sid=event.message_sid,
                    error=f"{type(exc).__name__}: {exc}"[:300],
                ),
            ) from exc
        if not proved:
            return event
        log.info(f"{self._log}.phone_verified", message_sid=event.message_sid)
        return event.model_copy(update={"verifies_phone": True})
