"""The rules of `/api/v1/channels` and of the phone claim's channel answer.

Functions take a connection and never commit: the endpoint owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote
from uuid import UUID

from yourclaw_common.channels_policy import AllowedCountries, whatsapp_allowed
from yourclaw_common.db import Connection
from yourclaw_common.errors import HTTPError, NotFound

from yourclaw_gateway_api.channels import repository
from yourclaw_gateway_api.schemas import (
    ChannelName,
    ChannelsOut,
    PhoneOut,
    SmsChannelOut,
    TelegramChannelOut,
    WhatsAppChannelOut,
)
from yourclaw_gateway_api.settings import GatewaySettings

__all__ = [
    "WHATSAPP_NOT_ALLOWED",
    "ChannelNotUsable",
    "Configured",
    "channels",
    "phone_answer",
    "set_preferred",
    "set_voice_replies",
    "sms_link",
]

WHATSAPP_NOT_ALLOWED = (
    "WhatsApp is not available in your country: its rules don't allow AI "
    "assistants there. Use Telegram or SMS instead."
)
_ORDER: tuple[ChannelName, ...] = ("whatsapp", "telegram", "sms")
_NAMES: dict[ChannelName, str] = {
    "whatsapp": "WhatsApp",
    "telegram": "Telegram",
    "sms": "SMS",
}


class ChannelNotUsable(HTTPError):
    """422: the preferred channel is one the user cannot be reached on."""

    status_code = 422
    code = "CHANNEL_NOT_LINKED"


@dataclass(frozen=True)
class Configured:
    """What this server offers: the settings the channels depend on."""

    whatsapp_allowed: AllowedCountries
    telegram: bool
    # Our SMS number in E.164; empty: SMS is off.
    sms_number: str

    @classmethod
    def of(cls, settings: GatewaySettings) -> Configured:
        return cls(
            whatsapp_allowed=settings.whatsapp_allowed_countries,
            telegram=bool(settings.telegram_bot_token.get_secret_value()),
            sms_number=settings.twilio_sms_number,
        )


def sms_link(sms_number: str, code: str) -> str:
    """A link that opens the phone's messages app with the code typed to us."""
    return f"sms:{sms_number}?body={quote(code)}"


def phone_answer(claim: PhoneOut, configured: Configured) -> PhoneOut:
    """The claim as answered: where WhatsApp may not carry the assistant, the
    code goes by SMS instead, if the server has SMS (proving a number over
    WhatsApp is no assistant conversation, so without SMS the wa.me link stays)."""
    available = whatsapp_allowed(claim.phone, configured.whatsapp_allowed)
    if available or claim.code is None or not configured.sms_number:
        return claim.model_copy(update={"whatsapp_available": available})
    link = sms_link(configured.sms_number, claim.code)
    return claim.model_copy(update={"whatsapp_available": False, "link": link})


def _effective(
    preferred: ChannelName | None,
    last: ChannelName | None,
    usable: dict[ChannelName, bool],
    available: dict[ChannelName, bool],
) -> ChannelName:
    # As messaging picks the channel of a message we send first: the user's
    # choice, else where they last wrote, else the first they can be reached on.
    for choice in (preferred, last):
        if choice is not None and usable[choice]:
            return choice
    for name in _ORDER:
        if usable[name]:
            return name
    return next((name for name in _ORDER if available[name]), "whatsapp")


async def channels(
    conn: Connection, user_id: UUID, configured: Configured
) -> ChannelsOut:
    row = await repository.channel_state(conn, user_id)
    if row is None:
        raise NotFound("your account does not exist", code="USER_NOT_FOUND")
    phone: str | None = row["phone"]
    # Before a number is proven, the one typed tells where the user is.
    country_phone = phone or row["claimed_phone"]
    whatsapp_ok = country_phone is None or whatsapp_allowed(
        country_phone, configured.whatsapp_allowed
    )
    username: str | None = row["telegram_username"]
    whatsapp = WhatsAppChannelOut(
        name="whatsapp",
        available=whatsapp_ok,
        linked=phone is not None,
        address=phone,
        reason=None if whatsapp_ok else WHATSAPP_NOT_ALLOWED,
    )
    telegram = TelegramChannelOut(
        name="telegram",
        available=configured.telegram,
        linked=row["telegram_linked"],
        address=f"@{username}" if username else None,
    )
    sms = SmsChannelOut(
        name="sms",
        available=bool(configured.sms_number),
        linked=phone is not None,
        address=phone,
        number=configured.sms_number or None,
        opted_out=row["sms_opted_out"],
    )
    available: dict[ChannelName, bool] = {
        "whatsapp": whatsapp.available,
        "telegram": telegram.available,
        "sms": sms.available,
    }
    usable: dict[ChannelName, bool] = {
        "whatsapp": whatsapp.available and whatsapp.linked,
        "telegram": telegram.available and telegram.linked,
        "sms": sms.available and sms.linked and not sms.opted_out,
    }
    return ChannelsOut(
        preferred=row["preferred_channel"],
        effective=_effective(
            row["preferred_channel"], row["last_channel"], usable, available
        ),
        channels=[whatsapp, telegram, sms],
        voice_replies=row["voice_replies"],
    )


async def set_preferred(
    conn: Connection,
    user_id: UUID,
    channel: ChannelName | None,
    configured: Configured,
) -> ChannelsOut:
    """Set where messages we send first go (None: where the user last wrote)."""
    if channel is not None:
        current = await channels(conn, user_id, configured)
        shown = next(c for c in current.channels if c.name == channel)
        name = _NAMES[channel]
        if not shown.linked:
            raise ChannelNotUsable(
                f"You can't be reached on {name} yet: "
                + (
                    "link your Telegram chat first."
                    if channel == "telegram"
                    else "prove your phone number first."
                )
            )
        if not shown.available:
            reason = shown.reason if isinstance(shown, WhatsAppChannelOut) else None
            raise ChannelNotUsable(
                reason or f"{name} is not set up on this server.",
                code="CHANNEL_NOT_AVAILABLE",
            )
    await repository.set_preferred_channel(conn, user_id, channel)
    return await channels(conn, user_id, configured)


async def set_voice_replies(
    conn: Connection, user_id: UUID, enabled: bool, configured: Configured
) -> ChannelsOut:
    """Turn spoken answers to the user's voice notes on or off."""
    current = await channels(conn, user_id, configured)
    if current.voice_replies != enabled:
        await repository.set_voice_replies(conn, user_id, enabled)
    return current.model_copy(update={"voice_replies": enabled})
