"""Events of the conversation: messages in on each channel, messages out."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from yourclaw_common.events.base import Event
from yourclaw_common.events.subjects import Subject

__all__ = [
    "InboundMedia",
    "InboundSms",
    "InboundTelegram",
    "InboundWhatsApp",
    "InboundWhatsAppStatus",
    "OutboundWhatsApp",
]


class InboundMedia(BaseModel):
    """One attachment of an inbound message (Twilio `MediaUrlN`/`MediaContentTypeN`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    content_type: str | None = None


class InboundWhatsApp(Event):
    """A WhatsApp message Twilio delivered to our webhook (signature verified)."""

    subject: ClassVar[Subject] = Subject.INBOUND_WHATSAPP

    message_sid: str
    account_sid: str = ""
    from_number: str  # as Twilio sends it: "whatsapp:+15551234567"
    to_number: str
    body: str = ""
    profile_name: str | None = None
    num_media: int = 0
    media: tuple[InboundMedia, ...] = ()
    # Every POST parameter Twilio sent, for fields we do not model yet.
    params: dict[str, str] = Field(default_factory=dict)
    # The message carried the code that proved the sender's number (gateway-api
    # linked it before publishing): answered with a confirmation, not the assistant.
    verifies_phone: bool = False

    def dedupe_key(self) -> str:
        # Twilio retries carry the same MessageSid; JetStream drops them.
        return self.message_sid


class InboundSms(InboundWhatsApp):
    """An SMS Twilio delivered to our SMS webhook (signature verified). Twilio
    posts the same fields as for WhatsApp; the numbers carry no prefix."""

    subject: ClassVar[Subject] = Subject.INBOUND_SMS


TelegramLink = Literal["linked", "expired", "invalid"]


class InboundTelegram(Event):
    """A message from a Telegram chat, from the Bot API's webhook (secret
    token verified). Attachments are Telegram file ids (`getFile` finds them)."""

    subject: ClassVar[Subject] = Subject.INBOUND_TELEGRAM

    update_id: int
    chat_id: int
    message_id: int
    text: str = ""
    username: str | None = None
    first_name: str | None = None
    # A voice note, an audio file or the largest size of a photo: `url` is the
    # file id, `content_type` its MIME type as Telegram states it.
    media: tuple[InboundMedia, ...] = ()
    # `/start <code>`: what gateway-api made of the code before publishing
    # ("linked": the chat is now the user's). Answered by messaging, never
    # handed to an assistant.
    link: TelegramLink | None = None

    @property
    def message_key(self) -> str:
        """Our id of the message (`messages.twilio_sid`): unique per bot."""
        return f"tg:{self.chat_id}:{self.message_id}"

    def dedupe_key(self) -> str:
        # Telegram retries an update with the same update_id.
        return f"telegram:{self.update_id}"


class InboundWhatsAppStatus(Event):
    """A Twilio status callback for a message we sent."""

    subject: ClassVar[Subject] = Subject.INBOUND_WHATSAPP_STATUS

    message_sid: str
    message_status: str
    error_code: str | None = None
    params: dict[str, str] = Field(default_factory=dict)
    # Our `messages.id`, from the `message_id` query parameter messaging puts on
    # each send's StatusCallback URL: Twilio echoes nothing else of the request,
    # so it is how a send that Twilio accepted but we never recorded is found.
    message_id: UUID | None = None

    def dedupe_key(self) -> str:
        return f"{self.message_sid}:{self.message_status}"


class OutboundWhatsApp(Event):
    """A message to send to a user that is not a reply (proactive, notifications)."""

    subject: ClassVar[Subject] = Subject.OUTBOUND_WHATSAPP

    user_id: UUID
    body: str
    kind: Literal["assistant_notification", "system"] = "system"
    # The assistant whose automation produced it (proactive messages).
    assistant_id: UUID | None = None
