"""WhatsApp through Twilio: the 24-hour window and its approved templates
(also when Twilio refuses a free-form message for the window, at once or in a
status callback), 1,600-character parts. Sending, retries and status callbacks
are `TwilioChannel`'s, shared with SMS.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import ClassVar
from uuid import UUID

import asyncpg
from yourclaw_common.channels_policy import (
    EVERYWHERE,
    AllowedCountries,
    whatsapp_allowed,
)
from yourclaw_common.db import Connection
from yourclaw_common.events import InboundWhatsApp
from yourclaw_common.logging import get_logger

from yourclaw_messaging import metrics, outgoing, replies, repository
from yourclaw_messaging.channels.base import ChannelName, Incoming, SpokenReply
from yourclaw_messaging.channels.twilio_channel import TwilioChannel
from yourclaw_messaging.errors import TwilioRejected, TwilioSendError
from yourclaw_messaging.outgoing import Planned
from yourclaw_messaging.repository.conversations import Recipient
from yourclaw_messaging.speech import HostedMedia

log = get_logger(__name__)

# WhatsApp lets a business answer freely for 24 hours after the user's last message.
WINDOW_HOURS = 24.0
# Twilio's limit for one WhatsApp message body.
MAX_BODY_CHARS = 1600
# Twilio's "outside the allowed window" error, synchronous or in a status callback.
OUTSIDE_WINDOW_CODES = frozenset({"63016", "63015"})
# A WhatsApp template variable is capped by Meta; keep the text well under it.
_TEMPLATE_TEXT_CHARS = 900


def phone_of(address: str) -> str:
    """`whatsapp:+15551234567` → `+15551234567`."""
    return address.removeprefix("whatsapp:").strip()


def incoming(event: InboundWhatsApp) -> Incoming:
    return Incoming(
        channel="whatsapp",
        address=phone_of(event.from_number),
        key=event.message_sid,
        body=event.body,
        media=event.media,
        verifies_phone=event.verifies_phone,
    )


async def stranger_of_phone(conn: Connection, phone: str, app_url: str) -> str:
    """A number with no account: how to prove it, if it was claimed on the
    dashboard (nothing it says reaches an assistant), else how to sign up."""
    if await repository.inbound.phone_claimed(conn, phone):
        return replies.VERIFY_PENDING.format(app_url=app_url)
    return replies.SIGNUP.format(app_url=app_url)


@dataclass(frozen=True)
class Templates:
    """Approved template (Content) sids for messages outside the window."""

    assistant_ready: str
    notification: str


@dataclass
class WhatsAppChannel(TwilioChannel):
    name: ClassVar[ChannelName] = "whatsapp"
    templates: Templates = Templates("", "")
    # Where WhatsApp may carry the assistant (Meta's policy for AI providers).
    allowed: AllowedCountries = EVERYWHERE
    app_url: str = ""
    # Where voice replies are kept for Twilio to fetch; None: text only.
    voice_media: HostedMedia | None = None

    def speaks(self) -> bool:
        return self.voice_media is not None

    async def deliver_spoken(self, reply: SpokenReply) -> None:
        """The text as always, then the audio as a message of its own, which
        Twilio fetches from gateway-api by a signed link. Not recorded as a
        reply part: a retried turn sends the text it still owes, never the
        audio twice."""
        await self.deliver(reply.stored, reply.address, fresh=True)
        if self.voice_media is None:
            return
        try:
            link = await self.voice_media.host(reply.user_id, reply.speech)
            await self._bucket.acquire()
            sent = await self.twilio.send(
                to=self.to(reply.address), from_=self.sender, media_url=link
            )
        except (TwilioSendError, TwilioRejected) as exc:
            metrics.VOICE_REPLIES.labels(self.name, "not_sent").inc()
            log.warning(
                "messaging.voice_reply.not_sent",
                user_id=str(reply.user_id),
                error=exc.detail,
            )
            return
        metrics.VOICE_REPLIES.labels(self.name, "sent").inc()
        log.info("messaging.voice_reply.sent", user_id=str(reply.user_id), sid=sent.sid)

    # --- what to send ----------------------------------------------------------

    def split(self, text: str) -> list[str]:
        return replies.split_reply(text, MAX_BODY_CHARS)

    async def intercept(
        self, incoming: Incoming, recipient: Recipient | None
    ) -> str | None:
        if recipient is None or self.serves(incoming.address):
            return None
        # Their number is from a country where WhatsApp may not carry a
        # general-purpose assistant: where to talk to it instead.
        return replies.WHATSAPP_NOT_HERE.format(app_url=self.app_url)

    def serves(self, address: str) -> bool:
        return whatsapp_allowed(address, self.allowed)

    async def stranger(self, conn: Connection, address: str, app_url: str) -> str:
        return await stranger_of_phone(conn, address, app_url)

    def typing(self, address: str) -> AbstractAsyncContextManager[None]:
        return nullcontext()

    async def plan_notice(self, conn: Connection, user_id: UUID, text: str) -> Planned:
        """Free-form inside the window, the notification template outside it."""
        if await repository.conversations.in_window(
            conn, user_id, hours=WINDOW_HOURS, channel=self.name
        ):
            return Planned(self.split(text) or [""], "proactive")
        metrics.TEMPLATE_FALLBACKS.labels("outside_window").inc()
        return self._notification_template(text)

    async def plan_ready(self, conn: Connection, user_id: UUID, text: str) -> Planned:
        """Free-form inside the window the user opened (free of charge), the
        approved ready template outside it."""
        if await repository.conversations.in_window(
            conn, user_id, hours=WINDOW_HOURS, channel=self.name
        ):
            return Planned([text], "proactive")
        if self.templates.assistant_ready:
            return Planned(
                [text], "template", content_sid=self.templates.assistant_ready
            )
        log.error("messaging.template.not_configured", template="ready")
        return Planned([text], "template", error_code="NO_TEMPLATE")

    def _notification_template(self, text: str) -> Planned:
        if not self.templates.notification:
            metrics.TEMPLATE_FALLBACKS.labels("no_template").inc()
            log.error("messaging.template.not_configured", template="notification")
            return Planned([text], "template", error_code="NO_TEMPLATE")
        short = text.strip()
        if len(short) > _TEMPLATE_TEXT_CHARS:
            short = short[: _TEMPLATE_TEXT_CHARS - 1].rstrip() + "…"
        return Planned(
            [replies.NOTIFICATION_FALLBACK.format(text=short)],
            "template",
            content_sid=self.templates.notification,
            content_variables={"1": short},
        )

    # --- sending ---------------------------------------------------------------

    def to(self, address: str) -> str:
        return f"whatsapp:{address}"

    async def rejected(self, row: asyncpg.Record, code: str) -> None:
        if code in OUTSIDE_WINDOW_CODES and row["kind"] != "template":
            await self._fallback(row, reason="twilio_63016")

    async def after_status(self, row: asyncpg.Record) -> None:
        """A message Twilio could not deliver because the window had closed gets
        the approved template instead."""
        if (
            row["delivery_status"] in ("failed", "undelivered")
            and row["error_code"] in OUTSIDE_WINDOW_CODES
            and row["kind"] != "template"
        ):
            await self._fallback(row, reason="twilio_63016")

    async def _fallback(self, row: asyncpg.Record, *, reason: str) -> None:
        planned = self._notification_template(row["body"])
        metrics.TEMPLATE_FALLBACKS.labels(reason).inc()
        log.info(
            "messaging.template.fallback", message_id=str(row["id"]), reason=reason
        )
        async with self.pool.acquire() as conn, conn.transaction():
            stored, fresh = await outgoing.store(
                conn,
                f"fallback:{row['id']}",
                row["user_id"],
                self.name,
                row["phone_e164"],
                planned,
            )
        await self.deliver(stored, row["phone_e164"], fresh=fresh)
