"""`/api/v1/usage` and `/api/v1/messages`: what the user and their assistant said."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from yourclaw_gateway_api import service
from yourclaw_gateway_api.dependencies import CurrentUser, Pool, Settings
from yourclaw_gateway_api.errors import error_responses
from yourclaw_gateway_api.schemas import LlmCapIn, LlmSpend, MessagePage, UsageOut

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


@router.put(
    "/usage/cap",
    summary="Set a monthly cap on model spend below the plan's allowance "
    "(null removes it); it caps the calls paid with the user's own keys too",
    responses=error_responses(
        {400: "CAP_ABOVE_ALLOWANCE: the cap is more than the plan's allowance"}
    ),
)
async def set_usage_cap(
    body: LlmCapIn, user: CurrentUser, pool: Pool, settings: Settings
) -> LlmSpend:
    async with pool.acquire() as conn, conn.transaction():
        return await service.set_llm_cap(
            conn,
            user.id,
            body.cap_usd,
            allowance_usd=settings.llm_monthly_allowance_usd,
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
