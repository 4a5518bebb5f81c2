"""`/api/v1/usage` and `/api/v1/messages`: what the user and their assistant said."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from yourclaw_gateway_api import service
from yourclaw_gateway_api.dependencies import CurrentUser, Pool, Settings
from yourclaw_gateway_api.schemas import MessagePage, UsageOut

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["usage"])


@router.get(
    "/usage",
    summary="Messages and tokens today and over the last 30 days; this month's "
    "model spend against the allowance, by day",
)
async def get_usage(user: CurrentUser, pool: Pool, settings: Settings) -> UsageOut:
    async with pool.acquire() as conn:
        return await service.usage(
            conn, user.id, llm_allowance_usd=settings.llm_monthly_allowance_usd
        )


@router.get(
    "/messages", summary="The user's WhatsApp conversation, newest first, by pages"
)
async def list_messages(
    user: CurrentUser,
    pool: Pool,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    before: Annotated[
        UUID | None,
        Query(description="`next_before` of the previous page: older messages."),
    ] = None,
) -> MessagePage:
    async with pool.acquire() as conn:
        return await service.messages(conn, user.id, limit=limit, before=before)
