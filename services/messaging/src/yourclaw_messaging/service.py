"""The WhatsApp conversation: turns, commands, limits, the 24-hour window,
proactive messages and Twilio's delivery status.

A turn spans three short statements around slow HTTP calls (the assistant,
Twilio), so it takes the pool rather than one connection. Each step is
recorded before the next begins, which makes a redelivered message pick up
where the crashed attempt stopped:

    inbound stored ─► reply parts stored (SENDING) ─► SENT
    (limits counted)  (assistant asked once;          (Twilio's sid)
                       on a redelivery, Twilio's list
                       is consulted before a resend)

Every outbound message (replies, notices, proactive messages, templates) is a
`messages` row keyed by `(in_reply_to, part)`: the inbound MessageSid for
replies, `out:<event_id>` / `ready:<assistant_id>` / `usage:<cap|warn>:<user>:<month>` for
messages we send first and
`fallback:<message id>` for a template that replaces a refused free-form message.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID
from weakref import WeakValueDictionary

import asyncpg
from yourclaw_common import outbox
from yourclaw_common.crypto import SecretBox, SecretBoxError
from yourclaw_common.db import Connection
from yourclaw_common.events import (
    AssistantProvisionRequested,
    AssistantReady,
    AssistantRestarted,
    InboundWhatsApp,
    InboundWhatsAppStatus,
    OutboundWhatsApp,
    UsageAllowanceWarning,
    UsageCapReached,
)
from yourclaw_common.logging import get_logger
from yourclaw_common.models import DEFAULT_MODEL

from yourclaw_messaging import commands, metrics, replies, repository
from yourclaw_messaging.assistant import AssistantClient, Content, session_key
from yourclaw_messaging.batching import Batcher
from yourclaw_messaging.errors import (
    AssistantNotReady,
    AssistantStarting,
    AssistantUnavailable,
    MediaRejected,
    SendUnconfirmed,
    TwilioRejected,
    TwilioSendError,
    is_unstorable,
    unstorable_as_permanent,
)
from yourclaw_messaging.repository import Recipient
from yourclaw_messaging.sendrate import SharedTokenBucket
from yourclaw_messaging.twilio import SentMessage, TwilioClient

log = get_logger(__name__)

# WhatsApp lets a business answer freely for 24 hours after the user's last message.
WINDOW_HOURS = 24.0
# Twilio's "outside the allowed window" error, synchronous or in a status callback.
OUTSIDE_WINDOW_CODES = frozenset({"63016", "63015"})
# Media the assistant can look at (OpenClaw takes images as data: URIs).
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})
# A WhatsApp template variable is capped by Meta; keep the text well under it.
_TEMPLATE_TEXT_CHARS = 900
_READY_TEXT = "Your YourClaw assistant is ready! Say hi here to get started."
_SENT_STATES = ("SENT", "FAILED", "SKIPPED")
# Messages replayed to a gateway that lost the session.
HISTORY_TURNS = 20


def phone_of(address: str) -> str:
    """`whatsapp:+15551234567` → `+15551234567`."""
    return address.removeprefix("whatsapp:").strip()


@dataclass(frozen=True)
class Limits:
    per_minute: int
    per_day: int
    tokens_per_day: int

    @property
    def any(self) -> bool:
        return bool(self.per_minute or self.per_day or self.tokens_per_day)


@dataclass(frozen=True)
class Templates:
    assistant_ready: str
    notification: str


@dataclass(frozen=True)
class _Planned:
    """What to store for one outgoing message before sending it."""

    parts: list[str]
    kind: str
    content_sid: str | None = None
    content_variables: dict[str, str] | None = None
    error_code: str | None = None


@dataclass
class Conversation:
    pool: asyncpg.Pool
    twilio: TwilioClient
    assistant: AssistantClient
    secrets: SecretBox
    sender: str
    app_url: str
    limits: Limits = field(default_factory=lambda: Limits(0, 0, 0))
    templates: Templates = field(default_factory=lambda: Templates("", ""))
    status_callback: str = ""
    media_max_bytes: int = 5 * 1024 * 1024
    send_retries: int = 3
    # Sends per second from `sender`, across every replica.
    send_rate: float = 80.0
    # Names this service's outbox rows (the relay publishes those).
    service_name: str = "messaging"
    # What llm-proxy lets a user spend on platform keys a month (USD).
    llm_allowance_usd: float = 8.0
    # Deliveries of a turn that wait for a (re)starting assistant before the apology.
    not_ready_deliveries: int = 6
    # How long a send of unknown outcome waits for its status callback.
    send_confirm_seconds: float = 60.0

    def __post_init__(self) -> None:
        # One turn at a time per phone in this replica, so replies keep order.
        self._locks: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()
        self._bucket = SharedTokenBucket(self.pool, self.sender, self.send_rate)
        # A batch PostgreSQL refuses for one item's value is stored item by item:
        # the bad one is terminated alone, the others' turns go on.
        self._sent: Batcher[tuple[UUID, str], asyncpg.Record | None] = Batcher(
            self._record_sent, isolate=is_unstorable
        )
        self._receive: Batcher[repository.Inbound, repository.Received] = Batcher(
            self._receive_batch, isolate=is_unstorable
        )
        self._batched_replies: Batcher[
            repository.Replies, list[asyncpg.Record] | None
        ] = Batcher(self._add_replies, isolate=is_unstorable)

    async def _receive_batch(
        self, batch: list[repository.Inbound]
    ) -> list[repository.Received]:
        # At most one message per phone: a phone's turns take turns (its lock
        # in handle_inbound), and a user has one phone.
        limits = self._limit_check() if self.limits.any else None
        async with self.pool.acquire() as conn:
            with unstorable_as_permanent():
                return await repository.receive(conn, batch, limits=limits)

    async def _add_replies(
        self, batch: list[repository.Replies]
    ) -> list[list[asyncpg.Record] | None]:
        async with self.pool.acquire() as conn:
            with unstorable_as_permanent():
                return await repository.add_many_replies(conn, batch)

    async def _record_sent(
        self, sends: list[tuple[UUID, str]]
    ) -> list[asyncpg.Record | None]:
        async with self.pool.acquire() as conn:
            with unstorable_as_permanent():
                return await repository.mark_sent(conn, sends)

    # --- inbound turns -------------------------------------------------------

    async def handle_inbound(
        self, event: InboundWhatsApp, *, deliveries: int = 1
    ) -> None:
        """One turn; `deliveries`: how many times JetStream has delivered it."""
        phone = phone_of(event.from_number)
        lock = self._locks.setdefault(phone, asyncio.Lock())
        async with lock:
            await self._handle(event, phone, deliveries)

    async def _handle(
        self, event: InboundWhatsApp, phone: str, deliveries: int = 1
    ) -> None:
        fresh = False
        # Batched with the other turns' inbound messages: one statement.
        received = await self._receive(
            repository.Inbound(event.message_sid, phone, event.body, event.num_media)
        )
        recipient, state = received.recipient, received.state
        stored: list[asyncpg.Record] = []
        signup_sent = False
        if not received.is_new or received.limited or recipient is None:
            async with self.pool.acquire() as conn:
                if not received.is_new or received.limited:
                    stored = await repository.replies_to(conn, event.message_sid)
                signup_sent = (
                    recipient is None
                    and not stored
                    and await repository.signup_reply_sent_recently(conn, phone)
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

        if stored:
            if not fresh:
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
        elif recipient is not None and (command := commands.parse(event.body)):
            async with self.pool.acquire() as conn, conn.transaction():
                text = await self._run_command(conn, command, recipient)
                stored, fresh = await self._store(
                    conn,
                    event.message_sid,
                    recipient.user_id,
                    phone,
                    _Planned(replies.split_reply(text), "reply"),
                )
            metrics.TURNS.labels("command").inc()
        else:
            planned, tokens, model = await self._compose(
                event, recipient, state, deliveries
            )
            # Batched with the other turns' replies: one statement, one commit.
            outgoing = self._replies(
                event.message_sid,
                recipient.user_id if recipient else None,
                phone,
                planned,
                turn=repository.Turn(recipient.base_url, *tokens)
                if recipient and planned.kind == "reply"
                else None,
            )
            stored, fresh = await self._stored(
                outgoing, await self._batched_replies(outgoing)
            )
            if any(tokens):
                metrics.TOKENS.labels(model, "prompt").inc(tokens[0])
                metrics.TOKENS.labels(model, "completion").inc(tokens[1])
        await self._deliver(stored, phone, fresh=fresh)

    def _limit_check(self) -> repository.LimitCheck:
        """The windows a message arriving now counts in, with their notices."""
        now = datetime.now(UTC)
        minute = now.replace(second=0, microsecond=0)
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return repository.LimitCheck(
            per_minute=self.limits.per_minute,
            per_day=self.limits.per_day,
            tokens_per_day=self.limits.tokens_per_day,
            minute=minute,
            day=day,
            minute_notice=replies.RATE_LIMITED.format(
                limit=replies.counted(self.limits.per_minute, "message"),
                period="minute",
                when=f"at {minute + timedelta(minutes=1):%H:%M} UTC",
            ),
            day_notice=replies.RATE_LIMITED.format(
                limit=replies.counted(self.limits.per_day, "message"),
                period="day",
                when=_tomorrow(day),
            ),
            tokens_notice=replies.TOKENS_EXHAUSTED.format(
                limit=replies.counted(self.limits.tokens_per_day, "token"),
                when=_tomorrow(day),
            ),
        )

    async def _run_command(
        self, conn: Connection, command: commands.Command, recipient: Recipient
    ) -> str:
        user_id = recipient.user_id
        if command.name == "help":
            return replies.HELP
        if command.name == "reset":
            epoch = await repository.reset_session(conn, user_id)
            log.info("messaging.command.reset", user_id=str(user_id), epoch=epoch)
            return replies.RESET
        # The assistant's model has one home, the assistant (the provisioner's
        # row): a pick in chat goes the same way as one on the dashboard.
        current = recipient.model
        if command.name == "model":
            if not command.arg:
                return replies.MODEL_LIST.format(
                    current=commands.model_name(current),
                    choices=commands.model_choices(),
                )
            model = commands.find_model(command.arg)
            if model is None:
                return replies.MODEL_UNKNOWN.format(
                    name=command.arg[:60], choices=commands.model_choices()
                )
            if model.id == current:
                return replies.MODEL_ALREADY.format(name=model.display_name)
            # Through the outbox, committed with the reply: the provisioner
            # records the model and re-creates the gateway with it.
            await outbox.add(
                conn,
                AssistantProvisionRequested(
                    user_id=user_id, reason="model_changed", model=model.id
                ),
                service=self.service_name,
            )
            log.info("messaging.command.model", user_id=str(user_id), model=model.id)
            return replies.MODEL_SWITCHED.format(
                name=model.display_name, model_id=model.id
            )
        spend = await repository.model_spend(conn, user_id)
        spent, limit, which = self._month_limit(spend)
        share = 100 * spent / limit if limit else 100.0
        if command.name == "usage":
            return replies.USAGE.format(
                renews=_next_month(datetime.now(UTC)),
                spent=spent,
                limit=limit,
                which=which,
                share=share,
                tokens=spend.tokens,
                calls=spend.calls,
                cached=spend.cache_read_tokens,
                own=(
                    f"\n*Paid with your own keys*: ${spend.cost_usd - spend.platform_usd:.2f}"
                    if spend.cost_usd > spend.platform_usd
                    else ""
                ),
                app_url=self.app_url,
            )
        usage = await repository.usage_today(conn, user_id)
        tokens = (usage["tokens_in"] + usage["tokens_out"]) if usage else 0
        token_limit = (
            f", {replies.counted(self.limits.tokens_per_day, 'token')} a day"
            if self.limits.tokens_per_day
            else ""
        )
        return replies.STATUS.format(
            status=(recipient.assistant_status or "NONE").lower().replace("_", " "),
            model=commands.model_name(current),
            inbound=replies.counted(usage["inbound_count"] if usage else 0, "message"),
            outbound=replies.counted(
                usage["outbound_count"] if usage else 0, "reply", "replies"
            ),
            tokens=replies.counted(tokens, "token"),
            per_min=replies.limit_per(self.limits.per_minute, "minute"),
            per_day=replies.limit_per(self.limits.per_day, "day"),
            token_limit=token_limit,
            month=replies.MONTH.format(
                spent=spent, limit=limit, share=share, tokens=spend.tokens
            ),
        )

    def _month_limit(self, spend: repository.ModelSpend) -> tuple[float, float, str]:
        """(spent, limit, its name): the user's own cap counts every call, the
        plan's allowance only those paid with platform keys."""
        if spend.cap_usd is not None and spend.cap_usd <= self.llm_allowance_usd:
            return spend.cost_usd, spend.cap_usd, "cap"
        return spend.platform_usd, self.llm_allowance_usd, "allowance"

    async def _compose(
        self,
        event: InboundWhatsApp,
        recipient: Recipient | None,
        state: repository.ConversationState | None,
        deliveries: int = 1,
    ) -> tuple[_Planned, tuple[int, int], str]:
        """What to answer a new inbound message, the tokens spent, and the model."""

        def notice(text: str, outcome: str) -> tuple[_Planned, tuple[int, int], str]:
            metrics.TURNS.labels(outcome).inc()
            return _Planned([text], "notice"), (0, 0), ""

        if recipient is None:
            return notice(replies.SIGNUP.format(app_url=self.app_url), "signup")
        if recipient.subscription_status not in ("ACTIVE", "PAST_DUE"):
            return notice(replies.INACTIVE.format(app_url=self.app_url), "inactive")
        if recipient.assistant_status == "PROVISIONING":
            return notice(replies.NOT_READY, "not_ready")
        if (
            recipient.assistant_status != "READY"
            or not recipient.base_url
            or not recipient.gateway_token_encrypted
        ):
            return notice(
                replies.NO_ASSISTANT.format(app_url=self.app_url), "no_assistant"
            )
        content = await self._content(event)
        if isinstance(content, _Planned):
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
                message_sid=event.message_sid,
                user_id=str(recipient.user_id),
                error=exc.detail,
            )
            return notice(replies.APOLOGY, "apology")
        async with self.pool.acquire() as conn:
            if state is None:  # a redelivery: the first attempt recorded it
                state = await repository.conversation(conn, recipient.user_id)
            model = recipient.model
            if await repository.model_calls_refused(
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
                seed = await repository.history(
                    conn,
                    recipient.user_id,
                    since=state.session_started_at,
                    before_sid=event.message_sid,
                    limit=HISTORY_TURNS,
                )
            log.info(
                "messaging.session.seeded",
                user_id=str(recipient.user_id),
                turns=len(seed),
            )
        started = time.perf_counter()
        try:
            answer = await self.assistant.ask(
                base_url=recipient.base_url,
                token=token,
                session=session_key(str(recipient.user_id), state.session_epoch),
                model=model,
                content=content,
                history=seed,
            )
        except AssistantNotReady as exc:
            if deliveries >= self.not_ready_deliveries:
                return self._apology(event, recipient, label, started, exc)
            # Restarting (after a deploy, a host's return): nothing was asked, so
            # the turn waits for a later delivery instead of apologising now.
            metrics.TURNS.labels("waiting").inc()
            log.info(
                "messaging.assistant.not_ready",
                message_sid=event.message_sid,
                user_id=str(recipient.user_id),
                delivery=deliveries,
                error=exc.detail,
            )
            raise AssistantStarting(
                f"the assistant is starting ({exc.detail})",
                message_sid=event.message_sid,
            ) from exc
        except AssistantUnavailable as exc:
            async with self.pool.acquire() as conn:
                if await repository.model_calls_refused(
                    conn, recipient.user_id, model or DEFAULT_MODEL
                ):
                    # The proxy refused it over the cap and told the user so
                    # (usage.cap_reached): an apology on top would be a second
                    # message about the same thing.
                    return notice("", "over_allowance")
            return self._apology(event, recipient, label, started, exc)
        metrics.ASSISTANT_SECONDS.labels(label, "ok").observe(
            time.perf_counter() - started
        )
        metrics.TURNS.labels("replied").inc()
        # An empty answer (the agent only used tools) is stored as SKIPPED, not sent.
        parts = replies.split_reply(answer.text) or [""]
        return (
            _Planned(parts, "reply"),
            (answer.tokens_in, answer.tokens_out),
            label,
        )

    @staticmethod
    def _apology(
        event: InboundWhatsApp,
        recipient: Recipient,
        label: str,
        started: float,
        exc: AssistantUnavailable,
    ) -> tuple[_Planned, tuple[int, int], str]:
        metrics.ASSISTANT_SECONDS.labels(label, "failed").observe(
            time.perf_counter() - started
        )
        log.warning(
            "messaging.assistant.failed",
            message_sid=event.message_sid,
            user_id=str(recipient.user_id),
            error=exc.detail,
        )
        metrics.TURNS.labels("apology").inc()
        return _Planned([replies.APOLOGY], "notice"), (0, 0), ""

    async def _content(self, event: InboundWhatsApp) -> Content | _Planned:
        """The user turn for the assistant, or a notice when its media can't go."""
        if not event.media:
            return event.body
        for media in event.media:
            kind = (media.content_type or "").lower()
            if kind not in IMAGE_TYPES:
                label = kind.partition("/")[0] or "these"
                return _Planned(
                    [replies.MEDIA_UNSUPPORTED.format(kind=label)], "notice"
                )
        parts: list[dict[str, Any]] = [
            {"type": "text", "text": event.body or "(The user sent an image.)"}
        ]
        unreadable = _Planned(
            [
                replies.MEDIA_UNREADABLE.format(
                    mb=round(self.media_max_bytes / 1024 / 1024, 1)
                )
            ],
            "notice",
        )
        for media in event.media:
            try:
                data, content_type = await self.twilio.fetch_media(
                    media.url, max_bytes=self.media_max_bytes
                )
            except MediaRejected as exc:
                log.warning(
                    "messaging.media.rejected",
                    message_sid=event.message_sid,
                    error=exc.detail,
                )
                return unreadable
            if content_type not in IMAGE_TYPES:
                log.warning(
                    "messaging.media.wrong_type",
                    message_sid=event.message_sid,
                    content_type=content_type,
                )
                return unreadable
            uri = f"data:{content_type};base64,{base64.b64encode(data).decode()}"
            parts.append({"type": "image_url", "image_url": {"url": uri}})
        return parts

    # --- messages we send first ----------------------------------------------

    async def handle_outbound(self, event: OutboundWhatsApp) -> None:
        """A proactive message (an automation's result, a system notice)."""
        await self._proactive(event.user_id, f"out:{event.event_id}", event.body)

    async def handle_usage(
        self, event: UsageCapReached | UsageAllowanceWarning
    ) -> None:
        """Tell the user, once a month each, that their assistant used 80 % of
        the allowance or all of it (llm-proxy emits each event once)."""
        which = "allowance" if event.allowance_usd >= self.llm_allowance_usd else "cap"
        renews = f"{event.resets_at:%Y-%m-%d}"
        if isinstance(event, UsageCapReached):
            kind = "cap"
            text = replies.CAP_REACHED.format(
                which=which,
                limit=event.allowance_usd,
                renews=renews,
                app_url=self.app_url,
            )
        else:
            kind = "warn"
            text = replies.ALLOWANCE_WARNING.format(
                share=100 * event.spent_usd / (event.allowance_usd or 1),
                which=which,
                spent=event.spent_usd,
                limit=event.allowance_usd,
                renews=renews,
            )
        log.info("messaging.usage.notice", user_id=str(event.user_id), kind=kind)
        await self._proactive(
            event.user_id, f"usage:{kind}:{event.user_id}:{event.month}", text
        )

    async def _proactive(self, user_id: UUID, key: str, text: str) -> None:
        # Two copies of one notice (llm-proxy replicas, a redelivery) handled at
        # once would both find nothing stored and both send: one at a time.
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            await self._proactive_once(user_id, key, text)

    async def _proactive_once(self, user_id: UUID, key: str, text: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            recipient = await repository.find_recipient_by_user(conn, user_id)
            if recipient is None:
                log.warning("messaging.outbound.no_phone", user_id=str(user_id))
                return
            stored, fresh = await repository.replies_to(conn, key), False
            if not stored:
                planned = await self._plan_proactive(conn, recipient, text)
                stored, fresh = await self._store(
                    conn, key, recipient.user_id, recipient.phone, planned
                )
        await self._deliver(stored, recipient.phone, fresh=fresh)

    async def _plan_proactive(
        self, conn: Connection, recipient: Recipient, text: str
    ) -> _Planned:
        if recipient.subscription_status not in ("ACTIVE", "PAST_DUE"):
            return _Planned([text], "proactive", error_code="INACTIVE")
        if await self._proactive_limited(conn, recipient.user_id):
            return _Planned([text], "proactive", error_code="RATE_LIMITED")
        if await repository.in_window(conn, recipient.user_id, hours=WINDOW_HOURS):
            return _Planned(replies.split_reply(text) or [""], "proactive")
        metrics.TEMPLATE_FALLBACKS.labels("outside_window").inc()
        return self._notification_template(text)

    async def _proactive_limited(self, conn: Connection, user_id: UUID) -> bool:
        """Proactive messages have their own windows, with the users' limits."""
        now = datetime.now(UTC)
        checks = (
            ("notify_minute", now.replace(second=0, microsecond=0), "minute"),
            (
                "notify_day",
                now.replace(hour=0, minute=0, second=0, microsecond=0),
                "day",
            ),
        )
        for scope, start, limit_label in checks:
            limit = (
                self.limits.per_minute
                if limit_label == "minute"
                else self.limits.per_day
            )
            if not limit:
                continue
            if await repository.count_in_window(conn, user_id, scope, start) > limit:
                metrics.RATE_LIMITED.labels(limit_label).inc()
                log.warning(
                    "messaging.outbound.rate_limited",
                    user_id=str(user_id),
                    limit=limit_label,
                )
                return True
        return False

    def _notification_template(self, text: str) -> _Planned:
        if not self.templates.notification:
            metrics.TEMPLATE_FALLBACKS.labels("no_template").inc()
            log.error("messaging.template.not_configured", template="notification")
            return _Planned([text], "template", error_code="NO_TEMPLATE")
        short = text.strip()
        if len(short) > _TEMPLATE_TEXT_CHARS:
            short = short[: _TEMPLATE_TEXT_CHARS - 1].rstrip() + "…"
        return _Planned(
            [replies.NOTIFICATION_FALLBACK.format(text=short)],
            "template",
            content_sid=self.templates.notification,
            content_variables={"1": short},
        )

    async def handle_ready(self, event: AssistantReady) -> None:
        """Tell the user their assistant is ready: the approved template.

        Once per assistant: the provisioner also emits `assistant.ready` after a
        model change or a re-create, which the user need not hear about.
        """
        key = f"ready:{event.assistant_id}"
        fresh = False
        async with self.pool.acquire() as conn, conn.transaction():
            recipient = await repository.find_recipient_by_user(conn, event.user_id)
            if recipient is None:
                log.info("messaging.ready.no_phone", user_id=str(event.user_id))
                return
            stored = await repository.replies_to(conn, key)
            state = await repository.conversation(conn, recipient.user_id)
            if not stored and state.ready_skipped_for == event.assistant_id:
                return  # left out the first time; a later ready is no news either
            if (
                not stored
                and state.last_inbound_at is not None
                and state.last_inbound_at >= event.occurred_at
            ):
                # They are already talking to it: "it's ready" would only interrupt.
                log.info("messaging.ready.already_chatting", user_id=str(event.user_id))
                await repository.skip_ready_notice(
                    conn, recipient.user_id, event.assistant_id
                )
                return
            if not stored:
                if self.templates.assistant_ready:
                    planned = _Planned(
                        [_READY_TEXT],
                        "template",
                        content_sid=self.templates.assistant_ready,
                    )
                elif await repository.in_window(
                    conn, recipient.user_id, hours=WINDOW_HOURS
                ):
                    planned = _Planned([_READY_TEXT], "proactive")
                else:
                    log.error("messaging.template.not_configured", template="ready")
                    planned = _Planned(
                        [_READY_TEXT], "template", error_code="NO_TEMPLATE"
                    )
                stored, fresh = await self._store(
                    conn, key, recipient.user_id, recipient.phone, planned
                )
        await self._deliver(stored, recipient.phone, fresh=fresh)

    async def handle_restarted(self, event: AssistantRestarted) -> None:
        """The assistant was killed for memory and restarted: one notice, to a
        user who wrote within the window (their last message may have gone
        unanswered); nobody else lost anything."""
        key = f"restart:{event.event_id}"
        fresh = False
        async with self.pool.acquire() as conn, conn.transaction():
            recipient = await repository.find_recipient_by_user(conn, event.user_id)
            if recipient is None:
                return
            stored = await repository.replies_to(conn, key)
            if not stored:
                if not await repository.in_window(
                    conn, recipient.user_id, hours=WINDOW_HOURS
                ):
                    log.info(
                        "messaging.restarted.not_chatting", user_id=str(event.user_id)
                    )
                    return
                stored, fresh = await self._store(
                    conn,
                    key,
                    recipient.user_id,
                    recipient.phone,
                    _Planned([replies.RESTARTED], "proactive"),
                )
        await self._deliver(stored, recipient.phone, fresh=fresh)

    # --- Twilio status callbacks ---------------------------------------------

    async def handle_status(self, event: InboundWhatsAppStatus) -> None:
        status = event.message_status.strip().lower()
        metrics.STATUS_CALLBACKS.labels(status).inc()
        async with self.pool.acquire() as conn, conn.transaction():
            changed = await repository.record_twilio_status(
                conn, event.message_sid, status, event.error_code or None
            )
            row = None
            if changed and event.message_id is not None:
                # Our message, named by its callback URL. If it has no sid yet,
                # Twilio took it but the sender has not recorded that: still on
                # its way, or it died in between. Recording it here means a
                # redelivered turn finds it SENT and does not send it again.
                (row,) = await repository.mark_sent(
                    conn, [(event.message_id, event.message_sid)]
                )
            if changed and row is None:
                row = await repository.apply_twilio_status(conn, event.message_sid)
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
        key = f"fallback:{row['id']}"
        planned = self._notification_template(row["body"])
        metrics.TEMPLATE_FALLBACKS.labels(reason).inc()
        log.info(
            "messaging.template.fallback", message_id=str(row["id"]), reason=reason
        )
        async with self.pool.acquire() as conn, conn.transaction():
            stored, fresh = await self._store(
                conn, key, row["user_id"], row["phone_e164"], planned
            )
        await self._deliver(stored, row["phone_e164"], fresh=fresh)

    # --- storing and sending ---------------------------------------------------

    async def _store(
        self,
        conn: Connection,
        key: str,
        user_id: UUID | None,
        phone: str,
        planned: _Planned,
    ) -> tuple[list[asyncpg.Record], bool]:
        """Store what to send, to be sent right after the commit. Returns the
        stored parts and whether this call stored them (else an earlier attempt
        or another replica did, and they are as it left them)."""
        outgoing = self._replies(key, user_id, phone, planned)
        (stored,) = await repository.add_many_replies(conn, [outgoing])
        return await self._stored(outgoing, stored, conn)

    @staticmethod
    def _replies(
        key: str,
        user_id: UUID | None,
        phone: str,
        planned: _Planned,
        *,
        turn: repository.Turn | None = None,
    ) -> repository.Replies:
        return repository.Replies(
            inbound_sid=key,
            user_id=user_id,
            phone=phone,
            parts=planned.parts,
            kind=planned.kind,
            content_sid=planned.content_sid,
            content_variables=planned.content_variables,
            error_code=planned.error_code,
            turn=turn,
        )

    async def _stored(
        self,
        outgoing: repository.Replies,
        stored: list[asyncpg.Record] | None,
        conn: Connection | None = None,
    ) -> tuple[list[asyncpg.Record], bool]:
        if stored is None:  # stored before: as the earlier attempt left them
            if conn is not None:
                return await repository.replies_to(conn, outgoing.inbound_sid), False
            async with self.pool.acquire() as own:
                return await repository.replies_to(own, outgoing.inbound_sid), False
        if not outgoing.error_code:
            sendable = sum(1 for p in outgoing.parts if p or outgoing.content_sid)
            if sendable:
                metrics.OUTBOUND.labels(outgoing.kind).inc(sendable)
        return stored, True

    async def _deliver(
        self, stored: list[asyncpg.Record], phone: str, *, fresh: bool = False
    ) -> None:
        """Send every part not yet sent, in order. `fresh`: this attempt just
        stored them (as SENDING), so none can have reached Twilio yet."""
        to = f"whatsapp:{phone}"
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
                    await repository.mark_sending(conn, row["id"])
            try:
                sent = await self._send(row, to)
            except TwilioSendError as exc:
                if exc.context.get("http_status") is not None:
                    # Twilio answered with an error: no message was created, so
                    # the redelivery sends it without waiting for a callback.
                    async with self.pool.acquire() as conn:
                        await repository.mark_pending(conn, row["id"])
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
                    await repository.mark_failed(conn, row["id"], code)
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
            if await repository.is_recorded_sent(conn, row["id"]):
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
                    content_variables=repository.row_variables(row),
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


def _next_month(now: datetime) -> str:
    first = now.date().replace(day=1) + timedelta(days=32)
    return f"{first.replace(day=1):%Y-%m-%d}"


def _tomorrow(day: datetime) -> str:
    return f"after midnight UTC ({(day + timedelta(days=1)):%Y-%m-%d} 00:00 UTC)"
