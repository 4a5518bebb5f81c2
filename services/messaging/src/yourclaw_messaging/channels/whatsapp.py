"""WhatsApp through Twilio: sending with retries and the shared send rate, the
24-hour window and its approved templates, 1,600-character parts, and
Twilio's status callbacks.

A part is stored as SENDING before it is handed to Twilio. If the attempt
dies before recording Twilio's sid, the next one cannot tell from Twilio's
message list whether it was taken: the status callback, whose URL names our
message, records it instead (`handle_status`), and an unconfirmed part is sent
again only after `send_confirm_seconds`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar
from uuid import UUID

import asyncpg
from yourclaw_common.channels_policy import (
    EVERYWHERE,
    AllowedCountries,
    whatsapp_allowed,
)
from yourclaw_common.db import Connection
from yourclaw_common.events import InboundWhatsApp, InboundWhatsAppStatus
from yourclaw_common.logging import get_logger

from yourclaw_messaging import metrics, outgoing, replies, repository
from yourclaw_messaging.channels.base import ChannelName, Incoming
from yourclaw_messaging.errors import (
    SendUnconfirmed,
    TwilioRejected,
    TwilioSendError,
)
from yourclaw_messaging.outgoing import Planned
from yourclaw_messaging.repository.conversations import Recipient
from yourclaw_messaging.sendrate import SharedTokenBucket
from yourclaw_messaging.twilio import SentMessage, TwilioClient

log = get_logger(__name__)

# WhatsApp lets a business answer freely for 24 hours after the user's last message.
WINDOW_HOURS = 24.0
# Twilio's limit for one WhatsApp message body.
MAX_BODY_CHARS = 1600
# Twilio's "outside the allowed window" error, synchronous or in a status callback.
OUTSIDE_WINDOW_CODES = frozenset({"63016", "63015"})
# A WhatsApp template variable is capped by Meta; keep the text well under it.
_TEMPLATE_TEXT_CHARS = 900
_SENT_STATES = ("SENT", "FAILED", "SKIPPED")


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
class WhatsAppChannel:
    name: ClassVar[ChannelName] = "whatsapp"
    pool: asyncpg.Pool
    twilio: TwilioClient
    sender: str
    templates: Templates = Templates("", "")
    status_callback: str = ""
    send_retries: int = 3
    # Sends per second from `sender`, across every replica.
    send_rate: float = 80.0
    # How long a send of unknown outcome waits for its status callback.
    send_confirm_seconds: float = 60.0
    # Where WhatsApp may carry the assistant (Meta's policy for AI providers).
    allowed: AllowedCountries = EVERYWHERE
    app_url: str = ""

    def __post_init__(self) -> None:
        self._bucket = SharedTokenBucket(self.pool, self.sender, self.send_rate)
        self._sent = outgoing.sent_recorder(self.pool)

    # --- what to send ----------------------------------------------------------

    def split(self, text: str) -> list[str]:
        return replies.split_reply(text, MAX_BODY_CHARS)

    async def fetch_media(self, url: str, *, max_bytes: int) -> tuple[bytes, str]:
        return await self.twilio.fetch_media(url, max_bytes=max_bytes)

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

    def in_flight(self, stored: Sequence[asyncpg.Record]) -> bool:
        return outgoing.in_flight(stored, within=self.send_confirm_seconds)

    async def deliver(
        self, stored: Sequence[asyncpg.Record], address: str, *, fresh: bool
    ) -> None:
        to = f"whatsapp:{address}"
        for row in stored:
            if row["status"] in _SENT_STATES:
                continue
            if row["status"] == "SENDING" and not fresh:
                # An earlier attempt may have handed it to Twilio and died (or
                # lost the connection) before recording it.
                if not await self._unsent(row):
                    metrics.TWILIO_SENDS.labels("reconciled", "").inc()
                    continue
            if row["status"] != "SENDING":  # PENDING: Twilio surely did not take it
                async with self.pool.acquire() as conn:
                    await repository.outbound.mark_sending(conn, row["id"])
            try:
                sent = await self._send(row, to)
            except TwilioSendError as exc:
                if exc.context.get("http_status") is not None:
                    # Twilio answered with an error: no message was created, so
                    # the redelivery sends it without waiting for a callback.
                    async with self.pool.acquire() as conn:
                        await repository.outbound.mark_pending(conn, row["id"])
                raise
            except TwilioRejected as exc:
                code = str(exc.context.get("twilio_code", ""))
                metrics.TWILIO_SENDS.labels("rejected", code).inc()
                log.error(
                    "messaging.twilio.rejected",
                    message_id=str(row["id"]),
                    twilio_code=code,
                    error=exc.detail,
                )
                async with self.pool.acquire() as conn:
                    await repository.outbound.mark_failed(conn, row["id"], code)
                if code in OUTSIDE_WINDOW_CODES and row["kind"] != "template":
                    await self._fallback(row, reason="twilio_63016")
                continue
            metrics.TWILIO_SENDS.labels("sent", "").inc()
            await self._mark_sent(row, sent.sid)

    async def _unsent(self, row: asyncpg.Record) -> bool:
        """Whether a part left SENDING by an earlier attempt is to be sent now.

        Twilio echoes nothing of our request in its message list, so a send is
        recognised by our own id only: its status callback URL carries it, and
        the callback records the send (`handle_status`). Until that has had
        `send_confirm_seconds` to arrive, the turn waits (redelivered later);
        after that Twilio never took it. Never matched by body text: two
        identical replies (apologies) would share one of Twilio's sids.
        """
        async with self.pool.acquire() as conn:
            if await repository.outbound.is_recorded_sent(conn, row["id"]):
                return False
        if not self.status_callback:
            log.warning(
                "messaging.send.unknown_outcome_resent",
                message_id=str(row["id"]),
                reason="no TWILIO_STATUS_CALLBACK_URL to confirm it by",
            )
            return True
        attempted = row["send_attempted_at"] or datetime.now(UTC)
        waited = (datetime.now(UTC) - attempted).total_seconds()
        if waited < self.send_confirm_seconds:
            raise SendUnconfirmed(
                f"waiting up to {self.send_confirm_seconds:g}s for Twilio's status "
                f"callback of message {row['id']} ({waited:.0f}s so far)",
                message_id=str(row["id"]),
            )
        log.warning(
            "messaging.send.unconfirmed_resent",
            message_id=str(row["id"]),
            waited_s=round(waited, 1),
        )
        return True

    async def _send(self, row: asyncpg.Record, to: str) -> SentMessage:
        """Hand one message to Twilio; 429 and 5xx answers are retried with backoff."""
        attempt = 0
        while True:
            await self._bucket.acquire()
            try:
                return await self.twilio.send(
                    to=to,
                    from_=self.sender,
                    body=row["body"],
                    content_sid=row["content_sid"],
                    content_variables=repository.outbound.row_variables(row),
                    status_callback=self._status_callback(row["id"]),
                )
            except TwilioSendError as exc:
                code = str(exc.context.get("twilio_code", ""))
                http_status = exc.context.get("http_status")
                # Only an answered 429/5xx surely did not create a message; a lost
                # connection is left to the redelivery, which asks Twilio first.
                retryable = http_status == 429 or (
                    isinstance(http_status, int) and http_status >= 500
                )
                if not retryable or attempt >= self.send_retries:
                    metrics.TWILIO_SENDS.labels("failed", code).inc()
                    raise
                metrics.TWILIO_SENDS.labels("retried", code).inc()
                delay = min(8.0, 0.5 * 2**attempt) * random.uniform(0.8, 1.2)  # noqa: S311
                log.warning(
                    "messaging.twilio.retry",
                    message_id=str(row["id"]),
                    twilio_code=code,
                    http_status=http_status,
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay)
                attempt += 1

    def _status_callback(self, message_id: UUID) -> str | None:
        """Where Twilio reports this message's status; it names the message, since
        Twilio's callback carries nothing else of our request."""
        if not self.status_callback:
            return None
        joiner = "&" if "?" in self.status_callback else "?"
        return f"{self.status_callback}{joiner}message_id={message_id}"

    async def _mark_sent(self, row: asyncpg.Record, sid: str) -> None:
        # Batched with the other turns' (one statement, one commit); also
        # applies a status callback that beat us here.
        early = await self._sent((row["id"], sid))
        if early is not None:
            await self._after_status(early)

    # --- Twilio status callbacks -----------------------------------------------

    async def handle_status(self, event: InboundWhatsAppStatus) -> None:
        status = event.message_status.strip().lower()
        metrics.STATUS_CALLBACKS.labels(status).inc()
        async with self.pool.acquire() as conn, conn.transaction():
            changed = await repository.outbound.record_twilio_status(
                conn, event.message_sid, status, event.error_code or None
            )
            row = None
            if changed and event.message_id is not None:
                # Our message, named by its callback URL. If it has no sid yet,
                # Twilio took it but the sender has not recorded that: still on
                # its way, or it died in between. Recording it here means a
                # redelivered turn finds it SENT and does not send it again.
                (row,) = await repository.outbound.mark_sent(
                    conn, [(event.message_id, event.message_sid)]
                )
            if changed and row is None:
                row = await repository.outbound.apply_twilio_status(
                    conn, event.message_sid
                )
        if not changed:
            log.info(
                "messaging.status.stale",
                message_sid=event.message_sid,
                message_status=status,
            )
            return
        if row is not None:
            await self._after_status(row)

    async def _after_status(self, row: asyncpg.Record) -> None:
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
