"""`POST /api/v1/channels/telegram/link`: the deep link that links the
signed-in user's Telegram chat (see `telegram_links`)."""

from __future__ import annotations

import datetime as dt

import httpx
from fastapi import APIRouter, Request
from pydantic import BaseModel
from yourclaw_common.errors import ServiceUnavailable

from yourclaw_gateway_api import telegram_links
from yourclaw_gateway_api.dependencies import Pool, SensitiveUser
from yourclaw_gateway_api.errors import error_responses
from yourclaw_gateway_api.settings import GatewaySettings
from yourclaw_gateway_api.telegram_bot import BotProfile

__all__ = ["TelegramLinkOut", "telegram_router"]


class TelegramLinkOut(BaseModel):
    """Opening `url` in Telegram sends the bot `/start <code>` from the user's
    chat, which links it; single use, until `expires_at`."""

    url: str
    expires_at: dt.datetime


def telegram_router(settings: GatewaySettings) -> APIRouter:
    """The Telegram routes, bound to the configured bot."""
    token = settings.telegram_bot_token.get_secret_value()
    configured = bool(token and settings.telegram_webhook_secret.get_secret_value())
    bot = BotProfile(settings.telegram_api_base, token)
    router = APIRouter(prefix="/api/v1/channels/telegram", tags=["channels"])

    @router.post(
        "/link",
        summary="A t.me link that links the user's Telegram chat",
        description="Valid 15 minutes, once. Opening it in Telegram and pressing "
        "Start links that chat; a chat linked to another account stays theirs, "
        "and linking another chat moves the user's link there.",
        responses=error_responses(
            {
                503: "TELEGRAM_NOT_CONFIGURED: this server has no Telegram bot; "
                "TELEGRAM_UNAVAILABLE: Telegram did not answer, retry",
            }
        ),
    )
    async def link(
        request: Request, user: SensitiveUser, pool: Pool
    ) -> TelegramLinkOut:
        if not configured:
            raise ServiceUnavailable(
                "Telegram is not configured on this server",
                code="TELEGRAM_NOT_CONFIGURED",
            )
        http: httpx.AsyncClient = request.state.http
        username = await bot.username(http)
        async with pool.acquire() as conn, conn.transaction():
            code, expires_at = await telegram_links.create_code(conn, user.id)
        return TelegramLinkOut(
            url=f"https://t.me/{username}?start={code}", expires_at=expires_at
        )

    return router
