"""Every SQL statement of the messaging service, by what it touches."""

from yourclaw_messaging.repository import (
    conversations,
    inbound,
    outbound,
    sms,
    usage,
    voice,
)

__all__ = ["conversations", "inbound", "outbound", "sms", "usage", "voice"]
