"""What the channels Twilio carries (WhatsApp, SMS) share: sending with
retries and the shared send rate, the record kept around each send, Twilio's
status callbacks, and inbound media.

A part is stored as SENDING before it is handed to Twilio. If the attempt
dies before recording Twilio's sid, the next one cannot tell from Twilio's
message list whether it was taken: the status callback, whose URL names our
message, records it instead (`handle_status`), and an unconfirmed part is sent
again only after `send_confirm_seconds`.

A channel subclasses `TwilioChannel` with its own rules: how an address is
written as Twilio's `To` (`to`), what a refusal means (`rejected`), what a
status callback means (`after_status`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar
from uuid import UUID

import asyncpg
from yourclaw_common.events import InboundWhatsAppStatus
from yourclaw_common.logging import get_logger

from yourclaw_messaging import metrics, outgoing, repository
from yourclaw_messaging.channels.base import ChannelName, Incoming, SpokenReply
from yourclaw_messaging.errors import (
    SendUnconfirmed,
    TwilioRejected,
    TwilioSendError,
)
from yourclaw_messaging.sendrate import SharedTokenBucket
from yourclaw_messaging.twilio import SentMessage, TwilioClient

__all__ = ["TwilioChannel"]

log = get_logger(__name__)

_SENT_STATES = ("SENT", "FAILED", "SKIPPED")


@dataclass
class TwilioChannel:
    name: ClassVar[ChannelName]
    pool: asyncpg.Pool
    twilio: TwilioClient
    # Our number on this channel, as Twilio spells it.
    sender: str
    status_callback: str = ""
    send_retries: int = 3
    # Sends per second from `sender`, across every replica.
    send_rate: float = 80.0
    # How long a send of unknown outcome waits for its status callback.
    send_confirm_seconds: float = 60.0

    def __post_init__(self) -> None:
        self._bucket = SharedTokenBucket(self.pool, self.sender, self.send_rate)
        self._sent = outgoing.sent_recorder(self.pool)

    # --- what each channel decides --------------------------------------------

    def to(self, address: str) -> str:
        """The user's address (E.164) as Twilio's `To` on this channel."""
        return address

    async def rejected(self, row: asyncpg.Record, code: str) -> None:
        """Twilio refused `row` for good; it is recorded FAILED with `code`."""

    async def after_status(self, row: asyncpg.Record) -> None:
        """A status callback changed `row`, a message of this channel."""

    def speaks(self) -> bool:
        return False

    async def exempt_from_limits(self, incoming: Incoming) -> bool:
        """No keyword is exempt from the limits, unless the channel has
        carriers' keywords (SMS)."""
        return False

    async def deliver_spoken(self, reply: SpokenReply) -> None:
        """Text only, unless the channel carries audio (WhatsApp)."""
        await self.deliver(reply.stored, reply.address, fresh=True)

    # --- sending ---------------------------------------------------------------

    async def fetch_media(self, url: str, *, max_bytes: int) -> tuple[bytes, str]:
        return await self.twilio.fetch_media(url, max_bytes=max_bytes)

    def in_flight(self, stored: Sequence[asyncpg.Record]) -> bool:
        return outgoing.in_flight(stored, within=self.send_confirm_seconds)

    async def deliver(
        self, stored: Sequence[asyncpg.Record], address: str, *, fresh: bool
    ) -> None:
        to = self.to(address)
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
                await self.rejected(row, code)
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
            await self.after_status(early)

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
        # One status consumer serves every Twilio channel: the message's own
        # channel says what its status means.
        if row is not None and row["channel"] == self.name:
            await self.after_status(row)
