"""`/api/v1/channels`: where the user can be reached (WhatsApp, Telegram, SMS),
where messages we send first go, and whether voice notes are answered aloud
(docs/channels.md)."""

from __future__ import annotations

from fastapi import APIRouter

from yourclaw_gateway_api.channels import service
from yourclaw_gateway_api.dependencies import CurrentUser, Pool, Settings
from yourclaw_gateway_api.errors import USER_REMOVED, error_responses
from yourclaw_gateway_api.schemas import (
    ChannelsOut,
    PreferredChannelIn,
    VoiceRepliesIn,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/channels", tags=["channels"])


@router.get(
    "",
    summary="The user's channels: available, linked, and where messages we send "
    "first go",
    responses=error_responses(USER_REMOVED),
)
async def get_channels(
    user: CurrentUser, pool: Pool, settings: Settings
) -> ChannelsOut:
    async with pool.acquire() as conn:
        return await service.channels(conn, user.id, service.Configured.of(settings))


@router.put(
    "/preferred",
    summary="Choose the channel messages we send first go to (null: the one the "
    "user last wrote on)",
    responses=error_responses(
        USER_REMOVED
        | {
            422: "CHANNEL_NOT_LINKED: the user has no address on that channel; "
            "CHANNEL_NOT_AVAILABLE: the channel is not offered to the user",
        }
    ),
)
async def set_preferred_channel(
    body: PreferredChannelIn, user: CurrentUser, pool: Pool, settings: Settings
) -> ChannelsOut:
    async with pool.acquire() as conn, conn.transaction():
        return await service.set_preferred(
            conn, user.id, body.channel, service.Configured.of(settings)
        )


@router.put(
    "/voice",
    summary="Turn voice replies on or off: the answer to a voice note comes as a "
    "voice message too (WhatsApp, Telegram)",
    responses=error_responses(
        USER_REMOVED
        | {
            422: 'VALIDATION_ERROR: the body is not {"enabled": true|false}',
        }
    ),
)
async def set_voice_replies(
    body: VoiceRepliesIn, user: CurrentUser, pool: Pool, settings: Settings
) -> ChannelsOut:
    async with pool.acquire() as conn, conn.transaction():
        return await service.set_voice_replies(
            conn, user.id, body.enabled, service.Configured.of(settings)
        )
