"""Telegram through the Bot API: sendMessage in parts of at most 4,096
characters, the assistant's markup (*bold*, _italic_, `code`, links…) sent as
Telegram's HTML so it shows as formatting (plain text if Telegram cannot parse
it), the `retry_after` of a 429 honoured, "typing…" while the assistant
works, voice notes and photos fetched with getFile, voice replies with
sendVoice (the text as the voice's caption when it fits), and the answers to a
chat's `/start <code>`.

Telegram has no 24-hour window: messages we send first are always free-form.
It also has no status callbacks, so a part an attempt handed to Telegram but
died before recording (SENDING, no message id) cannot be told from one never
sent: after SEND_CONFIRM_SECONDS it is sent again (the user may see it
twice; they never miss it). Each sent part is recorded as
`tg:<chat id>:<message id>`.
"""

from __future__ import annotations

import asyncio
import mimetypes
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar
from uuid import UUID

import asyncpg
from yourclaw_common.db import Connection
from yourclaw_common.events import InboundTelegram
from yourclaw_common.logging import get_logger

from yourclaw_messaging import metrics, outgoing, replies, repository
from yourclaw_messaging.channels.base import ChannelName, Incoming, SpokenReply
from yourclaw_messaging.channels.markup import telegram_html
from yourclaw_messaging.errors import MediaRejected, SendUnconfirmed
from yourclaw_messaging.outgoing import Planned
from yourclaw_messaging.repository.conversations import Recipient
from yourclaw_messaging.speech import Speech
from yourclaw_messaging.telegram import (
    TelegramClient,
    TelegramRejected,
    TelegramSendError,
)

__all__ = ["MAX_TEXT_CHARS", "TelegramChannel", "incoming", "message_key"]

log = get_logger(__name__)

# sendMessage's limit on `text`.
MAX_TEXT_CHARS = 4096
# sendVoice's limit on `caption`.
MAX_CAPTION_CHARS = 1024
# How long a part of unknown outcome (SENDING, no message id) waits before it
# is sent again.
SEND_CONFIRM_SECONDS = 30.0
# Retries of a send Telegram answered with 429 or a 5xx, within one attempt;
# a `retry_after` longer than this many seconds is left to the redelivery.
_SEND_RETRIES = 3
_MAX_RETRY_AFTER = 30.0
# Telegram shows "typing…" for 5 s or until the next message.
_TYPING_EVERY = 4.0
_SENT_STATES = ("SENT", "FAILED", "SKIPPED")
# Types a download may come without (Telegram serves files as octet-stream):
# then the file's name says what it is.
_GENERIC_TYPES = frozenset({"", "application/octet-stream"})
_SUFFIX_TYPES = {".oga": "audio/ogg", ".ogg": "audio/ogg", ".jpg": "image/jpeg"}


def message_key(chat_id: int | str, message_id: int) -> str:
    """How a Telegram message is stored (`messages.twilio_sid`)."""
    return f"tg:{chat_id}:{message_id}"


def incoming(event: InboundTelegram) -> Incoming:
    """The message as turns handle it: the chat id is its address."""
    chat = str(event.chat_id)
    return Incoming(
        "telegram", chat, event.message_key, event.text, event.media, link=event.link
    )


def _type_of(file_path: str, stated: str) -> str:
    if stated not in _GENERIC_TYPES:
        return stated
    suffix = "." + file_path.rpartition(".")[2].lower() if "." in file_path else ""
    if suffix in _SUFFIX_TYPES:
        return _SUFFIX_TYPES[suffix]
    return mimetypes.guess_type(file_path)[0] or "application/octet-stream"


@dataclass
class TelegramChannel:
    name: ClassVar[ChannelName] = "telegram"
    pool: asyncpg.Pool
    client: TelegramClient
    # Where users link a chat (the dashboard); named in what we tell a chat.
    app_url: str

    def __post_init__(self) -> None:
        self._sent = outgoing.sent_recorder(self.pool)

    # --- what to send ----------------------------------------------------------

    def split(self, text: str) -> list[str]:
        return replies.split_reply(text, MAX_TEXT_CHARS)

    async def plan_notice(self, conn: Connection, user_id: UUID, text: str) -> Planned:
        return Planned(self.split(text) or [""], "proactive")

    async def plan_ready(self, conn: Connection, user_id: UUID, text: str) -> Planned:
        return Planned([text], "proactive")

    async def intercept(
        self, incoming: Incoming, recipient: Recipient | None
    ) -> str | None:
        """What became of a `/start <code>`; a bare `/start` from a linked chat."""
        if incoming.link == "linked":
            return replies.TELEGRAM_LINKED
        if incoming.link == "expired":
            return replies.TELEGRAM_LINK_EXPIRED.format(app_url=self.app_url)
        if incoming.link is not None:
            return replies.TELEGRAM_LINK_INVALID.format(app_url=self.app_url)
        if recipient is not None and incoming.body.strip() == "/start":
            return replies.TELEGRAM_LINKED
        return None

    async def exempt_from_limits(self, incoming: Incoming) -> bool:
        return False  # Telegram has no carriers' keywords

    async def stranger(self, conn: Connection, address: str, app_url: str) -> str:
        return replies.TELEGRAM_STRANGER.format(app_url=app_url)

    def serves(self, address: str) -> bool:
        return True  # the Bot API carries an assistant to any chat

    def typing(self, address: str) -> AbstractAsyncContextManager[None]:
        return self._typing(int(address))

    @asynccontextmanager
    async def _typing(self, chat_id: int) -> AsyncIterator[None]:
        task = asyncio.create_task(self._keep_typing(chat_id))
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def _keep_typing(self, chat_id: int) -> None:
        while True:
            try:
                await self.client.send_chat_action(chat_id, "typing")
            except (TelegramSendError, TelegramRejected) as exc:
                # Cosmetic: the answer matters, not the dots.
                log.debug("messaging.telegram.typing_failed", error=exc.detail)
            await asyncio.sleep(_TYPING_EVERY)

    async def fetch_media(self, url: str, *, max_bytes: int) -> tuple[bytes, str]:
        """A voice note, audio file or photo by its file id, from the Bot API
        only (getFile, then the download under TELEGRAM_API_BASE)."""
        found = await self.client.get_file(url)
        if found.file_size is not None and found.file_size > max_bytes:
            raise MediaRejected(f"file is {found.file_size} bytes")
        data, stated = await self.client.download(found.file_path, max_bytes=max_bytes)
        return data, _type_of(found.file_path, stated)

    # --- voice replies -----------------------------------------------------------

    def speaks(self) -> bool:
        return True

    async def deliver_spoken(self, reply: SpokenReply) -> None:
        """One part that fits a caption goes as the voice message's caption,
        recorded as that part; longer text goes as usual, the voice after it.
        A voice message Telegram refuses (the user's privacy settings may
        forbid them) leaves the text to go as usual."""
        chat_id = int(reply.address)
        first = reply.stored[0] if len(reply.stored) == 1 else None
        if (
            first is not None
            and first["status"] not in _SENT_STATES
            and 0 < len(first["body"]) <= MAX_CAPTION_CHARS
        ):
            if await self._send_captioned(first, chat_id, reply.speech, reply.user_id):
                return
            await self.deliver(reply.stored, reply.address, fresh=True)
            return
        await self.deliver(reply.stored, reply.address, fresh=True)
        try:
            await self.client.send_voice(
                chat_id, reply.speech.audio, content_type=reply.speech.content_type
            )
        except (TelegramSendError, TelegramRejected) as exc:
            self._voice_not_sent(reply.user_id, exc.detail)
            return
        metrics.VOICE_REPLIES.labels(self.name, "sent").inc()

    async def _send_captioned(
        self, row: asyncpg.Record, chat_id: int, speech: Speech, user_id: UUID
    ) -> bool:
        """sendVoice with the part as its caption; False when Telegram refused
        it (the part is PENDING again, for the text)."""
        async with self.pool.acquire() as conn:
            await repository.outbound.mark_sending(conn, row["id"])
        try:
            message_id = await self.client.send_voice(
                chat_id,
                speech.audio,
                content_type=speech.content_type,
                caption=row["body"],
                caption_html=telegram_html(row["body"]),
            )
        except TelegramSendError as exc:
            if exc.context.get("answered"):
                async with self.pool.acquire() as conn:
                    await repository.outbound.mark_pending(conn, row["id"])
            # Redelivered: the text goes then, without the voice.
            self._voice_not_sent(user_id, exc.detail)
            raise
        except TelegramRejected as exc:
            async with self.pool.acquire() as conn:
                await repository.outbound.mark_pending(conn, row["id"])
            self._voice_not_sent(user_id, exc.detail)
            return False
        metrics.TELEGRAM_SENDS.labels("sent").inc()
        metrics.VOICE_REPLIES.labels(self.name, "sent").inc()
        await self._sent((row["id"], message_key(chat_id, message_id)))
        return True

    def _voice_not_sent(self, user_id: UUID, error: str) -> None:
        metrics.VOICE_REPLIES.labels(self.name, "not_sent").inc()
        log.warning("messaging.voice_reply.not_sent", user_id=str(user_id), error=error)

    # --- sending ---------------------------------------------------------------

    def in_flight(self, stored: Sequence[asyncpg.Record]) -> bool:
        return outgoing.in_flight(stored, within=SEND_CONFIRM_SECONDS)

    async def deliver(
        self, stored: Sequence[asyncpg.Record], address: str, *, fresh: bool
    ) -> None:
        chat_id = int(address)
        for row in (r for r in stored if r["status"] not in _SENT_STATES):
            if not fresh and row["status"] == "SENDING":
                self._check_unconfirmed(row)
            if row["status"] != "SENDING":  # PENDING: surely not sent
                async with self.pool.acquire() as conn:
                    await repository.outbound.mark_sending(conn, row["id"])
            try:
                message_id = await self._send(row, chat_id)
            except TelegramSendError as exc:
                if exc.context.get("answered"):
                    # Telegram answered with an error: nothing was sent.
                    async with self.pool.acquire() as conn:
                        await repository.outbound.mark_pending(conn, row["id"])
                raise
            except TelegramRejected as exc:
                code = str(exc.context.get("telegram_code", ""))
                metrics.TELEGRAM_SENDS.labels("rejected").inc()
                log.error(
                    "messaging.telegram.rejected",
                    message_id=str(row["id"]),
                    error=exc.detail,
                )
                async with self.pool.acquire() as conn:
                    await repository.outbound.mark_failed(conn, row["id"], code)
                continue
            metrics.TELEGRAM_SENDS.labels("sent").inc()
            await self._sent((row["id"], message_key(chat_id, message_id)))

    def _check_unconfirmed(self, row: asyncpg.Record) -> None:
        """A part an earlier attempt left SENDING: it may have been sent, and
        Telegram cannot be asked. It waits SEND_CONFIRM_SECONDS (the other
        attempt may still be at it), then goes again."""
        attempted = row["send_attempted_at"] or datetime.now(UTC)
        waited = (datetime.now(UTC) - attempted).total_seconds()
        if waited < SEND_CONFIRM_SECONDS:
            raise SendUnconfirmed(
                f"message {row['id']} may be on its way ({waited:.0f}s ago); "
                "checking again later",
                message_id=str(row["id"]),
            )
        log.warning(
            "messaging.telegram.unconfirmed_resent",
            message_id=str(row["id"]),
            waited_s=round(waited, 1),
        )

    async def _send(self, row: asyncpg.Record, chat_id: int) -> int:
        """sendMessage; a 429 waits its `retry_after`, a 5xx backs off."""
        attempt = 0
        while True:
            try:
                return await self.client.send_message(
                    chat_id, row["body"], html=telegram_html(row["body"])
                )
            except TelegramSendError as exc:
                answered = bool(exc.context.get("answered"))
                code = str(exc.context.get("telegram_code", ""))
                retry_after = exc.context.get("retry_after")
                if code == "429" and retry_after is not None:
                    delay = float(retry_after)
                else:
                    delay = min(8.0, 0.5 * 2**attempt) * random.uniform(0.8, 1.2)  # noqa: S311
                retryable = answered and (code == "429" or code.startswith("5"))
                if (
                    not retryable
                    or attempt >= _SEND_RETRIES
                    or delay > _MAX_RETRY_AFTER
                ):
                    metrics.TELEGRAM_SENDS.labels("failed").inc()
                    raise
                metrics.TELEGRAM_SENDS.labels("retried").inc()
                log.warning(
                    "messaging.telegram.retry",
                    message_id=str(row["id"]),
                    telegram_code=code,
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay)
                attempt += 1
