"""The commands a user types in chat, on any channel: /help, /status, /usage,
/reset, /model, /channel, /voice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from yourclaw_common import outbox
from yourclaw_common.db import Connection
from yourclaw_common.events import AssistantProvisionRequested
from yourclaw_common.logging import get_logger
from yourclaw_common.models import AVAILABLE_MODELS, ModelInfo

from yourclaw_messaging import replies, repository
from yourclaw_messaging.limits import Limits
from yourclaw_messaging.repository.conversations import Recipient
from yourclaw_messaging.repository.usage import ModelSpend

log = get_logger(__name__)

KNOWN = ("help", "status", "usage", "reset", "model", "channel", "voice")


@dataclass(frozen=True)
class Command:
    name: str
    arg: str


def parse(text: str) -> Command | None:
    """The command in `text`, or None: unknown `/x` goes to the assistant as text."""
    text = text.strip()
    if not text.startswith("/"):
        return None
    word, _, arg = text[1:].partition(" ")
    name = word.lower()
    return Command(name, arg.strip()) if name in KNOWN else None


def _norm(value: str) -> str:
    return "".join(ch for ch in value.lower() if ch.isalnum())


def find_model(name: str) -> ModelInfo | None:
    """A model by id, name or an unambiguous part of either ("opus", "gpt-4o")."""
    wanted = _norm(name)
    if not wanted:
        return None
    for model in AVAILABLE_MODELS:
        short = model.id.partition("/")[2]
        if wanted in (_norm(model.id), _norm(short), _norm(model.display_name)):
            return model
    matches = [
        m
        for m in AVAILABLE_MODELS
        if wanted in _norm(m.id) or wanted in _norm(m.display_name)
    ]
    return matches[0] if len(matches) == 1 else None


def model_choices() -> str:
    return "\n".join(
        f"• {m.display_name}: /model {m.id.partition('/')[2]}" for m in AVAILABLE_MODELS
    )


def model_name(model_id: str | None) -> str:
    for model in AVAILABLE_MODELS:
        if model.id == model_id:
            return f"{model.display_name} ({model.id})"
    return model_id or "the default model"


@dataclass(frozen=True)
class Commands:
    """Answers the commands; the answer is stored as the turn's reply."""

    app_url: str
    limits: Limits
    # What llm-proxy lets a user spend on platform keys a month (USD).
    llm_allowance_usd: float
    # Names this service's outbox rows (the relay publishes those).
    service_name: str
    # The channels this deployment serves.
    channels: tuple[str, ...] = ("whatsapp",)

    async def run(
        self, conn: Connection, command: Command, recipient: Recipient
    ) -> str:
        user_id = recipient.user_id
        if command.name == "help":
            return replies.HELP
        if command.name == "reset":
            epoch = await repository.conversations.reset_session(conn, user_id)
            log.info("messaging.command.reset", user_id=str(user_id), epoch=epoch)
            return replies.RESET
        if command.name == "model":
            return await self._model(conn, command, recipient)
        if command.name == "channel":
            return await self._channel(conn, command, recipient)
        if command.name == "voice":
            return await self._voice(conn, command, recipient)
        spend = await repository.usage.model_spend(conn, user_id)
        spent, limit, which = self.month_limit(spend)
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
        usage = await repository.usage.usage_today(conn, user_id)
        tokens = (usage["tokens_in"] + usage["tokens_out"]) if usage else 0
        token_limit = (
            f", {replies.counted(self.limits.tokens_per_day, 'token')} a day"
            if self.limits.tokens_per_day
            else ""
        )
        status = recipient.assistant_status or "NONE"
        return replies.STATUS.format(
            status=replies.ASLEEP
            if status == "SUSPENDED"
            else status.lower().replace("_", " "),
            model=model_name(recipient.model),
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

    async def _model(
        self, conn: Connection, command: Command, recipient: Recipient
    ) -> str:
        # The assistant's model has one home, the assistant (the provisioner's
        # row): a pick in chat goes the same way as one on the dashboard.
        current = recipient.model
        if not command.arg:
            return replies.MODEL_LIST.format(
                current=model_name(current), choices=model_choices()
            )
        model = find_model(command.arg)
        if model is None:
            return replies.MODEL_UNKNOWN.format(
                name=command.arg[:60], choices=model_choices()
            )
        if model.id == current:
            return replies.MODEL_ALREADY.format(name=model.display_name)
        # Through the outbox, committed with the reply: the provisioner
        # records the model and re-creates the gateway with it.
        await outbox.add(
            conn,
            AssistantProvisionRequested(
                user_id=recipient.user_id, reason="model_changed", model=model.id
            ),
            service=self.service_name,
        )
        log.info(
            "messaging.command.model", user_id=str(recipient.user_id), model=model.id
        )
        return replies.MODEL_SWITCHED.format(name=model.display_name, model_id=model.id)

    async def _channel(
        self, conn: Connection, command: Command, recipient: Recipient
    ) -> str:
        """Where reminders and other messages we send first go: `/channel`
        tells, `/channel telegram` chooses (the dashboard shows the same)."""
        mine = [
            r.channel
            for r in await repository.conversations.addresses_of(
                conn, recipient.user_id
            )
            if r.channel in self.channels
        ]
        names = ", ".join(mine)
        wanted = command.arg.strip().lower()
        if not wanted:
            return replies.CHANNEL_CURRENT.format(
                current=mine[0] if mine else recipient.channel, names=names
            )
        if (
            wanted not in mine
            or not await repository.conversations.set_preferred_channel(
                conn, recipient.user_id, wanted
            )
        ):
            return replies.CHANNEL_UNKNOWN.format(
                name=wanted[:30], names=names, app_url=self.app_url
            )
        log.info(
            "messaging.command.channel", user_id=str(recipient.user_id), channel=wanted
        )
        return replies.CHANNEL_SET.format(name=wanted)

    async def _voice(
        self, conn: Connection, command: Command, recipient: Recipient
    ) -> str:
        """Spoken replies to voice notes: `/voice` tells, `/voice on|off`
        switches (the dashboard shows the same)."""
        wanted = command.arg.strip().lower()
        if wanted not in ("on", "off"):
            on = await repository.voice.voice_replies(conn, recipient.user_id)
            state = replies.VOICE_IS_ON if on else replies.VOICE_IS_OFF
            return state if not wanted else f"{replies.VOICE_USAGE}\n{state}"
        await repository.voice.set_voice_replies(
            conn, recipient.user_id, wanted == "on"
        )
        log.info(
            "messaging.command.voice", user_id=str(recipient.user_id), voice=wanted
        )
        return replies.VOICE_ON if wanted == "on" else replies.VOICE_OFF

    def month_limit(self, spend: ModelSpend) -> tuple[float, float, str]:
        """(spent, limit, its name): the user's own cap counts every call, the
        plan's allowance only those paid with platform keys."""
        if spend.cap_usd is not None and spend.cap_usd <= self.llm_allowance_usd:
            return spend.cost_usd, spend.cap_usd, "cap"
        return spend.platform_usd, self.llm_allowance_usd, "allowance"


def _next_month(now: datetime) -> str:
    first = now.date().replace(day=1) + timedelta(days=32)
    return f"{first.replace(day=1):%Y-%m-%d}"
