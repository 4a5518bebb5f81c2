"""`POST /api/v1/webhooks/telegram`: verify, publish, answer, as a bare ASGI
handler that the dispatcher in `app.py` serves before FastAPI, as it does the
Twilio webhooks (one message each, and FastAPI's routing, dependencies and
response model cost a millisecond a message: docs/benchmarks.md).

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
from typing import Any

import asyncpg
import orjson
from starlette.types import Receive, Scope, Send
from yourclaw_common.errors import (
    BadRequest,
    Forbidden,
    ServiceUnavailable,
    Unauthorized,
)
from yourclaw_common.events import InboundMedia, InboundTelegram, provider_event_id
from yourclaw_common.logging import get_logger

from yourclaw_gateway_api import telegram_links
from yourclaw_gateway_api.asgi import fixed_response
from yourclaw_gateway_api.metrics import WEBHOOK_REQUESTS, WebhookOutcome
from yourclaw_gateway_api.settings import GatewaySettings
from yourclaw_gateway_api.webhooks.lean import LeanWebhook, Rejected

__all__ = [
    "SECRET_HEADER",
    "TELEGRAM_WEBHOOK_PATH",
    "TelegramWebhook",
    "inbound_event",
]

log = get_logger(__name__)

TELEGRAM_WEBHOOK_PATH = "/api/v1/webhooks/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
_SECRET_HEADER_KEY = SECRET_HEADER.lower().encode()
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

_IGNORED = WEBHOOK_REQUESTS.labels(_PROVIDER, "ignored")
# What Telegram gets back: the update was queued, or is one we ignore.
_QUEUED_ANSWER = fixed_response(
    200, b'{"received":true,"queued":true}', b"application/json"
)
_IGNORED_ANSWER = fixed_response(
    200, b'{"received":true,"queued":false}', b"application/json"
)


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
        raise _invalid_update("the body is not JSON") from None
    if not isinstance(update, dict) or _int(update.get("update_id")) is None:
        raise _invalid_update("not a Telegram Update (update_id)")
    return update


def _invalid_update(detail: str) -> Rejected:
    return Rejected(
        WebhookOutcome.BAD_REQUEST, BadRequest(detail, code="INVALID_UPDATE")
    )


class TelegramWebhook(LeanWebhook):
    """The ASGI handler of the Telegram webhook, bound to the configured secret
    token."""

    def __init__(self, settings: GatewaySettings):
        super().__init__(
            path=TELEGRAM_WEBHOOK_PATH,
            provider=_PROVIDER,
            rate_label=_PROVIDER,
            max_body=settings.webhook_max_body_bytes,
        )
        self._secret = settings.telegram_webhook_secret.get_secret_value().encode()
        # An empty secret would match an absent header: refuse everything instead.
        self._configured = bool(self._secret) and bool(
            settings.telegram_bot_token.get_secret_value()
        )

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._check_post(scope)
        given = b""
        content_length = b""
        for name, value in scope["headers"]:
            if name == _SECRET_HEADER_KEY:
                given = value
            elif name == b"content-length":
                content_length = value
        # The size first, as for every route with a body.
        declared = int(content_length) if content_length.isdigit() else None
        body = await self._body(receive, declared=declared)
        if not self._configured:
            raise Rejected(
                WebhookOutcome.NOT_CONFIGURED,
                Forbidden(
                    "the Telegram webhook is not configured",
                    code="TELEGRAM_NOT_CONFIGURED",
                ),
            )
        if not hmac.compare_digest(given, self._secret):
            raise Rejected(
                WebhookOutcome.INVALID_SIGNATURE,
                Unauthorized(
                    f"missing or wrong {SECRET_HEADER}",
                    code="INVALID_SECRET_TOKEN",
                    reason="missing" if not given else "mismatch",
                ),
            )
        update = _update_from(body)
        event = inbound_event(update)
        if event is None:
            _IGNORED.inc()
            log.debug("gateway.telegram.ignored", update_id=update["update_id"])
            await send(_IGNORED_ANSWER[0])
            await send(_IGNORED_ANSWER[1])
            return
        if (payload := telegram_links.start_payload(event.text)) is not None:
            event = await _link(scope["state"]["pool"], event, payload)
        # A failed publish is a 503 PUBLISH_FAILED: Telegram retries.
        ack = await self._publish(
            scope, event, what="update", update_id=event.update_id
        )
        log.debug("gateway.telegram.accepted", duplicate=ack.duplicate)
        await send(_QUEUED_ANSWER[0])
        await send(_QUEUED_ANSWER[1])


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
        raise Rejected(
            WebhookOutcome.PUBLISH_FAILED,
            ServiceUnavailable(
                "could not check the link code, retry later",
                code="LINK_CHECK_FAILED",
                headers={"Retry-After": "2"},
                update_id=event.update_id,
                error=type(exc).__name__,
            ),
        ) from exc
    log.info("gateway.telegram.link", update_id=event.update_id, result=result)
    return event.model_copy(update={"text": "/start", "link": result})
