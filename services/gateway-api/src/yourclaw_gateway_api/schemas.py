"""Request and response bodies of /api/v1, as the OpenAPI document shows them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool
from yourclaw_common.models import LlmProvider, ModelId

from yourclaw_gateway_api.phones import INPUT_PATTERN, MAX_INPUT_CHARS

__all__ = [
    "E164_PATTERN",
    "ApiKeyIn",
    "ApiKeyOut",
    "AssistantAccepted",
    "AssistantOut",
    "AssistantStatus",
    "ChannelName",
    "ChannelOut",
    "ChannelsOut",
    "CheckoutOut",
    "DeliveryStatus",
    "DevLoginIn",
    "DevLoginOut",
    "LlmSpend",
    "LlmSpendDay",
    "MessageOut",
    "MessagePage",
    "ModelChange",
    "ModelOut",
    "PhoneIn",
    "PhoneOut",
    "PortalOut",
    "PreferredChannelIn",
    "SmsChannelOut",
    "SubscriptionOut",
    "SubscriptionStatus",
    "TelegramChannelOut",
    "UsageDay",
    "UsageOut",
    "UsageTotals",
    "UserOut",
    "VoiceRepliesIn",
    "WhatsAppChannelOut",
]

# E.164: "+", a country code that does not start with 0, at most 15 digits in all;
# the same rule as the user_phones CHECK constraint.
E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"

# SUSPENDED: asleep after an idle while (healthy); the next message wakes it.
AssistantStatus = Literal["NONE", "PROVISIONING", "READY", "SUSPENDED", "ERROR"]
SubscriptionStatus = Literal["NONE", "ACTIVE", "PAST_DUE", "CANCELED"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PhoneIn(_Request):
    # Read by `phones.to_e164`, so a number it cannot read gets its sentence
    # (422 INVALID_PHONE) rather than a pattern; the document shows the pattern.
    phone: str = Field(
        description="WhatsApp number with its country code: E.164 (+15551234567) "
        "or a common spelling of it (+1 (555) 123-4567, 0044 7700 900123).",
        examples=["+15551234567", "+1 (415) 555-0100"],
        json_schema_extra={"pattern": INPUT_PATTERN, "maxLength": MAX_INPUT_CHARS},
    )


class PhoneOut(BaseModel):
    # `whatsapp_available` has a default for the code that builds the claim;
    # every answer carries it.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    phone: str = Field(description="The number in E.164.")
    verified: bool = Field(
        description="True only when the number was already your proven one."
    )
    code: str | None = Field(
        description="Send it from that number on WhatsApp within 15 minutes to "
        "prove it is yours; a new request replaces it. None when verified."
    )
    link: str | None = Field(
        description="https://wa.me/<our number>?text=<code>: opens WhatsApp with "
        "the code typed; for a number WhatsApp is not available to, "
        "sms:<our SMS number>?body=<code> when the server has SMS. None when "
        "verified."
    )
    whatsapp_available: bool = Field(
        default=True,
        description="Whether the assistant may use WhatsApp with this number "
        "(WHATSAPP_ALLOWED_COUNTRIES); if not, Telegram and SMS are offered.",
    )


ChannelName = Literal["whatsapp", "telegram", "sms"]


class WhatsAppChannelOut(BaseModel):
    name: Literal["whatsapp"]
    available: bool = Field(
        description="False when WhatsApp may not carry the assistant for the "
        "user's number (WHATSAPP_ALLOWED_COUNTRIES); `reason` says why."
    )
    linked: bool = Field(description="The user has a proven phone number.")
    address: str | None = Field(description="The proven number, E.164.")
    reason: str | None = Field(description="Why WhatsApp is not available.")


class TelegramChannelOut(BaseModel):
    name: Literal["telegram"]
    available: bool = Field(description="False when the server has no Telegram bot.")
    linked: bool = Field(description="A Telegram chat is linked to the account.")
    address: str | None = Field(description="The linked chat's @username, if any.")


class SmsChannelOut(BaseModel):
    name: Literal["sms"]
    available: bool = Field(description="False when the server has no SMS number.")
    linked: bool = Field(description="The user has a proven phone number.")
    address: str | None = Field(description="The proven number, E.164.")
    number: str | None = Field(description="Our SMS number, E.164.")
    opted_out: bool = Field(
        description="The number sent STOP: nothing goes to it by SMS until START."
    )


ChannelOut = Annotated[
    WhatsAppChannelOut | TelegramChannelOut | SmsChannelOut,
    Field(discriminator="name"),
]


class ChannelsOut(BaseModel):
    preferred: ChannelName | None = Field(
        description="The user's choice for messages we send first; null: the "
        "channel they last wrote on."
    )
    effective: ChannelName = Field(
        description="Where a message we send first (a reminder, a notice) goes now."
    )
    channels: list[ChannelOut]
    voice_replies: bool = Field(
        description="Whether the user's voice notes are answered with a voice "
        "message as well as the text (WhatsApp and Telegram)."
    )


class PreferredChannelIn(_Request):
    channel: ChannelName | None = Field(
        description="null: the channel the user last wrote on."
    )


class VoiceRepliesIn(_Request):
    enabled: StrictBool = Field(
        description="true: answer the user's voice notes aloud as well."
    )


class UserOut(BaseModel):
    id: UUID
    email: str | None
    # The number last entered; messages from it reach the assistant only once
    # `phone_verified`.
    phone: str | None
    phone_verified: bool
    subscription_status: SubscriptionStatus
    assistant_status: AssistantStatus
    created_at: dt.datetime


class AssistantOut(BaseModel):
    status: AssistantStatus
    model: str
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    last_message_at: dt.datetime | None
    # Why provisioning failed (status ERROR), or what is wrong with a placed
    # one (its server silent, a wake that failed), in words for the user.
    last_error: str | None


class AssistantAccepted(BaseModel):
    status: Literal["PROVISIONING", "DEPROVISIONING"]


class ModelChange(_Request):
    model: ModelId


class ModelOut(BaseModel):
    id: ModelId
    display_name: str
    description: str
    provider: LlmProvider
    default: bool


class CheckoutOut(BaseModel):
    checkout_url: str


class PortalOut(BaseModel):
    portal_url: str


class SubscriptionOut(BaseModel):
    status: SubscriptionStatus
    current_period_end: dt.datetime | None


# Current key formats (2026); the pattern is the whole check, so what the
# OpenAPI document promises is exactly what is accepted.
class AnthropicKeyIn(_Request):
    provider: Literal["ANTHROPIC"]
    # sk-ant-api03-… (API keys) or sk-ant-oat01-… (OAuth tokens); not admin keys.
    key: str = Field(
        pattern=r"^sk-ant-(api|oat)[0-9]{2}-[A-Za-z0-9_\-]{20,300}$", repr=False
    )


class OpenAIKeyIn(_Request):
    provider: Literal["OPENAI"]
    # sk-proj-…, sk-svcacct-…, or a legacy sk-<alphanumerics>; not admin keys.
    key: str = Field(
        pattern=r"^sk-((proj|svcacct)-[A-Za-z0-9_\-]{20,300}|[A-Za-z0-9]{32,200})$",
        repr=False,
    )


class GoogleKeyIn(_Request):
    provider: Literal["GOOGLE"]
    # Auth keys (AQ.…, issued by AI Studio since 2026) or standard keys (AIza…).
    key: str = Field(
        pattern=r"^(AQ\.[A-Za-z0-9_.\-]{20,300}|AIza[A-Za-z0-9_\-]{35})$", repr=False
    )


ApiKeyIn = Annotated[
    AnthropicKeyIn | OpenAIKeyIn | GoogleKeyIn, Field(discriminator="provider")
]


class ApiKeyOut(BaseModel):
    provider: LlmProvider
    key_last4: str
    created_at: dt.datetime


class UsageTotals(BaseModel):
    inbound: int
    outbound: int
    tokens_in: int
    tokens_out: int


class UsageDay(UsageTotals):
    date: dt.date


class LlmSpendDay(BaseModel):
    """One UTC day's metered model calls, priced at list price."""

    date: dt.date
    calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float


class LlmSpend(BaseModel):
    """This UTC month's model spend against the plan's allowance."""

    month: dt.date = Field(description="First day of the (UTC) month.")
    resets_at: dt.datetime
    allowance_usd: float
    # Paid with platform keys: what the allowance caps.
    spent_usd: float
    remaining_usd: float
    # The lower monthly cap the user set (it caps every call, their own keys'
    # included); null: the allowance alone.
    cap_usd: float | None = None
    # Everything metered, the user's own keys (BYOK) included.
    total_cost_usd: float
    calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    # Days with any model call this month, oldest first.
    days: list[LlmSpendDay]


class LlmCapIn(BaseModel):
    """The user's own monthly cap on model spend; null removes it."""

    cap_usd: float | None = Field(
        ge=0, description="USD a month, at most the plan's allowance; null: none."
    )


class UsageOut(BaseModel):
    today: UsageDay
    last_30_days: UsageTotals
    # Days with any activity in the last 30 (UTC), newest first.
    days: list[UsageDay]
    llm: LlmSpend


# An outbound message on its way, as WhatsApp's ticks show it.
DeliveryStatus = Literal["pending", "sent", "delivered", "read", "failed"]


class MessageOut(BaseModel):
    id: UUID
    direction: Literal["INBOUND", "OUTBOUND"]
    body: str
    status: str = Field(
        description="Our own record: RECEIVED (inbound); PENDING, SENDING, SENT, "
        "FAILED or SKIPPED (never sent: an empty part, or a limit notice already "
        "given)."
    )
    delivery_status: DeliveryStatus | None = Field(
        description="Outbound only, from Twilio's status callbacks: pending (not "
        "yet handed to Twilio), sent (accepted; on its way to WhatsApp), delivered "
        "(on the phone), read, failed (failed or undelivered). Moves only forward. "
        "null for inbound and skipped messages."
    )
    num_media: int
    created_at: dt.datetime


class MessagePage(BaseModel):
    messages: list[MessageOut]
    # Pass as `before` to get the next (older) page; null on the last page.
    next_before: UUID | None


class DevLoginIn(_Request):
    # ASCII classes only: the same on every regex engine (pydantic's, and the
    # JSON Schema one a client validates with).
    email: str = Field(
        pattern=r"^[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(\.[A-Za-z0-9\-]{1,63}){0,8}$"
    )


class DevLoginOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a scheme name
    expires_in: int
    user_id: UUID
