"""One WhatsApp turn, from an inbound message to its reply parts at Twilio.

A turn spans several short transactions around slow HTTP calls (the assistant,
Twilio), so it takes the pool rather than one connection. Each step is
recorded before the next begins, which makes a redelivered message pick up
where the crashed attempt stopped:

    inbound stored ─► reply parts stored (PENDING) ─► SENDING ─► SENT
                      (assistant asked once)          (Twilio list consulted
                                                       if the outcome is unknown)
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from weakref import WeakValueDictionary

import asyncpg
from yourclaw_common.crypto import SecretBox, SecretBoxError
from yourclaw_common.events import InboundWhatsApp
from yourclaw_common.logging import get_logger

from yourclaw_messaging import metrics, replies, repository
from yourclaw_messaging.assistant import AssistantClient
from yourclaw_messaging.errors import AssistantUnavailable, TwilioRejected
from yourclaw_messaging.repository import Recipient
from yourclaw_messaging.twilio import TwilioClient

log = get_logger(__name__)


def phone_of(address: str) -> str:
    """`whatsapp:+15551234567` → `+15551234567`."""
    return address.removeprefix("whatsapp:").strip()


@dataclass
class Conversation:
    pool: asyncpg.Pool
    twilio: TwilioClient
    assistant: AssistantClient
    secrets: SecretBox
    sender: str
    app_url: str

    def __post_init__(self) -> None:
        # One turn at a time per phone in this replica, so replies keep order.
        self._locks: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()

    async def handle_inbound(self, event: InboundWhatsApp) -> None:
        phone = phone_of(event.from_number)
        lock = self._locks.setdefault(phone, asyncio.Lock())
        async with lock:
            await self._handle(event, phone)

    async def _handle(self, event: InboundWhatsApp, phone: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            recipient = await repository.find_recipient(conn, phone)
            is_new = await repository.record_inbound(
                conn,
                sid=event.message_sid,
                user_id=recipient.user_id if recipient else None,
                phone=phone,
                body=event.body,
                num_media=event.num_media,
            )
            if is_new and recipient:
                await repository.bump_usage(conn, recipient.user_id, inbound=1)
            stored = await repository.replies_to(conn, event.message_sid)
            signup_sent = (
                recipient is None
                and not stored
                and await repository.signup_reply_sent_recently(conn, phone)
            )

        if stored:
            log.info(
                "messaging.turn.resumed",
                message_sid=event.message_sid,
                parts=len(stored),
            )
        elif signup_sent:
            metrics.TURNS.labels("signup_suppressed").inc()
            log.info(
                "messaging.turn.signup_already_sent", message_sid=event.message_sid
            )
            return
        else:
            parts, tokens = await self._compose(event, recipient)
            async with self.pool.acquire() as conn, conn.transaction():
                await repository.add_replies(
                    conn,
                    inbound_sid=event.message_sid,
                    user_id=recipient.user_id if recipient else None,
                    phone=phone,
                    parts=parts,
                )
                if recipient and any(tokens):
                    await repository.bump_usage(
                        conn,
                        recipient.user_id,
                        tokens_in=tokens[0],
                        tokens_out=tokens[1],
                    )
                stored = await repository.replies_to(conn, event.message_sid)
        await self._deliver(stored, phone)

    async def _compose(
        self, event: InboundWhatsApp, recipient: Recipient | None
    ) -> tuple[list[str], tuple[int, int]]:
        """The reply parts for a new inbound message, and the tokens spent."""
        if recipient is None:
            metrics.TURNS.labels("signup").inc()
            return [replies.SIGNUP.format(app_url=self.app_url)], (0, 0)
        if recipient.subscription_status not in ("ACTIVE", "PAST_DUE"):
            metrics.TURNS.labels("inactive").inc()
            return [replies.INACTIVE.format(app_url=self.app_url)], (0, 0)
        if recipient.assistant_status == "PROVISIONING":
            metrics.TURNS.labels("not_ready").inc()
            return [replies.NOT_READY], (0, 0)
        if (
            recipient.assistant_status != "READY"
            or not recipient.base_url
            or not recipient.gateway_token_encrypted
        ):
            metrics.TURNS.labels("no_assistant").inc()
            return [replies.NO_ASSISTANT.format(app_url=self.app_url)], (0, 0)

        try:
            token = self.secrets.decrypt(
                recipient.gateway_token_encrypted, owner=str(recipient.user_id)
            )
        except SecretBoxError as exc:
            # A key rotation gone wrong must not leave users without any answer.
            metrics.TURNS.labels("apology").inc()
            log.error(
                "messaging.assistant.token_unreadable",
                message_sid=event.message_sid,
                user_id=str(recipient.user_id),
                error=exc.detail,
            )
            return [replies.APOLOGY], (0, 0)
        started = time.perf_counter()
        try:
            answer = await self.assistant.ask(
                base_url=recipient.base_url,
                token=token,
                user_id=str(recipient.user_id),
                model=recipient.model,
                text=event.body,
            )
        except AssistantUnavailable as exc:
            metrics.ASSISTANT_SECONDS.labels("failed").observe(
                time.perf_counter() - started
            )
            metrics.TURNS.labels("apology").inc()
            log.warning(
                "messaging.assistant.failed",
                message_sid=event.message_sid,
                user_id=str(recipient.user_id),
                error=exc.detail,
            )
            return [replies.APOLOGY], (0, 0)
        metrics.ASSISTANT_SECONDS.labels("ok").observe(time.perf_counter() - started)
        metrics.TURNS.labels("replied").inc()
        # An empty answer (the agent only used tools) is stored as SKIPPED, not sent.
        parts = replies.split_reply(answer.text) or [""]
        return parts, (answer.tokens_in, answer.tokens_out)

    async def _deliver(self, stored: list[asyncpg.Record], phone: str) -> None:
        """Send every part not yet sent, in order."""
        to = f"whatsapp:{phone}"
        for row in stored:
            if row["status"] in ("SENT", "FAILED", "SKIPPED"):
                continue
            if row["status"] == "SENDING":
                # A previous attempt died after asking Twilio to send: did it?
                sid = await self.twilio.find_sent(
                    to=to,
                    from_=self.sender,
                    body=row["body"],
                    since=row["send_attempted_at"],
                )
                if sid:
                    await self._mark_sent(row, sid)
                    metrics.TWILIO_SENDS.labels("reconciled", "").inc()
                    continue
            async with self.pool.acquire() as conn:
                await repository.mark_sending(conn, row["id"])
            try:
                sent = await self.twilio.send(
                    to=to, from_=self.sender, body=row["body"]
                )
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
                    await repository.mark_failed(conn, row["id"], code)
                continue
            except Exception:
                metrics.TWILIO_SENDS.labels("failed", "").inc()
                raise
            metrics.TWILIO_SENDS.labels("sent", "").inc()
            await self._mark_sent(row, sent.sid)

    async def _mark_sent(self, row: asyncpg.Record, sid: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await repository.mark_sent(conn, row["id"], sid)
            if row["user_id"] is not None:
                await repository.bump_usage(conn, row["user_id"], outbound=1)
