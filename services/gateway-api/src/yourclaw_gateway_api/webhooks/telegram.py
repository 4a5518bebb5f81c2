"""`POST /api/v1/webhooks/telegram`: verify, publish, answer.

Telegram does not sign updates: setWebhook's `secret_token` comes back in the
`X-Telegram-Bot-Api-Secret-Token` header, compared in constant time; missing
or wrong → 401 and nothing published. A message from a private chat becomes
`inbound.telegram` with `Nats-Msg-Id = telegram:<update_id>`, so Telegram's
retries are dropped by JetStream. `/start <code>` is redeemed first (the chat
is linked) and published with its outcome in `link` and without the code.
Other updates (edits, group chats, anything but `message`) are acknowledged and
dropped. The PubAck is awaited before the 200; if publishing fails we answer
503 and Telegram retries.
"""

from __future__ import annotations

import hmac
from typing import Any, Literal

import asyncpg
import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel
from yourclaw_common.errors import (
    BadRequest,
    Forbidden,
    ServiceUnavailable,
    Unauthorized,
)
from yourclaw_common.events import InboundMedia, InboundTelegram, provider_event_id
from yourclaw_common.logging import get_logger

from yourclaw_gateway_api import telegram_links
from yourclaw_gateway_api.dependencies import Pool, Publish
from yourclaw_gateway_api.errors import error_responses
from yourclaw_gateway_api.metrics import (
    WEBHOOK_PUBLISH_SECONDS,
    WEBHOOK_REQUESTS,
    WEBHOOK_SIGNATURE_FAILURES,
    WebhookOutcome,
    webhook_requests,
)
from yourclaw_gateway_api.settings import GatewaySettings

__all__ = [
    "SECRET_HEADER",
    "TELEGRAM_WEBHOOK_PATH",
    "TelegramWebhookReceipt",
    "inbound_event",
    "telegram_webhook_router",
]

log = get_logger(__name__)

TELEGRAM_WEBHOOK_PATH = "/api/v1/webhooks/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
_PROVIDER = "telegram"
# A message's text is at most 4,096 characters, a caption 1,024.
_MAX_TEXT_CHARS = 4096
# The media a message may carry, and the type of those Telegram gives none.
_MEDIA_TYPES = {
    "voice": "audio/ogg",
    "audio": "audio/mpeg",
    "document": "application/octet-stream",
    "video": "video/mp4",
    "video_note": "video/mp4",
    "animation": "video/mp4",
}


_REQUESTS = webhook_requests(_PROVIDER)
_IGNORED = WEBHOOK_REQUESTS.labels(_PROVIDER, "ignored")
_SECRET_FAILURES = WEBHOOK_SIGNATURE_FAILURES.labels(_PROVIDER)
_PUBLISH_SECONDS = WEBHOOK_PUBLISH_SECONDS.labels(_PROVIDER)


class TelegramWebhookReceipt(BaseModel):
    """What Telegram gets back: the update was queued (or is one we ignore)."""

    received: Literal[True] = True
    queued: bool


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value.replace("\x00", "") if isinstance(value, str) else None


def _photo(sizes: Any) -> InboundMedia | None:
    """The largest size of a photo (Telegram lists them smallest first)."""
    if not isinstance(sizes, list):
        return None
    usable = [s for s in sizes if isinstance(s, dict) and _str(s.get("file_id"))]
    if not usable:
        return None
    largest = max(
        enumerate(usable),
        key=lambda item: (
            _int(item[1].get("file_size")) or 0,
            (_int(item[1].get("width")) or 0) * (_int(item[1].get("height")) or 0),
            item[0],
        ),
    )[1]
    return InboundMedia(url=largest["file_id"], content_type="image/jpeg")


def _media(message: dict[str, Any]) -> tuple[InboundMedia, ...]:
    found: list[InboundMedia] = []
    if (photo := _photo(message.get("photo"))) is not None:
        found.append(photo)
    for kind, default_type in _MEDIA_TYPES.items():
        item = message.get(kind)
        if isinstance(item, dict) and (file_id := _str(item.get("file_id"))):
            content_type = _str(item.get("mime_type")) or default_type
            found.append(InboundMedia(url=file_id, content_type=content_type))
    sticker = message.get("sticker")
    if isinstance(sticker, dict) and (file_id := _str(sticker.get("file_id"))):
        animated = sticker.get("is_animated") is True
        video = sticker.get("is_video") is True
        content_type = (
            "application/x-tgsticker"
            if animated
            else "video/webm"
            if video
            else "image/webp"
        )
        found.append(InboundMedia(url=file_id, content_type=content_type))
    return tuple(found)


def inbound_event(update: dict[str, Any]) -> InboundTelegram | None:
    """The event of a message from a private chat; None for any other update."""
    update_id = _int(update.get("update_id"))
    message = update.get("message")
    if update_id is None or not isinstance(message, dict):
        return None
    chat = message.get("chat")
    message_id = _int(message.get("message_id"))
    if not isinstance(chat, dict) or message_id is None:
        return None
    chat_id = _int(chat.get("id"))
    # Only a user's own chat with the bot: in a group, others would read the
    # assistant's answers, and a group could be linked to someone's account.
    if chat_id is None or chat.get("type") != "private":
        return None
    text = _str(message.get("text")) or _str(message.get("caption")) or ""
    return InboundTelegram(
        event_id=provider_event_id(f"telegram:{update_id}"),
        update_id=update_id,
        chat_id=chat_id,
        message_id=message_id,
        text=text[:_MAX_TEXT_CHARS],
        username=_str(chat.get("username")),
        first_name=_str(chat.get("first_name")),
        media=_media(message),
    )


def _update_from(body: bytes) -> dict[str, Any]:
    try:
        update = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("the body is not JSON", code="INVALID_UPDATE") from None
    if not isinstance(update, dict) or _int(update.get("update_id")) is None:
        raise BadRequest("not a Telegram Update (update_id)", code="INVALID_UPDATE")
    return update


# The route reads its header and body itself; this says what it expects.
_UPDATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["update_id"],
    "properties": {"update_id": {"type": "integer"}},
}
_SECRET_PARAMETER = {
    "name": SECRET_HEADER,
    "in": "header",
    "required": True,
    "description": "The secret_token given to setWebhook.",
    "schema": {"type": "string"},
}
_JSON_BODY = {"application/json": {"schema": _UPDATE_SCHEMA}}
_OPENAPI = {
    "parameters": [_SECRET_PARAMETER],
    "requestBody": {"required": True, "content": _JSON_BODY},
}


def _responses() -> dict[int | str, dict[str, Any]]:
    return error_responses(
        {
            400: "INVALID_UPDATE: the body is not a Telegram Update",
            401: f"INVALID_SECRET_TOKEN: {SECRET_HEADER} is missing or wrong",
            403: "TELEGRAM_NOT_CONFIGURED: no bot token or webhook secret is set",
            503: "PUBLISH_FAILED, LINK_CHECK_FAILED: could not queue the update; "
            "Telegram retries",
        }
    )


def telegram_webhook_router(settings: GatewaySettings) -> APIRouter:
    """The Telegram webhook route, bound to the configured secret token."""
    secret = settings.telegram_webhook_secret.get_secret_value().encode()
    # An empty secret would match an absent header: refuse everything instead.
    configured = bool(secret) and bool(settings.telegram_bot_token.get_secret_value())
    router = APIRouter(tags=["webhooks"])

    @router.post(
        TELEGRAM_WEBHOOK_PATH,
        responses=_responses(),
        openapi_extra=_OPENAPI,
        summary="Telegram Bot API updates (secret token)",
    )
    async def telegram_webhook(
        request: Request, publish: Publish, pool: Pool
    ) -> TelegramWebhookReceipt:
        if not configured:
            _REQUESTS[WebhookOutcome.NOT_CONFIGURED].inc()
            log.warning("gateway.telegram.not_configured")
            raise Forbidden(
                "the Telegram webhook is not configured",
                code="TELEGRAM_NOT_CONFIGURED",
            )
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, secret):
            _REQUESTS[WebhookOutcome.INVALID_SIGNATURE].inc()
            _SECRET_FAILURES.inc()
            client = request.client
            log.warning(
                "gateway.telegram.rejected",
                reason="missing" if not given else "mismatch",
                client=client.host if client else None,
            )
            raise Unauthorized(
                f"missing or wrong {SECRET_HEADER}", code="INVALID_SECRET_TOKEN"
            )
        try:
            update = _update_from(await request.body())
        except BadRequest:
            _REQUESTS[WebhookOutcome.BAD_REQUEST].inc()
            raise
        event = inbound_event(update)
        if event is None:
            _IGNORED.inc()
            log.debug("gateway.telegram.ignored", update_id=update["update_id"])
            return TelegramWebhookReceipt(queued=False)
        if (payload := telegram_links.start_payload(event.text)) is not None:
            event = await _link(pool, event, payload)
        # A failed publish raises 503 PUBLISH_FAILED: Telegram retries.
        outcome = WebhookOutcome.PUBLISH_FAILED
        try:
            with _PUBLISH_SECONDS.time():
                ack = await publish(event, what="update", update_id=event.update_id)
            outcome = WebhookOutcome.ACCEPTED
            log.debug("gateway.telegram.accepted", duplicate=ack.duplicate)
            return TelegramWebhookReceipt(queued=True)
        finally:
            _REQUESTS[outcome].inc()

    return router


async def _link(
    pool: asyncpg.Pool, event: InboundTelegram, payload: str
) -> InboundTelegram:
    """`/start`: with a code, the event says what became of it (and no longer
    carries the code); bare, it stays a message."""
    if not payload:
        return event
    try:
        async with pool.acquire() as conn, conn.transaction():
            result = await telegram_links.redeem(
                conn,
                payload,
                chat_id=event.chat_id,
                username=event.username,
                update_id=event.update_id,
            )
    except Exception as exc:
        # Telegram retries a 5xx; the link is keyed by the update_id.
        log.warning(
            "gateway.telegram.link_failed",
            update_id=event.update_id,
            error=type(exc).__name__,
        )
        raise ServiceUnavailable(
            "could not check the link code, retry later",
            code="LINK_CHECK_FAILED",
            headers={"Retry-After": "2"},
        ) from exc
    log.info("gateway.telegram.link", update_id=event.update_id, result=result)
    return event.model_copy(update={"text": "/start", "link": result})
