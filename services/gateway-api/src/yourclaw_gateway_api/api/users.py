"""`/api/v1/users/me`: the signed-in user's profile and WhatsApp number (claimed
here, proven by a WhatsApp message: see `verification`)."""

from __future__ import annotations

from fastapi import APIRouter

from yourclaw_gateway_api import service
from yourclaw_gateway_api.channels import service as channels
from yourclaw_gateway_api.dependencies import (
    CurrentUser,
    Pool,
    SensitiveUser,
    Settings,
)
from yourclaw_gateway_api.errors import USER_REMOVED, error_responses
from yourclaw_gateway_api.schemas import PhoneIn, PhoneOut, UserOut

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/users", tags=["users"])


@router.get(
    "/me",
    summary="The signed-in user: profile, phone, subscription and assistant status",
    responses=error_responses(USER_REMOVED),
)
async def get_me(user: CurrentUser, pool: Pool) -> UserOut:
    async with pool.acquire() as conn:
        return await service.me(conn, user.id)


@router.post(
    "/me/phone",
    summary="Claim a WhatsApp number: returns the code that proves it",
    description="The number is linked once a WhatsApp message from it carries "
    "the code (within 15 minutes); until then the proven number, if any, stays "
    "linked. Every number gets the same answer, whoever holds it. Where "
    "WhatsApp may not carry the assistant (`whatsapp_available` false), the "
    "link sends the code by SMS instead.",
    responses=error_responses(
        {
            422: "INVALID_PHONE: not a phone number with its country code; "
            "`detail` says what to fix",
        }
    ),
)
async def set_phone(
    body: PhoneIn, user: SensitiveUser, pool: Pool, settings: Settings
) -> PhoneOut:
    async with pool.acquire() as conn, conn.transaction():
        claim = await service.set_phone(
            conn,
            user.id,
            body.phone,
            whatsapp_number=settings.twilio_whatsapp_number,
        )
    return channels.phone_answer(claim, channels.Configured.of(settings))
