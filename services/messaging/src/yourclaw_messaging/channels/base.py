"""What turns and proactive messages need from a channel, and the message in
from any channel.

A channel turns stored `messages` rows into sends through its provider's API
and knows that provider's rules: how long one message may be, when free-form
text is allowed and what replaces it otherwise, how to fetch an attachment,
what a sender it does not know is told. A new channel is one module that
implements this protocol and converts its inbound event to an `Incoming`,
plus its webhook in gateway-api.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol
from uuid import UUID

import asyncpg
from yourclaw_common.db import Connection
from yourclaw_common.events import InboundMedia

from yourclaw_messaging.outgoing import Planned
from yourclaw_messaging.repository.conversations import Recipient
from yourclaw_messaging.speech import Speech

ChannelName = Literal["whatsapp", "sms", "telegram"]
CHANNELS: tuple[ChannelName, ...] = ("whatsapp", "telegram", "sms")


@dataclass(frozen=True)
class Incoming:
    """A message from a user on any channel, as turns handle it."""

    channel: ChannelName
    # Where it came from and where the reply goes: a phone number (E.164) for
    # WhatsApp and SMS, a chat id for Telegram.
    address: str
    # The provider's id of the message (stored as `messages.twilio_sid`):
    # a redelivery or a retried webhook carries the same one.
    key: str
    body: str = ""
    media: tuple[InboundMedia, ...] = ()
    # The message carried the code that proved the sender's number (gateway-api
    # linked it before publishing): answered with a confirmation.
    verifies_phone: bool = False
    # Telegram `/start <code>`: what gateway-api made of the code.
    link: str | None = None


@dataclass(frozen=True)
class SpokenReply:
    """Reply parts this attempt just stored, and `speech`, their spoken
    version, for `user_id` at `address`."""

    stored: Sequence[asyncpg.Record]
    address: str
    speech: Speech
    user_id: UUID


class Channel(Protocol):
    name: ClassVar[ChannelName]

    async def deliver(
        self, stored: Sequence[asyncpg.Record], address: str, *, fresh: bool
    ) -> None:
        """Send every stored part not yet sent, in order. `fresh`: this attempt
        just stored them, so none can have reached the provider yet."""
        ...

    def speaks(self) -> bool:
        """Whether this channel can carry a voice reply (docs/channels.md)."""
        ...

    async def deliver_spoken(self, reply: SpokenReply) -> None:
        """Send the reply's parts, and its speech as a voice message. Whatever
        becomes of the voice message, the text is sent."""
        ...

    def split(self, text: str) -> list[str]:
        """`text` cut into the parts one message of this channel can hold."""
        ...

    async def fetch_media(self, url: str, *, max_bytes: int) -> tuple[bytes, str]:
        """An inbound attachment and its content type; MediaRejected when too big."""
        ...

    async def plan_notice(self, conn: Connection, user_id: UUID, text: str) -> Planned:
        """A message we send first (an automation's result, a usage notice)."""
        ...

    async def plan_ready(self, conn: Connection, user_id: UUID, text: str) -> Planned:
        """The "your assistant is ready" message."""
        ...

    def in_flight(self, stored: Sequence[asyncpg.Record]) -> bool:
        """Whether another attempt may be sending one of these parts right now."""
        ...

    async def intercept(
        self, incoming: Incoming, recipient: Recipient | None
    ) -> str | None:
        """The channel's own answer to a message before commands and the
        assistant see it (SMS keywords, a Telegram link), or None to go on."""
        ...

    async def exempt_from_limits(self, incoming: Incoming) -> bool:
        """Whether `incoming` is a keyword this channel must always act on
        (SMS STOP, START, HELP): stored once, but neither counted against the
        rate limits nor refused by them, so that `intercept` always sees it."""
        ...

    async def stranger(self, conn: Connection, address: str, app_url: str) -> str:
        """What a sender with no account on this channel is told."""
        ...

    def serves(self, address: str) -> bool:
        """Whether this channel may carry the assistant to `address` at all."""
        ...

    def typing(self, address: str) -> AbstractAsyncContextManager[None]:
        """Shown to the user while the assistant works on their message."""
        ...
