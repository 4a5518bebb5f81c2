"""A turn: an inbound message on any channel → a command's answer or the
assistant's → the reply, sent back through the channel it came from.

A turn spans three short statements around slow HTTP calls (the assistant,
the channel's provider), so it takes the pool rather than one connection.
Each step is recorded before the next begins, which makes a redelivered
message pick up where the crashed attempt stopped:

    inbound stored ─► reply parts stored (SENDING) ─► SENT
    (limits counted)  (assistant asked once;          (the provider's id)
                       on a redelivery, the channel
                       checks before a resend)
"""

from __future__ import annotations

import asyncio
import base64
import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID
from weakref import WeakValueDictionary

import asyncpg
from yourclaw_common.crypto import SecretBox, SecretBoxError
from yourclaw_common.logging import get_logger
from yourclaw_common.models import DEFAULT_MODEL

from yourclaw_messaging import (
    commands,
    metrics,
    outgoing,
    replies,
    repository,
    speech,
    voice,
)
from yourclaw_messaging.assistant import AssistantClient, Content, session_key
from yourclaw_messaging.batching import Batcher
from yourclaw_messaging.channels.base import Channel, Incoming, SpokenReply
from yourclaw_messaging.commands import Command
from yourclaw_messaging.errors import (
    AssistantLockedOut,
    AssistantNotReady,
    AssistantStarting,
    AssistantUnavailable,
    MediaRejected,
    is_unstorable,
    unstorable_as_permanent,
)
from yourclaw_messaging.limits import Limits
from yourclaw_messaging.outgoing import Planned
from yourclaw_messaging.repository.conversations import ConversationState, Recipient
from yourclaw_messaging.repository.inbound import Inbound, Received
from yourclaw_messaging.repository.outbound import Replies, Turn
from yourclaw_messaging.wake import Waker

log = get_logger(__name__)

# Media the assistant can look at (OpenClaw takes images as data: URIs).
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})
# Messages replayed to a gateway that lost the session.
HISTORY_TURNS = 20
# A turn the gateway failed on its own state locks before calling a model is
# asked once more, this long after the failure (`Turns._may_ask_again`).
ASK_AGAIN_AFTER_SECONDS = 1.0

_Answer = tuple[Planned, tuple[int, int], str]


@dataclass
class Turns:
    pool: asyncpg.Pool
    # Every channel messaging serves, by name.
    channels: Mapping[str, Channel]
    assistant: AssistantClient
    secrets: SecretBox
    commands: commands.Commands
    app_url: str
    limits: Limits
    media_max_bytes: int = 5 * 1024 * 1024
    # Voice notes become the user's text; None: audio is answered as unsupported.
    voice_notes: voice.VoiceNotes | None = None
    # Speaks the answer to a voice note for users who want it; None: text only.
    voice_replies: speech.VoiceReplies | None = None
    # Deliveries of a turn that wait for a (re)starting assistant before the apology.
    not_ready_deliveries: int = 6
    # Wakes a sleeping (SUSPENDED) assistant before its turn; None: no waking.
    waker: Waker | None = None

    def __post_init__(self) -> None:
        # One turn at a time per address in this replica, so replies keep order.
        self._locks: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()
        # A batch PostgreSQL refuses for one item's value is stored item by item:
        # the bad one is terminated alone, the others' turns go on. So is a
        # batch holding two messages of one user (from two of their channels),
        # whose counters one statement cannot update twice.
        self._receive: Batcher[Inbound, Received] = Batcher(
            self._receive_batch,
            isolate=lambda exc: (
                is_unstorable(exc) or isinstance(exc, asyncpg.CardinalityViolationError)
            ),
        )
        self._batched_replies: Batcher[Replies, list[asyncpg.Record] | None] = Batcher(
            self._add_replies, isolate=is_unstorable
        )

    async def _receive_batch(self, batch: list[Inbound]) -> list[Received]:
        # At most one message per address: an address's turns take turns (its
        # lock in handle_incoming).
        limits = self.limits.inbound_check() if self.limits.any else None
        async with self.pool.acquire() as conn:
            with unstorable_as_permanent():
                return await repository.inbound.receive(conn, batch, limits=limits)

    async def _add_replies(
        self, batch: list[Replies]
    ) -> list[list[asyncpg.Record] | None]:
        async with self.pool.acquire() as conn:
            with unstorable_as_permanent():
                return await repository.outbound.add_many_replies(conn, batch)

    async def handle_incoming(self, incoming: Incoming, *, deliveries: int = 1) -> None:
        """One turn; `deliveries`: how many times JetStream has delivered it."""
        key = f"{incoming.channel}:{incoming.address}"
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            await self._handle(incoming, deliveries)

    async def _handle(self, incoming: Incoming, deliveries: int = 1) -> None:
        channel = self.channels[incoming.channel]
        fresh = False
        # Batched with the other turns' inbound messages: one statement. A
        # carrier's keyword (SMS STOP) is not limited: the channel must act on it.
        received = await self._receive(
            Inbound(
                incoming.key,
                incoming.channel,
                incoming.address,
                incoming.body,
                len(incoming.media),
                exempt=await channel.exempt_from_limits(incoming),
            )
        )
        recipient, state = received.recipient, received.state
        stored: list[asyncpg.Record] = []
        signup_sent = False
        stranger = ""  # what an address with no account is told
        if not received.is_new or received.limited or recipient is None:
            async with self.pool.acquire() as conn:
                if not received.is_new or received.limited:
                    stored = await repository.outbound.replies_to(conn, incoming.key)
                if recipient is None and not stored and incoming.link is None:
                    stranger = await channel.stranger(
                        conn, incoming.address, self.app_url
                    )
                    signup_sent = await repository.inbound.stranger_reply_sent_recently(
                        conn, incoming.channel, incoming.address, stranger
                    )
        if received.limited:  # its reply was stored with it
            fresh = True
            metrics.RATE_LIMITED.labels(received.limited).inc()
            metrics.TURNS.labels("rate_limited").inc()
            if received.notified:
                metrics.OUTBOUND.labels("notice").inc()
                log.info(
                    "messaging.limit.notice",
                    user_id=str(recipient.user_id) if recipient else None,
                    limit=received.limited,
                )

        # The message that proved the number gets a confirmation, not a command.
        command = None if incoming.verifies_phone else commands.parse(incoming.body)
        if stored:
            if not fresh:
                log.info(
                    "messaging.turn.resumed",
                    message_sid=incoming.key,
                    parts=len(stored),
                )
        elif signup_sent:
            metrics.TURNS.labels("signup_suppressed").inc()
            log.info("messaging.turn.signup_already_sent", message_sid=incoming.key)
            return
        elif answer := await self._own_answer(channel, incoming, recipient, command):
            text, outcome = answer
            async with self.pool.acquire() as conn, conn.transaction():
                if command and recipient is not None and outcome == "command":
                    text = await self.commands.run(conn, command, recipient)
                stored, fresh = await outgoing.store(
                    conn,
                    incoming.key,
                    recipient.user_id if recipient else None,
                    incoming.channel,
                    incoming.address,
                    Planned(channel.split(text) or [""], "reply"),
                )
            metrics.TURNS.labels(outcome).inc()
        else:
            async with channel.typing(incoming.address):
                planned, tokens, model = await self._compose(
                    channel, incoming, recipient, state, deliveries, stranger=stranger
                )
            # Batched with the other turns' replies: one statement, one commit.
            replies_ = planned.replies(
                incoming.key,
                recipient.user_id if recipient else None,
                incoming.channel,
                incoming.address,
                turn=Turn(recipient.base_url, *tokens)
                if recipient and planned.kind == "reply"
                else None,
            )
            stored, fresh = await outgoing.settle(
                self.pool, replies_, await self._batched_replies(replies_)
            )
            if any(tokens):
                metrics.TOKENS.labels(model, "prompt").inc(tokens[0])
                metrics.TOKENS.labels(model, "completion").inc(tokens[1])
            if fresh and recipient is not None and planned.kind == "reply":
                spoken = await self._spoken(channel, incoming, recipient, planned)
                if spoken is not None:
                    await channel.deliver_spoken(
                        SpokenReply(stored, incoming.address, spoken, recipient.user_id)
                    )
                    return
        await channel.deliver(stored, incoming.address, fresh=fresh)

    async def _spoken(
        self,
        channel: Channel,
        incoming: Incoming,
        recipient: Recipient,
        planned: Planned,
    ) -> speech.Speech | None:
        """The answer to a voice note, spoken, if the user wants voice replies
        and the channel carries them. Only the attempt that stored the answer
        speaks it: a redelivered turn sends what it still owes as text."""
        text = "\n\n".join(part for part in planned.parts if part).strip()
        if (
            self.voice_replies is None
            or not text
            or not voice.is_voice_note(incoming.media)
            or not channel.speaks()
            or not await self.voice_replies.wanted(recipient.user_id)
        ):
            return None
        async with channel.typing(incoming.address):
            return await self.voice_replies.speak(
                text,
                user_id=recipient.user_id,
                channel=incoming.channel,
                key=incoming.key,
            )

    async def _own_answer(
        self,
        channel: Channel,
        incoming: Incoming,
        recipient: Recipient | None,
        command: Command | None,
    ) -> tuple[str, str] | None:
        """What we answer ourselves, without the assistant, and its outcome: the
        channel's own (keywords, links), a phone proof, a command."""
        text = await channel.intercept(incoming, recipient)
        if text is not None:
            return text, "channel"
        if recipient is None:
            return None
        if incoming.verifies_phone:
            return replies.PHONE_VERIFIED, "phone_verified"
        if command:
            return "", "command"  # answered in the transaction that stores it
        return None

    async def _compose(
        self,
        channel: Channel,
        event: Incoming,
        recipient: Recipient | None,
        state: ConversationState | None,
        deliveries: int = 1,
        *,
        stranger: str = "",
    ) -> _Answer:
        """What to answer a new inbound message, the tokens spent, and the model."""

        def notice(text: str, outcome: str) -> _Answer:
            metrics.TURNS.labels(outcome).inc()
            return Planned([text], "notice"), (0, 0), ""

        if recipient is None:
            return notice(stranger, "signup")
        if recipient.subscription_status not in ("ACTIVE", "PAST_DUE"):
            return notice(replies.INACTIVE.format(app_url=self.app_url), "inactive")
        if recipient.assistant_status == "PROVISIONING":
            return notice(replies.NOT_READY, "not_ready")
        if (
            recipient.assistant_status not in ("READY", "SUSPENDED")
            or not recipient.base_url
            or not recipient.gateway_token_encrypted
        ):
            return notice(
                replies.NO_ASSISTANT.format(app_url=self.app_url), "no_assistant"
            )
        content = await self._content(channel, event, recipient.user_id)
        if isinstance(content, Planned):
            metrics.TURNS.labels("media").inc()
            return content, (0, 0), ""

        try:
            token = self.secrets.decrypt(
                recipient.gateway_token_encrypted, owner=str(recipient.user_id)
            )
        except SecretBoxError as exc:
            # A key rotation gone wrong must not leave users without any answer.
            log.error(
                "messaging.assistant.token_unreadable",
                message_sid=event.key,
                user_id=str(recipient.user_id),
                error=exc.detail,
            )
            return notice(replies.APOLOGY, "apology")
        async with self.pool.acquire() as conn:
            if state is None:  # a redelivery: the first attempt recorded it
                state = await repository.conversations.conversation(
                    conn, recipient.user_id
                )
            model = recipient.model
            if await repository.usage.model_calls_refused(
                conn, recipient.user_id, model or DEFAULT_MODEL
            ):
                # Told once when the cap was reached (usage.cap_reached); a
                # notice per message would only nag. Stored as SKIPPED.
                return notice("", "over_allowance")
        label = model or "default"
        seed: list[tuple[str, str]] = []
        if state.session_base_url and state.session_base_url != recipient.base_url:
            # The assistant answers from another address now (it moved hosts):
            # that gateway has no session yet, so it gets the conversation.
            async with self.pool.acquire() as conn:
                seed = await repository.inbound.history(
                    conn,
                    recipient.user_id,
                    since=state.session_started_at,
                    before_sid=event.key,
                    limit=HISTORY_TURNS,
                )
            log.info(
                "messaging.session.seeded",
                user_id=str(recipient.user_id),
                turns=len(seed),
            )
        if (
            recipient.assistant_status == "SUSPENDED"
            and self.waker is not None
            and not await self.waker.before_turn(
                recipient.user_id,
                message_sid=event.key,
                last_delivery=deliveries >= self.not_ready_deliveries,
            )
        ):
            return notice(replies.WAKE_FAILED, "wake_failed")
        started = time.perf_counter()
        ask = functools.partial(
            self.assistant.ask,
            base_url=recipient.base_url,
            token=token,
            session=session_key(str(recipient.user_id), state.session_epoch),
            model=model,
            content=content,
            history=seed,
        )
        try:
            try:
                answer = await ask()
            except AssistantLockedOut as exc:
                if not await self._may_ask_again(recipient.user_id, started):
                    raise
                metrics.TURNS.labels("asked_again").inc()
                log.info(
                    "messaging.assistant.asked_again",
                    message_sid=event.key,
                    user_id=str(recipient.user_id),
                    error=exc.detail,
                )
                answer = await ask()
        except AssistantNotReady as exc:
            if deliveries >= self.not_ready_deliveries:
                return _apology(event, recipient, label, started, exc)
            # Restarting (after a deploy, a host's return): nothing was asked, so
            # the turn waits for a later delivery instead of apologising now.
            metrics.TURNS.labels("waiting").inc()
            log.info(
                "messaging.assistant.not_ready",
                message_sid=event.key,
                user_id=str(recipient.user_id),
                delivery=deliveries,
                error=exc.detail,
            )
            raise AssistantStarting(
                f"the assistant is starting ({exc.detail})",
                message_sid=event.key,
            ) from exc
        except AssistantUnavailable as exc:
            async with self.pool.acquire() as conn:
                if await repository.usage.model_calls_refused(
                    conn, recipient.user_id, model or DEFAULT_MODEL
                ):
                    # The proxy refused it over the cap and told the user so
                    # (usage.cap_reached): an apology on top would be a second
                    # message about the same thing.
                    return notice("", "over_allowance")
            return _apology(event, recipient, label, started, exc)
        metrics.ASSISTANT_SECONDS.labels(label, "ok").observe(
            time.perf_counter() - started
        )
        metrics.TURNS.labels("replied").inc()
        # An empty answer (the agent only used tools) is stored as SKIPPED, not sent.
        parts = channel.split(answer.text) or [""]
        return Planned(parts, "reply"), (answer.tokens_in, answer.tokens_out), label

    async def _may_ask_again(self, user_id: UUID, started: float) -> bool:
        """Whether a turn the gateway failed on its own state locks may be
        asked once more, after a pause: only when it called no model, so it
        did nothing a second ask would do twice (docs/sleep.md, "A request to
        a frozen gateway")."""
        # The pause lets the gateway's overdue work finish, and a model call's
        # record (llm-proxy writes it after the answer) land.
        await asyncio.sleep(ASK_AGAIN_AFTER_SECONDS)
        async with self.pool.acquire() as conn:
            return not await repository.usage.model_called_within(
                conn, user_id, time.perf_counter() - started + 1.0
            )

    async def _content(
        self, channel: Channel, event: Incoming, user_id: UUID
    ) -> Content | Planned:
        """The user turn for the assistant, or a notice when its media can't go."""
        if not event.media:
            return event.body
        if self.voice_notes is not None and voice.is_voice_note(event.media):
            return await self.voice_notes.content(
                channel, event.media, event.body, user_id=user_id, key=event.key
            )
        for media in event.media:
            kind = (media.content_type or "").lower()
            if kind not in IMAGE_TYPES:
                label = kind.partition("/")[0] or "these"
                return Planned([replies.MEDIA_UNSUPPORTED.format(kind=label)], "notice")
        parts: list[dict[str, Any]] = [
            {"type": "text", "text": event.body or "(The user sent an image.)"}
        ]
        mb = round(self.media_max_bytes / 1024 / 1024, 1)
        unreadable = Planned([replies.MEDIA_UNREADABLE.format(mb=mb)], "notice")
        for media in event.media:
            try:
                data, content_type = await channel.fetch_media(
                    media.url, max_bytes=self.media_max_bytes
                )
            except MediaRejected as exc:
                log.warning(
                    "messaging.media.rejected",
                    message_sid=event.key,
                    error=exc.detail,
                )
                return unreadable
            if content_type not in IMAGE_TYPES:
                log.warning(
                    "messaging.media.wrong_type",
                    message_sid=event.key,
                    content_type=content_type,
                )
                return unreadable
            uri = f"data:{content_type};base64,{base64.b64encode(data).decode()}"
            parts.append({"type": "image_url", "image_url": {"url": uri}})
        return parts


def _apology(
    event: Incoming,
    recipient: Recipient,
    label: str,
    started: float,
    exc: AssistantUnavailable,
) -> _Answer:
    metrics.ASSISTANT_SECONDS.labels(label, "failed").observe(
        time.perf_counter() - started
    )
    log.warning(
        "messaging.assistant.failed",
        message_sid=event.key,
        user_id=str(recipient.user_id),
        error=exc.detail,
    )
    metrics.TURNS.labels("apology").inc()
    return Planned([replies.APOLOGY], "notice"), (0, 0), ""
